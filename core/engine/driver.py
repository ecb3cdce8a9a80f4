"""The clip driver: frames in, one matte per frame out, through a MattingStateMachine.

The image encoder is the one module that depends on nothing but the frame, so the driver runs it
once for frame 0 (seed, first-frame prediction and warm-up all see the same image) and, with
``pipeline=True``, runs the next frame's encoder on a worker thread while the current frame's
read, decoder and mask encoder run.

The state machine keeps each backend's own arrays; the driver converts the alpha of each frame to
host numpy, once, after cropping the padding (the smallest transfer that gives the caller its
matte). The logits cross only if the caller reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from typing import Any

import numpy as np

from .arrays import to_host
from .padding import Pads, frame_to_input, mask_to_input, pad_amounts, padded_size, unpad
from .protocol import Module
from .spec import Dims
from .state import MattingStateMachine, MemoryConfig, Recorder


class FrameResult:
    """One frame's matte: ``alpha`` (H, W) float32 in [0, 1] at the input's own size, on the host.

    ``logits`` (H, W), before the clamp, stays an array of the decoder's backend until read: most
    callers never need it, and on a GPU reading it is a second transfer per frame.
    """

    def __init__(self, index: int, alpha: np.ndarray, logits: Any):
        self.index = index
        self.alpha = alpha
        self._logits = logits

    @cached_property
    def logits(self) -> np.ndarray:
        return to_host(self._logits)

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
    """
    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        return
    height, width = first.shape[:2]
    if mask_255.shape != (height, width):
        raise ValueError(f"mask is {mask_255.shape[1]}x{mask_255.shape[0]} but frames are {width}x{height}")
    dims, pads = clip_dims(height, width, mem_frames)
    machine = MattingStateMachine(modules, dims, config, recorder)
    image = frame_to_input(first, pads)
    encoded = machine.encode(image)
    machine.seed(image, mask_to_input(mask_255, pads), encoded=encoded)
    out = machine.step(image, first_frame_pred=True, encoded=encoded)
    for _ in range(warmup):
        out = machine.step(image, first_frame_pred=True, encoded=encoded)
    yield _result(0, out, pads)

    def checked(index: int, frame: np.ndarray) -> np.ndarray:
        if frame.shape[:2] != (height, width):
            raise ValueError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, expected {width}x{height}")
        return frame_to_input(frame, pads)

    if not pipeline:
        for index, frame in enumerate(iterator, start=1):
            out = machine.step(checked(index, frame))
            yield _result(index, out, pads)
        return

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="matanyone-encoder") as worker:

        def submit(index: int) -> tuple[np.ndarray, Future[Mapping[str, Any]]] | None:
            frame = next(iterator, None)
            if frame is None:
                return None
            image = checked(index, frame)
            return image, worker.submit(machine.encode, image)

        index, pending = 1, submit(1)
        try:
            while pending is not None:
                image, future = pending
                encoded = future.result()
                pending = submit(index + 1)  # the next encoder runs while this frame's modules do
                out = machine.step(image, encoded=encoded)
                yield _result(index, out, pads)
                index += 1
        finally:
            if pending is not None:
                pending[1].cancel()
