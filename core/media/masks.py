"""First-frame mask: load it, check it, fit it to the frames, and soften its edges like the demo.

MatAnyone is sensitive to the exact first-frame mask, so prepare_mask reproduces the official
demo's dilate-then-erode step operation for operation; any deviation shows up as a different
matte on every following frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..engine.errors import InputError

#: Relative difference in aspect ratio still treated as "the same frame, other resolution".
ASPECT_TOLERANCE = 0.01


def load_mask(path: str | Path) -> np.ndarray:
    """HxW uint8 exactly as the demo reads it: PIL's ``convert("L")``, so colour masks weigh
    their channels the way the official code does."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"mask not found: {path}; check the path")
    if path.is_dir():
        raise InputError(f"mask {path} is a folder: pass a PNG/JPG with white foreground")
    try:
        with Image.open(path) as image:
            return np.array(image.convert("L"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"mask {path} is not an image ({exc}): pass a PNG/JPG with white foreground") from exc


def _ellipse(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _dilate(mask: np.ndarray, size: int) -> np.ndarray:
    """The demo's gen_dilate: everything not plainly background grows into an unknown band."""
    fg_and_unknown = np.not_equal(mask, 0).astype(np.float32)
    return (cv2.dilate(fg_and_unknown, _ellipse(size), iterations=1) * 255).astype(np.float32)


def _erode(mask: np.ndarray, size: int) -> np.ndarray:
    """The demo's gen_erosion: only pure-white pixels count as foreground, then shrink them."""
    fg = np.equal(mask, 255).astype(np.float32)
    return (cv2.erode(fg, _ellipse(size), iterations=1) * 255).astype(np.float32)


def prepare_mask(mask_u8: np.ndarray, erode: int = 10, dilate: int = 10) -> np.ndarray:
    """Float32 mask in 0..255 for the first frame; 0 disables a step.

    The order matters and is the demo's: dilate first, then erode the dilated result. With the
    default equal sizes this mostly smooths the outline rather than growing or shrinking it.
    """
    if mask_u8.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask_u8.shape}")
    if erode < 0 or dilate < 0:
        raise ValueError(f"erode and dilate must be >= 0, got erode={erode} dilate={dilate}")
    mask: np.ndarray = mask_u8
    if dilate > 0:
        mask = _dilate(mask, dilate)
    if erode > 0:
        mask = _erode(mask, erode)
    return mask.astype(np.float32)


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour so a binary mask stays binary (the demo's mode="nearest")."""
    if mask.shape[:2] == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def _same_aspect(mask_h: int, mask_w: int, frame_h: int, frame_w: int) -> bool:
    return abs((mask_w / mask_h) / (frame_w / frame_h) - 1.0) <= ASPECT_TOLERANCE


def fit_mask_to_frame(mask: np.ndarray, frame_h: int, frame_w: int) -> tuple[np.ndarray, str | None]:
    """Accept a mask drawn at another resolution of the same frame (e.g. 1080 vs a 1088-high
    decode), but refuse one of a different shape, which would be a mask of some other image."""
    mask_h, mask_w = mask.shape[:2]
    if (mask_h, mask_w) == (frame_h, frame_w):
        return mask, None
    if mask_h > 0 and mask_w > 0 and _same_aspect(mask_h, mask_w, frame_h, frame_w):
        warning = (
            f"mask is {mask_h}x{mask_w} but frames are {frame_h}x{frame_w} (height x width); "
            "resized the mask to the frame size"
        )
        return resize_mask(mask, frame_h, frame_w), warning
    raise InputError(
        f"mask is {mask_h}x{mask_w} but frames are {frame_h}x{frame_w} (height x width): "
        "give a mask of the first frame's size"
    )


def check_mask(mask: np.ndarray) -> None:
    """Refuse masks that select nothing or everything; the model has no target to follow then.

    Foreground means any non-zero pixel, the demo's own reading of a mask (its dilate step).
    Call it on the loaded mask, before prepare_mask: erosion can legitimately empty a tiny mask
    and dilation can fill a nearly full one.
    """
    if not np.any(mask):
        raise InputError(
            "mask is empty (no white pixels): paint the target white on a black background, "
            "and lower --erode if the target is small"
        )
    if np.all(mask):
        raise InputError("mask covers the whole frame (no black background): paint only the target white")
