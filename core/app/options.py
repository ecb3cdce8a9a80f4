"""Parsing option values shared by several commands, so each is read one way everywhere."""

from __future__ import annotations

from ..engine.errors import InputError


def parse_size(size: str, what: str = "--size") -> tuple[int, int]:
    """``"432x768"`` -> (432, 768): height first, like the official demo's sizes."""
    try:
        height, width = (int(v) for v in size.lower().replace(" ", "").split("x"))
    except ValueError:
        raise InputError(f"bad {what} {size!r}; write HxW, e.g. 432x768") from None
    if height < 16 or width < 16:
        raise InputError(f"{what} {size!r} is too small; use at least 16x16")
    return height, width
