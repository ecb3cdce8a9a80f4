"""What a batch will do: one ClipJob per clip, read from a folder or a manifest and fully checked.

A folder holds clips (video files, or folders of frames) with each first-frame mask beside its
clip under the same stem (``shot1.mp4`` + ``shot1.png``, ``shot2/`` + ``shot2.png``). A manifest
is CSV (a header row) or JSON Lines (one object per line) with an ``input`` column, optional
``mask`` and ``output`` columns, and any per-clip option (app.clip_options) as further columns.
Relative ``input``/``mask`` paths are read from the manifest's folder, a relative ``output`` (a
folder for that clip's outputs, as ``run -o`` takes) from OUTDIR.

Everything that can be wrong with the batch as written (an unknown column, a value of the wrong
type, a missing file, two clips that would write the same outputs) is an InputError naming the
line before anything runs. A clip that can only fail on its own (its video is corrupt, no mask
was found for it) is a job that will be reported as failed, and the batch goes on.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...engine.errors import InputError
from ...media.video import clip_name, frame_files
from ..clip_options import BACKEND_OPTIONS, Keyword, check_backends, check_options, clip_keywords, normalise_key

#: Video file extensions a source folder is scanned for (anything FFmpeg reads can be listed in a
#: manifest instead).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".mts", ".m2ts", ".wmv")
MANIFEST_CSV = (".csv",)
MANIFEST_JSONL = (".jsonl", ".ndjson")
#: Manifest columns that are not options: where the clip is and where its outputs go.
PLACE_COLUMNS = ("input", "output")
MASK_OPTIONS = ("mask", "mask_box", "mask_provider")
#: Where the resume records live, inside OUTDIR.
STATE_DIR = ".matanyone-batch"


@dataclass
class ClipJob:
    """One clip of a batch: where it is, where its outputs go, and its typed options."""

    name: str
    input: Path
    output_dir: Path
    options: dict[str, Any]
    where: str
    problem: str | None = None
    key: str = field(default="")

    def to_json(self) -> dict[str, Any]:
        """The job as plain JSON, for a worker process or a Ray task."""
        return {"input": str(self.input), "output_dir": str(self.output_dir), "options": self.options}


def record_key(outdir: Path, output_dir: Path, name: str) -> str:
    """A file-name-safe stem for the clip's resume record, unique per output location."""
    if output_dir == outdir:
        return name
    try:
        rel = output_dir.relative_to(outdir).as_posix().replace("/", "__")
    except ValueError:
        rel = hashlib.sha256(str(output_dir).encode()).hexdigest()[:12]
    return f"{rel}__{name}"


# ---------------------------------------------------------------------------------------- sources


