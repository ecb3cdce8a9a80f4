"""Neural-network MIL ops: conv, linear, matmul, avg_pool, max_pool, upsample_bilinear.

Rules from the MIL op reference (coremltools ``ops/defs``), which is where converters go wrong:

* **pad types** (conv and pools), per spatial dim of input size ``i``, stride ``s`` and effective
  kernel ``k = (K - 1) * dilation + 1``: ``valid`` pads nothing; ``custom`` takes
  ``pad = [before_0, after_0, before_1, ...]``; ``same`` pads ``max(0, (ceil(i/s) - 1) * s + k - i)``
  in total, the odd element after; ``same_lower`` puts the odd element before.
* **pool output size**: ``floor((i + pads - k) / s) + 1``; with ``ceil_mode`` it is
  ``ceil(...) + 1``, minus one when the last window would start inside the after-padding (PyTorch's
  rule). Windows reaching past the padding (ceil mode) never count those positions.
* **avg_pool** averages zero padding in, unless ``exclude_padding_from_average``; **max_pool**
  pads with -inf (padding never wins).
* **upsample_bilinear**: output ``floor(in * scale)``; the scale is recomputed from the sizes
  (``in / out``). Source coordinate of output ``j``: with ``align_corners`` ``j * (in-1)/(out-1)``;
  otherwise with half-pixel centres (the default when not aligning corners)
  ``(j + 0.5) * in/out - 0.5``; otherwise ``j * in/out``; clamped into ``[0, in-1]``.
* **matmul** follows numpy's rules (1-D promotion, batch broadcasting) after the optional
  ``transpose_x`` / ``transpose_y`` of the last two axes; **linear** is ``x @ weight.T + bias``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from . import kernels
from .args import OpArgs

# ------------------------------------------------------------------------------------ padding


def spatial_pads(
    pad_type: str,
    in_sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    custom: Sequence[int] | None,
) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dim for a MIL ``pad_type``."""
    n = len(in_sizes)
    if pad_type == "valid":
        return [(0, 0)] * n
    if pad_type == "custom":
        pad = list(custom) if custom is not None else [0] * (2 * n)
        if len(pad) != 2 * n:
            raise ValueError(f"custom pad needs {2 * n} values, got {len(pad)}")
        return [(int(pad[2 * d]), int(pad[2 * d + 1])) for d in range(n)]
    if pad_type in ("same", "same_lower"):
        pads = []
        for i, k, s, dil in zip(in_sizes, kernel, strides, dilations, strict=True):
            effective = (k - 1) * dil + 1
            total = max(0, (math.ceil(i / s) - 1) * s + effective - i)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if pad_type == "same" else (large, small))
        return pads
    raise ValueError(f"unknown pad_type {pad_type!r}; MIL has valid, custom, same, same_lower")


def _spatial_params(a: OpArgs, rank: int, kernel: Sequence[int]) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    n = rank - 2
    strides = list(a.const("strides", (1,) * n))
    dilations = list(a.const("dilations", (1,) * n))
    custom = a.const("pad", None)
    in_sizes = list(a.array("x").shape[2:])
    pads = spatial_pads(str(a.const("pad_type", "valid")), in_sizes, kernel, strides, dilations, custom)
    return strides, dilations, pads


# --------------------------------------------------------------------------------------- conv


