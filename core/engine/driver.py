"""The clip driver: frames in, one matte per frame (and per subject) out, through MattingStateMachines.

The image encoder is the one module that depends on nothing but the frame, so the driver runs it
once for frame 0 (seed, first-frame prediction and warm-up all see the same image) and, with
``pipeline=True``, runs the next frame's encoder on a worker thread while the current frame's
read, decoder and mask encoder run. With several subjects (``matte_subjects``) each has its own
state machine and that one encoder run per frame serves them all.

The state machine keeps each backend's own arrays; the driver converts the alpha of each frame to
host numpy, once, after cropping the padding (the smallest transfer that gives the caller its
matte). The logits cross only if the caller reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .arrays import to_host
from .padding import Pads, frame_to_input, mask_to_input, pad_amounts, padded_size, unpad
from .protocol import Module
from .spec import Dims
from .state import MattingStateMachine, MemoryConfig, Recorder, StepOutput


class FrameResult:
    """One frame's matte: ``alpha`` (H, W) float32 in [0, 1] at the input's own size, on the host.

    ``logits`` (H, W), before the clamp, stays an array of the decoder's backend until read: most
    callers never need it, and on a GPU reading it is a second transfer per frame.
    """

    def __init__(self, index: int, alpha: np.ndarray, logits: Any):
        self.index = index
        self.alpha = alpha
        self._read_logits: Callable[[], np.ndarray] = lambda: to_host(logits)

    @cached_property
    def logits(self) -> np.ndarray:
        return self._read_logits()

    def mapped(self, alpha: np.ndarray, to_frame: Callable[[np.ndarray], np.ndarray]) -> FrameResult:
        """This frame in another geometry: ``alpha`` already mapped, the logits mapped by
        ``to_frame`` only when read (a fixed-size run would otherwise resize them every frame)."""
        result = FrameResult(self.index, alpha, None)
        result._read_logits = lambda: to_frame(self.logits)
        return result

    def __repr__(self) -> str:
        return f"FrameResult(index={self.index}, alpha={self.alpha.shape})"


def _result(index: int, out: Any, pads: Pads) -> FrameResult:
    return FrameResult(index, to_host(unpad(out.alpha, pads)[0, 0, ...]), unpad(out.logits, pads)[0, 0, ...])


def clip_dims(height: int, width: int, mem_frames: int = 5) -> tuple[Dims, Pads]:
    ph, pw = padded_size(height, width)
    return Dims(ph, pw, mem_frames), pad_amounts(height, width)


def matte_frames(
    modules: Mapping[str, Module],
    frames: Iterable[np.ndarray],
    mask_255: np.ndarray,
    *,
    warmup: int = 10,
    mem_frames: int = 5,
    config: MemoryConfig | None = None,
    recorder: Recorder | None = None,
    pipeline: bool = False,
) -> Iterator[FrameResult]:
    """Stream alpha mattes for ``frames`` (HxWx3 uint8 RGB), one per input frame, in order.

    ``mask_255`` is the prepared first-frame mask (HxW, 0..255, same size as the frames).
    The official demo's flow: seed step and a first-frame prediction on frame 0, ``warmup`` more
    first-frame predictions on frame 0 (the last one's output is frame 0's matte), then every
    later frame normally. Frame 0 is encoded once for all of those steps.

    ``pipeline`` overlaps frame t+1's image encoder (on a worker thread) with the rest of frame t.
    It pays where the encoder has its own compute (an accelerator, or CPU cores the other modules
    leave idle); where every module already uses all cores it only adds contention, so the
    callers decide (see ``api.pipeline_pays``). Results are identical either way.

    One subject: the single-subject case of ``matte_subjects``, call for call.
    """
    for result in matte_subjects(
        modules,
        frames,
        {_ONLY: mask_255},
        warmup=warmup,
        mem_frames=mem_frames,
        config=config,
        recorder=recorder,
        pipeline=pipeline,
    ):
        yield result.subjects[_ONLY]


_ONLY = "1"


@dataclass
class SubjectsResult:
    """Every subject's matte of one input frame, in the order the masks were given."""

    index: int
    subjects: dict[str, FrameResult]


def matte_subjects(
    modules: Mapping[str, Module],
    frames: Iterable[np.ndarray],
    masks_255: Mapping[str, np.ndarray],
    *,
    warmup: int = 10,
    mem_frames: int = 5,
    config: MemoryConfig | None = None,
    recorder: Recorder | None = None,
    pipeline: bool = False,
) -> Iterator[SubjectsResult]:
    """``matte_frames`` for several subjects at once: one matte per subject per input frame.

    Each subject has its own MattingStateMachine (working memory, sensory memory, object memory),
    driven exactly as ``matte_frames`` drives its one, so a subject's matte does not depend on
    which other subjects run beside it. The image encoder depends on the frame alone, so it runs
    once per frame and every subject's step is handed its outputs.
    """
    if not masks_255:
        raise ValueError("matte_subjects needs at least one subject mask")
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        return
    height, width = first.shape[:2]
    for name, mask in masks_255.items():
        if mask.shape != (height, width):
            whose = "mask" if len(masks_255) == 1 else f"mask of subject {name}"
            raise ValueError(f"{whose} is {mask.shape[1]}x{mask.shape[0]} but frames are {width}x{height}")
    dims, pads = clip_dims(height, width, mem_frames)
    machines = {name: MattingStateMachine(modules, dims, config, recorder) for name in masks_255}
    encode = next(iter(machines.values())).encode

    def matted(index: int, outputs: Mapping[str, StepOutput]) -> SubjectsResult:
        return SubjectsResult(
            index,
            {name: _result(index, out, pads) for name, out in outputs.items()},
        )

    image = frame_to_input(first, pads)
    encoded = encode(image)
    firsts: dict[str, StepOutput] = {}
    for name, machine in machines.items():
        machine.seed(image, mask_to_input(masks_255[name], pads), encoded=encoded)
        out = machine.step(image, first_frame_pred=True, encoded=encoded)
        for _ in range(warmup):
            out = machine.step(image, first_frame_pred=True, encoded=encoded)
        firsts[name] = out
    yield matted(0, firsts)

    def checked(index: int, frame: np.ndarray) -> np.ndarray:
        if frame.shape[:2] != (height, width):
            raise ValueError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, expected {width}x{height}")
        return frame_to_input(frame, pads)

    def step_all(image: np.ndarray, encoded: Mapping[str, np.ndarray]) -> dict[str, StepOutput]:
        return {name: machine.step(image, encoded=encoded) for name, machine in machines.items()}

    if not pipeline:
        for index, frame in enumerate(iterator, start=1):
            image = checked(index, frame)
            yield matted(index, step_all(image, encode(image)))
        return

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="matanyone-encoder") as worker:

        def submit(index: int) -> tuple[np.ndarray, Future[Mapping[str, Any]]] | None:
            frame = next(iterator, None)
            if frame is None:
                return None
            image = checked(index, frame)
            return image, worker.submit(encode, image)

        index, pending = 1, submit(1)
        try:
            while pending is not None:
                image, future = pending
                encoded = future.result()
                pending = submit(index + 1)  # the next encoder runs while this frame's modules do
                yield matted(index, step_all(image, encoded))
                index += 1
        finally:
            if pending is not None:
                pending[1].cancel()
