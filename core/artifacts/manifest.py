"""The manifest of an exported artifact set, and the format-neutral half of export validation.

Every exporter (ONNX, CoreML) writes one ``manifest.json`` next to its five module files. It
records what the files were built from and for, so that a loader can refuse a set that does not
match its request (other size, memory length, precision or weights) instead of running it and
producing a silently wrong matte. It also keeps what was measured once at export time (FLOPs per
module, validation errors against the PyTorch modules) so that nobody has to recompute them, and
the sha256 of every module file, so a folder copied to another machine can be checked whole
before it runs (``file_problems``).

No torch here, and no format library: this file must be importable by every backend.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.errors import ExportError
from ..engine.files import atomic_write_json
from ..engine.spec import ALL_MODULE_SPECS, MODULE_NAMES, Dims, describe

#: Bumped when a field changes meaning; readers refuse versions they do not know.
#: 2: ``file_digests`` (sha256 of every module file) is written and checked.
MANIFEST_VERSION = 2
MANIFEST_NAME = "manifest.json"
FORMATS = ("onnx", "coreml")
PRECISIONS = ("fp32", "fp16")


class ManifestError(ExportError):
    """An artifact directory whose manifest is missing, unreadable, or does not match the request."""


class ManifestMismatch(ManifestError):
    """Artifacts that are complete but were built for another request (size, T, precision, weights)."""


class ValidationError(ExportError):
    """An exported module whose outputs differ from the PyTorch module's beyond tolerance.

    Carries the module and output names and the measured errors so tests and the CLI can say
    exactly which tensor went wrong.
    """

    def __init__(self, module: str, output: str, max_abs: float, mean_abs: float, detail: str = ""):
        self.module = module
        self.output = output
        self.max_abs = max_abs
        self.mean_abs = mean_abs
        self.detail = detail
        message = (
            f"exported module {module!r} does not match PyTorch on output {output!r}: "
            f"max abs error {max_abs:.3g}, mean abs error {mean_abs:.3g}"
        )
        if detail:
            message += f" ({detail})"
        message += "; the export is broken — re-export, or report it with the manifest attached"
        super().__init__(message)


# ------------------------------------------------------------------------------------ validation


@dataclass(frozen=True)
class Tolerance:
    """Element-wise bound ``|got - want| <= atol * s + rtol * |want|``, and ``mean |got - want| <= mean_atol * s``.

    ``s = max(1, max |want|)`` is the output's peak magnitude: feature maps of an untrained or a
    real checkpoint differ in scale by orders of magnitude, and float rounding error grows with the
    scale of the values summed, so the absolute part is stated relative to it (for outputs in
    [0, 1] or smaller it is a plain absolute tolerance).

    ``outlier_fraction`` lets a tiny share of elements exceed the element-wise bound: outputs
    downstream of a top-k selection can flip one token on a near-tie, which moves a handful of
    values by a lot while the rest agree tightly. The mean bound still catches real breakage.
    """

    atol: float
    rtol: float
    mean_atol: float
    outlier_fraction: float = 0.0


@dataclass
class OutputCheck:
    """The measured agreement of one output on one input set."""

    max_abs: float
    mean_abs: float
    max_ref: float
    outside: float  # fraction of elements outside atol + rtol * |want|
    passed: bool
    tolerance: dict[str, float]


def compare_output(got: np.ndarray, want: np.ndarray, tol: Tolerance) -> OutputCheck:
    """Measure one output against its reference with ``tol`` (shapes must agree)."""
    got64 = np.asarray(got, dtype=np.float64)
    want64 = np.asarray(want, dtype=np.float64)
    if got64.shape != want64.shape:
        return OutputCheck(math.inf, math.inf, 0.0, 1.0, False, asdict(tol))
    if not np.all(np.isfinite(got64)):
        return OutputCheck(math.inf, math.inf, float(np.max(np.abs(want64), initial=0.0)), 1.0, False, asdict(tol))
    err = np.abs(got64 - want64)
    peak = float(np.max(np.abs(want64), initial=0.0))
    scale = max(1.0, peak)
    bound = tol.atol * scale + tol.rtol * np.abs(want64)
    outside = float(np.mean(err > bound)) if err.size else 0.0
    max_abs = float(err.max(initial=0.0))
    mean_abs = float(err.mean()) if err.size else 0.0
    passed = outside <= tol.outlier_fraction and mean_abs <= tol.mean_atol * scale
    return OutputCheck(max_abs, mean_abs, peak, outside, passed, asdict(tol))


def check_module_outputs(
    module: str,
    got: Mapping[str, np.ndarray],
    want: Mapping[str, np.ndarray],
    tolerances: Mapping[str, Tolerance],
) -> dict[str, OutputCheck]:
    """Compare every declared output of ``module``; raise ValidationError on the first failure.

    Outputs are checked in declaration order so the error names the earliest broken tensor.
    """
    results: dict[str, OutputCheck] = {}
    for name in ALL_MODULE_SPECS[module].output_names:
        if name not in got:
            raise ValidationError(module, name, math.inf, math.inf, "output missing from the exported module")
        check = compare_output(got[name], want[name], tolerances[name])
        results[name] = check
        if not check.passed:
            tol = tolerances[name]
            raise ValidationError(
                module,
                name,
                check.max_abs,
                check.mean_abs,
                f"{check.outside:.3%} of elements outside atol {tol.atol:g}·s + rtol {tol.rtol:g}·|ref| "
                f"(allowed {tol.outlier_fraction:.3%}), mean bound {tol.mean_atol:g}·s, "
                f"s = max(1, peak |ref| {check.max_ref:.3g})",
            )
    return results


def summarize_checks(per_set: Iterable[Mapping[str, OutputCheck]]) -> dict[str, dict[str, Any]]:
    """Worst case over several input sets, per output: what goes into the manifest."""
    summary: dict[str, dict[str, Any]] = {}
    for checks in per_set:
        for name, c in checks.items():
            s = summary.setdefault(
                name, {"max_abs": 0.0, "mean_abs": 0.0, "outside": 0.0, "max_ref": 0.0, "tolerance": c.tolerance}
            )
            s["max_abs"] = max(s["max_abs"], c.max_abs)
            s["mean_abs"] = max(s["mean_abs"], c.mean_abs)
            s["outside"] = max(s["outside"], c.outside)
            s["max_ref"] = max(s["max_ref"], c.max_ref)
    return summary


# -------------------------------------------------------------------------------------- manifest


@dataclass
class Manifest:
    """What an artifact directory holds and what it was built from.

    ``modules`` is core.spec.describe(dims)["modules"] at export time: a loader compares it with
    its own declaration, so artifacts made before an interface change are refused, not misread.
    """

    format: str
    height: int
    width: int
    mem_frames: int
    precision: str
    weights: str
    weights_digest: str
    exporter: str
    exporter_version: str
    files: dict[str, str]
    modules: dict[str, Any]
    opset: int | None = None
    libraries: dict[str, str] = field(default_factory=dict)
    flops: dict[str, int] = field(default_factory=dict)
    flops_method: str = ""
    validation: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: module -> sha256 of its file (an .mlpackage folder: of its files, see ``path_digest``);
    #: filled by ``write_manifest`` from the files themselves.
    file_digests: dict[str, str] = field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION

    @property
    def dims(self) -> Dims:
        return Dims(self.height, self.width, self.mem_frames)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        version = data.get("manifest_version")
        if isinstance(version, int) and version > MANIFEST_VERSION:
            raise ManifestError(
                f"manifest version {version} was written by a newer matanyone-engine (this one reads "
                f"version {MANIFEST_VERSION}); upgrade matanyone-engine here, or re-export with this version"
            )
        if version != MANIFEST_VERSION:
            raise ManifestError(
                f"manifest version {version!r} is older than the supported {MANIFEST_VERSION} (it records no "
                "file digests); re-export the artifacts with this version of matanyone-engine"
            )
        known = set(cls.__dataclass_fields__)
        missing = [
            k
            for k in (
                "format",
                "height",
                "width",
                "mem_frames",
                "precision",
                "weights",
                "weights_digest",
                "exporter",
                "exporter_version",
                "files",
                "modules",
            )
            if k not in data
        ]
        if missing:
            raise ManifestError(f"manifest lacks {', '.join(missing)}; re-export the artifacts")
        return cls(**{k: v for k, v in data.items() if k in known})


def new_manifest(
    *,
    format: str,
    dims: Dims,
    precision: str,
    weights: str,
    weights_digest: str,
    exporter: str,
    exporter_version: str,
    files: Mapping[str, str],
    **more: Any,
) -> Manifest:
    """A manifest for ``dims`` with the module declaration filled in from core.spec.

    ``files`` names the five required modules and any optional variants (core.spec
    OPTIONAL_MODULE_SPECS, e.g. ``mask_value``) the set includes; ``modules`` records the
    declaration of exactly those.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown artifact format {format!r}; expected one of {FORMATS}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    missing = set(MODULE_NAMES) - set(files)
    unknown = set(files) - set(ALL_MODULE_SPECS)
    if missing or unknown:
        raise ValueError(
            f"files must name the modules {MODULE_NAMES} (plus optional variants); "
            f"missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    declared = describe(dims)["modules"]
    return Manifest(
        format=format,
        height=dims.height,
        width=dims.width,
        mem_frames=dims.mem_frames,
        precision=precision,
        weights=weights,
        weights_digest=weights_digest,
        exporter=exporter,
        exporter_version=exporter_version,
        files=dict(files),
        modules={name: declared[name] for name in declared if name in files},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **more,
    )


def write_manifest(directory: str | os.PathLike[str], manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temp file + os.replace): a reader never sees half a file.

    The module files must be in ``directory`` already: their digests are taken here, the one step
    every exporter passes through, so no exporter can forget them.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    absent = [f for f in manifest.files.values() if not (directory / f).exists()]
    if absent:
        raise ManifestError(f"cannot write the manifest of {directory}: {', '.join(absent)} not written yet")
    manifest.file_digests = {name: path_digest(directory / f) for name, f in manifest.files.items()}
    target = directory / MANIFEST_NAME
    atomic_write_json(target, manifest.to_dict(), default=_json_default, sort_keys=True, fsync=True)
    return target


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read and structurally check ``manifest.json``; ManifestError says what is wrong and the fix."""
    path = Path(directory) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no {MANIFEST_NAME} in {path.parent}; it is not an exported artifact directory") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}; delete the directory and export again") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path} is not a manifest object; delete the directory and export again")
    return Manifest.from_dict(data)


def check_manifest(
    manifest: Manifest,
    *,
    format: str,
    dims: Dims,
    precision: str,
    weights_digest: str | None = None,
    weights: str | None = None,
    directory: str | os.PathLike[str] | None = None,
) -> None:
    """Refuse artifacts that were built for something else than the request.

    Checks format, size, memory length, precision, weights (digest when given, else the
    reference string), the module declaration against this version's core.spec, and, with
    ``directory``, that every module file is there.
    """
    where = f" in {directory}" if directory is not None else ""
    problems: list[str] = []
    if manifest.format != format:
        problems.append(f"format {manifest.format!r}, requested {format!r}")
    if (manifest.height, manifest.width) != (dims.height, dims.width):
        problems.append(f"size {manifest.height}x{manifest.width}, requested {dims.height}x{dims.width}")
    if manifest.mem_frames != dims.mem_frames:
        problems.append(f"memory frames T={manifest.mem_frames}, requested T={dims.mem_frames}")
    if manifest.precision != precision:
        problems.append(f"precision {manifest.precision}, requested {precision}")
    if weights_digest is not None and manifest.weights_digest != weights_digest:
        problems.append(
            f"weights digest {manifest.weights_digest[:12]}… ({manifest.weights}), requested {weights_digest[:12]}…"
        )
    elif weights_digest is None and weights is not None and manifest.weights != weights:
        problems.append(f"weights {manifest.weights!r}, requested {weights!r}")
    if not problems:
        declared = describe(dims)["modules"]
        stale = [n for n in MODULE_NAMES if n not in manifest.modules] + [
            n for n, d in manifest.modules.items() if declared.get(n) != d
        ]
        if stale or set(manifest.files) != set(manifest.modules):
            problems.append(
                "module declaration differs from this version's core.spec"
                + (f" ({', '.join(stale)})" if stale else "")
                + " (exported by another version)"
            )
    if problems:
        raise ManifestMismatch(
            f"artifacts{where} do not match the request: "
            + "; ".join(problems)
            + ". Export again for this request (or point to the right artifact directory)"
        )
    if directory is not None:
        missing = [f for f in manifest.files.values() if not (Path(directory) / f).exists()]
        if missing:
            raise ManifestError(
                f"artifacts in {directory} are incomplete (missing {', '.join(missing)}); delete it and export again"
            )


def path_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file; of a folder (an .mlpackage), over each file's relative path and contents.

    Files are read in sorted order of their relative paths, so the digest does not depend on the
    order the file system lists them in; a renamed, added or removed file changes it.
    """
    path = Path(path)
    if path.is_file():
        return _file_sha256(path)
    if not path.is_dir():
        raise FileNotFoundError(path)
    digest = hashlib.sha256()
    for item in sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix()):
        digest.update(item.relative_to(path).as_posix().encode("utf-8") + b"\0")
        digest.update(_file_sha256(item).encode("ascii") + b"\n")
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_problems(directory: str | os.PathLike[str], manifest: Manifest) -> list[str]:
    """What is wrong with the module files of ``directory`` against its manifest (empty: nothing).

    Each entry names one file: missing, or altered since export (its sha256 differs from the one
    recorded). A manifest that records no digest for a module counts as a problem too: then
    nothing vouches for that file.
    """
    directory = Path(directory)
    problems: list[str] = []
    for name, relative in manifest.files.items():
        path = directory / relative
        recorded = manifest.file_digests.get(name)
        if not path.exists():
            problems.append(f"{relative} is missing")
        elif not recorded:
            problems.append(f"{relative} has no sha256 in the manifest")
        elif path_digest(path) != recorded:
            problems.append(f"{relative} was altered since export (its sha256 differs from the manifest's)")
    return problems


def _json_default(value: Any) -> Any:
    """numpy scalars and paths reach the manifest from measurement code; store them as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a manifest")
