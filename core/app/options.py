"""Parsing option values shared by several commands, so each is read one way everywhere."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Literal

import numpy as np

from ..engine.errors import InputError, OptionError, OutputError
from ..engine.precision import CHOICES as PRECISIONS

#: ``--precision`` of run, batch and bench as a Literal, so typer lists the choices in --help and
#: refuses others before anything loads; tests/test_inputs.py checks it is engine.precision.CHOICES.
Precision = Literal["fp32", "bf16", "fp16", "fast"]


class PrecisionChoice(str, Enum):
    """The same choices as an Enum, for an option given several times (typer takes no list of Literal)."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    fast = "fast"


#: The smallest useful --max-size: the network sees the frame at 1/16 of its size.
MIN_MAX_SIZE = 16


def parse_size(size: str, what: str = "--size") -> tuple[int, int]:
    """``"432x768"`` -> (432, 768): height first, like the official demo's sizes."""
    try:
        height, width = (int(v) for v in size.lower().replace(" ", "").split("x"))
    except ValueError:
        raise InputError(f"bad {what} {size!r}; write HxW, e.g. 432x768") from None
    if height < 16 or width < 16:
        raise InputError(f"{what} {size!r} is too small; use at least 16x16")
    return height, width


def _whole(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise OptionError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _at_least(value: object, name: str, low: int, meaning: str) -> None:
    number = _whole(value, name)
    if number < low:
        raise OptionError(f"{name} must be {low} or more, got {number}: {meaning}")


def check_run_options(
    *,
    warmup: int = 10,
    erode: int = 10,
    dilate: int = 10,
    max_size: int = -1,
    start: int = 0,
    frames: int | None = None,
    mem_frames: int | None = 5,
    mem_every: int = 5,
    precision: str | None = "fp32",
    threads: int | None = None,
    outputs: Sequence[str] | str | None = None,
    alpha_format: str | None = None,
    video_format: str | None = None,
    background: object = None,
    **_ignored: object,
) -> None:
    """Refuse option values that can never work, before any input is probed or weights load.

    One check for the API (convert_video/matte) and the CLI, so both say the same thing; the
    message is the one line the CLI prints (exit 2). Options it does not know are left to
    whoever takes them.
    """
    _at_least(warmup, "--warmup", 0, "it counts the first frame's extra passes (0 for none)")
    _at_least(erode, "--erode", 0, "it is a kernel size in pixels (0 disables the step)")
    _at_least(dilate, "--dilate", 0, "it is a kernel size in pixels (0 disables the step)")
    _at_least(start, "--start", 0, "it is the index of the first frame to process (0 is the first)")
    if frames is not None:
        _at_least(frames, "--frames", 1, "it is how many frames to process (leave it out for all)")
    if mem_frames is not None:  # None: a model folder's manifest decides
        _at_least(mem_frames, "--mem-frames", 1, "the working memory needs at least one frame")
    _at_least(mem_every, "--mem-every", 1, "it is the spacing of memory frames")
    size = _whole(max_size, "--max-size")
    if 0 < size < MIN_MAX_SIZE:
        raise OptionError(
            f"--max-size {size} is too small: cap the shorter side at {MIN_MAX_SIZE} pixels or more, "
            "or pass -1 to keep the size"
        )
    if threads is not None:
        _at_least(threads, "--threads", 1, "it is a number of CPU threads (leave it out for the default)")
    if precision is not None and precision not in PRECISIONS:
        raise OptionError(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    from ..media import writers

    try:
        if outputs is not None:
            writers.parse_outputs(outputs)
        if alpha_format is not None:
            writers.parse_choice(alpha_format, writers.ALPHA_FORMATS, "--alpha-format")
        if video_format is not None:
            writers.parse_choice(video_format, writers.VIDEO_FORMATS, "--video-format")
    except OutputError as exc:
        raise OptionError(str(exc)) from None
    if background is not None and outputs is not None and "foreground" in writers.parse_outputs(outputs):
        writers.parse_background(background)
