"""Layout and indexing MIL ops: reshape, transpose, expand_dims, concat, tile, slice_by_index,
gather, topk, fill_like.

Rules from the MIL op reference (iOS 15–17), the ones converters trip over:

* ``reshape``: ``-1`` is inferred; from iOS 17 a ``0`` copies the input dimension at the same
  position *counted from the right* (``1`` when there is none); before, only when the ranks agree.
* ``expand_dims``: negative axes count in the *output* rank.
* ``concat`` with ``interleave`` alternates the inputs element by element along the axis.
* ``slice_by_index``: numpy slicing ``x[begin:end:stride]`` per axis; ``begin_mask`` /
  ``end_mask`` ignore begin / end (the whole side of the axis), ``squeeze_mask`` indexes at begin
  and drops the axis.
* ``gather`` (with ``batch_dims``): output shape ``x.shape[:axis] + indices.shape[batch_dims:] +
  x.shape[axis+1:]``. From iOS 17 negative indices are out of range (before, they wrap); this
  executor refuses any out-of-range index instead of reading undefined memory.
* ``topk``: the ``k`` largest (``ascending``: smallest) along ``axis`` (``k = -1``: all), values
  sorted. Ties: the reference leaves the order unspecified; here the lower index always comes
  first (and wins the last place), deterministically — Apple's kernels may order ties otherwise.
"""

from __future__ import annotations

import numpy as np

from .args import OpArgs, normalize_axis, widen


def reshape(a: OpArgs) -> np.ndarray:
    x = a.array("x")
    shape = [int(s) for s in np.asarray(a.array("shape")).reshape(-1)]
    if 0 in shape:
        if a.opset_version >= 7:
            offset = x.ndim - len(shape)
            shape = [
                (x.shape[i + offset] if 0 <= i + offset < x.ndim else 1) if s == 0 else s for i, s in enumerate(shape)
            ]
        else:
            if len(shape) != x.ndim:
                raise ValueError(f"reshape: a 0 in {shape} needs a shape of the input's rank {x.ndim} before iOS 17")
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def transpose(a: OpArgs) -> np.ndarray:
    x = a.array("x")
    perm = [normalize_axis(int(p), x.ndim) for p in a.const("perm")]
    return np.transpose(x, perm)


def expand_dims(a: OpArgs) -> np.ndarray:
    x = a.array("x")
    axes = a.const("axes")
    axes = (axes,) if isinstance(axes, int) else axes
    out_rank = x.ndim + len(axes)
    placed = sorted(normalize_axis(int(ax), out_rank) for ax in axes)
    if len(set(placed)) != len(placed):
        raise ValueError(f"expand_dims: repeated axes {axes}")
    out = x
    for axis in placed:
        out = np.expand_dims(out, axis)
    return out


def concat(a: OpArgs) -> np.ndarray:
    values = [widen(v) for v in a.tuple_of("values")]
    axis = normalize_axis(int(a.const("axis")), values[0].ndim)
    if not a.const("interleave", False):
        return np.concatenate(values, axis=axis)
    if any(v.shape != values[0].shape for v in values):
        raise ValueError("concat with interleave needs inputs of one shape")
    stacked = np.stack(values, axis=axis + 1)
    shape = list(values[0].shape)
    shape[axis] *= len(values)
    return stacked.reshape(shape)


def tile(a: OpArgs) -> np.ndarray:
    x = a.array("x")
    reps = [int(r) for r in np.asarray(a.array("reps")).reshape(-1)]
    if len(reps) != x.ndim:
        raise ValueError(f"tile: reps {reps} must have one entry per axis of the rank-{x.ndim} input")
    return np.tile(x, reps)


def fill_like(a: OpArgs) -> np.ndarray:
    ref = a.array("ref_tensor")
    value = a.const("value", 0.0)
    dtype = a.out_dtypes[0] if a.out_dtypes and a.out_dtypes[0] is not None else np.float32
    return np.full(ref.shape, value, dtype=dtype)


