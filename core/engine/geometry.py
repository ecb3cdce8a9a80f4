"""Fit any video frame to fixed-size modules, and map the alpha back.

Why this exists: some module sets are compiled for one input size — Core ML packages (432x768 by
default, the size the earlier iOS port used), because fixed shapes are what lets Core ML plan the
GPU / Neural Engine execution, and any folder written by ``matanyone export``. Videos come in every
size and orientation, so frames are brought to the modules' size here and the matte is brought
back to the frame's own size. Pure numpy, no torch and no OpenCV, so it runs wherever the engine
runs. ``fixed_size.py`` drives a clip through it; backends only declare that they are fixed-size.

The mapping (``plan_geometry``) is decided once per clip from the frame size and package size:

1. **Orientation.** When the frame and the package have opposite orientations (a portrait frame,
   height > width, for a landscape package, or the reverse), the frame is rotated by 90 degrees
   clockwise before anything else and the alpha is rotated back counter-clockwise at the end.
   Rotating instead of letter-boxing keeps the whole package resolution on the subject. Square
   frames are never rotated.
2. **Aspect ratio.** After rotation, the frame's aspect ratio (width / height) is compared with
   the package's. If they differ by more than ``tolerance`` (1 %) the frame is *letter-boxed*:
   scaled uniformly to the largest size that fits and centred, the border filled with zeros (black
   image, background mask) — stretching a frame by more than a percent visibly distorts the
   subject, which the network was never trained on. Within 1 % the frame is simply *resized* to
   the package size (the distortion is invisible and no pixels are wasted). An exact size match is
   the identity, with no resampling at all.
3. **Back to the frame.** ``alpha_to_frame`` crops the content box out of the package-size alpha
   (the letter-box border is excluded: whatever the network produced there never reaches the
   output), resizes it to the (rotated) frame size, and undoes the rotation.

Resampling is separable and antialiased: a triangle (linear) filter whose support widens by the
downscale factor, with half-pixel centres. Upscaling is therefore plain bilinear interpolation
(``align_corners=False``), and downscaling averages every input pixel instead of skipping rows
the way bilinear sampling alone would (aliasing on fine hair and edges). Taps that fall past the
border are dropped and the rest renormalised. This is the filter of Pillow's BILINEAR resize, so
results can be checked against it. ``"nearest"`` is available for label masks that must stay
binary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Mode = Literal["identity", "resize", "letterbox"]
Interpolation = Literal["linear", "nearest"]

#: Aspect ratios closer than this (relative) are resized, farther apart letter-boxed.
DEFAULT_ASPECT_TOLERANCE = 0.01


@dataclass(frozen=True)
class FrameGeometry:
    """How frames of one clip map onto the package, and back.

    ``content`` is the (top, left, height, width) box inside the package that holds the (rotated,
    scaled) frame; for "identity" and "resize" it is the whole package.
    """

    frame_hw: tuple[int, int]
    package_hw: tuple[int, int]
    rotate: bool
    mode: Mode
    content: tuple[int, int, int, int]

    @property
    def oriented_hw(self) -> tuple[int, int]:
        """The frame size after the optional rotation (what gets scaled into ``content``)."""
        h, w = self.frame_hw
        return (w, h) if self.rotate else (h, w)

    def content_mask(self) -> np.ndarray:
        """Boolean (H, W) package-size mask, True where frame pixels land (False on the border)."""
        mask = np.zeros(self.package_hw, dtype=bool)
        top, left, height, width = self.content
        mask[top : top + height, left : left + width] = True
        return mask


def plan_geometry(
    frame_hw: tuple[int, int],
    package_hw: tuple[int, int],
    *,
    tolerance: float = DEFAULT_ASPECT_TOLERANCE,
    allow_rotation: bool = True,
) -> FrameGeometry:
    """Decide rotation and resize/letterbox for frames of ``frame_hw`` into ``package_hw``."""
    fh, fw = (int(v) for v in frame_hw)
    ph, pw = (int(v) for v in package_hw)
    if min(fh, fw, ph, pw) <= 0:
        raise ValueError(f"sizes must be positive, got frame {fh}x{fw} and package {ph}x{pw}")
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    frame_portrait, frame_landscape = fh > fw, fw > fh
    package_portrait, package_landscape = ph > pw, pw > ph
    rotate = allow_rotation and ((frame_portrait and package_landscape) or (frame_landscape and package_portrait))
    oh, ow = (fw, fh) if rotate else (fh, fw)
    if (oh, ow) == (ph, pw):
        return FrameGeometry((fh, fw), (ph, pw), rotate, "identity", (0, 0, ph, pw))
    relative = (ow / oh) / (pw / ph)
    if abs(relative - 1.0) <= tolerance:
        return FrameGeometry((fh, fw), (ph, pw), rotate, "resize", (0, 0, ph, pw))
    scale = min(ph / oh, pw / ow)
    ch = min(ph, max(1, int(round(oh * scale))))
    cw = min(pw, max(1, int(round(ow * scale))))
    top, left = (ph - ch) // 2, (pw - cw) // 2
    return FrameGeometry((fh, fw), (ph, pw), rotate, "letterbox", (top, left, ch, cw))


# ------------------------------------------------------------------------------------ mapping


def frame_to_package(
    frame: np.ndarray, geometry: FrameGeometry, *, interpolation: Interpolation = "linear"
) -> np.ndarray:
    """Bring an (H, W) or (H, W, C) frame or mask to the package size (same layout and dtype).

    Integer inputs (uint8 video frames, 0/255 masks) are rounded and clipped back to their dtype;
    float inputs stay float. The letter-box border is zero.
    """
    _check_image(frame, geometry.frame_hw, "frame")
    oriented = np.rot90(frame, k=-1, axes=(0, 1)) if geometry.rotate else frame
    if geometry.mode == "identity":
        return np.ascontiguousarray(oriented)
    top, left, ch, cw = geometry.content
    scaled = resize(oriented, (ch, cw), interpolation=interpolation)
    if geometry.mode == "resize":
        return scaled
    out = np.zeros(geometry.package_hw + frame.shape[2:], dtype=frame.dtype)
    out[top : top + ch, left : left + cw] = scaled
    return out


def alpha_to_frame(
    alpha: np.ndarray, geometry: FrameGeometry, *, interpolation: Interpolation = "linear"
) -> np.ndarray:
    """Map a package-size (H, W) or (H, W, C) result back to the frame's own size.

    Only the content box is used, so values on the letter-box border cannot leak into the matte.
    """
    _check_image(alpha, geometry.package_hw, "alpha")
    top, left, ch, cw = geometry.content
    inner = alpha[top : top + ch, left : left + cw]
    if geometry.mode != "identity":
        inner = resize(inner, geometry.oriented_hw, interpolation=interpolation)
    restored = np.rot90(inner, k=1, axes=(0, 1)) if geometry.rotate else inner
    return np.ascontiguousarray(restored)


def nchw_to_package(array: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
    """The same mapping for a (1, C, H, W) network tensor (e.g. an image already in [0, 1])."""
    if array.ndim != 4 or array.shape[0] != 1:
        raise ValueError(f"expected a (1, C, H, W) array, got shape {array.shape}")
    hwc = np.moveaxis(array[0], 0, -1)
    return np.ascontiguousarray(np.moveaxis(frame_to_package(hwc, geometry), -1, 0)[None])


def nchw_to_frame(array: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
    """Inverse of ``nchw_to_package`` for a (1, C, H, W) package-size output such as the alpha."""
    if array.ndim != 4 or array.shape[0] != 1:
        raise ValueError(f"expected a (1, C, H, W) array, got shape {array.shape}")
    hwc = np.moveaxis(array[0], 0, -1)
    return np.ascontiguousarray(np.moveaxis(alpha_to_frame(hwc, geometry), -1, 0)[None])


# ----------------------------------------------------------------------------------- resampling


def resize(image: np.ndarray, size_hw: tuple[int, int], *, interpolation: Interpolation = "linear") -> np.ndarray:
    """Resize the first two axes of ``image`` to ``size_hw`` (antialiased linear, or nearest).

    Returns the input dtype; integer results are rounded and clipped to the dtype's range.
    """
    out_h, out_w = (int(v) for v in size_hw)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"target size must be positive, got {out_h}x{out_w}")
    if image.ndim < 2:
        raise ValueError(f"expected an image with at least 2 axes, got shape {image.shape}")
    in_h, in_w = image.shape[:2]
    if (in_h, in_w) == (out_h, out_w):
        return np.ascontiguousarray(image).copy()
    if interpolation == "nearest":
        rows = _nearest_indices(in_h, out_h)
        cols = _nearest_indices(in_w, out_w)
        return np.ascontiguousarray(image[rows][:, cols])
    if interpolation != "linear":
        raise ValueError(f"unknown interpolation {interpolation!r}; use 'linear' or 'nearest'")
    work = image.astype(np.float64 if image.dtype == np.float64 else np.float32, copy=False)
    if in_h != out_h:
        work = _resample_axis(work, out_h, axis=0)
    if in_w != out_w:
        work = _resample_axis(work, out_w, axis=1)
    return _restore_dtype(work, image.dtype)


def _nearest_indices(size_in: int, size_out: int) -> np.ndarray:
    """Index of the input pixel whose centre is nearest each output pixel's centre."""
    centres = (np.arange(size_out) + 0.5) * (size_in / size_out)
    return np.clip(np.floor(centres).astype(np.int64), 0, size_in - 1)


