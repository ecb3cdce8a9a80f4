"""Which reduced precisions are accurate enough: the golden-clip error each one was measured at.

The rule of ``--precision fast``: a precision is admissible only where its alpha error on the
golden clip (30 real frames at 224x400 through the official implementation in float32, seeded
weights, ``../shared/golden``) is within the error of the official demo's own CPU mode: the
official code itself under its bfloat16 CPU autocast (``official/bf16``, measured by
``benchmarks/official_reference_error.py``). Within means: a clip mean at most the reference's
(the headline measure), and a 99.9th percentile at most ``TAIL_ALLOWANCE`` times the reference's
(a guard against a precision that fails locally, with room for that statistic's spread: two
faithful bfloat16 runs of the same graph, the official code and this project's torch backend,
differ by 4 % in it).

``RECORDED`` is written by ``benchmarks/accuracy_table.py`` and checked against the golden clip
by ``tests/test_accuracy_table.py`` on every machine that can run the entry, so a kernel or graph
change that moves an error shows up as a failing test, not as a silently wrong ``fast``. Random
seeded weights amplify rounding through the top-k memory read far more than trained weights, so
the errors are large in absolute terms; what matters is the comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The official demo's CPU mode: every reduced precision is judged against its error.
REFERENCE = "official/bf16"
#: How far above the reference's 99.9th percentile an admissible precision's may be.
TAIL_ALLOWANCE = 1.10

# recorded:start -- written by benchmarks/accuracy_table.py; do not edit by hand
RECORDED: dict[str, dict[str, Any]] = {
    "official/bf16": {
        "max_abs": 0.298,
        "mean_abs": 0.0314,
        "measured_by": "benchmarks/official_reference_error.py",
        "measured_on": "AMD EPYC (avx512_bf16)",
        "p999_abs": 0.212,
    },
    "onnx-cpu/fp16": {
        "max_abs": 0.268,
        "mean_abs": 0.0142,
        "measured_on": "AMD EPYC (avx512_bf16)",
        "p999_abs": 0.194,
    },
    "openvino-cpu/bf16": {
        "max_abs": 0.271,
        "mean_abs": 0.0302,
        "measured_on": "AMD EPYC (avx512_bf16)",
        "p999_abs": 0.206,
    },
    "torch/bf16": {
        "max_abs": 0.306,
        "mean_abs": 0.0288,
        "measured_on": "AMD EPYC (avx512_bf16)",
        "p999_abs": 0.22,
    },
    "torch/fp16": {
        "max_abs": 0.251,
        "mean_abs": 0.0278,
        "measured_on": "AMD EPYC (avx512_bf16)",
        "p999_abs": 0.183,
    },
}
# recorded:end

#: Configurations this project cannot run (GPUs, the Neural Engine), judged by the record of the same
#: graph in the same number format on the CPU. Accumulation order and transcendental functions differ
#: on those devices; the reason printed for ``fast`` names the stand-in.
STANDS_FOR: Mapping[str, str] = {
    "torch-cuda/bf16": "torch/bf16",
    "torch-cuda/fp16": "torch/fp16",
    "onnx-cuda/fp16": "onnx-cpu/fp16",
    "onnx-coreml/fp16": "onnx-cpu/fp16",
    "coreml-gpu/fp16": "onnx-cpu/fp16",
    "coreml-ane/fp16": "onnx-cpu/fp16",
    "coreml-all/fp16": "onnx-cpu/fp16",
    "coreml-cpu/fp16": "onnx-cpu/fp16",
}


def key(backend: str, precision: str) -> str:
    return f"{backend}/{precision}"


def record(backend: str, precision: str) -> tuple[str, Mapping[str, Any]] | None:
    """(the key it was recorded under, the record) for this configuration, or None."""
    own = key(backend, precision)
    for candidate in (own, STANDS_FOR.get(own)):
        if candidate and candidate in RECORDED:
            return candidate, RECORDED[candidate]
    return None


def within_reference(entry: Mapping[str, Any], reference: Mapping[str, Any]) -> bool:
    """The clip mean at most the reference's, the 99.9th percentile within TAIL_ALLOWANCE of it."""
    return entry["mean_abs"] <= reference["mean_abs"] and entry["p999_abs"] <= reference["p999_abs"] * TAIL_ALLOWANCE


def admissible(backend: str, precision: str) -> tuple[bool, str]:
    """(whether ``fast`` may use this precision on this backend, the evidence in one phrase)."""
    if precision == "fp32":
        return True, "fp32 is the golden clip's own precision"
    reference = RECORDED.get(REFERENCE)
    found = record(backend, precision)
    if found is None or reference is None:
        return False, f"no golden-clip alpha error is recorded for {key(backend, precision)}"
    where, entry = found
    ok = within_reference(entry, reference)
    stand_in = "" if where == key(backend, precision) else f" (recorded for {where}, the same graph and format)"
    return ok, (
        f"golden-clip alpha error {entry['mean_abs']:.2g} mean, {entry['p999_abs']:.2g} p99.9{stand_in} "
        f"{'within' if ok else 'above'} the official CPU mode's {reference['mean_abs']:.2g} / "
        f"{reference['p999_abs']:.2g}"
    )
