"""What a batch did, clip by clip: the return value of ``batch`` and OUTDIR/batch-report.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...engine.files import atomic_write_json

REPORT_NAME = "batch-report.json"
#: done: matted now; skipped: already done with the same input and options; failed: its error
#: says why; cancelled: the batch was interrupted before the clip finished (no output was left).
STATUSES = ("done", "skipped", "failed", "cancelled")


@dataclass
class ClipReport:
    name: str
    input: str
    output_dir: str
    status: str
    frames: int = 0
    seconds: float = 0.0
    backend: str = ""
    precision: str = ""
    error: str = ""
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fps": round(self.fps, 3)}


@dataclass
class BatchReport:
    source: str
    output_dir: str
    executor: str
    clips: list[ClipReport]
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for clip in self.clips if clip.status == status)

    @property
    def failed(self) -> list[ClipReport]:
        return [clip for clip in self.clips if clip.status == "failed"]

    @property
    def exit_code(self) -> int:
        """130 when interrupted, 1 when any clip failed, else 0."""
        if self.interrupted:
            return 130
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "output_dir": self.output_dir,
            "executor": self.executor,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "counts": {status: self.count(status) for status in STATUSES},
            "clips": [clip.to_dict() for clip in self.clips],
        }

    def write(self, outdir: Path) -> Path:
        return atomic_write_json(Path(outdir) / REPORT_NAME, self.to_dict(), default=str)
