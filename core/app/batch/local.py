"""The local executor: each clip in its own worker process, ``jobs`` of them at a time.

A process per clip (not a pool) is what makes a crash one failed clip: a clip that takes the
process down (the kernel's OOM killer, a segfault in a native library) ends that process only,
and the batch reads its exit status. Starting Python and importing the backend costs a second or
two per clip, small beside matting a shot. Workers run in their own session, so a Ctrl-C at the
terminal reaches only the batch, which then stops them with SIGTERM: each unwinds through its
writers (nothing half-written stays), and the batch waits for that before it returns.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...engine.files import atomic_write_json
from .plan import ClipJob

WORKER_MODULE = "matanyone_engine.core.app.batch.worker"
#: How long stopped workers get to drop their staged outputs before they are killed.
STOP_GRACE_S = 30.0
POLL_S = 0.05

OnResult = Callable[[ClipJob, dict[str, Any]], None]


def crash_message(returncode: int, log: Path) -> str:
    """One line for a worker that died without a result: the signal or status, and its last words."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        text = f"the worker process was killed by {name}"
        if -returncode == signal.SIGKILL:
            text += " (the kernel's out-of-memory killer sends it: lower --max-size or run fewer --jobs)"
    else:
        text = f"the worker process exited with status {returncode} without a result"
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    if lines:
        text += f"; its last output: {lines[-1][:300]}"
    return text


@dataclass
class _Running:
    job: ClipJob
    process: subprocess.Popen
    result: Path
    log: Path
    log_file: IO[bytes]


class LocalExecutor:
    """``jobs`` clips at a time, each in a fresh worker process of this Python."""

    name = "local"

    def __init__(self, jobs: int = 1):
        self.jobs = max(1, int(jobs))
        self._started = 0

    def describe(self) -> str:
        return f"local, {self.jobs} worker process{'es' if self.jobs != 1 else ''}"

    def run(self, jobs: Sequence[ClipJob], on_result: OnResult) -> None:
        """Run ``jobs``, calling ``on_result(job, result)`` as each ends; on KeyboardInterrupt stop
        starting clips, stop the running ones, wait for them, and re-raise."""
        scratch = Path(tempfile.mkdtemp(prefix="matanyone-batch-"))
        pending = list(jobs)
        running: list[_Running] = []
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    running.append(self._start(pending.pop(0), scratch))
                finished = [r for r in running if r.process.poll() is not None]
                if not finished:
                    time.sleep(POLL_S)
                    continue
                for item in finished:
                    running.remove(item)
                    on_result(item.job, self._collect(item))
        except BaseException:
            self._stop(running)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _start(self, job: ClipJob, scratch: Path) -> _Running:
        self._started += 1
        stem = f"{self._started:05d}"
        job_file, result, log = scratch / f"{stem}.job.json", scratch / f"{stem}.result.json", scratch / f"{stem}.log"
        atomic_write_json(job_file, job.to_json(), default=str)
        log_file = log.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, str(job_file), str(result)],
            stdin=subprocess.PIPE,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=os.name == "posix",
        )
        return _Running(job, process, result, log, log_file)

    @staticmethod
    def _collect(item: _Running) -> dict[str, Any]:
        import json

        item.log_file.close()
        _close_stdin(item.process)
        try:
            return json.loads(item.result.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"status": "failed", "error": crash_message(item.process.returncode, item.log)}

    @staticmethod
    def _stop(running: Sequence[_Running]) -> None:
        for item in running:
            if item.process.poll() is None:
                item.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            for item in running:
                try:
                    item.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    item.process.kill()
        finally:  # a second Ctrl-C while waiting: no more grace
            for item in running:
                if item.process.poll() is None:
                    item.process.kill()
                    item.process.wait()
                _close_stdin(item.process)
                item.log_file.close()


def _close_stdin(process: subprocess.Popen) -> None:
    if process.stdin is not None:
        try:
            process.stdin.close()
        except OSError:
            pass
