"""OpenVINO backends for matanyone-engine: ``openvino-cpu`` and ``openvino-gpu``.

This package is a third-party plugin written only against matanyone-engine's public surface:
the ``register_backends`` hook, the Backend / Module protocols (core.protocol), the module
declaration (core.spec), the manifest (core.manifest) and the ONNX exporter's artifact cache. It
exports nothing itself: OpenVINO reads ONNX directly, so the backend asks the engine's ONNX
exporter for the cached fp32 artifact set of the requested size (building it once, with PyTorch,
when it is missing) and compiles those five files with ``openvino.Core().compile_model``.

Precision is an OpenVINO runtime hint, not a property of the files: ``fp32`` compiles with
INFERENCE_PRECISION_HINT=f32, which matters because OpenVINO otherwise picks bf16 by itself on
CPUs with AMX/AVX-512-BF16 and the matte would drift from the reference; ``bf16`` asks for it
explicitly and is refused, with the reason, on CPUs that cannot do it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from matanyone_engine.core import hookimpl
from matanyone_engine.core.artifacts.manifest import check_manifest, read_manifest
from matanyone_engine.core.engine import spec as core_spec
from matanyone_engine.core.engine.errors import BackendError
from matanyone_engine.core.engine.protocol import BackendUnavailable, LoadRequest
from matanyone_engine.core.engine.spec import MODULE_NAMES, Dims, ModuleSpec

#: LoadRequest.precision -> OpenVINO element type name for INFERENCE_PRECISION_HINT.
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
#: Optional module variants (e.g. a shallow mask encoder) an artifact set may carry besides the five.
_ALL_SPECS: Mapping[str, ModuleSpec] = getattr(core_spec, "ALL_MODULE_SPECS", core_spec.MODULE_SPECS)


@lru_cache(maxsize=1)
def _core() -> Any:
    """One OpenVINO Core per process: creating it probes every device plugin, which is not free."""
    import openvino as ov

    return ov.Core()


def _matching_devices(device: str) -> list[str]:
    """OpenVINO device ids of a kind: "GPU" matches "GPU", "GPU.0", "GPU.1", ..."""
    return [d for d in _core().available_devices if d == device or d.startswith(device + ".")]


class OpenVinoModule:
    """One compiled module behind the numpy Module protocol.

    Inputs are handed to OpenVINO without a copy (``share_inputs``, safe because inference is
    synchronous); outputs are copied out, because the infer request reuses its output buffers on
    the next call while the state machine keeps earlier outputs (sensory memory, mask values).
    One infer request per module: the state machine calls modules one at a time.
    """

    def __init__(self, spec: ModuleSpec, compiled: Any):
        self.spec = spec
        self.compiled = compiled
        self._request = compiled.create_infer_request()
        self._outputs = [compiled.output(name) for name in spec.output_names]

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        missing = [n for n in self.spec.input_names if n not in inputs]
        if missing:
            raise BackendError(f"openvino module {self.spec.name} called without {', '.join(missing)}")
        feed = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self.spec.input_names}
        results = self._request.infer(feed, share_inputs=True)
        return {name: results[port] for name, port in zip(self.spec.output_names, self._outputs, strict=False)}


def _check_interface(compiled: Any, spec: ModuleSpec, dims: Dims, path: Path) -> None:
    """The compiled graph must take and give exactly core.spec's tensors, or the matte is garbage."""
    inputs = {p.get_any_name(): tuple(p.get_partial_shape().to_shape()) for p in compiled.inputs}
    outputs = {p.get_any_name(): tuple(p.get_partial_shape().to_shape()) for p in compiled.outputs}
    if inputs != spec.input_shapes(dims) or outputs != spec.output_shapes(dims):
        raise BackendError(
            f"{path} does not match core.spec's {spec.name} for {dims.height}x{dims.width} T={dims.mem_frames} "
            f"(inputs {inputs}, outputs {outputs}); delete the artifact directory and export again"
        )


def _stderr_log(message: str) -> None:
    """Exports take minutes on first use of a size; say so instead of hanging silently."""
    print(f"matanyone-openvino: {message}", file=sys.stderr, flush=True)


def onnx_artifacts(request: LoadRequest) -> Path:
    """The fp32 ONNX artifact directory for ``request`` from the engine's cache (built if absent).

    Options follow the engine's onnx backends so one ``options`` mapping serves both:
    ``artifacts`` points at a set exported beforehand (``matanyone export -f onnx``), still checked
    against the request's size, memory length and weights; ``log`` receives progress lines
    (default: stderr, because a first export of a size takes minutes; pass None for silence).
    Always fp32: reduced precision is OpenVINO's runtime hint, applied at compile time.
    """
    options = request.options
    given = options.get("artifacts")
    if given:
        directory = Path(given).expanduser()
        check_manifest(
            read_manifest(directory),
            format="onnx",
            dims=request.dims,
            precision="fp32",
            weights=request.weights,
            directory=directory,
        )
        return directory
    try:
        from matanyone_engine.exporters.onnx import OnnxExporter
    except ImportError as exc:
        raise BackendUnavailable(
            f"openvino backends run the engine's ONNX export, which is not importable ({exc}); "
            "install matanyone-engine with its onnx extra"
        ) from None
    log: Callable[[str], None] | None = options["log"] if "log" in options else _stderr_log
    return OnnxExporter().ensure(request.weights, request.dims, "fp32", log=log)


