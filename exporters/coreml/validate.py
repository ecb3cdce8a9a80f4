"""Numeric validation of exported Core ML packages on any OS: each package run by the reference
MIL executor (backends/coreml/mil) against the PyTorch module, on inputs recorded from a short run
of the state machine.

Why: the static checks (checks.py) see names, shapes, ranks and op types, but not whether the
program computes the network — a conv weight stored transposed, an attribute read wrongly, a
resize with other corner rules all pass them. Running the very package Core ML would load is the
check that catches these, and it runs on Linux CI too. On macOS the exporter additionally runs
the packages on Apple's runtime (exporter.py).

The comparison loop and the per-output tolerances are the ONNX exporter's
(exporters/onnx/validate.py ``compare_with_torch`` / ``tolerances_for``): fp32 packages are held to
float-reordering error, fp16 packages — run with every activation stored in float16 — to the fp16
bounds. A mismatch raises ``CoreMLValidationError`` (a ``ValidationError``) naming the module,
the output and the errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from matanyone_engine.core.artifacts.manifest import ValidationError

if TYPE_CHECKING:
    from matanyone_engine.backends.coreml.mil.executor import Activations

from .checks import CoreMLExportError

EXECUTOR = "backends/coreml/mil (the reference MIL executor)"


class CoreMLValidationError(ValidationError):
    """A package whose outputs, run by the reference executor, differ from PyTorch's beyond tolerance."""


def activations_for(precision: str) -> Activations:
    """fp16 packages run with float16 activation storage (the GPU / Neural Engine's), fp32 as declared."""
    return "float16" if precision == "fp16" else "declared"


def validate_packages(
    directory: str | Path,
    files: Mapping[str, str],
    precision: str,
    input_sets: Mapping[str, Sequence[Mapping[str, np.ndarray]]],
    *,
    references: Mapping[str, Sequence[Mapping[str, np.ndarray]]] | None = None,
    torch_modules: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every package of ``files`` ({module: package file}) in ``directory`` through the executor
    on its input sets and compare with ``references`` (or the ``torch_modules``' outputs).

    Returns the manifest record; raises CoreMLValidationError on a mismatch, and a
    CoreMLExportError (naming the module) when the executor cannot run a package at all.
    """
    from matanyone_engine.backends.coreml.mil import Executor, MilError, load_program
    from matanyone_engine.exporters.onnx.validate import compare_with_torch

    directory = Path(directory)
    activations = activations_for(precision)

    def load(name: str) -> Any:
        try:
            executor = Executor(load_program(directory / files[name]), activations=activations)
        except MilError as exc:
            raise CoreMLExportError(name, f"the reference executor cannot run the package ({exc})") from None

        def run(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            try:
                return executor.run(inputs)
            except MilError as exc:
                raise CoreMLExportError(name, f"running the package failed ({exc})") from None

        return run

    modules = [name for name in files if name in input_sets]
    try:
        report = compare_with_torch(load, torch_modules, input_sets, precision, modules, references)
    except CoreMLValidationError:
        raise
    except ValidationError as exc:
        detail = f"{files.get(exc.module, exc.module)} run by the reference MIL executor, {precision}"
        if exc.detail:
            detail = f"{exc.detail}; {detail}"
        raise CoreMLValidationError(exc.module, exc.output, exc.max_abs, exc.mean_abs, detail) from None
    return {"executor": EXECUTOR, "activations": activations, "modules": report}


__all__ = ["EXECUTOR", "CoreMLValidationError", "activations_for", "validate_packages"]
