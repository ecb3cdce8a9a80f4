"""The one library kernel the executor borrows: torch's CPU convolution.

Why torch for convolution only: a convolution is the bulk of MatAnyone's arithmetic (ResNet-50
encoder, the decoder's upsampling blocks), and torch's oneDNN kernel is tens of times faster than
anything numpy can express; every other op is memory-bound and numpy does it as fast. torch is
imported lazily, so the executor still loads (and refuses, in one line) without it; a program with
no ``conv`` never needs it. ``torch_available`` is what load-time checking asks.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

#: op type -> (kernel description, install hint) for ops whose arithmetic needs torch.
TORCH_OPS = {
    "conv": ("torch's CPU convolution kernel", "pip install torch==2.13.0 (the CPU build) or the 'torch' extra"),
}


@functools.lru_cache(maxsize=1)
def torch_available() -> bool:
    try:
        import torch  # noqa: F401 - only whether it imports
    except ImportError:
        return False
    return True


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads for the convolutions (None leaves torch's default)."""
    if threads and torch_available():
        import torch

        torch.set_num_threads(int(threads))


def convolution(
    x: np.ndarray,
    weight: Any,
    bias: Any,
    strides: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dilations: Sequence[int],
    groups: int,
) -> np.ndarray:
    """N-d convolution (1 to 3 spatial dims) of float32 ``x`` with torch-layout ``weight``.

    ``weight`` / ``bias`` are torch tensors (made once per op by ``as_tensor``); ``pads`` is
    (before, after) per spatial dim. Symmetric padding goes to the kernel, asymmetric padding is
    applied first with zeros.
    """
    import torch
    import torch.nn.functional as F

    spatial = x.ndim - 2
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}.get(spatial)
    if fn is None:
        raise ValueError(f"conv supports 1 to 3 spatial dimensions, got input rank {x.ndim}")
    tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    symmetric = all(before == after for before, after in pads)
    padding: tuple[int, ...] = tuple(before for before, _ in pads) if symmetric else (0,) * spatial
    if not symmetric:
        flat: list[int] = []
        for before, after in reversed(pads):  # F.pad takes the last dimension first
            flat += [before, after]
        tensor = F.pad(tensor, flat)
    with torch.inference_mode():
        out = fn(tensor, weight, bias, tuple(strides), padding, tuple(dilations), groups)
    return out.numpy()


def as_tensor(array: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


__all__ = ["TORCH_OPS", "as_tensor", "convolution", "set_threads", "torch_available"]
