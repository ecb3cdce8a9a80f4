"""The CoreML exporter: five ML Program packages plus manifest.json, checked before they are kept.

When the torch backend offers the optional fast variants of core.spec (``mask_value``: the mask
encoding alone, for non-memory frames), they are exported as packages of their own too, so the
state machine can skip the sensory update and object summary on four frames out of five.

    from matanyone_engine.exporters.coreml import CoreMLExporter
    manifest = CoreMLExporter().export("seeded:v1-pm", Dims(432, 768), precision="fp16", out_dir="out/")
    cached_dir = CoreMLExporter().ensure("seeded:v1-pm", Dims(432, 768), "fp16")  # via core/cache.py

Why it looks like this:
* Packages are fixed-size (default 432x768, T=5, the earlier iOS port's landscape size); any
  video is fitted to that size by core/engine/geometry.py. Fixed shapes are what lets Core ML
  plan GPU / Neural Engine execution.
* Every package goes through the static checks of checks.py right after conversion, on any OS;
  a package that fails is never recorded in a manifest, so no loader can pick it up.
* ``validate=True`` additionally records realistic inputs by running the torch modules through
  the engine's own state machine (partly filled and full memory), runs every saved package on them
  with the reference MIL executor (validate.py, backends/coreml/mil) and compares each output with
  PyTorch — on any OS; a mismatch raises ``CoreMLValidationError`` naming module, output and
  error, and no manifest is written. fp16 exports also get their simulated fp16 drift measured
  (drift.py). On macOS with the Core ML runtime, Apple's runtime runs the packages too.
* The manifest (core/manifest.py) records the declaration, size, precision, weights digest,
  library versions, FLOPs per module, package sizes and every check/drift number.
"""

from __future__ import annotations

import platform
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from matanyone_engine.backends.coreml.backend import DEFAULT_PACKAGE_SIZE
from matanyone_engine.core.engine.errors import ExportError
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, MODULE_NAMES, Dims

from ..torch_modules import modules_digest, resolve_torch_modules
from ..torch_required import require_torch
from .checks import DEFAULT_LIMITS, CheckLimits, PackageReport, check_package
from .compat import coremltools_version
from .convert import DEFAULT_TARGET, PRECISIONS, TARGETS, convert_module, example_inputs

#: Bumped whenever the bytes this exporter writes change for the same request (part of the cache key).
EXPORTER_VERSION = "1"
EXPORTER_NAME = "matanyone_engine.exporters.coreml"
#: The backends' package size (the earlier iOS port's landscape size), T=5.
DEFAULT_DIMS = Dims(*DEFAULT_PACKAGE_SIZE, 5)
PACKAGE_SUFFIX = ".mlpackage"

if TYPE_CHECKING:
    from matanyone_engine.core.artifacts.manifest import Manifest

Log = Callable[[str], None]


def package_name(module: str) -> str:
    """File name of a module's package inside an artifact directory (encoder.mlpackage, …)."""
    return module + PACKAGE_SUFFIX


