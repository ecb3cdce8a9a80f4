"""Trace one torch module and convert it to a Core ML ML Program package.

Kept apart from the exporter so tests (and anyone debugging a single module) can convert one
module — a real one or a deliberately broken one — and run the static checks on it, without
building all five.

Choices, and why:
* ``torch.jit.trace`` on realistic example inputs: the modules are written without data-dependent
  control flow, so a trace is exact, and coremltools' TorchScript frontend is its most mature.
* Inputs and outputs are declared float32 (as core.spec declares them) even at fp16 compute
  precision: Core ML then inserts the casts inside the program, the state machine exchanges
  float32 numpy with every backend alike, and the -3e4 masked-similarity trick stays exact at the
  boundary. (With FLOAT16 precision coremltools 9 would otherwise default iOS16+ interfaces to
  float16.)
* ``compute_precision`` FLOAT16 or FLOAT32 sets both weight storage and activation precision.
* ``skip_model_load=True``: conversion never compiles or loads the model (impossible on Linux,
  wasted time on macOS where the backend loads it with the compute unit it wants).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, Dims

from .checks import CoreMLConversionError, RankLimitError
from .compat import coremltools_version, import_coremltools, numpy_compat_patch, quiet_coremltools

#: Deployment targets accepted by the exporter (ML Program needs macOS 12 / iOS 15 at least;
#: the defaults carry the op set the modules were checked with).
TARGETS = ("macOS13", "macOS14", "macOS15", "iOS16", "iOS17", "iOS18")
DEFAULT_TARGET = "macOS14"
PRECISIONS = ("fp16", "fp32")


def example_inputs(module_name: str, dims: Dims, seed: int = 0) -> dict[str, np.ndarray]:
    """Plain random inputs of the declared shapes (enough for tracing modules without data-dependent
    control flow; the exporter traces on recorded realistic inputs when it has them)."""
    rng = np.random.default_rng(seed)
    spec = ALL_MODULE_SPECS[module_name]
    out = {}
    for tensor in spec.inputs:
        shape = tensor.resolve(dims)
        if tensor.name == "mem_valid":
            out[tensor.name] = np.ones(shape, dtype=np.float32)
        else:
            out[tensor.name] = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    return out


def trace_module(module_name: str, module: Any, inputs: Mapping[str, np.ndarray]) -> Any:
    """``torch.jit.trace`` of ``module`` with inputs passed positionally in the declared order."""
    import torch

    spec = ALL_MODULE_SPECS[module_name]
    missing = [n for n in spec.input_names if n not in inputs]
    if missing:
        raise CoreMLConversionError(module_name, f"example inputs lack {', '.join(missing)}")
    args = tuple(torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)) for n in spec.input_names)
    module = module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Sizes read from tensor shapes become constants in the trace. For fixed-size packages
            # that is the intent, so the TracerWarnings saying so are noise. torch 2.13 also marks
            # torch.jit.trace deprecated; TorchScript is still coremltools 9's mature frontend.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace", category=DeprecationWarning)
            return torch.jit.trace(module, args, check_trace=False, strict=False)
    except Exception as exc:
        raise CoreMLConversionError(
            module_name,
            f"torch.jit.trace failed: {type(exc).__name__}: {_first_line(exc)}",
            "the module must be traceable (no data-dependent Python control flow)",
        ) from exc


def convert_module(
    module_name: str,
    module: Any,
    dims: Dims,
    out_path: str | Path,
    *,
    precision: str = "fp16",
    target: str = DEFAULT_TARGET,
    inputs: Mapping[str, np.ndarray] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Trace and convert ``module`` into the ML Program package ``out_path`` (e.g. encoder.mlpackage).

    The package's input and output names and shapes come from core.spec for ``dims``; the torch
    module must return its outputs in declared order.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    ct = import_coremltools()
    spec = ALL_MODULE_SPECS[module_name]
    traced = trace_module(module_name, module, inputs if inputs is not None else example_inputs(module_name, dims))
    ct_inputs = [ct.TensorType(name=t.name, shape=t.resolve(dims), dtype=np.float32) for t in spec.inputs]
    ct_outputs = [ct.TensorType(name=t.name, dtype=np.float32) for t in spec.outputs]
    try:
        with numpy_compat_patch(), quiet_coremltools():
            mlmodel = ct.convert(
                traced,
                source="pytorch",
                inputs=ct_inputs,
                outputs=ct_outputs,
                convert_to="mlprogram",
                minimum_deployment_target=getattr(ct.target, target),
                compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
                skip_model_load=True,
            )
    except Exception as exc:
        message = _first_line(exc)
        if "rank <= 5" in message or "rank > 5" in message:
            # coremltools refuses rank-6 tensors itself, before any package exists to check.
            raise RankLimitError(
                module_name,
                f"tensor rank above Core ML's limit of 5 ({message})",
                "flatten the extra axes in the torch module (e.g. drop the object axis, flatten memory to rank 3)",
            ) from exc
        raise CoreMLConversionError(
            module_name,
            f"coremltools {coremltools_version()} conversion failed: {type(exc).__name__}: {message}",
            "see the traceback above for the torch operation it could not convert",
        ) from exc
    _describe(mlmodel, module_name, dims, precision, target, metadata or {})
    out_path = Path(out_path)
    try:
        mlmodel.save(str(out_path))
    except Exception as exc:
        raise CoreMLConversionError(module_name, f"cannot save {out_path}: {_first_line(exc)}") from exc
    finally:
        discard_temporary_package(mlmodel)
    return out_path


def discard_temporary_package(mlmodel: Any) -> None:
    """Delete the copy of the package coremltools writes to the temp folder during ``convert``.

    coremltools removes it only at interpreter exit, so a worker process that ends without running
    atexit handlers (a killed export, a batch or Ray worker) leaves one folder per module behind,
    the size of the weights each time.
    """
    path = getattr(mlmodel, "package_path", None)
    if getattr(mlmodel, "is_temp_package", False) and path:
        shutil.rmtree(path, ignore_errors=True)  # best effort: it is only a temp copy of what was saved


def _describe(
    mlmodel: Any, module_name: str, dims: Dims, precision: str, target: str, extra: Mapping[str, str]
) -> None:
    """Human-readable descriptions (shown by Xcode) and the facts a loader needs, in the package."""
    spec = ALL_MODULE_SPECS[module_name]
    mlmodel.short_description = f"MatAnyone {module_name}: {spec.doc}"
    mlmodel.author = "matanyone-engine"
    mlmodel.license = "MatAnyone: S-Lab License 1.0 (weights and architecture)"
    for tensor in spec.inputs:
        mlmodel.input_description[tensor.name] = f"{tensor.doc} {list(tensor.resolve(dims))}"
    for tensor in spec.outputs:
        mlmodel.output_description[tensor.name] = f"{tensor.doc} {list(tensor.resolve(dims))}"
    meta = {
        "matanyone.module": module_name,
        "matanyone.height": str(dims.height),
        "matanyone.width": str(dims.width),
        "matanyone.mem_frames": str(dims.mem_frames),
        "matanyone.precision": precision,
        "matanyone.target": target,
    }
    meta.update({str(k): str(v) for k, v in extra.items()})
    mlmodel.user_defined_metadata.update(meta)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


__all__ = ["DEFAULT_TARGET", "PRECISIONS", "TARGETS", "convert_module", "example_inputs", "trace_module"]
