"""ONNX Runtime backends: the five exported modules behind the numpy Module protocol.

One backend per execution provider (CPU, CUDA, CoreML, OpenVINO). All are registered on every
machine so `matanyone backends` can say why one cannot run; ``available()`` only asks
onnxruntime which providers its build has, it never loads a model.

``load()`` takes artifacts from ``request.options["artifacts"]`` (a folder written by ``matanyone
export --format onnx``, checked against the request: ``run --models DIR``) or from the artifact
cache, exporting them first when absent (which needs torch; a folder does not).
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from matanyone_engine.core.artifacts.manifest import Manifest, check_manifest, read_manifest
from matanyone_engine.core.engine.errors import BackendError, is_out_of_memory, out_of_memory
from matanyone_engine.core.engine.files import atomic_write
from matanyone_engine.core.engine.protocol import BackendUnavailable, LoadRequest
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, Dims, ModuleSpec

PRECISIONS = ("fp32", "fp16")

#: See OrtBackend.memory_profile. Per module from benchmarks/memory_modules.py at 1088x1920; the
#: decoder's figure (the largest step) is raised so that the estimate covers the measured peak of
#: whole runs (benchmarks/large_sizes.py: 3.0 GB at 1088x1920, 10.9 GB at 2160x3840), which hold
#: more than the sum of the parts measured alone.
ORT_CPU_MEMORY: dict[str, Any] = {
    "fixed_mb": 500,
    "per_pixel": {
        "encoder": 330,
        "mask_encoder": 80,
        "mask_value": 80,
        "read_first": 50,
        "read": 60,
        "decoder": 860,
    },
    "per_tile": {"read": 1.2},
}

#: ``options["compute_units"]`` for onnx-coreml, mapped to the CoreML EP's MLComputeUnits.
COREML_COMPUTE_UNITS = {
    "all": "ALL",
    "cpu_only": "CPUOnly",
    "cpu_and_gpu": "CPUAndGPU",
    "cpu_and_ne": "CPUAndNeuralEngine",
}

#: What to install when a provider is missing from the onnxruntime build.
_PROVIDER_HINTS = {
    "CUDAExecutionProvider": "install onnxruntime-gpu (and a matching CUDA/cuDNN) instead of onnxruntime",
    "CoreMLExecutionProvider": "needs macOS with the standard onnxruntime wheel",
    "OpenVINOExecutionProvider": "install onnxruntime-openvino instead of onnxruntime",
    "CPUExecutionProvider": "reinstall onnxruntime",
}


def default_threads() -> int:
    """Intra-op threads: one per physical core this process may use.

    ORT's own default counts logical CPUs of the whole machine; in containers and under CPU
    affinity that oversubscribes, and hyper-threads add little to convolution throughput. psutil
    (a runtime dependency) is the only portable count of physical cores; ``os.cpu_count`` counts
    hyper-threads.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows): the whole machine is usable
        usable = os.cpu_count() or 1
    logical = os.cpu_count() or usable
    physical = psutil.cpu_count(logical=False)
    if not physical or physical <= 0:  # psutil cannot tell on this platform: one per usable CPU
        return max(1, usable)
    per_core = max(1, round(logical / physical))  # hyper-threads per core
    return max(1, min(physical, usable // per_core or 1))


class OrtModule:
    """One exported module: ``outputs = module(**inputs)`` over an ORT InferenceSession.

    Per call it only checks dtype/contiguity/shape (cheap attribute reads) and hands the arrays
    to ``session.run``, which wraps contiguous float32 CPU arrays without copying.
    """

    def __init__(self, spec: ModuleSpec, session: Any, dims: Dims, flops: int | None = None):
        self.spec = spec
        self.session = session
        self.flops = flops  # counted at export time (the manifest), read by bench
        self._inputs = tuple((t.name, t.resolve(dims)) for t in spec.inputs)
        self._output_names = list(spec.output_names)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        for name, shape in self._inputs:
            try:
                x = inputs[name]
            except KeyError:
                missing = [n for n, _ in self._inputs if n not in inputs]
                raise BackendError(f"{self.spec.name}: missing inputs {', '.join(missing)}") from None
            if x.dtype != np.float32 or not x.flags.c_contiguous:
                x = np.ascontiguousarray(x, dtype=np.float32)
            if x.shape != shape:
                raise BackendError(f"{self.spec.name}.{name} has shape {x.shape}, the loaded artifacts expect {shape}")
            feeds[name] = x
        try:
            outputs = self.session.run(self._output_names, feeds)
        except Exception as exc:  # onnxruntime raises its own types; only allocation failures are ours
            if is_out_of_memory(exc):
                raise out_of_memory(self.spec.name, self._inputs[0][1]) from None
            raise
        return dict(zip(self._output_names, outputs, strict=False))


@dataclass
class OrtBackend:
    """An ONNX Runtime backend bound to one execution provider."""

    name: str
    provider: str
    description: str
    #: What ``matanyone export --format`` writes for this backend (``run --models`` checks it).
    artifact_format = "onnx"

    def available(self) -> tuple[bool, str]:
        try:
            import onnxruntime as ort
        except ImportError:
            return False, "onnxruntime is not installed (pip install 'matanyone-engine[onnx]')"
        providers = ort.get_available_providers()
        if self.provider not in providers:
            hint = _PROVIDER_HINTS.get(self.provider, "")
            return False, (f"{self.provider} is not in this onnxruntime build (it has {', '.join(providers)}); {hint}")
        return True, ""

    @property
    def accelerated(self) -> bool:
        return self.provider != "CPUExecutionProvider"

    @property
    def memory_profile(self) -> dict[str, Any] | None:
        """Working memory of each module call on the CPU provider (no arena), for the app's
        up-front estimate (core/app/memory.py): bytes per padded pixel, and for the read a multiple
        of its largest tile's similarity. Measured with benchmarks/memory_modules.py at 1088x1920
        and 2160x3840. Other providers keep their working memory on their device: none declared."""
        if self.provider != "CPUExecutionProvider":
            return None
        return dict(ORT_CPU_MEMORY)

    def fast_precision(self) -> tuple[str, str]:
        """fp16 on GPU providers; fp32 on the CPU, where both lower precisions lost when measured
        (benchmarks/run_table.py and the closing notes): fp16 weights run slower than fp32 in
        ORT's CPU kernels, and calibrated int8 (QDQ) doubled the bf16 autocast's alpha error."""
        if self.provider in ("CUDAExecutionProvider", "CoreMLExecutionProvider"):
            return "fp16", "the GPU computes float16 natively"
        return "fp32", "on the CPU fp16 runs slower than fp32 and int8 exceeds the bf16 autocast's error"

    def devices(self) -> list[str]:
        ok, _ = self.available()
        if not ok:
            return []
        if self.provider == "CPUExecutionProvider":
            return [f"cpu ({platform.machine()}, {default_threads()} threads)"]
        return [self.provider.replace("ExecutionProvider", "")]

    def load(self, request: LoadRequest) -> dict[str, OrtModule]:
        ok, reason = self.available()
        if not ok:
            raise BackendUnavailable(f"backend {self.name} cannot run here: {reason}")
        if request.precision not in PRECISIONS:
            raise BackendUnavailable(
                f"backend {self.name} does not offer precision {request.precision!r}; use one "
                f"of {', '.join(PRECISIONS)}"
            )
        directory, manifest = self.artifacts(request)
        return self.sessions(directory, manifest, request)

    # -- artifacts --------------------------------------------------------------------------

    def artifacts(self, request: LoadRequest) -> tuple[Path, Manifest]:
        """The artifact directory for the request (given, or cached / exported) and its manifest."""
        opts = request.options
        given = opts.get("artifacts")
        if given:
            directory = Path(given).expanduser()
            manifest = read_manifest(directory)
            check_manifest(
                manifest,
                format="onnx",
                dims=request.dims,
                precision=request.precision,
                weights=request.weights,
                directory=directory,
            )
            return directory, manifest
        from matanyone_engine.exporters.onnx.exporter import DEFAULT_OPSET, DEFAULT_TORCH_EXPORTER, OnnxExporter

        directory = OnnxExporter().ensure(
            request.weights,
            request.dims,
            request.precision,
            opset=int(opts.get("opset", DEFAULT_OPSET)),
            validate=bool(opts.get("validate", True)),
            log=opts.get("log"),
            torch_exporter=str(opts.get("torch_exporter", DEFAULT_TORCH_EXPORTER)),
        )
        return directory, read_manifest(directory)

    # -- sessions ---------------------------------------------------------------------------

    def provider_options(self, directory: Path, options: Mapping[str, Any]) -> dict[str, str]:
        if self.provider == "CUDAExecutionProvider":
            return {"device_id": str(int(options.get("device_id", 0)))}
        if self.provider == "CoreMLExecutionProvider":
            units = str(options.get("compute_units", "all")).lower()
            if units not in COREML_COMPUTE_UNITS:
                raise BackendError(
                    f"unknown compute_units {units!r} for {self.name}; use one of {', '.join(COREML_COMPUTE_UNITS)}"
                )
            return {
                "ModelFormat": "MLProgram",
                "MLComputeUnits": COREML_COMPUTE_UNITS[units],
                "RequireStaticInputShapes": "1",
                "ModelCacheDirectory": str(directory / "coreml-ep-cache"),
            }
        if self.provider == "OpenVINOExecutionProvider":
            return {
                "device_type": str(options.get("device_type", "CPU")),
                "cache_dir": str(directory / "openvino-ep-cache"),
            }
        return {}

    def sessions(self, directory: Path, manifest: Manifest, request: LoadRequest) -> dict[str, OrtModule]:
        import onnxruntime as ort

        threads = request.threads or default_threads()
        provider_opts = self.provider_options(directory, request.options)
        providers: list[Any] = [(self.provider, provider_opts)]
        if self.provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")  # nodes the provider does not take
        # Compiling providers (CoreML, OpenVINO) cannot serialise their partitions; they cache
        # their own compiled models through the provider options above.
        cache_optimized = bool(request.options.get("cache_optimized", True)) and self.provider in (
            "CPUExecutionProvider",
            "CUDAExecutionProvider",
        )
        modules: dict[str, OrtModule] = {}
        for name in manifest.files:  # the five modules and any optional variant the set includes
            if name not in ALL_MODULE_SPECS:
                continue
            model_path = directory / manifest.files[name]
            session = _create_session(ort, model_path, providers, threads, cache_optimized, self.provider)
            if self.provider not in session.get_providers():
                raise BackendUnavailable(
                    f"backend {self.name}: onnxruntime did not enable {self.provider} for {name} "
                    f"(got {', '.join(session.get_providers())})"
                )
            modules[name] = OrtModule(ALL_MODULE_SPECS[name], session, request.dims, manifest.flops.get(name))
        return modules


def _session_options(ort: Any, threads: int, level: Any) -> Any:
    """Options of every module's session.

    No CPU memory arena: an arena keeps its high-water mark for the life of the session, and each
    of the five sessions has its own, so a run held the sum of every module's peak (4.4 GB at
    1080p, measured) where without it the process holds only the largest one while it runs (each
    run's planned buffer is still one allocation, returned when the run ends). At 2160x3840 that
    is the difference between fitting in 10 GB and not."""
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_cpu_mem_arena = False
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return so


def optimized_model_path(model_path: Path, provider: str) -> Path:
    """Where the optimized form of ``model_path`` is kept.

    ORT_ENABLE_ALL output contains provider- and CPU-specific fused and layout-transformed nodes,
    so the file name carries the provider, the onnxruntime version and the machine architecture.
    """
    import onnxruntime as ort

    tag = f"{provider.replace('ExecutionProvider', '').lower()}-ort{ort.__version__}-{platform.machine().lower()}"
    return model_path.parent / "optimized" / f"{model_path.stem}.{tag}.onnx"


def _create_session(
    ort: Any, model_path: Path, providers: list[Any], threads: int, cache_optimized: bool, provider: str
) -> Any:
    """A session for one module, reusing (or writing) the optimized-model cache when allowed.

    ORT writes the optimized file while it builds the session; it writes into a temporary sibling
    that is renamed into place only once the session exists (core/engine/files.py), so two
    processes loading the same artifacts at once, or a load that fails or is killed, never leave a
    half-written file where the next load looks. A cached file that fails to load is rewritten.
    """
    full = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not cache_optimized:
        return ort.InferenceSession(str(model_path), _session_options(ort, threads, full), providers=providers)
    cached = optimized_model_path(model_path, provider)
    if cached.is_file():
        try:
            # Already optimized: skip the graph transformers, which is where load time goes.
            so = _session_options(ort, threads, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
            return ort.InferenceSession(str(cached), so, providers=providers)
        except Exception:  # stale or damaged cache: fall through and rebuild it
            with contextlib.suppress(OSError):
                cached.unlink()
    sessions: list[Any] = []

    def optimize_into(tmp: Path) -> None:
        so = _session_options(ort, threads, full)
        so.optimized_model_filepath = str(tmp)
        sessions.append(ort.InferenceSession(str(model_path), so, providers=providers))

    try:
        atomic_write(cached, optimize_into)
    except OSError:  # read-only artifact directory (or the rename failed): run without the cache
        if not sessions:
            return ort.InferenceSession(str(model_path), _session_options(ort, threads, full), providers=providers)
    return sessions[0]


BACKENDS = (
    OrtBackend("onnx-cpu", "CPUExecutionProvider", "ONNX Runtime on the CPU"),
    OrtBackend("onnx-cuda", "CUDAExecutionProvider", "ONNX Runtime with the CUDA execution provider (NVIDIA GPU)"),
    OrtBackend(
        "onnx-coreml",
        "CoreMLExecutionProvider",
        "ONNX Runtime with the CoreML execution provider (Apple; option compute_units: all, cpu_only, "
        "cpu_and_gpu, cpu_and_ne)",
    ),
    OrtBackend(
        "onnx-openvino", "OpenVINOExecutionProvider", "ONNX Runtime with the OpenVINO execution provider (Intel)"
    ),
)
