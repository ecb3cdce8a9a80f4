"""Reductions and normalisations: reduce_sum / reduce_max / reduce_mean, softmax, layer_norm.

From the MIL op reference: ``axes`` defaults to every axis and may be negative; ``keep_dims``
(default False) keeps the reduced axes with length 1. ``softmax`` (axis default -1) is computed
max-subtracted, as any numerically sane kernel does. ``layer_norm`` normalises over ``axes``
(default: all) with the population variance, ``epsilon`` (default 1e-5) inside the square root,
then scales by ``gamma`` and shifts by ``beta`` (shape ``x.shape[axes]``; defaults 1 and 0).
"""

from __future__ import annotations

import numpy as np

from .args import OpArgs, normalize_axes


def _axes(a: OpArgs, rank: int) -> tuple[int, ...]:
    axes = a.const("axes", None)
    return tuple(range(rank)) if axes is None else normalize_axes(axes, rank)


def reduce_sum(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    return np.sum(x, axis=_axes(a, x.ndim), keepdims=bool(a.const("keep_dims", False)))


def reduce_max(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    return np.max(x, axis=_axes(a, x.ndim), keepdims=bool(a.const("keep_dims", False)))


def reduce_mean(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    return np.mean(x, axis=_axes(a, x.ndim), keepdims=bool(a.const("keep_dims", False)))


def softmax(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    axis = int(a.const("axis", -1))
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)


def layer_norm(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    axes = _axes(a, x.ndim)
    epsilon = float(a.const("epsilon", 1e-5))
    mean = np.mean(x, axis=axes, keepdims=True)
    centred = x - mean
    variance = np.mean(centred * centred, axis=axes, keepdims=True)
    out = centred / np.sqrt(variance + np.float32(epsilon))
    # gamma / beta have the shape of the normalised axes; place them on those axes to broadcast.
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    if a.has("gamma"):
        out = out * a.floats("gamma").reshape(shape)
    if a.has("beta"):
        out = out + a.floats("beta").reshape(shape)
    return out


__all__ = ["layer_norm", "reduce_max", "reduce_mean", "reduce_sum", "softmax"]
