"""The op table: MIL op type -> implementation. The one place that says what the executor runs.

``const`` is not here: constants are decoded when the program is read (program.py). An op type
missing from this table is refused when a program is loaded, before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import elementwise, nn, reduction, shape
from .args import OpArgs

OpFunction = Callable[[OpArgs], Any]

OP_TABLE: dict[str, OpFunction] = {
    # element-wise (elementwise.py)
    "add": elementwise.add,
    "sub": elementwise.sub,
    "mul": elementwise.mul,
    "real_div": elementwise.real_div,
    "pow": elementwise.pow_,
    "greater": elementwise.greater,
    "greater_equal": elementwise.greater_equal,
    "less": elementwise.less,
    "select": elementwise.select,
    "relu": elementwise.relu,
    "sigmoid": elementwise.sigmoid,
    "tanh": elementwise.tanh,
    "exp": elementwise.exp,
    "log": elementwise.log,
    "clip": elementwise.clip,
    "cast": elementwise.cast,
    # reductions and normalisation (reduction.py)
    "reduce_sum": reduction.reduce_sum,
    "reduce_max": reduction.reduce_max,
    "reduce_mean": reduction.reduce_mean,
    "softmax": reduction.softmax,
    "layer_norm": reduction.layer_norm,
    # network layers (nn.py)
    "conv": nn.conv,
    "linear": nn.linear,
    "matmul": nn.matmul,
    "avg_pool": nn.avg_pool,
    "max_pool": nn.max_pool,
    "upsample_bilinear": nn.upsample_bilinear,
    # layout and indexing (shape.py)
    "reshape": shape.reshape,
    "transpose": shape.transpose,
    "expand_dims": shape.expand_dims,
    "concat": shape.concat,
    "tile": shape.tile,
    "slice_by_index": shape.slice_by_index,
    "gather": shape.gather,
    "topk": shape.topk,
    "fill_like": shape.fill_like,
}

#: Every op type a program may contain and still run (the table, plus const).
IMPLEMENTED_OPS = frozenset(OP_TABLE) | {"const"}

__all__ = ["IMPLEMENTED_OPS", "OP_TABLE", "OpFunction"]
