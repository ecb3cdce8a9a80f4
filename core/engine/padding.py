"""Padding to the network stride, exactly as the official code pads.

The official ``pad_divide_by`` splits the padding evenly, the odd row or column going to the
bottom / right, and pads with zeros *before* normalisation (the image is in [0, 1] there), so the
padded border of the normalised image is ``-mean/std``, not zero. Matching that is required for
parity at sizes that are not multiples of 16.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from .spec import STRIDE

Pads = tuple[int, int, int, int]  # left, right, top, bottom
ArrayT = TypeVar("ArrayT", bound=Any)


def padded_size(height: int, width: int, stride: int = STRIDE) -> tuple[int, int]:
    return -(-height // stride) * stride, -(-width // stride) * stride


def pad_amounts(height: int, width: int, stride: int = STRIDE) -> Pads:
    new_h, new_w = padded_size(height, width, stride)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return left, new_w - width - left, top, new_h - height - top


def pad(array: np.ndarray, pads: Pads) -> np.ndarray:
    """Zero-pad the last two axes."""
    left, right, top, bottom = pads
    if not any(pads):
        return array
    widths = [(0, 0)] * (array.ndim - 2) + [(top, bottom), (left, right)]
    return np.pad(array, widths)


def unpad(array: ArrayT, pads: Pads) -> ArrayT:
    """Crop the padding off the last two axes: a slice, so it works on any library's arrays."""
    left, right, top, bottom = pads
    h, w = array.shape[-2:]
    return array[..., top : h - bottom, left : w - right]


def frame_to_input(frame_u8: np.ndarray, pads: Pads) -> np.ndarray:
    """HxWx3 uint8 RGB -> (1, 3, H', W') float32 in [0, 1], zero-padded."""
    image = frame_u8.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0)
    return np.ascontiguousarray(pad(image, pads))


def mask_to_input(mask_255: np.ndarray, pads: Pads) -> np.ndarray:
    """HxW mask in 0..255 -> (1, 1, H', W') float32 in [0, 1], zero-padded."""
    mask = pad(mask_255.astype(np.float32)[None, None], pads) / np.float32(255.0)
    return np.ascontiguousarray(mask)