def conv(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    weight = a.floats("weight")
    if x.ndim < 3 or weight.ndim != x.ndim:
        raise ValueError(f"conv needs x of rank 3-5 and a weight of the same rank, got {x.shape} and {weight.shape}")
    groups = int(a.const("groups", 1))
    if x.shape[1] != weight.shape[1] * groups:
        raise ValueError(f"conv: {x.shape[1]} input channels, weight {weight.shape} with groups {groups}")
    strides, dilations, pads = _spatial_params(a, x.ndim, weight.shape[2:])
    w = (
        a.cached("weight:torch", lambda: kernels.as_tensor(weight))
        if "weight" in a.constant
        else kernels.as_tensor(weight)
    )
    bias = None
    if a.has("bias"):
        b = a.floats("bias")
        bias = a.cached("bias:torch", lambda: kernels.as_tensor(b)) if "bias" in a.constant else kernels.as_tensor(b)
    return kernels.convolution(x, w, bias, strides, pads, dilations, groups)


# ------------------------------------------------------------------------------------- linear


def linear(a: OpArgs) -> np.ndarray:
    x, weight = a.floats("x"), a.floats("weight")
    out = np.matmul(x, weight.T)
    if a.has("bias"):
        out = out + a.floats("bias")
    return out


def matmul(a: OpArgs) -> np.ndarray:
    x, y = a.floats("x"), a.floats("y")
    if a.const("transpose_x", False) and x.ndim >= 2:
        x = np.swapaxes(x, -1, -2)
    if a.const("transpose_y", False) and y.ndim >= 2:
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


# -------------------------------------------------------------------------------------- pools


def _pool_geometry(a: OpArgs, x: np.ndarray) -> tuple[list[int], list[int], list[tuple[int, int]], list[int]]:
    """kernel, strides, (before, after) pads and the extra after-padding ceil mode needs."""
    kernel = [int(k) for k in a.const("kernel_sizes")]
    n = len(kernel)
    if x.ndim != n + 2:
        raise ValueError(f"pool over {n} spatial dims needs an input of rank {n + 2}, got {x.shape}")
    strides = [int(s) for s in a.const("strides", (1,) * n)]
    pads = spatial_pads(str(a.const("pad_type", "valid")), x.shape[2:], kernel, strides, [1] * n, a.const("pad", None))
    ceil_mode = bool(a.const("ceil_mode", False))
    extra = []
    for i, k, s, (before, after) in zip(x.shape[2:], kernel, strides, pads, strict=True):
        span = i + before + after - k
        if span < 0:
            raise ValueError(f"pool window {k} is larger than the padded input {i + before + after}")
        out = span // s + 1
        if ceil_mode:
            out = -(-span // s) + 1
            if (before or after) and (out - 1) * s >= i + before:  # last window would start in the padding
                out -= 1
        extra.append(max(0, (out - 1) * s + k - (i + before + after)))
    return kernel, strides, pads, extra


def _reduce_windows(
    padded: np.ndarray, kernel: Sequence[int], strides: Sequence[int], combine: Callable[..., np.ndarray]
) -> np.ndarray:
    """Combine (np.add / np.maximum) every pooling window of ``padded``'s trailing spatial axes.

    One strided slice per kernel offset, combined element-wise: as many passes as the kernel has
    taps, each a plain vectorised operation over the whole output.
    """
    n = len(kernel)
    sizes = padded.shape[-n:]
    outs = [(size - k) // s + 1 for size, k, s in zip(sizes, kernel, strides, strict=True)]
    result: np.ndarray | None = None
    for offset in itertools.product(*(range(k) for k in kernel)):
        index = (Ellipsis,) + tuple(
            slice(o, o + (out - 1) * s + 1, s) for o, out, s in zip(offset, outs, strides, strict=True)
        )
        window = padded[index]
        result = window.copy() if result is None else combine(result, window, out=result)
    assert result is not None
    return result


def _pad_spatial(x: np.ndarray, pads: Sequence[tuple[int, int]], extra: Sequence[int], value: float) -> np.ndarray:
    widths = [(0, 0), (0, 0)] + [(b, e + x_) for (b, e), x_ in zip(pads, extra, strict=True)]
    if not any(b or e for b, e in widths):
        return x
    return np.pad(x, widths, mode="constant", constant_values=value)


def avg_pool(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    kernel, strides, pads, extra = _pool_geometry(a, x)
    n = len(kernel)
    sums = _reduce_windows(_pad_spatial(x, pads, extra, 0.0), kernel, strides, np.add)
    # The divisor: ones where an element counts (real input, plus the declared padding unless it is
    # excluded), zeros in ceil mode's extra positions. One small spatial-only map, broadcast.
    exclude = bool(a.const("exclude_padding_from_average", False))
    counted = np.ones((1, 1) + tuple(x.shape[2:]), dtype=np.float32)
    if exclude:
        counted = _pad_spatial(counted, pads, extra, 0.0)
    else:
        counted = _pad_spatial(_pad_spatial(counted, pads, [0] * n, 1.0), [(0, 0)] * n, extra, 0.0)
    divisor = _reduce_windows(counted, kernel, strides, np.add)
    return sums / np.maximum(divisor, 1.0)


def max_pool(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    kernel, strides, pads, extra = _pool_geometry(a, x)
    return _reduce_windows(_pad_spatial(x, pads, extra, -np.inf), kernel, strides, np.maximum)


# ---------------------------------------------------------------------------------- upsample


def source_coordinates(size_in: int, size_out: int, align_corners: bool, half_pixel: bool) -> np.ndarray:
    """Where each output sample reads the input, in input pixel units (see the module docstring)."""
    j = np.arange(size_out, dtype=np.float64)
    if align_corners:
        src = j * ((size_in - 1) / (size_out - 1)) if size_out > 1 else np.zeros(size_out)
    elif half_pixel:
        src = (j + 0.5) * (size_in / size_out) - 0.5
    else:
        src = j * (size_in / size_out)
    return np.clip(src, 0.0, size_in - 1)


def _interpolate_axis(x: np.ndarray, axis: int, src: np.ndarray) -> np.ndarray:
    low = np.floor(src).astype(np.int64)
    high = np.minimum(low + 1, x.shape[axis] - 1)
    frac = (src - low).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = len(src)
    frac = frac.reshape(shape)
    lower, upper = np.take(x, low, axis=axis), np.take(x, high, axis=axis)
    return lower + (upper - lower) * frac


def upsample_bilinear(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    if x.ndim < 3:
        raise ValueError(f"upsample_bilinear needs rank >= 3, got {x.shape}")
    align = bool(a.const("align_corners", True))
    half_pixel = bool(a.const("half_pixel_centers", not align))
    if align and half_pixel:
        raise ValueError("upsample_bilinear: align_corners and half_pixel_centers cannot both be true")
    sh = float(a.const("scale_factor_height", 1.0))
    sw = float(a.const("scale_factor_width", 1.0))
    h, w = x.shape[-2:]
    out_h, out_w = int(math.floor(h * sh)), int(math.floor(w * sw))
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"upsample_bilinear output {out_h}x{out_w} is empty")
    out = _interpolate_axis(x, x.ndim - 2, source_coordinates(h, out_h, align, half_pixel))
    return _interpolate_axis(out, x.ndim - 1, source_coordinates(w, out_w, align, half_pixel))


__all__ = [
    "avg_pool",
    "conv",
    "linear",
    "matmul",
    "max_pool",
    "source_coordinates",
    "spatial_pads",
    "upsample_bilinear",
]
