"""fp16 drift of the five modules, measured without a Mac — and the realistic inputs it needs.

Why: an fp16 CoreML package computes every activation in float16. The earlier iOS port found that
this is not harmless for MatAnyone: repeated first-frame feedback at fp16 drifted the alpha to
zero. The CoreML runtime only exists on macOS, so on Linux the drift is estimated by running the
*same* torch modules the exporter traces in a simulated half-precision world, over realistic
inputs, and comparing with float32. The numbers go into the manifest (``validation.fp16_drift``)
and give the macOS parity tests their fp16 bound.

How the half-precision world mimics Core ML (``simulated_half``)
---------------------------------------------------------------
A ``TorchFunctionMode`` intercepts every torch call. When a call touches a half-precision tensor
(the module inputs are cast to half), all of its float32 tensor arguments — weights included —
are rounded to half and the result is half: that is the fp16 activation path. Convolutions and
matrix products take half-rounded operands, accumulate in float32 and round the result to half
(fp16 storage, fp32 accumulation — as half-precision GPU kernels do; it also avoids torch's slow
reference float16 convolution on CPU). Calls that touch
only float32 tensors run in float32 untouched: these are the computations on constants (e.g. the
sine/cosine positional table built from a buffer), which coremltools folds at conversion time in
float32 and only then stores as fp16. A ``.float()`` inside the half world is kept half, as
coremltools' FLOAT16 compute precision does. The model's own parameters are never modified.

torch on CPU has float16 kernels for everything this network uses (torch 2.13); if a kernel is
missing (older torch) the module is measured in bfloat16 instead — a *pessimistic* stand-in
(8 mantissa bits instead of 10) — and the report says so in the module's ``dtype`` field.
Differences to real Core ML that this cannot capture: the GPU and Neural Engine may accumulate
convolutions and reductions in fp16 (torch CPU accumulates in fp32), and their transcendental
functions differ. The macOS parity tests measure the real thing.

numpy at import time; torch is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, VARIANT_OF, Dims, ModuleSpec
from matanyone_engine.core.media.synthetic import moving_shapes as synthetic_frames

InputSet = dict[str, np.ndarray]

# --------------------------------------------------------------------------- half-precision world

#: Reductions over many products: computed from half-rounded operands with float32 accumulation,
#: and rounded to half on output — what half-precision kernels do (torch's own CPU float16
#: convolution accumulates in float32 too, but through a slow reference kernel ~5x slower).
_ACCUMULATING_OPS = frozenset(
    {
        "conv1d",
        "conv2d",
        "conv_transpose2d",
        "linear",
        "matmul",
        "__matmul__",
        "__rmatmul__",
        "bmm",
        "mm",
        "addmm",
        "baddbmm",
        "einsum",
        "scaled_dot_product_attention",
    }
)


@contextlib.contextmanager
def simulated_half(dtype: Any = None) -> Iterator[None]:
    """Run torch code inside the block as if compiled with Core ML FLOAT16 compute precision."""
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_flatten, tree_map

    half = dtype if dtype is not None else torch.float16

    def to_half(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
            return value.to(half)
        return value

    def to_float(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dtype in (half, torch.float32):
            return value.to(half).to(torch.float32)  # rounded to half first: fp16 operands
        return value

    class _HalfWorld(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            leaves, _ = tree_flatten((args, kwargs))
            if not any(isinstance(t, torch.Tensor) and t.dtype == half for t in leaves):
                return func(*args, **kwargs)  # constant computation: folded in fp32 by coremltools
            if getattr(func, "__name__", "") in _ACCUMULATING_OPS:
                args, kwargs = tree_map(to_float, (args, kwargs))
                return tree_map(to_half, func(*args, **kwargs))
            args, kwargs = tree_map(to_half, (args, kwargs))
            return tree_map(to_half, func(*args, **kwargs))

    with _HalfWorld():
        yield


def run_torch(
    module: Any, inputs: Mapping[str, np.ndarray], half: Any = None, spec: ModuleSpec | None = None
) -> dict[str, np.ndarray]:
    """Run a spec-following torch module on named numpy inputs (float32, or simulated ``half``).

    Inputs are passed positionally in the declared order of ``spec`` (default: the module's own
    ``spec`` attribute, else the order of ``inputs``).
    """
    import torch

    if spec is None:
        spec = getattr(module, "spec", None)
    names = spec.input_names if spec is not None else tuple(inputs)
    out_names = spec.output_names if spec is not None else None
    args = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)) for n in names]
    with torch.inference_mode():
        if half is None:
            outs = module(*args)
        else:
            with simulated_half(half):
                outs = module(*[a.to(half) for a in args])
    if not isinstance(outs, (tuple, list)):
        outs = (outs,)
    if out_names is None:
        out_names = tuple(f"output{i}" for i in range(len(outs)))
    return {n: o.detach().to(torch.float32).cpu().numpy() for n, o in zip(out_names, outs, strict=False)}


@dataclass
class OutputDrift:
    """Half-vs-float32 error of one output, worst case over the input sets."""

    max_abs: float = 0.0
    mean_abs: float = 0.0
    max_ref: float = 0.0
    finite: bool = True

    def update(self, got: np.ndarray, want: np.ndarray) -> None:
        got64, want64 = got.astype(np.float64), want.astype(np.float64)
        if not np.all(np.isfinite(got64)):
            self.finite = False
            self.max_abs = self.mean_abs = math.inf
            return
        err = np.abs(got64 - want64)
        self.max_abs = max(self.max_abs, float(err.max(initial=0.0)))
        self.mean_abs = max(self.mean_abs, float(err.mean()) if err.size else 0.0)
        self.max_ref = max(self.max_ref, float(np.abs(want64).max(initial=0.0)))

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs": self.max_abs, "mean_abs": self.mean_abs, "max_ref": self.max_ref, "finite": self.finite}


def measure_drift(
    modules: Mapping[str, Any],
    input_sets: Mapping[str, Sequence[InputSet]],
    *,
    dtype: str = "float16",
    references: Mapping[str, Sequence[Mapping[str, np.ndarray]]] | None = None,
) -> dict[str, Any]:
    """Per module and output, max/mean abs error of the simulated half run against float32.

    ``references`` may hold float32 outputs already computed for the same input sets (the
    exporter has them from its FLOP count) to avoid running float32 twice. Returns a JSON-ready
    dict: {"method", "dtype", "modules": {module: {"dtype", "sets", "outputs": {name: {...}}}}}.
    """
    import torch

    wanted = {"float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in wanted:
        raise ValueError(f"dtype must be 'float16' or 'bfloat16', got {dtype!r}")
    result: dict[str, Any] = {
        "method": "torch CPU, simulated Core ML FLOAT16 compute (exporters/coreml/drift.py)",
        "dtype": dtype,
        "modules": {},
    }
    for name in ALL_MODULE_SPECS:
        if name not in modules or not input_sets.get(name):
            continue
        module = modules[name]
        sets = list(input_sets[name])
        spec = ALL_MODULE_SPECS[name]
        if references and references.get(name):
            refs = list(references[name])
        else:
            refs = [run_torch(module, s, spec=spec) for s in sets]
        used = dtype
        try:
            halves = [run_torch(module, s, wanted[dtype], spec=spec) for s in sets]
        except (RuntimeError, NotImplementedError) as exc:
            if dtype != "float16":
                raise
            used = "bfloat16"  # a float16 CPU kernel is missing: measure with the pessimistic stand-in
            halves = [run_torch(module, s, torch.bfloat16, spec=spec) for s in sets]
            result.setdefault("notes", []).append(
                f"{name}: float16 kernel missing on this torch ({str(exc).splitlines()[0][:100]}); "
                "measured in bfloat16 instead (pessimistic)"
            )
        outputs: dict[str, OutputDrift] = {}
        for got, want in zip(halves, refs, strict=False):
            for out_name in spec.output_names:
                outputs.setdefault(out_name, OutputDrift()).update(got[out_name], want[out_name])
        result["modules"][name] = {
            "dtype": used,
            "sets": len(sets),
            "outputs": {k: v.to_dict() for k, v in outputs.items()},
        }
    return result


def worst_drift(report: Mapping[str, Any]) -> dict[str, float]:
    """Largest max/mean error over every module and output of a ``measure_drift`` report."""
    worst = {"max_abs": 0.0, "mean_abs": 0.0}
    for module in report.get("modules", {}).values():
        for out in module["outputs"].values():
            worst["max_abs"] = max(worst["max_abs"], out["max_abs"])
            worst["mean_abs"] = max(worst["mean_abs"], out["mean_abs"])
    return worst


def format_drift(report: Mapping[str, Any]) -> str:
    """A fixed-width table of a drift report (for the benchmark script and logs)."""
    lines = [f"{'module':<13} {'output':<12} {'dtype':<9} {'max abs':>10} {'mean abs':>10} {'max |ref|':>10}"]
    for module, entry in report.get("modules", {}).items():
        for out, d in entry["outputs"].items():
            lines.append(
                f"{module:<13} {out:<12} {entry['dtype']:<9} {d['max_abs']:>10.3g} {d['mean_abs']:>10.3g} "
                f"{d['max_ref']:>10.3g}"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------ realistic inputs


class TorchAsModule:
    """A spec-following torch module behind the core.protocol.Module boundary (numpy in and out).

    The state machine only speaks numpy; wrapping the torch modules lets it drive them to record
    realistic inputs for every module (``record``), or run a whole clip in the simulated
    half-precision world (``half``, a torch dtype) to measure the drift of the matte itself.
    """

    def __init__(self, name: str, module: Any, record: list[InputSet] | None = None, half: Any = None) -> None:
        self.spec = ALL_MODULE_SPECS[name]
        self._module = module
        self._half = half
        self.calls = record

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        if self.calls is not None:
            self.calls.append({k: np.array(v, dtype=np.float32, copy=True) for k, v in inputs.items()})
        return run_torch(self._module, inputs, self._half, spec=self.spec)


def recorded_inputs(
    modules: Mapping[str, Any],
    dims: Dims,
    *,
    frames: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    steps: int | None = None,
    keep: str = "first_last",
) -> dict[str, list[InputSet]]:
    """Inputs each module really receives, recorded while the state machine runs the torch modules.

    ``modules`` holds the five torch modules and, optionally, the fast variants of core.spec
    (``mask_value``); every one present gets input sets.

    ``frames`` (n, H, W, 3) uint8 and ``mask`` (H, W) must already be at the module size ``dims``;
    without them a synthetic clip is used. Every frame is made a memory frame so that the working
    memory fills (and its FIFO wraps) within ``T + 2`` frames: the read module is then seen both
    with partly valid memory (first call) and with full memory (last call). ``keep`` is
    "first_last" (two sets per module) or "last" (one set: the settled state; cheapest).
    """
    from matanyone_engine.core.engine.padding import frame_to_input, mask_to_input
    from matanyone_engine.core.engine.state import MattingStateMachine, MemoryConfig

    n = steps if steps is not None else dims.mem_frames + 2
    if frames is None or mask is None:
        frames, mask = synthetic_frames(dims.height, dims.width, n)
    if frames.shape[1:3] != (dims.height, dims.width) or mask.shape != (dims.height, dims.width):
        raise ValueError(
            f"frames {frames.shape[1:3]} and mask {mask.shape} must be at the module size {dims.height}x{dims.width}"
        )
    names = [name for name in ALL_MODULE_SPECS if name in modules]
    records: dict[str, list[InputSet]] = {name: [] for name in names}
    wrapped = {name: TorchAsModule(name, modules[name], records[name]) for name in names}
    machine = MattingStateMachine(wrapped, dims, MemoryConfig(mem_every=1, stagger_updates=1))
    no_pad = (0, 0, 0, 0)
    first = frame_to_input(frames[0], no_pad)
    machine.seed(first, mask_to_input(mask, no_pad))
    machine.step(first, first_frame_pred=True)
    for i in range(1, min(n, len(frames))):
        machine.step(frame_to_input(frames[i], no_pad))
    for variant, source in VARIANT_OF.items():
        # Every frame is a memory frame here, so an optional fast variant (mask_value) is never
        # called: give it the inputs its full module received.
        if variant in records and not records[variant] and records.get(source):
            wanted = ALL_MODULE_SPECS[variant].input_names
            records[variant] = [{k: call[k] for k in wanted} for call in records[source]]
    picked: dict[str, list[InputSet]] = {}
    for name, calls in records.items():
        if keep == "last":
            picked[name] = calls[-1:]
        else:
            picked[name] = [calls[0], calls[-1]] if len(calls) > 1 else list(calls)
    return picked


def golden_module_inputs(golden: Mapping[str, np.ndarray], dims: Dims) -> dict[str, list[InputSet]]:
    """Per-module inputs from ``modules_112x192.npz`` (the official model's own intermediate tensors).

    The file keeps the official layout (an object axis, rank-5 sensory memory, one memory frame);
    this maps it onto core.spec: the object axis is dropped, and the one-frame memory is placed in
    slot 0 of a ``dims.mem_frames``-slot buffer whose other slots are masked by ``mem_valid``.
    """
    sym = dims.symbols
    if (sym["H"], sym["W"]) != tuple(golden["encoder.image"].shape[-2:]):
        raise ValueError(f"golden modules are {golden['encoder.image'].shape[-2:]}, not {sym['H']}x{sym['W']}")

    def g(key: str) -> np.ndarray:
        value = np.asarray(golden[key], dtype=np.float32)
        if value.ndim == 5 and value.shape[:2] == (1, 1):  # (1, 1, C, h, w) -> (1, C, h, w)
            value = value[:, 0]
        if value.ndim == 5 and value.shape[:3] == (1, 1, 1):  # (1, 1, 1, Q, E) -> (1, Q, E)
            value = value[:, 0, 0]
        if value.ndim == 4 and value.shape[:2] == (1, 1) and key.endswith(("obj_summaries", "obj_memory")):
            value = value[:, 0]
        return np.ascontiguousarray(value)

    n = sym["N"]
    tokens = g("memory_read.mem_key").shape[-1]
    if tokens > n:
        raise ValueError(f"golden memory holds {tokens} tokens, more than T*h*w = {n}")

    def padded(value: np.ndarray, fill: float = 0.0) -> np.ndarray:
        out = np.full(value.shape[:-1] + (n,), fill, dtype=np.float32)
        out[..., :tokens] = value
        return out

    valid = np.zeros((1, n), dtype=np.float32)
    valid[:, :tokens] = 1.0
    return {
        "encoder": [{"image": g("encoder.image")}],
        "mask_encoder": [
            {
                "f1": g("encoder.f1"),
                "pix_feat": g("encoder.pix_feat"),
                "sensory": g("mask_encoder.sensory_in"),
                "mask": g("mask_encoder.masks"),
            }
        ],
        "read_first": [
            {
                "pix_feat": g("first_frame_readout.pix_feat"),
                "last_msk_value": g("first_frame_readout.last_msk_value"),
                "sensory": g("first_frame_readout.sensory"),
                "last_mask": g("first_frame_readout.last_mask"),
                "obj_memory": g("first_frame_readout.obj_memory"),
            }
        ],
        "read": [
            {
                "query_key": g("memory_read.query_key"),
                "query_selection": g("memory_read.selection"),
                "pix_feat": g("memory_read.pix_feat"),
                "last_pix_feat": g("memory_read.last_pix_feat"),
                "last_mask": g("memory_read.last_mask"),
                "last_msk_value": g("memory_read.last_msk_value"),
                "sensory": g("memory_read.sensory"),
                "mem_key": padded(g("memory_read.mem_key")),
                "mem_shrinkage": padded(g("memory_read.mem_shrinkage"), 1.0),
                "mem_value": padded(g("memory_read.mem_value")),
                "mem_valid": valid,
                "obj_memory": g("memory_read.obj_memory"),
            }
        ],
        "decoder": [
            {
                "f8": g("decoder.f8"),
                "f4": g("decoder.f4"),
                "f2": g("decoder.f2"),
                "f1": g("decoder.f1"),
                "mem_readout": g("memory_read.memory_readout"),
                "sensory": g("decoder.sensory_in"),
            }
        ],
    }


def reference_outputs(
    modules: Mapping[str, Any], input_sets: Mapping[str, Sequence[InputSet]], count_flops: bool = True
) -> tuple[dict[str, list[dict[str, np.ndarray]]], dict[str, int]]:
    """float32 outputs of every module on its input sets, and its FLOPs on the first set.

    FLOPs come from torch's ``FlopCounterMode`` (matmul/convolution/attention FLOPs, 2 per
    multiply-add); elementwise operations are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    outputs: dict[str, list[dict[str, np.ndarray]]] = {}
    flops: dict[str, int] = {}
    for name, sets in input_sets.items():
        outs = []
        for i, inputs in enumerate(sets):
            if i == 0 and count_flops:
                counter = FlopCounterMode(display=False)
                with counter:
                    outs.append(run_torch(modules[name], inputs, spec=ALL_MODULE_SPECS[name]))
                flops[name] = int(counter.get_total_flops())
            else:
                outs.append(run_torch(modules[name], inputs, spec=ALL_MODULE_SPECS[name]))
        outputs[name] = outs
    return outputs, flops


__all__ = [
    "OutputDrift",
    "TorchAsModule",
    "format_drift",
    "golden_module_inputs",
    "measure_drift",
    "recorded_inputs",
    "reference_outputs",
    "run_torch",
    "simulated_half",
    "synthetic_frames",
    "worst_drift",
]