class CoreMLExporter:
    """Registered under ``format = "coreml"`` by backends/coreml/plugin.py."""

    format = "coreml"
    description = "Core ML ML Program packages (.mlpackage), fixed size, fp16 or fp32"
    version = EXPORTER_VERSION
    file_suffix = PACKAGE_SUFFIX
    default_dims = DEFAULT_DIMS
    targets = TARGETS
    precisions = PRECISIONS

    def export(
        self,
        weights: str = "seeded:v1-pm",
        dims: Dims | None = None,
        precision: str = "fp16",
        target: str = DEFAULT_TARGET,
        out_dir: str | Path | None = None,
        validate: bool = True,
        *,
        modules: Mapping[str, Any] | None = None,
        weights_digest: str | None = None,
        frames: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        limits: CheckLimits = DEFAULT_LIMITS,
        log: Log | None = None,
    ) -> Manifest:
        """Export the five modules to ``out_dir``, write its manifest.json and return the manifest.

        With ``out_dir=None`` the set goes into (or is found in) the artifact cache (``ensure``).
        ``modules`` replaces the network built from ``weights`` (tests use small stand-ins; the
        ``weights`` string is then only recorded). ``frames``/``mask`` (uint8, at ``dims``) give
        the validation a real clip instead of the built-in synthetic one. The static checks always
        run; ``validate`` adds the numeric validation (see the module docstring).
        """
        started = time.monotonic()
        dims = dims or DEFAULT_DIMS
        _check_request(precision, target)
        require_torch()
        if out_dir is None and modules is None:
            from matanyone_engine.core.artifacts.manifest import read_manifest

            return read_manifest(self.ensure(weights, dims, precision, target, validate=validate, log=log))
        if out_dir is None:
            raise ExportError("exporting given torch modules needs an out_dir (the cache is keyed by weights)")
        say = log or (lambda message: None)
        directory = Path(out_dir)
        directory.mkdir(parents=True, exist_ok=True)
        # A manifest left by an earlier export must not vouch for packages this run replaces.
        (directory / "manifest.json").unlink(missing_ok=True)

        if modules is None:
            say(f"loading weights {weights}")
            torch_modules, digest = resolve_torch_modules(weights)
        else:
            torch_modules = dict(modules)
            digest = weights_digest or modules_digest(torch_modules)
        missing = [n for n in MODULE_NAMES if n not in torch_modules]
        if missing:
            raise ExportError(f"modules missing for the CoreML export: {', '.join(missing)}")
        # The five modules, plus the optional fast variants (core.spec, e.g. mask_value) offered.
        names = [n for n in ALL_MODULE_SPECS if n in torch_modules]
        torch_modules = {n: torch_modules[n] for n in names}
        if weights_digest is not None:
            digest = weights_digest

        from .drift import measure_drift, recorded_inputs, reference_outputs

        if validate:
            say("recording realistic inputs through the state machine")
            try:
                input_sets = recorded_inputs(torch_modules, dims, frames=frames, mask=mask, keep="first_last")
            except ValueError as exc:
                raise ExportError(f"cannot record validation inputs: {exc}") from None
            inputs_how = "state machine on " + ("the given clip" if frames is not None else "a synthetic clip")
        else:
            input_sets = {name: [example_inputs(name, dims)] for name in names}
            inputs_how = "uniform random inputs of the declared shapes"
        references, flops = reference_outputs(torch_modules, input_sets)

        reports: dict[str, PackageReport] = {}
        for name in names:
            path = directory / package_name(name)
            if path.exists():
                shutil.rmtree(path)
            say(f"converting {name} ({precision}, {target})")
            convert_module(
                name,
                torch_modules[name],
                dims,
                path,
                precision=precision,
                target=target,
                inputs=input_sets[name][0],
                metadata={
                    "matanyone.weights": weights,
                    "matanyone.weights_digest": digest,
                    "matanyone.exporter_version": EXPORTER_VERSION,
                },
            )
            reports[name] = check_package(path, name, dims, precision, limits=limits)
            say(f"  {name}: {reports[name].operations} ops, {reports[name].size_bytes / 1e6:.1f} MB, checks passed")

        validation: dict[str, Any] = {
            "static_checks": {name: r.to_dict() for name, r in reports.items()},
            "inputs": inputs_how,
        }
        if validate:
            from .validate import validate_packages

            say(f"running every package with the reference MIL executor against PyTorch ({precision})")
            validation["mil_executor_vs_torch"] = validate_packages(
                directory, {name: package_name(name) for name in names}, precision, input_sets, references=references
            )
        if validate and precision == "fp16":
            say("measuring fp16 drift (torch, simulated Core ML FLOAT16)")
            settled = {name: sets[-1:] for name, sets in input_sets.items()}  # the settled state only
            validation["fp16_drift"] = measure_drift(
                torch_modules, settled, references={name: refs[-1:] for name, refs in references.items()}
            )
        if validate:
            runtime = _runtime_validation(directory, dims, precision, input_sets, references, validation, say)
            if runtime is not None:
                validation["coreml_vs_torch"] = runtime

        return _write_manifest(
            directory,
            weights=weights,
            digest=digest,
            dims=dims,
            precision=precision,
            target=target,
            flops=flops,
            reports=reports,
            validation=validation,
            seconds=time.monotonic() - started,
        )

    def ensure(
        self,
        weights: str,
        dims: Dims | None = None,
        precision: str = "fp16",
        target: str = DEFAULT_TARGET,
        *,
        validate: bool = False,
        log: Log | None = None,
        root: Path | None = None,
    ) -> Path:
        """The cached artifact directory for the request (core/cache.py), exporting it first if absent.

        The deployment target is part of the cache key (through the exporter version string), so
        macOS14 and iOS17 sets never overwrite each other.
        """
        from matanyone_engine.core.artifacts.cache import ensure_export

        dims = dims or DEFAULT_DIMS
        _check_request(precision, target)

        def export(tmp: Path, modules: Any, digest: str) -> None:
            self.export(
                weights, dims, precision, target, tmp, validate, modules=modules, weights_digest=digest, log=log
            )

        return ensure_export(
            "coreml",
            weights,
            dims,
            precision,
            lambda: resolve_torch_modules(weights),
            export,
            exporter_version=cache_version(target),
            root=root,
            log=log,
        )


def cache_version(target: str = DEFAULT_TARGET) -> str:
    """The exporter-version part of the cache key: exporter version and deployment target."""
    from matanyone_engine.backends.torch import graph_revision

    return f"{EXPORTER_VERSION}+{graph_revision()}+{target}"


def _check_request(precision: str, target: str) -> None:
    if precision not in PRECISIONS:
        raise ExportError(f"unknown precision {precision!r}; the CoreML exporter writes {' or '.join(PRECISIONS)}")
    if target not in TARGETS:
        raise ExportError(f"unknown deployment target {target!r}; use one of {', '.join(TARGETS)}")


