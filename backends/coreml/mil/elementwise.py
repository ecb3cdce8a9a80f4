"""Element-wise MIL ops: binary arithmetic and comparisons (numpy broadcasting), unary functions,
``clip``, ``cast`` and ``select``.

Semantics from the MIL op reference (coremltools ``ops/defs``, iOS 15–17):
* binary ops broadcast like numpy; comparisons return bool;
* ``log(x, epsilon)`` is ``log(x + epsilon)`` with epsilon defaulting to 1e-45;
* ``clip(x, alpha, beta)`` needs alpha < beta from iOS 17 on;
* ``cast`` from float to an integer type drops the fraction (rounds toward zero), the rule of a C
  conversion; the reference does not state it, and this executor makes it explicit and tested;
  to float16 it rounds to nearest even, to bool it is ``x != 0``;
* ``select(cond, a, b)`` picks ``a`` where cond is true, broadcasting all three.
"""

from __future__ import annotations

import numpy as np

from .args import OpArgs

# ------------------------------------------------------------------------------------ binary


def add(a: OpArgs) -> np.ndarray:
    return np.add(a.floats("x"), a.floats("y"))


def sub(a: OpArgs) -> np.ndarray:
    return np.subtract(a.floats("x"), a.floats("y"))


def mul(a: OpArgs) -> np.ndarray:
    return np.multiply(a.floats("x"), a.floats("y"))


def real_div(a: OpArgs) -> np.ndarray:
    x, y = a.floats("x"), a.floats("y")
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer):
        return np.trunc(np.true_divide(x, y))
    return np.true_divide(x, y)


def pow_(a: OpArgs) -> np.ndarray:
    return np.power(a.floats("x"), a.floats("y"))


def greater(a: OpArgs) -> np.ndarray:
    return np.greater(a.floats("x"), a.floats("y"))


def greater_equal(a: OpArgs) -> np.ndarray:
    return np.greater_equal(a.floats("x"), a.floats("y"))


def less(a: OpArgs) -> np.ndarray:
    return np.less(a.floats("x"), a.floats("y"))


def select(a: OpArgs) -> np.ndarray:
    return np.where(a.array("cond").astype(bool), a.floats("a"), a.floats("b"))


# ------------------------------------------------------------------------------------- unary


def relu(a: OpArgs) -> np.ndarray:
    return np.maximum(a.floats("x"), 0)


def sigmoid(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    e = np.exp(-np.abs(x))  # never overflows: the two branches of the logistic, stably
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def tanh(a: OpArgs) -> np.ndarray:
    return np.tanh(a.floats("x"))


def exp(a: OpArgs) -> np.ndarray:
    return np.exp(a.floats("x"))


def log(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    epsilon = a.const("epsilon", 1e-45)
    return np.log(x + np.asarray(epsilon, dtype=x.dtype))


def clip(a: OpArgs) -> np.ndarray:
    x = a.floats("x")
    alpha, beta = float(a.const("alpha")), float(a.const("beta"))
    if a.opset_version >= 7 and not alpha < beta:
        raise ValueError(f"clip needs alpha < beta (iOS 17 rule), got alpha {alpha} and beta {beta}")
    return np.minimum(np.maximum(x, np.asarray(alpha, x.dtype)), np.asarray(beta, x.dtype))


_CAST_TARGETS = {
    "fp32": np.float32,
    "fp16": np.float16,
    "int32": np.int32,
    "int16": np.int16,
    "uint16": np.uint16,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


def cast(a: OpArgs) -> np.ndarray:
    target = str(a.const("dtype"))
    if target not in _CAST_TARGETS:
        raise ValueError(f"cast to {target!r} is not a MIL cast target ({', '.join(_CAST_TARGETS)})")
    dtype = _CAST_TARGETS[target]
    x = a.array("x")
    if dtype == np.bool_:
        return x != 0
    if np.issubdtype(dtype, np.integer) and np.issubdtype(x.dtype, np.floating):
        return np.trunc(x.astype(np.float64)).astype(dtype)
    return x.astype(dtype)


__all__ = [
    "add",
    "cast",
    "clip",
    "exp",
    "greater",
    "greater_equal",
    "less",
    "log",
    "mul",
    "pow_",
    "real_div",
    "relu",
    "select",
    "sigmoid",
    "sub",
    "tanh",
]
