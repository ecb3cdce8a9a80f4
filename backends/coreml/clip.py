"""Run a clip of any size and orientation through fixed-size modules (the CoreML packages).

Why: ``core.engine.driver.matte_frames`` sizes its modules from the frames (padded to multiples of 16),
while a CoreML package set is compiled for one size. This glue plans the frame geometry once per
clip (geometry.py: rotate portrait to landscape, letter-box or resize), feeds the state machine
package-size frames and mask, and maps every alpha back to the clip's own size, so callers get
the same ``FrameResult`` stream as with any other backend. numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from matanyone_engine.core.engine.protocol import Module

from .geometry import FrameGeometry, alpha_to_frame, frame_to_package, plan_geometry


def matte_fitted(
    modules: Mapping[str, Module],
    frames: Iterable[np.ndarray],
    mask_255: np.ndarray,
    package_hw: tuple[int, int],
    *,
    warmup: int = 10,
    mem_frames: int = 5,
    tolerance: float = 0.01,
) -> Iterator[FittedFrame]:
    """Stream mattes for ``frames`` (HxWx3 uint8) with modules built for ``package_hw``.

    ``mask_255`` is the first-frame mask at the frames' size. The mask is mapped with linear
    resampling (a soft mask stays soft; a 0/255 mask gets soft edges only where it is resized).
    """
    from matanyone_engine.core.engine.driver import matte_frames

    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        return
    geometry = plan_geometry(first.shape[:2], package_hw, tolerance=tolerance)
    if mask_255.shape != first.shape[:2]:
        raise ValueError(
            f"mask is {mask_255.shape[1]}x{mask_255.shape[0]} but frames are {first.shape[1]}x{first.shape[0]}"
        )

    def fitted() -> Iterator[np.ndarray]:
        yield frame_to_package(first, geometry)
        for frame in iterator:
            if frame.shape[:2] != geometry.frame_hw:
                raise ValueError(
                    f"frame is {frame.shape[1]}x{frame.shape[0]}, the clip started at "
                    f"{geometry.frame_hw[1]}x{geometry.frame_hw[0]}"
                )
            yield frame_to_package(frame, geometry)

    package_mask = frame_to_package(mask_255, geometry)
    for result in matte_frames(modules, fitted(), package_mask, warmup=warmup, mem_frames=mem_frames):
        yield FittedFrame(
            index=result.index,
            alpha=np.clip(alpha_to_frame(result.alpha, geometry), 0.0, 1.0),
            geometry=geometry,
        )


class FittedFrame:
    """One frame's matte at the clip's own size, with the geometry that produced it."""

    __slots__ = ("index", "alpha", "geometry")

    def __init__(self, index: int, alpha: np.ndarray, geometry: FrameGeometry) -> None:
        self.index = index
        self.alpha = alpha
        self.geometry = geometry


__all__ = ["FittedFrame", "matte_fitted"]
