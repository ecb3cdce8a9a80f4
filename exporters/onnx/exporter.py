"""ONNX export of the five modules: torch.onnx, optional fp16 conversion, validation, manifest.

Everything heavy (torch, onnx, onnxruntime) is imported inside functions: the plugin that
registers this exporter is loaded by every ``matanyone`` command, including ones that never export.

Layout of an artifact directory::

    encoder.onnx  mask_encoder.onnx  read_first.onnx  read.onnx  decoder.onnx  manifest.json

Input and output names and static shapes are exactly core.spec's for the directory's Dims; fp16
sets keep float32 inputs and outputs (casts inside the graph) so every backend and the state
machine stay interchangeable whatever the precision.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import platform
import sys
import warnings
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from matanyone_engine.core.artifacts.manifest import Manifest, new_manifest, read_manifest, write_manifest
from matanyone_engine.core.engine.errors import ExportError
from matanyone_engine.core.engine.files import atomic_write
from matanyone_engine.core.engine.padding import padded_size
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, MODULE_NAMES, Dims

from ..torch_modules import resolve_torch_modules
from ..torch_required import require_torch
from .inputs import InputSet, capture_inputs

EXPORTER_NAME = "matanyone-engine.onnx"
#: Bump when the exported graphs change for the same weights and sizes (it is part of the cache key).
EXPORTER_VERSION = "1"
#: torch's export-based ONNX exporter emits opset 18 natively; ORT >= 1.14 runs it.
DEFAULT_OPSET = 18
TORCH_EXPORTERS = ("torchscript", "dynamo")
DEFAULT_TORCH_EXPORTER = "torchscript"
FLOPS_METHOD = (
    "torch.utils.flop_counter.FlopCounterMode on the float32 torch module with the validation inputs "
    "(convolutions and matrix products, 2 FLOPs per multiply-add; element-wise ops not counted)"
)
Log = Callable[[str], None]


def as_dims(dims: Dims | tuple[int, ...], mem_frames: int | None = None) -> Dims:
    """Accept Dims or (H, W[, T]) with any H, W; sizes that are not multiples of 16 mean the padded size."""
    if isinstance(dims, Dims):
        return dims if mem_frames is None else Dims(dims.height, dims.width, mem_frames)
    h, w = padded_size(int(dims[0]), int(dims[1]))
    t = mem_frames if mem_frames is not None else (int(dims[2]) if len(dims) > 2 else Dims(16, 16).mem_frames)
    return Dims(h, w, t)


class OnnxExporter:
    """The ``onnx`` exporter registered with the plugin manager."""

    format = "onnx"
    name = EXPORTER_NAME
    version = EXPORTER_VERSION
    default_opset = DEFAULT_OPSET
    precisions = ("fp32", "fp16")
    description = "ONNX (torch.onnx export; fp32, or fp16 with float32 I/O), validated in ONNX Runtime"

    def export(
        self,
        weights: str,
        dims: Dims | tuple[int, ...],
        precision: str = "fp32",
        out_dir: str | os.PathLike[str] | None = None,
        validate: bool = True,
        opset: int = DEFAULT_OPSET,
        log: Log | None = None,
        torch_exporter: str = DEFAULT_TORCH_EXPORTER,
    ) -> Manifest:
        """Export the five modules for ``weights`` at ``dims`` into ``out_dir`` and return the manifest.

        With ``out_dir=None`` the set goes into (or is found in) the artifact cache.
        """
        d = as_dims(dims)
        _check_precision(precision)
        _check_torch_exporter(torch_exporter)
        require_torch()
        if out_dir is None:
            return read_manifest(
                self.ensure(
                    weights, d, precision, opset=opset, validate=validate, log=log, torch_exporter=torch_exporter
                )
            )
        modules, digest = resolve_torch_modules(weights)
        return export_torch_modules(
            modules,
            d,
            out_dir,
            weights=weights,
            weights_digest=digest,
            precision=precision,
            opset=opset,
            validate=validate,
            log=log,
            torch_exporter=torch_exporter,
        )

    def ensure(
        self,
        weights: str,
        dims: Dims,
        precision: str = "fp32",
        opset: int = DEFAULT_OPSET,
        validate: bool = True,
        log: Log | None = None,
        root: Path | None = None,
        torch_exporter: str = DEFAULT_TORCH_EXPORTER,
    ) -> Path:
        """The cached artifact directory for the request, exporting it first if needed."""
        from matanyone_engine.core.artifacts.cache import ensure_export

        _check_precision(precision)
        _check_torch_exporter(torch_exporter)

        def export(tmp: Path, modules: dict[str, Any], digest: str) -> None:
            export_torch_modules(
                modules,
                dims,
                tmp,
                weights=weights,
                weights_digest=digest,
                precision=precision,
                opset=opset,
                validate=validate,
                log=log,
                torch_exporter=torch_exporter,
            )

        return ensure_export(
            "onnx",
            weights,
            dims,
            precision,
            lambda: resolve_torch_modules(weights),
            export,
            exporter_version=cache_version(torch_exporter),
            opset=opset,
            root=root,
            log=log,
        )


def export_torch_modules(
    modules: Mapping[str, Any],
    dims: Dims,
    out_dir: str | os.PathLike[str],
    *,
    weights: str,
    weights_digest: str,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    validate: bool = True,
    input_sets: Mapping[str, list[InputSet]] | None = None,
    log: Log | None = None,
    torch_exporter: str = DEFAULT_TORCH_EXPORTER,
) -> Manifest:
    """Export already-built torch modules (the real network's or stand-ins) into ``out_dir``."""
    import torch

    _check_precision(precision)
    _check_torch_exporter(torch_exporter)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    how = "given by the caller"
    if input_sets is None:
        input_sets, how = capture_inputs(modules, dims)
    missing = [n for n in MODULE_NAMES if n not in modules]
    if missing:
        raise ExportError(f"cannot export: no torch module for {', '.join(missing)}")
    files = {name: f"{name}.onnx" for name in ALL_MODULE_SPECS if name in modules}
    exporters_used: dict[str, str] = {}
    flops: dict[str, int] = {}
    opsets: set[int] = set()
    for name in files:
        spec = ALL_MODULE_SPECS[name]
        module = modules[name]
        example = input_sets[name][0]
        args = tuple(torch.from_numpy(np.ascontiguousarray(example[n], dtype=np.float32)) for n in spec.input_names)
        if log:
            log(f"exporting {name} ({precision}, opset {opset})")
        flops[name] = _count_flops(module, args)
        used, model_opset = export_module(
            module,
            name,
            args,
            out / files[name],
            dims,
            precision=precision,
            opset=opset,
            weights_digest=weights_digest,
            torch_exporter=torch_exporter,
        )
        exporters_used[name] = used
        opsets.add(model_opset)
    validation: dict[str, Any] = {"performed": False}
    if validate:
        from .validate import validate_onnx_modules

        if log:
            log("validating the exported modules in ONNX Runtime against PyTorch")
        validation = {
            "performed": True,
            "runtime": "onnxruntime CPUExecutionProvider, ORT_ENABLE_ALL",
            "inputs": how,
            "modules": validate_onnx_modules(out, modules, input_sets, precision, files),
        }
    manifest = new_manifest(
        format="onnx",
        dims=dims,
        precision=precision,
        weights=weights,
        weights_digest=weights_digest,
        exporter=EXPORTER_NAME,
        exporter_version=EXPORTER_VERSION,
        files=files,
        opset=max(opsets) if opsets else opset,
        libraries=_library_versions(precision),
        flops=flops,
        flops_method=FLOPS_METHOD,
        validation=validation,
        extra={
            "torch_onnx_exporter": exporters_used,
            "io_dtype": "float32",
            "file_bytes": {n: (out / f).stat().st_size for n, f in files.items()},
            **(
                {"fp16": {"io_dtype": "float32", "converter": "matanyone_engine.exporters.onnx.fp16"}}
                if precision == "fp16"
                else {}
            ),
        },
    )
    write_manifest(out, manifest)
    return manifest


# ---------------------------------------------------------------------------------------- helpers


def export_module(
    module: Any,
    name: str,
    args: tuple[Any, ...],
    path: Path,
    dims: Dims,
    *,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    weights_digest: str = "",
    torch_exporter: str = DEFAULT_TORCH_EXPORTER,
) -> tuple[str, int]:
    """Export one torch module to ``path`` (checked against core.spec, fp16-converted if asked).

    Returns (torch exporter used, ONNX opset of the file). No validation, no manifest: the
    building block of export_torch_modules, public so one module can be re-exported or tested alone.
    """
    _check_precision(precision)
    _check_torch_exporter(torch_exporter)
    used = _torch_export(module, args, name, path, opset, torch_exporter)
    model = _finish_model(path, name, dims, precision, weights_digest)
    return used, _main_opset(model)


def cache_version(torch_exporter: str = DEFAULT_TORCH_EXPORTER) -> str:
    """The exporter version as it enters the cache key: the graphs differ between torch exporters."""
    from matanyone_engine.backends.torch import graph_revision

    return f"{EXPORTER_VERSION}+{graph_revision()}/{torch_exporter}"


def _check_torch_exporter(name: str) -> None:
    if name not in TORCH_EXPORTERS:
        raise ExportError(f"unknown torch exporter {name!r}; use one of {', '.join(TORCH_EXPORTERS)}")


def _check_precision(precision: str) -> None:
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"unknown precision {precision!r} for ONNX export; use fp32 or fp16")


