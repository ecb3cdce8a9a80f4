"""The passes over a clip: forward from the mask's frame, or both ways when the mask is on a later frame.

With ``--mask-frame K`` the clip is matted from K to the end and from K back to the first frame,
each direction starting from the same mask with its own state machines (memory, sensory and
object memory) and the official first-frame warm-up on frame K. The backward pass is an ordinary
forward pass over the reversed frames, so frames before K get exactly what a run over the
reversed clip gives them, and frames from K on exactly what a run with ``--start K`` gives them.

Everything is handed on in input order, so every writer (PNG folders and videos alike) just
appends: the frames up to K are decoded once into a scratch store (video decodes only forwards),
the backward pass reads them back in reverse and stores its mattes, those are handed on from the
first frame, and then the forward pass runs from K. Memory stays that of one frame in both
directions; the scratch folder holds the frames before K (see ``media.spill``).

The passes carry the caller's frames untouched (a ``media.video.TimedFrame`` with its timestamp
and full-resolution pixels, or a bare array) and hand the network ``view(frame)``: the pixels it
runs on (after ``--max-size``). ``drive`` is the clip loop: ``driver.matte_subjects``, or the
fixed-size one (``fixed_size.matte_subjects_fixed_size``) for modules of one size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.driver import SubjectsResult, matte_subjects
from ..engine.errors import InputError
from ..engine.protocol import Module
from ..media.spill import Frame

#: (first input frame, how many or None for all) -> those frames, in input order.
FrameReader = Callable[[int, int | None], Iterable[Frame]]
#: The clip loop: (modules, network frames, {subject: mask}, **options) -> every subject's matte per frame.
Drive = Callable[..., Iterator[SubjectsResult]]


def pixels(frame: Frame) -> np.ndarray:
    """The frame's own HxWx3 pixels (a TimedFrame's ``rgb``, or the array itself)."""
    return frame if isinstance(frame, np.ndarray) else frame.rgb


@dataclass
class Matted:
    """One input frame (as the caller gave it) and every subject's matte of it; ``position``
    counts from the first frame processed."""

    position: int
    frame: Frame
    alphas: dict[str, np.ndarray]


def forward(
    modules: Mapping[str, Module],
    frames: Iterable[Frame],
    masks: Mapping[str, np.ndarray],
    *,
    offset: int = 0,
    view: Callable[[Frame], np.ndarray] = pixels,
    drive: Drive = matte_subjects,
    **driver: Any,
) -> Iterator[Matted]:
    """The frames matted in order from the first (which the masks belong to), each handed on."""
    kept: deque[Frame] = deque()

    def remember(source: Iterable[Frame]) -> Iterator[np.ndarray]:
        for frame in source:
            kept.append(frame)
            yield view(frame)

    results = drive(modules, remember(frames), masks, **driver)
    try:
        for result in results:
            yield Matted(offset + result.index, kept.popleft(), {n: r.alpha for n, r in result.subjects.items()})
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()


def both_ways(
    modules: Mapping[str, Module],
    read: FrameReader,
    masks: Mapping[str, np.ndarray],
    *,
    first: int,
    anchor: int,
    count: int | None,
    scratch_dir: str | Path | None = None,
    view: Callable[[Frame], np.ndarray] = pixels,
    drive: Drive = matte_subjects,
    **driver: Any,
) -> Iterator[Matted]:
    """Frames ``first`` .. ``first + count`` (None: to the end), the masks on input frame ``anchor``.

    Backward pass first (anchor down to ``first``, into the scratch store), then the frames before
    the anchor in input order, then the forward pass from the anchor. The anchor's own matte comes
    from the forward pass (the backward pass computes the same warm-up on the same frame).
    """
    from ..media.spill import FrameStore

    before = anchor - first
    with FrameStore(scratch_dir) as store:
        stored = 0
        for position, frame in enumerate(read(first, before + 1)):
            store.put_frame(position, frame)
            stored += 1
        if stored <= before:
            raise InputError(
                f"the input has only {first + stored} frames, so --mask-frame {anchor} is outside the clip: "
                f"choose a frame below {first + stored}"
            )
        order: list[str] = list(masks)
        reversed_frames = (view(store.frame(p)) for p in range(before, -1, -1))
        for step, result in enumerate(drive(modules, reversed_frames, masks, **driver)):
            position = before - step
            if position < before:
                order = store.put_alphas(position, {n: r.alpha for n, r in result.subjects.items()})
        for position in range(before):
            yield Matted(position, store.frame(position), store.alphas(position, order))
            store.drop(position, order)
        rest = None if count is None else count - before
        yield from forward(modules, read(anchor, rest), masks, offset=before, view=view, drive=drive, **driver)
