"""The options of one clip, read from text: a manifest cell, a ``--set KEY=VALUE``, a JSON value.

The set of options is not written down here: it is every keyword ``run_clip``, ``convert_video``
and ``matte`` accept (their signatures are the schema), with each keyword's type hint saying how
a cell is read. An option added to the API is therefore a manifest column and a batch option the
moment it exists. Values are checked before a batch starts, so a typo in row 300 of a manifest
stops the batch at once with one line naming the row, rather than failing clip 300 an hour later.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.errors import InputError, MatanyoneError
from .options import check_run_options

#: Parameters of the API functions that are not per-clip options (the clip itself, callbacks,
#: already loaded modules).
NOT_OPTIONS = frozenset({"input", "output", "output_dir", "progress", "announce", "modules"})
#: Options that change how fast a clip runs but not what it writes: a changed value does not
#: make a finished clip count as out of date.
OUTPUT_NEUTRAL = frozenset({"threads", "pipeline"})
_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f")
_NONE = ("", "none", "null")


@dataclass(frozen=True)
class Keyword:
    """One per-clip option: its name, its type hint and the API's default."""

    name: str
    hint: Any
    default: Any

    @property
    def flag(self) -> str:
        """How the option is spelled on the command line, for messages."""
        return "--" + self.name.replace("_", "-")


def clip_keywords() -> dict[str, Keyword]:
    """Every per-clip option, from the signatures of run_clip, convert_video and matte."""
    from .api import convert_video, matte
    from .jobs import run_clip

    found: dict[str, Keyword] = {}
    for function in (run_clip, convert_video, matte):
        hints = typing.get_type_hints(function)
        for param in inspect.signature(function).parameters.values():
            if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or param.name in NOT_OPTIONS:
                continue
            if param.name in found:
                continue
            default = None if param.default is param.empty else param.default
            found[param.name] = Keyword(param.name, hints.get(param.name, Any), default)
    return found


def normalise_key(key: str) -> str:
    """``--max-size``, ``max-size`` and ``max_size`` name the same option."""
    return key.strip().lstrip("-").replace("-", "_").lower()


# ------------------------------------------------------------------------------------ coercion


class _Mismatch(ValueError):
    """A value that does not fit one member of a type hint (another member may still fit)."""


def _members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _rank(hint: Any) -> int:
    """Try the strict readings first: "5" is the number 5 where a number is allowed, "a,b" a
    list where a list is, and only otherwise the text itself."""
    if hint is type(None):
        return 0
    if hint is bool:
        return 1
    if hint is int:
        return 2
    if hint is float:
        return 3
    origin = typing.get_origin(hint)
    if _is_sequence(origin):
        return 4
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return 5
    if hint in (str, Path):
        return 6
    return 7


def _is_sequence(origin: Any) -> bool:
    import collections.abc as cabc

    return origin in (list, tuple, cabc.Sequence, cabc.Iterable, cabc.Collection, typing.Sequence)


def _as(hint: Any, value: Any) -> Any:
    """``value`` read as one (non-union) type, or _Mismatch."""
    if hint is Any:
        return value
    if hint is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        raise _Mismatch("nothing")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise _Mismatch("true or false")
    if hint is int:
        if isinstance(value, bool):
            raise _Mismatch("a whole number")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _Mismatch("a whole number")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _Mismatch("a number")
    if hint is str or hint is Path:
        if isinstance(value, (str, Path)):
            return str(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _Mismatch("text")
    origin = typing.get_origin(hint)
    if _is_sequence(origin):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if isinstance(value, str):
            items: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise _Mismatch("a list (comma-separated)")
        if origin is tuple and len(args) > 1:
            if len(items) != len(args):
                raise _Mismatch(f"{len(args)} comma-separated values")
            return [_coerce(a, item) for a, item in zip(args, items, strict=True)]
        item_hint = args[0] if args else Any
        return [_coerce(item_hint, item) for item in items]
    if origin in (dict, Mapping) or hint in (dict, Mapping) or origin is typing.Mapping:
        if isinstance(value, dict):
            return dict(value)
        raise _Mismatch("a JSON object")
    raise _Mismatch("a value that cannot be given as text")


def _coerce(hint: Any, value: Any) -> Any:
    """``value`` read as ``hint`` (a union tries its members, strict readings first)."""
    wanted: list[str] = []
    members = _members(hint)
    for member in sorted(members, key=_rank):
        try:
            return _as(member, value)
        except _Mismatch as exc:
            if member is not type(None):
                wanted.append(str(exc))
    optional = " (or empty)" if type(None) in members else ""
    raise _Mismatch(" or ".join(dict.fromkeys(wanted)) + optional)


def coerce(keyword: Keyword, value: Any, where: str) -> Any:
    """One option's value, typed; a value that does not fit is one InputError naming ``where``."""
    try:
        return _coerce(keyword.hint, value)
    except _Mismatch as exc:
        raise InputError(f"{where}: {keyword.flag} must be {exc}, got {value!r}") from None


# ---------------------------------------------------------------------------------- value checks


def _check_mask_provider(value: Any) -> None:
    if value is None:
        return
    from .. import plugins

    table = plugins.mask_providers()
    if value not in table:
        raise InputError(f"unknown mask provider {value!r}; known providers: {', '.join(sorted(table)) or 'none'}")
    ok, reason = table[value].available()
    if not ok:
        raise InputError(f"mask provider {value} is unavailable here: {reason}")


BACKEND_OPTIONS = ("backend", "placement", "precision")


def check_backends(options: Mapping[str, Any], where: str) -> None:
    """The backend (``auto`` resolved) and every placed one must run here; a BackendError naming
    ``where`` otherwise."""
    from .loading import DEFAULT_BACKEND, precision_plan

    try:
        precision_plan(
            options.get("backend", DEFAULT_BACKEND), options.get("precision", "fp32"), options.get("placement")
        )
    except MatanyoneError as exc:
        raise type(exc)(f"{where}: {exc}") from None


def check_options(
    options: Mapping[str, Any],
    where: str,
    keywords: Mapping[str, Keyword] | None = None,
    *,
    backends: bool = True,
) -> dict:
    """``options`` ({name: raw value}) typed and checked; the first problem is one InputError
    (or the BackendError of an unusable backend) that starts with ``where``. ``backends=False``
    leaves the backend check to a caller that merges options first (see check_backends)."""
    table = dict(keywords) if keywords is not None else clip_keywords()
    typed: dict[str, Any] = {}
    for raw_key, raw in options.items():
        name = normalise_key(raw_key)
        if name not in table:
            known = ", ".join(sorted(table))
            raise InputError(f"{where}: unknown option {raw_key!r}; the per-clip options are {known}")
        typed[name] = coerce(table[name], raw, where)
    try:
        # the same value checks `run` and convert_video make, so a manifest row is refused for
        # exactly what the command line would refuse
        check_run_options(**typed)
        _check_mask_provider(typed.get("mask_provider"))
    except MatanyoneError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    if backends and set(BACKEND_OPTIONS) & typed.keys():
        check_backends(typed, where)
    return typed


def effective_options(options: Mapping[str, Any], keywords: Mapping[str, Keyword] | None = None) -> dict:
    """The API's defaults with ``options`` over them: what a clip will really run with, so the same
    job spelled with and without its defaults is recognised as the same job."""
    table = dict(keywords) if keywords is not None else clip_keywords()
    return {**{name: kw.default for name, kw in table.items()}, **options}
