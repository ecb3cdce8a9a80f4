"""Which device Core ML will run each operation of a package on (MLComputePlan, macOS 14.4+).

Why: choosing a per-module placement (backend.py) by timing alone hides *why* a module is slow on
the Neural Engine — usually a handful of operations the ANE does not support that bounce the
whole graph back to the CPU. Core ML's compute plan says, per operation, the preferred device, the
devices that could run it, and its estimated share of the cost. Elsewhere (Linux, older macOS)
the report says it was skipped and why, instead of raising, so callers can print it anywhere.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .backend import COMPUTE_UNITS, coreml_status, macos_version

#: MLComputePlan appeared in macOS 14.4 (and coremltools 8).
MIN_MACOS = (14, 4)


@dataclass
class OperationPlacement:
    """One operation of the program and where Core ML plans to run it."""

    function: str
    index: int
    operator: str
    outputs: list[str]
    preferred: str  # cpu / gpu / ane / unknown
    supported: list[str]
    cost: float | None


@dataclass
class ComputePlanReport:
    """The per-operation plan of one package, with totals per device."""

    package: str
    compute_units: str
    available: bool
    reason: str = ""
    operations: list[OperationPlacement] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Operations per preferred device."""
        return dict(Counter(op.preferred for op in self.operations))

    @property
    def cost_share(self) -> dict[str, float]:
        """Estimated share of the cost per preferred device (sums to about 1)."""
        shares: dict[str, float] = defaultdict(float)
        for op in self.operations:
            if op.cost is not None:
                shares[op.preferred] += op.cost
        return dict(shares)

    def fallbacks(self, device: str = "ane") -> list[OperationPlacement]:
        """Operations that cannot run on ``device`` at all (what keeps a module off the ANE)."""
        return [op for op in self.operations if device not in op.supported]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = self.counts
        data["cost_share"] = self.cost_share
        return data

    def summary(self) -> str:
        if not self.available:
            return f"{self.package}: compute plan skipped ({self.reason})"
        parts = ", ".join(
            f"{dev} {n} ops ({self.cost_share.get(dev, 0.0):.0%} of cost)" for dev, n in sorted(self.counts.items())
        )
        return f"{self.package} [{self.compute_units}]: {parts}"


def compute_plan_supported() -> tuple[bool, str]:
    """(True, "") on macOS 14.4+ with coremltools' runtime; else (False, reason)."""
    ok, reason = coreml_status()
    if not ok:
        return False, reason
    if macos_version()[:2] < MIN_MACOS:
        return False, "MLComputePlan needs macOS 14.4+"
    try:
        from coremltools.models.compute_plan import MLComputePlan  # noqa: F401
    except Exception:
        return False, "this coremltools has no MLComputePlan; pip install 'coremltools>=8'"
    return True, ""


def coreml_compute_plan_report(package_path: str | Path, compute_units: str = "all") -> ComputePlanReport:
    """Per-operation preferred device of the package at ``package_path`` for ``compute_units``.

    ``compute_units`` is a placement word (cpu/gpu/ane/all) or a coremltools ComputeUnit name
    (CPU_ONLY, CPU_AND_GPU, CPU_AND_NE, ALL). Returns a report with ``available=False`` and the
    reason where MLComputePlan cannot run (anything but macOS 14.4+).
    """
    package_path = Path(package_path)
    unit_name = COMPUTE_UNITS.get(str(compute_units).lower(), str(compute_units).upper())
    if unit_name not in COMPUTE_UNITS.values():
        raise ValueError(f"unknown compute units {compute_units!r}; use cpu, gpu, ane or all")
    ok, reason = compute_plan_supported()
    report = ComputePlanReport(str(package_path), unit_name, ok, reason)
    if not ok:
        return report

    from matanyone_engine.exporters.coreml.compat import import_coremltools

    ct = import_coremltools()
    from coremltools.models.compute_plan import MLComputePlan

    compiled = ct.utils.compile_model(str(package_path)) if package_path.suffix == ".mlpackage" else str(package_path)
    plan = MLComputePlan.load_from_path(path=str(compiled), compute_units=getattr(ct.ComputeUnit, unit_name))
    program = plan.model_structure.program
    if program is None:
        report.available = False
        report.reason = "not an ML Program"
        return report
    for function_name, function in program.functions.items():
        counter = [0]
        _walk_block(plan, function_name, function.block, report.operations, counter)
    return report


def _walk_block(plan: Any, function: str, block: Any, out: list[OperationPlacement], counter: list[int]) -> None:
    for operation in block.operations:
        if operation.operator_name == "const":
            continue  # constants are not scheduled on a device
        usage = plan.get_compute_device_usage_for_mlprogram_operation(operation)
        cost = plan.get_estimated_cost_for_mlprogram_operation(operation)
        out.append(
            OperationPlacement(
                function=function,
                index=counter[0],
                operator=operation.operator_name,
                outputs=[o.name for o in operation.outputs],
                preferred=_device_word(usage.preferred_compute_device) if usage else "unknown",
                supported=[_device_word(d) for d in usage.supported_compute_devices] if usage else [],
                cost=float(cost.weight) if cost is not None else None,
            )
        )
        counter[0] += 1
        for nested in operation.blocks:
            _walk_block(plan, function, nested, out, counter)


def _device_word(device: Any) -> str:
    """coremltools' MLCPUComputeDevice / MLGPUComputeDevice / MLNeuralEngineComputeDevice -> cpu/gpu/ane."""
    kind = type(device).__name__
    if "NeuralEngine" in kind:
        return "ane"
    if "GPU" in kind:
        return "gpu"
    if "CPU" in kind:
        return "cpu"
    return kind


__all__ = [
    "ComputePlanReport",
    "OperationPlacement",
    "compute_plan_supported",
    "coreml_compute_plan_report",
]
