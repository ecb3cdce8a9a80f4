"""Running one clip of a batch where the batch is not: a worker process, or a Ray task.

``execute_clip`` turns a job (plain JSON) into a result (plain JSON) through ``run_clip``, the
function ``matanyone run`` calls; a clip's own failure comes back as a result with its one-line
error, so only a dead process (the OOM killer, a crash in native code) is left for the executor
to report. ``python -m matanyone_engine.core.app.batch.worker JOB.json RESULT.json`` is the local
executor's worker: SIGTERM (sent by the batch on Ctrl-C, or when the batch itself goes away)
interrupts the clip like a Ctrl-C, so the writers drop their staged outputs before it exits.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

#: Exit status of a worker stopped by the batch (as a shell reports a Ctrl-C).
INTERRUPTED_STATUS = 130


def _one_line(text: str, limit: int = 400) -> str:
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def execute_clip(job: dict[str, Any]) -> dict[str, Any]:
    """Matte one clip; returns {"status": "done", frames, seconds, outputs, backend, precision,
    warnings} or {"status": "failed", "error": one line}. KeyboardInterrupt propagates."""
    import warnings

    from ...engine.errors import MatanyoneError
    from ..jobs import run_clip

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = run_clip(job["input"], job["output_dir"], **job["options"])
        except MatanyoneError as exc:
            return {"status": "failed", "error": _one_line(str(exc))}
        except MemoryError:
            return {
                "status": "failed",
                "error": "out of memory; lower --max-size, or run fewer clips at once (--jobs, --cpus-per-clip)",
            }
        except Exception as exc:  # a clip's unexpected failure is its own, not the batch's
            return {"status": "failed", "error": _one_line(f"{type(exc).__name__}: {exc}")}
    return {
        "status": "done",
        "frames": result.frames,
        "seconds": result.seconds,
        "outputs": [str(p) for p in result.outputs],
        "backend": result.backend,
        "precision": result.precision,
        "warnings": list(dict.fromkeys(_one_line(str(w.message)) for w in caught)),
    }


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _exit_when_parent_goes() -> None:
    """The batch holds our stdin open; end of file means it is gone, so stop as if told to."""
    try:
        sys.stdin.buffer.read()
    except (OSError, ValueError):
        pass
    import os

    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> int:
    import json
    from pathlib import Path

    from ...engine.files import atomic_write_json

    job_path, result_path = Path(argv[0]), Path(argv[1])
    try:
        job = json.loads(job_path.read_text(encoding="utf-8"))
        threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
        result = execute_clip(job)
        atomic_write_json(result_path, result)
    except KeyboardInterrupt:
        return INTERRUPTED_STATUS
    return 0


if __name__ == "__main__":
    # before anything slow is imported: from here on a SIGTERM unwinds through the writers
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    sys.exit(main(sys.argv[1:]))
