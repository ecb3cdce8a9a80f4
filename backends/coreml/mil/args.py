"""What an op implementation sees: its inputs by MIL parameter name, with the spec's defaults.

Why a class: every MIL op mixes run-time tensors (``x``) with compile-time parameters (``pad_type``,
``axes``, ``keep_dims``) that have documented defaults; reading both through one object keeps each
op implementation a short transcription of the op reference. Float tensors are handed to the
arithmetic as float32 (``floats``) whatever they are stored in: the executor models fp16 storage
with float32 arithmetic inside each op (see executor.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_REQUIRED = object()


class OpArgs:
    """The resolved inputs of one operation call.

    ``values`` maps each parameter to an array, or to a list of arrays for tuple parameters (e.g.
    concat's ``values``); ``constant`` names the parameters bound to compile-time constants.
    ``out_dtypes`` are the numpy dtypes the program declares for the outputs; ``opset`` is the
    function's operation set (``CoreML7`` = iOS 17), for ops whose rules changed between versions.
    """

    def __init__(
        self,
        op_type: str,
        values: Mapping[str, Any],
        constant: frozenset[str],
        out_dtypes: Sequence[Any],
        opset: str,
        cache: dict[str, Any] | None = None,
    ) -> None:
        self.op_type = op_type
        self.values = values
        self.constant = constant
        self.out_dtypes = tuple(out_dtypes)
        self.opset = opset
        self._cache = cache if cache is not None else {}

    @property
    def opset_version(self) -> int:
        """The number of ``CoreMLn`` (7 for iOS 17 / macOS 14); 0 when unknown."""
        digits = "".join(c for c in self.opset if c.isdigit())
        return int(digits) if digits else 0

    def has(self, name: str) -> bool:
        return name in self.values

    def array(self, name: str) -> np.ndarray:
        """The input as stored (any dtype)."""
        if name not in self.values:
            raise ValueError(f"required input {name!r} is missing")
        return np.asarray(self.values[name])

    def floats(self, name: str) -> np.ndarray:
        """A float input as float32 (float16 storage is widened for the arithmetic); ints stay ints.

        The widened copy of a constant (a weight) is made once per operation and kept.
        """
        if name in self.constant and name in self._cache:
            return self._cache[name]
        value = widen(self.array(name))
        if name in self.constant:
            self._cache[name] = value
        return value

    def tuple_of(self, name: str) -> list[np.ndarray]:
        value = self.values.get(name)
        if value is None:
            raise ValueError(f"required input {name!r} is missing")
        return [np.asarray(v) for v in (value if isinstance(value, list) else [value])]

    def const(self, name: str, default: Any = _REQUIRED) -> Any:
        """A compile-time parameter as a Python value: scalar, tuple of scalars, str or bool."""
        if name not in self.values:
            if default is _REQUIRED:
                raise ValueError(f"required parameter {name!r} is missing")
            return default
        if name not in self.constant:
            raise ValueError(f"parameter {name!r} must be a compile-time constant")
        value = np.asarray(self.values[name])
        if value.dtype == object:
            return value.item() if value.ndim == 0 else tuple(value.tolist())
        if value.ndim == 0:
            return value.item()
        return tuple(value.tolist())

    def cached(self, key: str, make: Any) -> Any:
        """A value derived once per operation (e.g. a torch copy of a constant weight)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


def widen(array: np.ndarray) -> np.ndarray:
    """float16 -> float32; every other dtype unchanged."""
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return array


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def normalize_axes(axes: Any, rank: int) -> tuple[int, ...]:
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(sorted({normalize_axis(int(a), rank) for a in axes}))


__all__ = ["OpArgs", "normalize_axes", "normalize_axis", "widen"]