def _count_flops(module: Any, args: tuple[Any, ...]) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(*args)
    return int(counter.get_total_flops())


def _torch_export(module: Any, args: tuple[Any, ...], name: str, path: Path, opset: int, first: str) -> str:
    """Export one module with the ``first`` torch.onnx exporter, falling back to the other.

    Measured on the real network (torch 2.13, 2 cores): the TorchScript exporter takes ~23 s for
    the five modules, the torch.export-based one ~120 s, and ORT runs both graphs equally fast
    with the same errors. TorchScript is therefore the default; the export-based exporter (torch's
    own default, the one that stays when TorchScript export is removed) is the fallback and can be
    chosen. Which one produced each file is recorded in the manifest.
    """
    import torch

    spec = ALL_MODULE_SPECS[name]
    common: dict[str, Any] = {
        "input_names": list(spec.input_names),
        "output_names": list(spec.output_names),
        "opset_version": opset,
    }
    errors: list[str] = []
    order = (True, False) if first == "dynamo" else (False, True)
    for dynamo in order:
        try:
            with warnings.catch_warnings(), _quiet():
                warnings.simplefilter("ignore")
                if dynamo:
                    torch.onnx.export(
                        module,
                        args,
                        str(path),
                        dynamo=True,
                        external_data=False,
                        optimize=True,
                        verbose=False,
                        **common,
                    )
                else:
                    torch.onnx.export(module, args, str(path), dynamo=False, do_constant_folding=True, **common)
            return "dynamo" if dynamo else "torchscript"
        except Exception as exc:
            errors.append(f"{'dynamo' if dynamo else 'torchscript'}: {type(exc).__name__}: {str(exc)[:400]}")
            with contextlib.suppress(OSError):
                path.unlink()
    raise ExportError(f"torch.onnx could not export module {name!r}: " + " | ".join(errors))