@dataclass
class OpenVinoBackend:
    """An OpenVINO device as a matanyone backend (``device`` is an OpenVINO device kind)."""

    name: str
    device: str
    description: str

    def available(self) -> tuple[bool, str]:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False, "OpenVINO is not installed (pip install openvino)"
        try:
            devices = _matching_devices(self.device)
        except Exception as exc:  # a broken driver must not break `matanyone backends`
            return False, f"OpenVINO could not list devices: {exc}"
        if not devices:
            seen = ", ".join(_core().available_devices) or "none"
            hint = " (an Intel GPU with its compute runtime)" if self.device == "GPU" else ""
            return False, f"OpenVINO sees no {self.device} device{hint}; it sees: {seen}"
        return True, ""

    def devices(self) -> list[str]:
        """Human-readable names of the devices this backend would use, for `matanyone backends`."""
        ok, _ = self.available()
        if not ok:
            return []
        core = _core()
        return [f"{d}: {core.get_property(d, 'FULL_DEVICE_NAME')}" for d in _matching_devices(self.device)]

    def fast_precision(self) -> tuple[str, str]:
        """What ``--precision fast`` takes here: bf16 where OpenVINO reports bfloat16 support on the
        CPU (AMX or AVX512-BF16), else fp32. The engine keeps it only where its accuracy record
        admits it."""
        if self.device != "CPU":
            return "fp32", f"{self.name} offers fp32 only"
        try:
            capabilities = list(_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        except Exception as exc:  # a broken runtime must not break the choice; fp32 always works
            return "fp32", f"OpenVINO could not report the CPU's capabilities ({exc})"
        if "BF16" in capabilities:
            return "bf16", "OpenVINO reports bfloat16 support on this CPU"
        return "fp32", "OpenVINO reports no bfloat16 support on this CPU"

    def compile_config(self, request: LoadRequest) -> dict[str, Any]:
        """OpenVINO properties for ``request``; refuses precisions this device cannot run."""
        if request.precision not in PRECISIONS:
            raise BackendUnavailable(
                f"backend {self.name} does not offer precision {request.precision!r}; use one "
                f"of {', '.join(PRECISIONS)}"
            )
        if request.precision == "bf16":
            if self.device != "CPU":
                raise BackendUnavailable(f"backend {self.name} offers bf16 on the CPU only; use openvino-cpu or fp32")
            capabilities = list(_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
            if "BF16" not in capabilities:
                raise BackendUnavailable(
                    f"backend {self.name}: this CPU has no bfloat16 support (OpenVINO reports "
                    f"{', '.join(capabilities)}); "
                    "use --precision fp32"
                )
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": PRECISIONS[request.precision],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if request.threads and self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(request.threads)
        return config

    def load(self, request: LoadRequest) -> dict[str, OpenVinoModule]:
        ok, reason = self.available()
        if not ok:
            raise BackendUnavailable(f"backend {self.name} cannot run here: {reason}")
        config = self.compile_config(request)  # before the export: a bad precision fails fast
        directory = onnx_artifacts(request)
        manifest = read_manifest(directory)
        core = _core()
        modules: dict[str, OpenVinoModule] = {}
        for name, filename in manifest.files.items():
            if name not in _ALL_SPECS:
                continue
            path = directory / filename
            try:
                compiled = core.compile_model(str(path), self.device, config)
            except Exception as exc:
                raise BackendError(f"OpenVINO could not compile {path} for {self.device}: {exc}") from None
            _check_interface(compiled, _ALL_SPECS[name], request.dims, path)
            modules[name] = OpenVinoModule(_ALL_SPECS[name], compiled)
        missing = [n for n in MODULE_NAMES if n not in modules]
        if missing:
            raise BackendError(f"artifact set {directory} lacks {', '.join(missing)}; delete it and export again")
        return modules


BACKENDS = (
    OpenVinoBackend("openvino-cpu", "CPU", "OpenVINO runtime on the CPU (runs the ONNX export; fp32 or bf16)"),
    OpenVinoBackend("openvino-gpu", "GPU", "OpenVINO runtime on an Intel GPU (runs the ONNX export; fp32)"),
)


@hookimpl
def register_backends(register: Callable[[Any], None]) -> None:
    """Both backends are always registered; ``available()`` says why one cannot run here."""
    for backend in BACKENDS:
        register(backend)
