"""Resume records: how a rerun knows a clip is already done, without trusting a folder's existence.

After a clip's outputs are in place (the writers rename them only when complete), the batch
writes OUTDIR/.matanyone-batch/<clip>.json, atomically. It holds a fingerprint of the job: the
input's identity (path, size, modification time and a digest of its first and last MiB, cheap
for a 50 GB ProRes file and still changed by a re-export), the mask's, and every option that
changes what is written, with the API's defaults filled in. A rerun skips a clip only when the
record's fingerprint equals the job's and every output it lists still exists; a changed option,
a replaced clip or a deleted output makes the clip run again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...engine.files import atomic_write_json
from ...media.video import frame_files
from ..clip_options import OUTPUT_NEUTRAL, effective_options
from .plan import STATE_DIR, ClipJob

RECORD_VERSION = 1
#: How much of each end of a file the digest reads.
DIGEST_SPAN = 1 << 20


def content_digest(path: Path, size: int) -> str:
    """sha256 of the size, the first MiB and the last MiB: a whole-file hash would read every byte
    of every clip on every rerun, while an edit or re-export of a video changes its ends."""
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(DIGEST_SPAN))
        if size > DIGEST_SPAN:
            fh.seek(max(DIGEST_SPAN, size - DIGEST_SPAN))
            digest.update(fh.read(DIGEST_SPAN))
    return digest.hexdigest()


def file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "digest": content_digest(path, stat.st_size),
    }


def input_identity(path: Path) -> dict[str, Any]:
    """A video's file identity, or for a frame folder the names, sizes and times of its frames
    plus the digests of the first and last frame."""
    if not path.is_dir():
        return file_identity(path)
    files = frame_files(path)
    listing = hashlib.sha256()
    for frame in files:
        stat = frame.stat()
        listing.update(f"{frame.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    ends = [file_identity(frame)["digest"] for frame in (files[:1] + files[-1:])]
    return {"path": str(path.resolve()), "frames": len(files), "listing": listing.hexdigest(), "ends": ends}


def _option_identity(name: str, value: Any) -> Any:
    """Options that name files (the mask, a weights file) stand for the file's identity."""
    if name == "mask" and value is not None:
        return file_identity(Path(value))
    if name == "weights" and isinstance(value, str) and not value.startswith("seeded:"):
        path = Path(value).expanduser()
        if path.is_file():
            stat = path.stat()
            return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return value


def fingerprint(job: ClipJob) -> str:
    """The hash a finished clip's record must carry for a rerun to skip it."""
    options = {
        name: _option_identity(name, value)
        for name, value in effective_options(job.options).items()
        if name not in OUTPUT_NEUTRAL
    }
    blob = {"input": input_identity(job.input), "output_dir": str(job.output_dir), "options": options}
    text = json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def record_path(outdir: Path, job: ClipJob) -> Path:
    return outdir / STATE_DIR / f"{job.key}.json"


def completed(outdir: Path, job: ClipJob, expected: str) -> dict[str, Any] | None:
    """The clip's record when it proves the clip done with these inputs and options, else None."""
    try:
        record = json.loads(record_path(outdir, job).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != expected:
        return None
    outputs = record.get("outputs")
    if not isinstance(outputs, list) or not outputs or not all(Path(p).exists() for p in outputs):
        return None
    return record


def write_record(outdir: Path, job: ClipJob, expected: str, result: Mapping[str, Any]) -> Path:
    """Mark the clip done; called only once its outputs are in place."""
    record = {
        "version": RECORD_VERSION,
        "fingerprint": expected,
        "input": str(job.input),
        "output_dir": str(job.output_dir),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **{k: result.get(k) for k in ("frames", "seconds", "backend", "precision", "outputs")},
    }
    return atomic_write_json(record_path(outdir, job), record, default=str)
