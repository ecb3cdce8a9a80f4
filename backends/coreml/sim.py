"""``coreml-sim``: the exported Core ML packages run by the reference MIL executor, on any OS.

A simulation, not Apple's runtime: the programs are the very ``.mlpackage`` files a Mac would load
(the same export, cache and manifest as coreml-cpu/-gpu/-ane/-all), evaluated by
backends/coreml/mil with the MIL op reference's semantics. ``fp32`` runs the fp32 packages as
declared; ``fp16`` runs the fp16 packages with every activation stored in float16, as the GPU and
Neural Engine hold them. What this proves and what it cannot: docs/coreml-sim.md.

It is a ``CoreMLBackend`` (same packages, same fixed-size modules, same options except the compute
unit), so whatever fits frames to the Core ML packages (backends/coreml/clip.py, the app's
fixed-size wiring) applies to it unchanged.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from matanyone_engine.core.engine.errors import BackendError
from matanyone_engine.core.engine.protocol import LoadRequest
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS
from matanyone_engine.exporters.coreml.compat import MISSING_COREMLTOOLS

from .backend import CoreMLBackend, CoreMLModule, locate_packages
from .mil.executor import Activations

SIM_BACKEND = "coreml-sim"
#: What the modules report as their compute unit: no Core ML unit is involved.
SIM_UNIT = "sim"
MISSING_TORCH = "coreml-sim runs convolutions with torch's CPU kernel; pip install torch==2.13.0 (the CPU build)"


class ExecutorModel:
    """The reference executor behind coremltools' ``MLModel.predict`` shape, so ``CoreMLModule``
    (input checks, float32 outputs) serves both the real runtime and the simulation."""

    def __init__(self, path: Path, activations: Activations) -> None:
        from .mil import Executor, load_program

        self.path = path
        self.executor = Executor(load_program(path), activations=activations)

    def predict(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.executor.run(feed)


def sim_status() -> tuple[bool, str]:
    """(True, "") where the executor can run the packages: coremltools (to read them) and torch."""
    if importlib.util.find_spec("coremltools") is None:
        return False, MISSING_COREMLTOOLS
    if importlib.util.find_spec("torch") is None:
        return False, MISSING_TORCH
    return True, ""


@dataclass
class CoreMLSimBackend(CoreMLBackend):
    """The packages through backends/coreml/mil: float32 as declared, or fp16 packages with float16 storage."""

    #: Read by core.bench: a simulation is for checking exports, never part of a default speed table.
    simulated: ClassVar[bool] = True

    name: str = SIM_BACKEND
    compute_unit: str = "cpu"
    description: str = (
        "Core ML packages run by this project's reference MIL executor on the CPU "
        "(a simulation for checking exports, not Apple's runtime; any OS)"
    )
    options_help: Mapping[str, str] = field(
        default_factory=lambda: {
            "package_dir": "directory of already-exported packages (with manifest.json)",
            "target": "deployment target for packages exported on first use (default macOS14)",
        }
    )

    def available(self) -> tuple[bool, str]:
        return sim_status()

    @property
    def accelerated(self) -> bool:
        return False

    def fast_precision(self) -> tuple[str, str]:
        return "fp32", "the simulation computes in float32; fp16 only models the device's storage"

    def devices(self) -> list[str]:
        ok, _ = self.available()
        return ["cpu (simulated Core ML)"] if ok else []

    def load(self, request: LoadRequest) -> dict[str, CoreMLModule]:
        self.check_request(request)
        if request.options.get("placement"):
            raise BackendError(
                f"backend {self.name} has no compute units to place modules on; drop the placement "
                "(or use coreml-cpu/-gpu/-ane/-all on a Mac)"
            )
        from matanyone_engine.core.artifacts.manifest import read_manifest

        from .mil import kernels

        kernels.set_threads(request.threads)
        directory = locate_packages(request)
        activations: Activations = "float16" if request.precision == "fp16" else "declared"
        available = read_manifest(directory).files
        modules: dict[str, CoreMLModule] = {}
        for name in [n for n in ALL_MODULE_SPECS if n in available]:
            path = directory / available[name]
            model: Any = ExecutorModel(path, activations)
            modules[name] = CoreMLModule(ALL_MODULE_SPECS[name], model, request.dims, SIM_UNIT, path)
        return modules


SIM_BACKENDS = (CoreMLSimBackend(),)

__all__ = ["SIM_BACKEND", "SIM_BACKENDS", "CoreMLSimBackend", "ExecutorModel", "sim_status"]