@contextlib.contextmanager
def _quiet():
    """torch.onnx prints progress lines and logs notes about absent optional packages (torchvision);
    an exporter called from the CLI should not."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=False):
            lg.setLevel(level)


def _finish_model(path: Path, name: str, dims: Dims, precision: str, digest: str) -> Any:
    """Check names and static shapes against core.spec, convert to fp16 if asked, stamp metadata."""
    import onnx

    model = onnx.load(str(path))
    _check_interface(model, name, dims)
    if precision == "fp16":
        model = _to_fp16(model, name)
        _check_interface(model, name, dims)
    meta = {
        "matanyone.module": name,
        "matanyone.dims": f"{dims.height}x{dims.width}xT{dims.mem_frames}",
        "matanyone.precision": precision,
        "matanyone.weights_digest": digest,
        "matanyone.exporter": f"{EXPORTER_NAME} {EXPORTER_VERSION}",
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = ALL_MODULE_SPECS[name].doc
    onnx.checker.check_model(model)
    atomic_write(path, lambda tmp: onnx.save(model, str(tmp)))
    return model


def _check_interface(model: Any, name: str, dims: Dims) -> None:
    """The graph's inputs and outputs must be core.spec's, in order, float32, with static shapes."""
    from onnx import TensorProto

    spec = ALL_MODULE_SPECS[name]
    initializers = {i.name for i in model.graph.initializer}
    for kind, declared, actual in (
        ("inputs", spec.inputs, [v for v in model.graph.input if v.name not in initializers]),
        ("outputs", spec.outputs, list(model.graph.output)),
    ):
        got = [v.name for v in actual]
        want = [t.name for t in declared]
        if got != want:
            raise ExportError(f"exported {name} has {kind} {got}, core.spec declares {want}")
        for t, v in zip(declared, actual, strict=False):
            tt = v.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in tt.shape.dim)
            if tt.elem_type != TensorProto.FLOAT:
                raise ExportError(f"exported {name}.{t.name} has element type {tt.elem_type}, expected float32")
            if shape != t.resolve(dims):
                raise ExportError(f"exported {name}.{t.name} has shape {shape}, core.spec gives {t.resolve(dims)}")


def _to_fp16(model: Any, name: str) -> Any:
    """fp16 weights and activations with float32 graph inputs/outputs (exporters/onnx/fp16.py)."""
    from .fp16 import convert_to_fp16

    try:
        return convert_to_fp16(model)
    except Exception as exc:
        raise ExportError(f"fp16 conversion of {name} failed: {exc}") from exc


def _main_opset(model: Any) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def _library_versions(precision: str) -> dict[str, str]:
    names = ["torch", "onnx", "onnxruntime", "onnxscript", "numpy", "matanyone-engine"]
    versions = {"python": platform.python_version(), "platform": f"{sys.platform}-{platform.machine()}"}
    for n in names:
        try:
            versions[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            versions[n] = "absent"
    return versions
