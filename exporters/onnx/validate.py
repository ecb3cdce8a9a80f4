"""Validation of exported ONNX modules against their PyTorch originals (optimum-style).

Each module file is run in ONNX Runtime (CPU provider, all graph optimisations on, as users run
it) on the same realistic inputs as the torch module, and every output is compared with a
tolerance chosen per output name (see ``TOLERANCES``). The first output outside its tolerance
raises ``ValidationError`` naming module, output, max and mean absolute error.

Tolerances, with ``s = max(1, peak |reference|)`` (core.manifest.Tolerance):

fp32 — conversion should be exact up to float reordering (ORT fuses conv+bias+relu, reorders
sums); measured on the real network at 64x96 (seeded weights, state-machine inputs): max error
<= 1e-6·s, mean <= 1.2e-7·s, so the bounds leave ~100x room:
    every output: atol 1e-4·s + rtol 1e-3, mean error <= 1e-5·s.
    mem_readout (read, read_first) additionally allows 0.1 % outlier elements: downstream of the
    top-k selection a near-tie can swap one memory token, which is a legitimate float difference.
fp16 — weights and activations rounded to 11 significant bits, errors accumulate through
ResNet depth; measured max <= 1.1e-3·s, mean <= 2e-4·s (mem_readout), so the bounds are
1e-2·s element-wise with 0.5 % outliers and mean <= 2e-3·s (mem_readout, logits: 2e-2·s, 1 %, 3e-3·s).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matanyone_engine.core.artifacts.manifest import (
    OutputCheck,
    Tolerance,
    ValidationError,
    check_module_outputs,
    summarize_checks,
)
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS

from .inputs import InputSet, TorchNumpyModule

FP32_DEFAULT = Tolerance(atol=1e-4, rtol=1e-3, mean_atol=1e-5)
FP16_DEFAULT = Tolerance(atol=1e-2, rtol=1e-2, mean_atol=2e-3, outlier_fraction=5e-3)

#: Per-output overrides, keyed "module.output" or "output"; anything absent uses the default.
TOLERANCES: dict[str, dict[str, Tolerance]] = {
    "fp32": {
        "mem_readout": Tolerance(atol=1e-4, rtol=1e-3, mean_atol=1e-5, outlier_fraction=1e-3),
    },
    "fp16": {
        "mem_readout": Tolerance(atol=2e-2, rtol=2e-2, mean_atol=3e-3, outlier_fraction=1e-2),
        "logits": Tolerance(atol=2e-2, rtol=2e-2, mean_atol=3e-3, outlier_fraction=5e-3),
    },
}


#: Above this many memory tokens (1080p with T=5 has 40,800) a near-tie at the k-th place is met
#: far more often: at 2160x3840 (162,000 tokens) 0.39 % of mem_readout elements came out of the
#: fp32 bound, mean error 1.4e-5·s, both from swapped tokens (max error 0.02·|peak|/13), not
#: from a wrong tile, which would be off by the values themselves on 1/79 of the frame.
MANY_MEMORY_TOKENS = 50_000
FP32_READOUT_MANY_TOKENS = Tolerance(atol=1e-4, rtol=1e-3, mean_atol=5e-5, outlier_fraction=1e-2)


def tolerances_for(module: str, precision: str, memory_tokens: int = 0) -> dict[str, Tolerance]:
    """The tolerance of every output of ``module`` at ``precision`` (``memory_tokens``: the read's N)."""
    table = TOLERANCES[precision]
    default = FP32_DEFAULT if precision == "fp32" else FP16_DEFAULT
    outputs = ALL_MODULE_SPECS[module].output_names
    chosen = {out: table.get(f"{module}.{out}", table.get(out, default)) for out in outputs}
    if precision == "fp32" and module == "read" and memory_tokens > MANY_MEMORY_TOKENS:
        chosen["mem_readout"] = FP32_READOUT_MANY_TOKENS
    return chosen


def cpu_session(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """An ORT CPU session with full graph optimisation — the configuration being validated."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.enable_cpu_mem_arena = False  # as the backend runs it (backends/onnx/runtime.py)
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_session(session: Any, module: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    spec = ALL_MODULE_SPECS[module]
    feeds = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in spec.input_names}
    outs = session.run(list(spec.output_names), feeds)
    return dict(zip(spec.output_names, outs, strict=False))


def validate_onnx_modules(
    directory: str | os.PathLike[str],
    torch_modules: Mapping[str, Any],
    input_sets: Mapping[str, Sequence[InputSet]],
    precision: str = "fp32",
    files: Mapping[str, str] | None = None,
    modules: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Compare every exported module with its torch module; raise ValidationError on a mismatch.

    Returns, per module, the worst errors per output over all input sets and the tolerances
    used: the manifest's ``validation`` record.
    """
    directory = Path(directory)
    if modules is None:
        modules = [n for n in ALL_MODULE_SPECS if n in torch_modules and (files is None or n in files)]
    files = files or {name: f"{name}.onnx" for name in modules}

    def load(name: str) -> RunModule:
        session = cpu_session(directory / files[name])
        return lambda inputs: run_session(session, name, inputs)

    return compare_with_torch(load, torch_modules, input_sets, precision, modules)


#: One exported module, run on named inputs (an ORT session, a Core ML program in an executor, ...).
RunModule = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def compare_with_torch(
    load: Callable[[str], RunModule],
    torch_modules: Mapping[str, Any] | None,
    input_sets: Mapping[str, Sequence[InputSet]],
    precision: str,
    modules: Sequence[str],
    references: Mapping[str, Sequence[Mapping[str, np.ndarray]]] | None = None,
) -> dict[str, Any]:
    """The validation loop every exporter shares: each module loaded by ``load(name)`` and run on
    its input sets, every output held to ``tolerances_for(module, precision)`` against the torch
    module (or against ``references``, torch outputs already computed for the same sets).

    Raises ValidationError (module, output, errors) at the first output out of tolerance.
    """
    report: dict[str, Any] = {}
    for name in modules:
        sets = list(input_sets[name])
        if not sets:
            raise ValidationError(name, "-", float("nan"), float("nan"), "no validation inputs for this module")
        wanted = list(references[name]) if references and references.get(name) else None
        if wanted is None:
            if torch_modules is None:
                raise ValueError(f"no torch module and no reference outputs for {name}")
            reference = TorchNumpyModule(ALL_MODULE_SPECS[name], torch_modules[name])
            # torch first, then the exported module: the two runs' working memory is never held at once
            wanted = [reference(**inputs) for inputs in sets]
        run = load(name)
        tol = tolerances_for(name, precision, int(sets[0]["mem_key"].shape[-1]) if "mem_key" in sets[0] else 0)
        checks: list[dict[str, OutputCheck]] = []
        for inputs, want in zip(sets, wanted, strict=True):
            checks.append(check_module_outputs(name, run(inputs), want, tol))
        del run, wanted
        report[name] = {"input_sets": len(sets), "outputs": summarize_checks(checks), "passed": True}
    return report
