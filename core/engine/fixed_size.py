"""Run a clip of any size and orientation through modules built for one size.

Why: ``driver.matte_frames`` sizes the modules from the frames (padded to multiples of 16), but a
Core ML package set, or any folder written by ``matanyone export``, holds modules compiled for one
input size. This driver decides once per clip how its frames reach that size (geometry.py: rotate
portrait to landscape, letter-box or resize), feeds the state machine frames and a mask of exactly
the modules' size, and maps every alpha back to the size of the frames it was given. Callers get
the same ``FrameResult`` stream as from ``matte_frames``.

Which module sets are fixed-size is declared by the backends (``fixed_size``) and the model
folders; the app layer (core/app) decides and calls this. The alpha comes back at the size of the
frames given here; any upsampling to a larger output size happens after, on that alpha.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from itertools import chain
from typing import Any

import numpy as np

from .driver import FrameResult, SubjectsResult, matte_subjects
from .geometry import DEFAULT_ASPECT_TOLERANCE, FrameGeometry, alpha_to_frame, frame_to_package, plan_geometry
from .padding import padded_size
from .protocol import Module
from .state import MemoryConfig, Recorder


def fit_geometry(
    frame_hw: tuple[int, int], module_hw: tuple[int, int], tolerance: float = DEFAULT_ASPECT_TOLERANCE
) -> FrameGeometry | None:
    """How frames of ``frame_hw`` reach modules of ``module_hw``; None when padding alone does.

    A frame that pads to exactly the modules' size takes the plain path (zero padding split as
    the official code splits it): bit for bit what a run built for the clip's own size computes,
    with no resampling. Every other frame goes through ``plan_geometry``.
    """
    if padded_size(int(frame_hw[0]), int(frame_hw[1])) == (int(module_hw[0]), int(module_hw[1])):
        return None
    return plan_geometry(frame_hw, module_hw, tolerance=tolerance)


def matte_subjects_fixed_size(
    modules: Mapping[str, Module],
    frames: Iterable[np.ndarray],
    masks_255: Mapping[str, np.ndarray],
    module_hw: tuple[int, int],
    *,
    warmup: int = 10,
    mem_frames: int = 5,
    config: MemoryConfig | None = None,
    recorder: Recorder | None = None,
    pipeline: bool = False,
    tolerance: float = DEFAULT_ASPECT_TOLERANCE,
) -> Iterator[SubjectsResult]:
    """``driver.matte_subjects`` with modules built for ``module_hw``: every subject's matte of
    every frame, at the frames' size.

    The masks are the prepared first-frame masks at the frames' size. They are mapped with linear
    resampling, like the frames (a soft mask stays soft; a 0/255 mask gets soft edges only where
    it is resized). Alpha and logits come back at the frames' size, the alpha clipped to [0, 1].
    """
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        return
    frame_hw = (int(first.shape[0]), int(first.shape[1]))
    for mask in masks_255.values():
        if mask.shape[:2] != frame_hw:
            raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} but frames are {frame_hw[1]}x{frame_hw[0]}")
    run = partial(
        matte_subjects, warmup=warmup, mem_frames=mem_frames, config=config, recorder=recorder, pipeline=pipeline
    )
    geometry = fit_geometry(frame_hw, module_hw, tolerance)
    if geometry is None:
        yield from run(modules, chain([first], iterator), masks_255)
        return

    def fitted() -> Iterator[np.ndarray]:
        yield frame_to_package(first, geometry)
        for index, frame in enumerate(iterator, start=1):
            if frame.shape[:2] != frame_hw:
                raise ValueError(
                    f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                    f"the clip started at {frame_hw[1]}x{frame_hw[0]}"
                )
            yield frame_to_package(frame, geometry)

    package_masks = {name: frame_to_package(mask, geometry) for name, mask in masks_255.items()}
    for result in run(modules, fitted(), package_masks):
        yield SubjectsResult(result.index, {name: _back(r, geometry) for name, r in result.subjects.items()})


def _back(result: FrameResult, geometry: FrameGeometry) -> FrameResult:
    alpha = np.clip(alpha_to_frame(result.alpha, geometry), 0.0, 1.0)
    return result.mapped(alpha, lambda logits: alpha_to_frame(logits, geometry))


def matte_fixed_size(
    modules: Mapping[str, Module],
    frames: Iterable[np.ndarray],
    mask_255: np.ndarray,
    module_hw: tuple[int, int],
    **options: Any,
) -> Iterator[FrameResult]:
    """One subject: ``matte_frames`` with modules built for ``module_hw`` (options as
    ``matte_subjects_fixed_size``)."""
    for result in matte_subjects_fixed_size(modules, frames, {"1": mask_255}, module_hw, **options):
        yield result.subjects["1"]


__all__ = ["fit_geometry", "matte_fixed_size", "matte_subjects_fixed_size"]