def _linear_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-pixel input indices and normalised triangle-filter weights (both (out, K))."""
    scale = size_in / size_out
    support = max(1.0, scale)  # widen the filter when downscaling: antialiasing
    centres = (np.arange(size_out, dtype=np.float64) + 0.5) * scale
    taps = int(math.ceil(2.0 * support)) + 2
    first = np.floor(centres - support).astype(np.int64)
    index = first[:, None] + np.arange(taps)[None, :]
    distance = (index + 0.5 - centres[:, None]) / support
    weights = np.clip(1.0 - np.abs(distance), 0.0, None)
    outside = (index < 0) | (index >= size_in)
    weights[outside] = 0.0  # taps past the border are dropped and the rest renormalised
    index = np.clip(index, 0, size_in - 1)
    weights /= weights.sum(axis=1, keepdims=True)
    return index, weights


def _resample_axis(image: np.ndarray, size_out: int, axis: int) -> np.ndarray:
    index, weights = _linear_taps(image.shape[axis], size_out)
    weights = weights.astype(image.dtype)
    shape = [1] * image.ndim
    shape[axis] = size_out
    out = np.zeros(image.shape[:axis] + (size_out,) + image.shape[axis + 1 :], dtype=image.dtype)
    for k in range(index.shape[1]):
        w = weights[:, k]
        if not np.any(w):
            continue
        out += np.take(image, index[:, k], axis=axis) * w.reshape(shape)
    return out


def _restore_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.ascontiguousarray(np.clip(np.rint(values), info.min, info.max).astype(dtype))
    if dtype == np.bool_:
        return np.ascontiguousarray(values >= 0.5)
    return np.ascontiguousarray(values.astype(dtype, copy=False))


def _check_image(array: np.ndarray, expected_hw: tuple[int, int], what: str) -> None:
    if array.ndim not in (2, 3):
        raise ValueError(f"{what} must be (H, W) or (H, W, C), got shape {array.shape}")
    if tuple(array.shape[:2]) != tuple(expected_hw):
        raise ValueError(
            f"{what} is {array.shape[0]}x{array.shape[1]} but this geometry expects "
            f"{expected_hw[0]}x{expected_hw[1]}; plan the geometry for this clip's frame size"
        )


__all__ = [
    "DEFAULT_ASPECT_TOLERANCE",
    "FrameGeometry",
    "alpha_to_frame",
    "frame_to_package",
    "nchw_to_frame",
    "nchw_to_package",
    "plan_geometry",
    "resize",
]