def slice_by_index(a: OpArgs) -> np.ndarray:
    x = a.array("x")
    rank = x.ndim

    def vector(name: str, default: int | bool) -> list:
        if not a.has(name):
            return [default] * rank
        values = np.asarray(a.array(name)).reshape(-1).tolist()
        if len(values) != rank:
            raise ValueError(f"slice_by_index: {name} has {len(values)} entries for a rank-{rank} input")
        return values

    begin, end, stride = vector("begin", 0), vector("end", 0), vector("stride", 1)
    begin_mask, end_mask = vector("begin_mask", False), vector("end_mask", False)
    squeeze = vector("squeeze_mask", False)
    index: list[int | slice] = []
    for i in range(rank):
        if squeeze[i]:
            index.append(int(begin[i]))
            continue
        if int(stride[i]) == 0:
            raise ValueError("slice_by_index: stride 0")
        start = None if begin_mask[i] else int(begin[i])
        stop = None if end_mask[i] else int(end[i])
        index.append(slice(start, stop, int(stride[i])))
    return x[tuple(index)]


def gather(a: OpArgs) -> np.ndarray:
    x = a.array("x")
    indices = np.asarray(a.array("indices")).astype(np.int64)
    axis = normalize_axis(int(a.const("axis", 0)), x.ndim)
    batch_dims = int(a.const("batch_dims", 0))
    size = x.shape[axis]
    if a.opset_version < 7:
        indices = np.where(indices < 0, indices + size, indices)
    if indices.size and (indices.min() < 0 or indices.max() >= size):
        raise ValueError(
            f"gather index out of range [0, {size}) (min {indices.min()}, max {indices.max()}); "
            "from iOS 17 negative indices are out of range too"
        )
    if batch_dims == 0:
        return np.take(x, indices, axis=axis)
    if batch_dims < 0 or batch_dims > axis or x.shape[:batch_dims] != indices.shape[:batch_dims]:
        raise ValueError(f"gather: batch_dims {batch_dims} does not fit x {x.shape}, indices {indices.shape}")
    batch = x.shape[:batch_dims]
    count = int(np.prod(batch))
    xb = x.reshape((count,) + x.shape[batch_dims:])
    ib = indices.reshape((count,) + indices.shape[batch_dims:])
    parts = [np.take(xb[i], ib[i], axis=axis - batch_dims) for i in range(count)]
    stacked = np.stack(parts)
    return stacked.reshape(batch + stacked.shape[1:])


def smallest_k(key: np.ndarray, k: int) -> np.ndarray:
    """Indices (..., k) of the k smallest entries of each row of ``key`` (last axis), sorted by
    value, ties by index. O(n) per row: a partition finds the k-th value, then every entry below
    it and the first entries equal to it (in index order) are taken."""
    n = key.shape[-1]
    if k >= n:
        return np.argsort(key, axis=-1, kind="stable")
    kth = np.partition(key, k - 1, axis=-1)[..., k - 1 : k]
    below = key < kth
    equal = key == kth
    room = k - below.sum(axis=-1, keepdims=True)
    chosen = below | (equal & (np.cumsum(equal, axis=-1) <= room))
    rows = chosen.reshape(-1, n)
    # exactly k per row, found in index order
    picked: np.ndarray = np.nonzero(rows)[1].reshape(key.shape[:-1] + (k,))
    order = np.argsort(np.take_along_axis(key, picked, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(picked, order, axis=-1)


def topk(a: OpArgs) -> tuple[np.ndarray, ...]:
    x = a.floats("x")
    axis = normalize_axis(int(a.const("axis", -1)), x.ndim)
    k = int(a.const("k", 1))
    n = x.shape[axis]
    k = n if k == -1 else k
    if not 0 < k <= n:
        raise ValueError(f"topk: k = {k} for an axis of {n}")
    moved = np.moveaxis(x, axis, -1)
    ascending = bool(a.const("ascending", False))
    key = moved if ascending else -moved.astype(np.float64 if moved.dtype.kind in "iu" else moved.dtype)
    picked = smallest_k(key, k)
    values = np.moveaxis(np.take_along_axis(moved, picked, axis=-1), -1, axis)
    if not a.const("return_indices", True):
        return (values,)
    index_dtype = np.uint16 if a.const("output_indices_dtype", "int32") == "uint16" else np.int32
    return values, np.moveaxis(picked, -1, axis).astype(index_dtype)


__all__ = [
    "concat",
    "expand_dims",
    "fill_like",
    "gather",
    "reshape",
    "slice_by_index",
    "smallest_k",
    "tile",
    "topk",
    "transpose",
]
