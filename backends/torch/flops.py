"""FLOPs of the five torch modules at one size, counted once per size and remembered.

The benchmark reports achieved GFLOP/s, which needs the work each module does. For exported
backends the exporter records it in the manifest; the torch backend has no manifest, so it counts
here with ``torch.utils.flop_counter.FlopCounterMode`` (the same counter the ONNX exporter uses, so
the numbers of both backends are comparable).

FLOPs of convolutions and matrix products depend on shapes only, never on the values, and the
network has no value-dependent branches, so the count runs on the ``meta`` device: shapes flow
through every op but nothing is computed or allocated, which makes a full-size count take a
fraction of a second instead of a real float32 pass (tens of seconds on a small CPU). No weights
are loaded, so the result is the same for every checkpoint. Should an op ever lack a meta kernel,
the count falls back to a real CPU pass with benign constant inputs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, Dims, ModuleSpec

FLOPS_METHOD = (
    "torch.utils.flop_counter.FlopCounterMode on the float32 torch modules "
    "(convolutions and matrix products, 2 FLOPs per multiply-add; element-wise ops not counted)"
)


def count_module_flops(dims: Dims) -> dict[str, int]:
    """FLOPs of one call of each module at ``dims`` (padded size), e.g. ``{"encoder": 4.5e10, ...}``;
    optional variants the spec declares are included, since a backend may run them instead.

    Cached per ``dims`` for the life of the process: counting runs every module once in float32,
    which takes seconds at full size, and a benchmark asks for every backend it measures.
    """
    return dict(_count(dims))


@lru_cache(maxsize=16)
def _count(dims: Dims) -> tuple[tuple[str, int], ...]:
    """The uncached count; a tuple so the cached value cannot be mutated by a caller."""
    try:
        return _count_on("meta", dims)
    except (RuntimeError, NotImplementedError):
        return _count_on("cpu", dims)


def _count_on(device_name: str, dims: Dims) -> tuple[tuple[str, int], ...]:
    """Run each module once under FlopCounterMode with the network and inputs on ``device_name``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .modules import build_torch_modules
    from .network import MatAnyoneNet

    device = torch.device(device_name)
    with device:
        net = MatAnyoneNet().float().eval()
    stages = build_torch_modules(net, optional=True)
    counts: list[tuple[str, int]] = []
    for name, spec in ALL_MODULE_SPECS.items():
        args = tuple(torch.from_numpy(a).to(device) for a in _benign_inputs(spec, dims))
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            stages[name](*args)
        counts.append((name, int(counter.get_total_flops())))
    return tuple(counts)


def _benign_inputs(spec: ModuleSpec, dims: Dims) -> list[np.ndarray]:
    """Inputs in the declared shapes whose values keep every op finite.

    Zeros everywhere would divide by zero in the memory read (shrinkage) and the object memory
    (area); the values do not change the count, but NaNs in a run could trip a future check.
    """
    out: list[np.ndarray] = []
    for tensor in spec.inputs:
        shape = tensor.resolve(dims)
        array = np.full(shape, _fill_value(tensor.name), dtype=np.float32)
        if tensor.name in ("obj_memory", "obj_summary"):
            array[..., -1] = 1.0  # area channel: one pixel's worth, so the mean is defined
        out.append(array)
    return out


def _fill_value(name: str) -> Any:
    """A constant per input kind: 1 for gates/areas/validity, 0.5 for masks, 0.1 for features."""
    if name in ("shrinkage", "mem_shrinkage", "mem_valid"):
        return 1.0
    if name in ("mask", "last_mask", "selection", "query_selection", "image"):
        return 0.5
    return 0.1


__all__ = ["FLOPS_METHOD", "count_module_flops"]