def _folder_rows(source: Path, outdir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, raw row) per clip of a source folder, in name order."""
    outdir_resolved = outdir.resolve()
    for entry in sorted(source.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.resolve() == outdir_resolved:
            continue
        is_video = entry.is_file() and entry.suffix.lower() in VIDEO_EXTENSIONS
        is_frames = entry.is_dir() and bool(frame_files(entry))
        if not (is_video or is_frames):
            continue
        row: dict[str, Any] = {"input": str(entry.absolute())}
        mask = entry.with_name((entry.name if entry.is_dir() else entry.stem) + ".png")
        if mask.is_file():
            row["mask"] = str(mask.absolute())
        yield f"clip {entry.name}", row


def _csv_rows(manifest: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None:
                raise InputError(f"{manifest} is empty; write a header row (input,mask,...) and one row per clip")
            header = [normalise_key(name or "") for name in reader.fieldnames]
            if "input" not in header:
                raise InputError(f"{manifest} line 1: no 'input' column; the header must name input (and mask, ...)")
            for row in reader:
                where = f"{manifest.name} line {reader.line_num}"
                if None in row:
                    raise InputError(f"{where}: more cells than the header has columns; quote cells holding commas")
                cells = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k is not None}
                if not any(cells.values()):
                    continue
                yield where, {k: v for k, v in cells.items() if v not in (None, "")}
    except UnicodeDecodeError:
        raise InputError(f"{manifest} is not UTF-8 text; save the manifest as UTF-8 CSV") from None
    except csv.Error as exc:
        raise InputError(f"{manifest} is not valid CSV ({exc}); check its quoting") from None


def _jsonl_rows(manifest: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{manifest} is not UTF-8 text; save the manifest as UTF-8") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{manifest.name} line {number}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.args[0]}); write one object per line") from None
        if not isinstance(row, dict):
            raise InputError(f'{where}: a JSON object is needed, like {{"input": "shot1.mp4", "mask": ...}}')
        yield where, {k: v for k, v in row.items() if v is not None}


def _rows(source: Path, outdir: Path) -> tuple[list[tuple[str, dict[str, Any]]], Path]:
    """The raw rows of SOURCE and the folder its relative paths are read from."""
    if not source.exists():
        raise InputError(f"batch source not found: {source}; pass a folder of clips or a .csv/.jsonl manifest")
    if source.is_dir():
        if source.resolve() == outdir.resolve():
            raise InputError(
                f"-o {outdir} is the source folder: choose another output folder (output videos there "
                "would be taken for clips by the next run)"
            )
        rows = list(_folder_rows(source, outdir))
        if not rows:
            kinds = ", ".join(VIDEO_EXTENSIONS[:4])
            raise InputError(
                f"no clips in {source}: put video files ({kinds}, ...) or folders of frames there, "
                "each with its first-frame mask <name>.png beside it"
            )
        return rows, source
    suffix = source.suffix.lower()
    if suffix in MANIFEST_CSV:
        return list(_csv_rows(source)), source.parent
    if suffix in MANIFEST_JSONL:
        return list(_jsonl_rows(source)), source.parent
    raise InputError(f"{source} is neither a folder nor a manifest; pass a folder of clips, a .csv or a .jsonl file")


# ------------------------------------------------------------------------------------------- plan


def _resolve(base: Path, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    return (path if path.is_absolute() else base / path).absolute()


def plan_jobs(
    source: str | Path,
    outdir: str | Path,
    batch_options: Mapping[str, Any],
    keywords: Mapping[str, Keyword] | None = None,
) -> list[ClipJob]:
    """Every clip of SOURCE as a checked ClipJob; ``batch_options`` (already typed) apply to every
    clip, a row's own values win over them. The first problem with the batch raises InputError."""
    table = dict(keywords) if keywords is not None else clip_keywords()
    source = Path(source).expanduser()
    outdir = Path(outdir).expanduser().absolute()
    rows, base = _rows(source, outdir)
    if not rows:
        raise InputError(f"{source} lists no clips; add one row per clip")
    jobs: list[ClipJob] = []
    claimed: dict[tuple[Path, str], str] = {}
    backends_checked: set[str] = set()
    for where, raw in rows:
        row = {normalise_key(k): v for k, v in raw.items()}
        if "input" not in row:
            raise InputError(f"{where}: no input; every row names its clip in the input column")
        input_path = _resolve(base, row.pop("input"))
        output_dir = _resolve(outdir, row.pop("output")) if "output" in row else outdir
        if not input_path.exists():
            raise InputError(f"{where}: input not found: {input_path}; check the path")
        options = check_options(row, where, table, backends=False)
        if options.get("mask") is not None:  # one mask, or one per subject (a list, or a,b in a CSV cell)
            given = options["mask"] if isinstance(options["mask"], list) else [options["mask"]]
            resolved = [str(_resolve(base, m)) for m in given]
            for path in resolved:
                if not Path(path).is_file():
                    raise InputError(f"{where}: mask not found: {path}; check the path")
            options["mask"] = resolved[0] if len(resolved) == 1 else resolved
        inherited = dict(batch_options)
        if any(options.get(name) is not None for name in MASK_OPTIONS):
            for name in MASK_OPTIONS:
                inherited.pop(name, None)  # the row says where its mask comes from
        merged = {**inherited, **options}
        combination = json.dumps([merged.get(k) for k in BACKEND_OPTIONS], sort_keys=True, default=str)
        if combination not in backends_checked:
            check_backends(merged, where)  # once per distinct backend/placement/precision
            backends_checked.add(combination)
        problem = None
        if all(merged.get(name) is None for name in MASK_OPTIONS):
            stem = input_path.name if input_path.is_dir() else input_path.stem
            problem = f"no first-frame mask: put {stem}.png beside it, or pass --mask-box or --mask-provider"
        name = clip_name(input_path)
        spot = (output_dir, name)
        if spot in claimed:
            raise InputError(
                f"{claimed[spot]} and {where} would both write {output_dir / name}; give one of them its "
                "own output folder (an output column) or rename one"
            )
        claimed[spot] = where
        job = ClipJob(name, input_path, output_dir, merged, where, problem)
        job.key = record_key(outdir, output_dir, name)
        jobs.append(job)
    return jobs


__all__ = ["STATE_DIR", "VIDEO_EXTENSIONS", "ClipJob", "plan_jobs", "record_key"]
