"""Core ML backends: the five packages run by Apple's runtime on CPU, GPU or Neural Engine.

Four backends are registered, one per Core ML compute-unit setting:

    coreml-cpu  CPU_ONLY      coreml-gpu  CPU_AND_GPU
    coreml-ane  CPU_AND_NE    coreml-all  ALL (Core ML decides per operation)

Why a per-module override (``options["placement"]``, e.g. ``{"read": "cpu", "encoder": "ane"}``):
the modules have very different shapes of work — the encoder and decoder are convolution stacks
that suit the GPU / Neural Engine, the read module is a top-k attention over the memory that may
run better (or, on some OS versions, only correctly) on the CPU. The earlier iOS port shipped read
on CPU for exactly that reason. Placement values are cpu, gpu, ane or all.

The backends register on every OS but are available only on macOS 13+ with coremltools (the
runtime half of coremltools exists only on macOS); elsewhere ``available()`` says why and
``load()`` raises ``BackendUnavailable`` with that line. Packages come from the artifact cache
(exported on first use, through core/cache.py), or from ``options["artifacts"]``: a folder written
by ``matanyone export --format coreml`` (``run --models DIR``).

Packages are compiled for one size, so the backends declare ``fixed_size`` (432x768 unless the run
asks for another, ``--package-size``): the app then loads them at that size whatever the clip and
fits every clip to it (core/engine/geometry.py), returning the alpha at the clip's own size.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matanyone_engine.core.engine.errors import BackendError
from matanyone_engine.core.engine.protocol import BackendUnavailable, LoadRequest
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, VARIANT_OF, Dims, ModuleSpec

#: The one line every non-Mac machine gets from ``available()`` and ``load()``.
UNAVAILABLE_REASON = "CoreML runs only on macOS 13+"

#: Placement words -> coremltools.ComputeUnit member names.
COMPUTE_UNITS = {
    "cpu": "CPU_ONLY",
    "gpu": "CPU_AND_GPU",
    "ane": "CPU_AND_NE",
    "all": "ALL",
}
PRECISIONS = ("fp32", "fp16")
#: The packages' default input size (H, W): the earlier iOS port's landscape size, multiples of 16.
DEFAULT_PACKAGE_SIZE = (432, 768)


# ------------------------------------------------------------------------------------ platform


def macos_version() -> tuple[int, ...]:
    """(major, minor[, patch]) of macOS, or () on any other OS."""
    if sys.platform != "darwin":
        return ()
    raw = platform.mac_ver()[0]
    try:
        return tuple(int(p) for p in raw.split(".") if p)
    except ValueError:
        return ()


def coreml_status() -> tuple[bool, str]:
    """(True, "") where Core ML can run packages; otherwise (False, one-line reason).

    Non-macOS and macOS before 13 get ``UNAVAILABLE_REASON``. A Mac without coremltools (or with a
    build lacking its runtime extension) gets the install line instead — telling a Mac user that
    Core ML needs a Mac would send them the wrong way.
    """
    version = macos_version()
    if not version or version[0] < 13:
        return False, UNAVAILABLE_REASON
    from matanyone_engine.exporters.coreml.compat import coremltools_import_problem, quiet_import

    try:
        quiet_import("coremltools.libcoremlpython")  # the macOS-only runtime extension
    except ImportError as exc:
        return False, coremltools_import_problem(exc)
    return True, ""


# ----------------------------------------------------------------------------------- placement


def resolve_placement(default: str, placement: Mapping[str, str] | None) -> dict[str, str]:
    """Compute-unit word (cpu/gpu/ane/all) per module: ``default`` overridden by ``placement``.

    Covers the five modules and the optional fast variants (``mask_value``); a variant not placed
    explicitly follows its full module (``mask_value`` goes where ``mask_encoder`` goes). Raises
    BackendError naming the unknown module or value, so a typo never silently falls back.
    """
    if default not in COMPUTE_UNITS:
        raise BackendError(f"unknown compute unit {default!r}; use one of {', '.join(COMPUTE_UNITS)}")
    table = dict.fromkeys(ALL_MODULE_SPECS, default)
    if not placement:
        return table
    if not isinstance(placement, Mapping):
        raise BackendError(
            "CoreML placement must be a mapping of module to compute unit, e.g. {'read': 'cpu', 'encoder': 'ane'}"
        )
    for module, unit in placement.items():
        if module not in ALL_MODULE_SPECS:
            raise BackendError(
                f"unknown module {module!r} in CoreML placement; modules are {', '.join(ALL_MODULE_SPECS)}"
            )
        word = str(unit).strip().lower()
        if word not in COMPUTE_UNITS:
            raise BackendError(
                f"unknown compute unit {unit!r} for {module} in CoreML placement; use one of {', '.join(COMPUTE_UNITS)}"
            )
        table[module] = word
    for variant, source in VARIANT_OF.items():
        if variant not in placement and source in placement:
            table[variant] = table[source]
    return table


# -------------------------------------------------------------------------------------- module


class CoreMLModule:
    """One package behind the numpy Module protocol.

    Inputs are passed as contiguous float32; outputs are returned as contiguous float32 copies in
    the declared shape. Core ML may hand back arrays whose rows are padded for alignment (the
    GPU and Neural Engine do this); copying with ``np.ascontiguousarray`` of the array coremltools
    builds from the MLMultiArray's shape and strides reads only the logical elements, so the
    padding never leaks into the next module's input.
    """

    def __init__(
        self, spec: ModuleSpec, model: Any, dims: Dims, compute_unit: str, path: Path, flops: int | None = None
    ) -> None:
        self.spec = spec
        self.model = model
        self.dims = dims
        self.compute_unit = compute_unit
        self.path = path
        self.flops = flops  # counted at export time (the manifest), read by bench
        self._in_shapes = spec.input_shapes(dims)
        self._out_shapes = spec.output_shapes(dims)

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        missing = [n for n in self.spec.input_names if n not in inputs]
        if missing:
            raise BackendError(f"{self.spec.name}: missing inputs {', '.join(missing)}")
        feed = {}
        for name in self.spec.input_names:
            array = np.ascontiguousarray(inputs[name], dtype=np.float32)
            if array.shape != self._in_shapes[name]:
                raise BackendError(
                    f"{self.spec.name}: input {name} has shape {array.shape}, the package takes "
                    f"{self._in_shapes[name]} (packages are fixed-size; the app fits clips to them: "
                    "core/engine/geometry.py)"
                )
            feed[name] = array
        raw = self.model.predict(feed)
        return {
            name: to_float32(raw[name], self._out_shapes[name], f"{self.spec.name}.{name}")
            for name in self.spec.output_names
        }


def to_float32(value: Any, shape: tuple[int, ...], what: str = "output") -> np.ndarray:
    """A contiguous float32 copy of a Core ML output in ``shape`` (fp16 and strided outputs too)."""
    array = np.ascontiguousarray(np.asarray(value), dtype=np.float32)
    if array.shape != shape:
        if array.size != int(np.prod(shape)):
            raise BackendError(f"{what} came back with shape {array.shape}, expected {shape}")
        array = array.reshape(shape)
    return array


# ------------------------------------------------------------------------------------- backend


@dataclass
class CoreMLBackend:
    """A Core ML backend with one default compute unit (see the module docstring)."""

    name: str
    compute_unit: str  # cpu / gpu / ane / all
    description: str
    #: Packages have one input size: the app loads them at this (H, W), or the run's
    #: ``package_size``, and fits every clip to it.
    fixed_size: tuple[int, int] = DEFAULT_PACKAGE_SIZE
    options_help: Mapping[str, str] = field(
        default_factory=lambda: {
            "placement": "{module: cpu|gpu|ane|all} overrides the compute unit per module",
            "artifacts": "folder written by `matanyone export --format coreml` (package_dir: its old name)",
            "target": "deployment target for packages exported on first use (default macOS14)",
        }
    )
    #: What ``matanyone export --format`` writes for this backend (``run --models`` checks it).
    artifact_format = "coreml"

    def available(self) -> tuple[bool, str]:
        return coreml_status()

    @property
    def accelerated(self) -> bool:
        return self.compute_unit != "cpu"

    def fast_precision(self) -> tuple[str, str]:
        """fp16 wherever the GPU or Neural Engine may run it (the ANE computes only float16)."""
        if self.compute_unit == "cpu":
            return "fp32", "Core ML's CPU unit gains little from fp16"
        return "fp16", "the GPU and Neural Engine compute float16 natively"

    def devices(self) -> list[str]:
        ok, _ = self.available()
        return [COMPUTE_UNITS[self.compute_unit]] if ok else []

    def check_request(self, request: LoadRequest) -> None:
        """Refuse a request this backend cannot load here, before any package is read (coreml-sim too)."""
        ok, reason = self.available()
        if not ok:
            raise BackendUnavailable(reason)
        if request.precision not in PRECISIONS:
            raise BackendError(f"backend {self.name} offers precision fp32 or fp16, not {request.precision!r}")

    def load(self, request: LoadRequest) -> dict[str, CoreMLModule]:
        self.check_request(request)
        placement = resolve_placement(self.compute_unit, request.options.get("placement"))
        directory = locate_packages(request)

        from matanyone_engine.core.artifacts.manifest import read_manifest
        from matanyone_engine.exporters.coreml.compat import import_coremltools

        ct = import_coremltools()
        manifest = read_manifest(directory)
        available = manifest.files  # the five, plus any exported fast variant
        modules: dict[str, CoreMLModule] = {}
        for name in [n for n in ALL_MODULE_SPECS if n in available]:
            path = directory / available[name]
            unit = placement[name]
            try:
                model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, COMPUTE_UNITS[unit]))
            except Exception as exc:
                raise BackendError(
                    f"Core ML could not load {path} on {unit} ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:160]}); "
                    "delete the package directory to re-export, or place the module on another unit"
                ) from None
            flops = manifest.flops.get(name)
            modules[name] = CoreMLModule(ALL_MODULE_SPECS[name], model, request.dims, unit, path, flops)
        return modules


def locate_packages(request: LoadRequest) -> Path:
    """The directory holding the five packages for ``request``, exporting them if needed.

    ``options["artifacts"]`` (or its old name ``package_dir``): use that directory, after checking
    its manifest against the request (format, size, T, precision, weights). Otherwise the artifact
    cache of core/cache.py, which exports on first use (a few minutes) and reuses afterwards.
    """
    from matanyone_engine.core.artifacts.manifest import check_manifest, read_manifest
    from matanyone_engine.exporters.coreml.exporter import CoreMLExporter

    given = request.options.get("artifacts") or request.options.get("package_dir")
    if given:
        directory = Path(given).expanduser()
        manifest = read_manifest(directory)
        # No ``directory=`` here: check_manifest tests files with is_file(), and an .mlpackage is
        # a directory. Presence is checked below instead.
        check_manifest(
            manifest,
            format="coreml",
            dims=request.dims,
            precision=request.precision,
            weights=request.weights,
        )
        missing = [f for f in manifest.files.values() if not (directory / f).exists()]
        if missing:
            raise BackendError(f"{directory} lacks {', '.join(missing)}; export the packages again")
        return directory
    target = request.options.get("target", "macOS14")
    return CoreMLExporter().ensure(request.weights, request.dims, request.precision, target)


BACKENDS = (
    CoreMLBackend("coreml-cpu", "cpu", "Core ML on the CPU (macOS 13+)"),
    CoreMLBackend("coreml-gpu", "gpu", "Core ML on the CPU and GPU (macOS 13+)"),
    CoreMLBackend("coreml-ane", "ane", "Core ML on the CPU and Neural Engine (macOS 13+)"),
    CoreMLBackend("coreml-all", "all", "Core ML, every compute unit, chosen per operation (macOS 13+)"),
)


__all__ = [
    "BACKENDS",
    "COMPUTE_UNITS",
    "DEFAULT_PACKAGE_SIZE",
    "CoreMLBackend",
    "CoreMLModule",
    "UNAVAILABLE_REASON",
    "coreml_status",
    "locate_packages",
    "macos_version",
    "resolve_placement",
    "to_float32",
]