# ------------------------------------------------------------------------------------- helpers


def _library_versions() -> dict[str, str]:
    import torch  # the export has required torch before it gets here

    from matanyone_engine.core import __version__

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "coremltools": coremltools_version(),
        "torch": torch.__version__,
        "matanyone_engine": __version__,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def _write_manifest(
    directory: Path,
    *,
    weights: str,
    digest: str,
    dims: Dims,
    precision: str,
    target: str,
    flops: Mapping[str, int],
    reports: Mapping[str, PackageReport],
    validation: Mapping[str, Any],
    seconds: float,
) -> Manifest:
    """The one place that builds the manifest (core/manifest.py's format-neutral layout)."""
    from matanyone_engine.core.artifacts.manifest import new_manifest, write_manifest

    sizes = {name: r.size_bytes for name, r in reports.items()}
    manifest = new_manifest(
        format="coreml",
        dims=dims,
        precision=precision,
        weights=weights,
        weights_digest=digest,
        exporter=EXPORTER_NAME,
        exporter_version=EXPORTER_VERSION,
        files={name: package_name(name) for name in reports},
        libraries=_library_versions(),
        flops={name: int(flops.get(name, 0)) for name in reports},
        flops_method="torch.utils.flop_counter.FlopCounterMode on the float32 torch module "
        "(2 FLOPs per multiply-add; convolutions and matrix products only)",
        validation=dict(validation),
        extra={
            "deployment_target": target,
            "compute_precision": "FLOAT16" if precision == "fp16" else "FLOAT32",
            "io_dtype": "float32",
            "model_type": "mlprogram",
            "package_bytes": sizes,
            "total_bytes": int(sum(sizes.values())),
            "weight_dtype": {name: r.weight_dtype for name, r in reports.items()},
            "export_seconds": round(seconds, 1),
        },
    )
    write_manifest(directory, manifest)
    return manifest


def runtime_available() -> bool:
    """True where Core ML can run packages (macOS 13+ with coremltools' runtime extension)."""
    if sys.platform != "darwin":
        return False
    try:
        release = tuple(int(p) for p in platform.mac_ver()[0].split(".")[:2] if p)
    except ValueError:
        return False
    if not release or release[0] < 13:
        return False
    try:
        from coremltools import libcoremlpython  # noqa: F401
    except Exception:
        return False
    return True


def _runtime_validation(
    directory: Path,
    dims: Dims,
    precision: str,
    input_sets: Mapping[str, list[dict[str, np.ndarray]]],
    references: Mapping[str, list[dict[str, np.ndarray]]],
    validation: Mapping[str, Any],
    say: Log,
) -> dict[str, Any] | None:
    """On macOS: run each package (CPU_ONLY, deterministic) and compare with the torch outputs.

    fp32 packages must match PyTorch closely (core.manifest.check_module_outputs raises
    ValidationError otherwise). fp16 packages are held to a bound derived from the measured
    simulated drift (4x, plus a floor), and must never produce non-finite values.
    """
    if not runtime_available():
        return None
    from matanyone_engine.core.artifacts.manifest import Tolerance, check_module_outputs, summarize_checks

    from .compat import import_coremltools

    ct = import_coremltools()
    say("running the packages with Core ML (CPU_ONLY) against PyTorch")
    drift = validation.get("fp16_drift", {}).get("modules", {})
    result: dict[str, Any] = {"compute_units": "CPU_ONLY", "modules": {}}
    for name in input_sets:
        model = ct.models.MLModel(str(directory / package_name(name)), compute_units=ct.ComputeUnit.CPU_ONLY)
        tolerances: dict[str, Tolerance] = {}
        for out in ALL_MODULE_SPECS[name].output_names:
            if precision == "fp32":
                tolerances[out] = Tolerance(atol=1e-3, rtol=1e-3, mean_atol=1e-4, outlier_fraction=1e-3)
            else:
                measured = drift.get(name, {}).get("outputs", {}).get(out, {})
                tolerances[out] = Tolerance(
                    atol=4 * float(measured.get("max_abs", 0.05)) + 1e-3,
                    rtol=0.0,
                    mean_atol=4 * float(measured.get("mean_abs", 0.01)) + 1e-4,
                    outlier_fraction=1e-3,
                )
        per_set = []
        for inputs, want in zip(input_sets[name], references[name], strict=False):
            raw = model.predict({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()})
            got = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in raw.items()}
            per_set.append(check_module_outputs(name, got, want, tolerances))
        result["modules"][name] = summarize_checks(per_set)
    return result


__all__ = [
    "CoreMLExporter",
    "DEFAULT_DIMS",
    "EXPORTER_NAME",
    "EXPORTER_VERSION",
    "cache_version",
    "package_name",
    "runtime_available",
]
