"""Model folders: running from what ``matanyone export`` wrote, with no checkpoint and no torch.

The deployment path is: export on a machine with torch, copy the folder, run it anywhere a backend
for its format runs (``run --models DIR``, ``bench --models DIR``, ``models=`` in the API). The
folder's manifest decides the size, the memory frames, the precision, the variant modules and the
weights; nothing on the target machine rebuilds or re-derives them.

So a folder is checked whole before anything loads — its manifest version, its exporter's
version, the sha256 of every module file against the manifest — and the request is checked
against it. Whatever does not fit is refused in one line naming what differs and the export
command that would make a folder that fits.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import plugins
from ..artifacts.manifest import FORMATS, MANIFEST_NAME, Manifest, ManifestError, file_problems, read_manifest
from ..engine.errors import InputError
from ..engine.padding import padded_size
from ..engine.spec import MODULE_NAMES, describe


@dataclass(frozen=True)
class ModelFolder:
    """An exported folder that passed ``open_model_folder``'s checks, and its manifest."""

    directory: Path
    manifest: Manifest

    @property
    def format(self) -> str:
        return self.manifest.format

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) the modules were exported for: every clip is fitted to it."""
        return self.manifest.height, self.manifest.width

    def export_command(self, **changes: Any) -> str:
        """The ``matanyone export`` line that rewrites this folder, with ``changes`` applied.

        Keys: format, weights, size ("HxW"), mem_frames, precision, target.
        """
        m = self.manifest
        values: dict[str, Any] = {
            "format": m.format,
            "weights": m.weights,
            "size": f"{m.height}x{m.width}",
            "mem_frames": m.mem_frames,
            "precision": m.precision,
            "target": m.extra.get("deployment_target"),
        }
        values.update(changes)
        words = [
            "matanyone export",
            f"--format {values['format']}",
            f"--weights {shlex.quote(str(values['weights']))}",
            f"--size {values['size']}",
            f"--mem-frames {values['mem_frames']}",
            f"--precision {values['precision']}",
        ]
        if values["format"] == "coreml" and values.get("target"):
            words.append(f"--target {values['target']}")
        words.append(f"-o {shlex.quote(str(self.directory))}")
        return " ".join(words)


def open_model_folder(path: str | os.PathLike[str]) -> ModelFolder:
    """Read and check an exported folder; InputError (one line) says what is wrong and the fix.

    Checked: it is a folder with a readable manifest of a version this install reads, written by
    an exporter no newer than this install's, declaring this version's module interface, and
    every module file is present with the sha256 the manifest recorded.
    """
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise InputError(f"--models {directory} is not a folder; pass the folder `matanyone export -o DIR` wrote")
    if not (directory / MANIFEST_NAME).is_file():
        raise InputError(
            f"--models {directory} has no {MANIFEST_NAME}, so it is not a folder `matanyone export` wrote; "
            "make one with: matanyone export --format onnx|coreml --weights W --size HxW -o DIR"
        )
    try:
        manifest = read_manifest(directory)
    except ManifestError as exc:
        raise InputError(f"--models {directory} cannot be used: {exc}") from None
    folder = ModelFolder(directory, manifest)
    if manifest.format not in FORMATS:
        raise InputError(
            f"--models {directory} holds {manifest.format!r} models, which no backend here runs "
            f"(formats: {', '.join(FORMATS)})"
        )
    exporter = plugins.exporters().get(manifest.format)
    ours = str(getattr(exporter, "version", "")) if exporter is not None else ""
    if ours and _version_key(manifest.exporter_version) > _version_key(ours):
        raise InputError(
            f"--models {directory} was written by a newer {manifest.format} exporter (version "
            f"{manifest.exporter_version}; this install has {ours}); upgrade matanyone-engine here, or re-export "
            f"with this version: {folder.export_command()}"
        )
    declared = describe(manifest.dims)["modules"]
    stale = [n for n in MODULE_NAMES if n not in manifest.files] + [
        n for n in manifest.files if manifest.modules.get(n) != declared.get(n)
    ]
    if stale:
        raise InputError(
            f"--models {directory} declares other module interfaces than this version ({', '.join(stale)}); "
            f"re-export it with this version: {folder.export_command()}"
        )
    problems = _verified_problems(directory, manifest)
    if problems:
        raise InputError(
            f"--models {directory} does not match its manifest: {'; '.join(problems)}; copy the whole folder "
            f"again, or re-export: {folder.export_command()}"
        )
    return folder


def settle_request(
    folder: ModelFolder,
    *,
    weights: str | None = None,
    precision: str | None = None,
    mem_frames: int | None = None,
    size: tuple[int, int] | None = None,
) -> tuple[str, str, int]:
    """(weights, precision, memory frames) of the folder, after checking what the caller asked.

    Options left out (None) take the folder's value; ``precision="fast"`` too (the folder was
    exported in one precision). An option given with another value than the folder's is refused,
    naming each difference and the export command for the asked values. ``size`` is a fixed
    module size the caller asked for (rounded up to multiples of 16 like an export).
    """
    m = folder.manifest
    differs: list[str] = []
    asked: dict[str, Any] = {}
    if weights is not None and weights != m.weights:
        differs.append(f"weights {m.weights!r} (asked: {weights!r})")
        asked["weights"] = weights
    if precision is not None and precision != "fast" and precision != m.precision:
        differs.append(f"precision {m.precision} (asked: {precision})")
        asked["precision"] = precision
    if mem_frames is not None and mem_frames != m.mem_frames:
        differs.append(f"{m.mem_frames} memory frames (asked: {mem_frames})")
        asked["mem_frames"] = mem_frames
    if size is not None and padded_size(*size) != folder.size:
        h, w = padded_size(*size)
        differs.append(f"size {m.height}x{m.width} (asked: {h}x{w})")
        asked["size"] = f"{h}x{w}"
    if differs:
        raise InputError(
            f"--models {folder.directory} was exported for {', '.join(differs)}; leave those options out "
            f"(the folder decides), or re-export: {folder.export_command(**asked)}"
        )
    return m.weights, m.precision, m.mem_frames


def _version_key(version: str) -> tuple[int, ...]:
    """``"1"``, ``"1.2"`` -> comparable tuples; unparsable parts count as 0 (never "newer")."""
    key = []
    for part in str(version).replace("+", ".").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        key.append(int(digits) if digits else 0)
    return tuple(key)


#: directory -> the file signature (paths, sizes, mtimes) it last passed its digest check with.
#: A batch that runs many clips from one folder in one process hashes it once.
_VERIFIED: dict[Path, tuple[Any, ...]] = {}


def _verified_problems(directory: Path, manifest: Manifest) -> list[str]:
    """``file_problems``, skipped when the files are unchanged since they last passed here."""
    key = directory.resolve()
    signature = _signature(directory, manifest)
    if signature is not None and _VERIFIED.get(key) == signature:
        return []
    problems = file_problems(directory, manifest)
    if not problems and signature is not None:
        _VERIFIED[key] = signature
    return problems


def _signature(directory: Path, manifest: Manifest) -> tuple[Any, ...] | None:
    entries: list[tuple[str, int, int]] = []
    try:
        for relative in sorted([MANIFEST_NAME, *manifest.files.values()]):
            path = directory / relative
            items = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for item in items:
                st = item.stat()
                entries.append((item.relative_to(directory).as_posix(), st.st_size, st.st_mtime_ns))
    except OSError:
        return None  # something is missing: file_problems names it
    return tuple(entries)


__all__ = ["ModelFolder", "open_model_folder", "settle_request"]
