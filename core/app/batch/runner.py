"""``batch``: many clips through ``run_clip``, resumable, each clip's failure its own.

The order of work: check OUTDIR and every option and row (any problem stops the batch before a
clip runs), decide per clip from its resume record whether it is already done, hand the rest to
an executor (local worker processes or Ray), and record each clip as it ends: a resume record for
a finished one (only once its outputs are in place), the error for a failed one, and the report
OUTDIR/batch-report.json rewritten after every clip so it is current even if the batch is killed.
Ctrl-C or SIGTERM stops scheduling, stops the running clips (their staged outputs are dropped),
keeps the finished ones, and a rerun picks up where this one stopped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from ...engine.errors import InputError
from ..clip_options import check_options, clip_keywords
from ..interrupts import signals_as_interrupts
from .local import LocalExecutor
from .plan import ClipJob, plan_jobs
from .record import completed, fingerprint, write_record
from .report import BatchReport, ClipReport

EXECUTORS = ("local", "ray")


class BatchObserver(Protocol):
    """What a progress display hears (the CLI's rich bar is one)."""

    def started(self, total: int, to_run: int, executor: str) -> None: ...

    def clip_finished(self, clip: ClipReport) -> None: ...


def remove_partials(job: ClipJob) -> None:
    """Drop what a dead or stopped worker may have staged for ``job`` (the writers' hidden
    ``.<name>.partial-*`` siblings), and the clip's output folder if that left it empty."""
    clip_dir = job.output_dir / job.name
    for folder, pattern in ((job.output_dir, f".{job.name}_*.partial-*"), (clip_dir, ".*.partial-*")):
        if not folder.is_dir():
            continue
        for leftover in folder.glob(pattern):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        clip_dir.rmdir()  # only when empty: a finished earlier output stays


def make_executor(
    executor: str,
    jobs: int | None,
    address: str | None,
    cpus_per_clip: float,
    gpus_per_clip: float,
) -> Any:
    """The executor by name, its settings checked (one line per mistake)."""
    if executor not in EXECUTORS:
        raise InputError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be 1 or more, got {jobs}")
    if cpus_per_clip <= 0:
        raise InputError(f"--cpus-per-clip must be more than 0, got {cpus_per_clip:g}")
    if gpus_per_clip < 0:
        raise InputError(f"--gpus-per-clip must be 0 or more, got {gpus_per_clip:g}")
    if executor == "local":
        if address is not None:
            raise InputError("--address names a Ray cluster; add --executor ray")
        if gpus_per_clip:
            raise InputError("--gpus-per-clip is a Ray resource request; add --executor ray")
        return LocalExecutor(jobs or 1)
    if address is not None and jobs is not None:
        raise InputError("--jobs sizes the local Ray instance; on a cluster (--address) its resources decide")
    from .ray_executor import RayExecutor

    return RayExecutor(address=address, jobs=jobs, cpus_per_clip=cpus_per_clip, gpus_per_clip=gpus_per_clip)


def _clip_report(job: ClipJob, status: str, result: Mapping[str, Any] | None = None, error: str = "") -> ClipReport:
    result = result or {}
    return ClipReport(
        name=job.name,
        input=str(job.input),
        output_dir=str(job.output_dir),
        status=status,
        frames=int(result.get("frames") or 0),
        seconds=float(result.get("seconds") or 0.0),
        backend=str(result.get("backend") or ""),
        precision=str(result.get("precision") or ""),
        error=error or str(result.get("error") or ""),
        outputs=[str(p) for p in result.get("outputs") or []],
        warnings=[str(w) for w in result.get("warnings") or []],
    )


def run_batch(
    source: str | Path,
    output_dir: str | Path,
    *,
    executor: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    cpus_per_clip: float = 1.0,
    gpus_per_clip: float = 0.0,
    force: bool = False,
    observer: BatchObserver | None = None,
    **options: Any,
) -> BatchReport:
    """Matte every clip of SOURCE (a folder of clips with masks beside them, or a CSV / JSON Lines
    manifest) into OUTDIR; returns the report, also written to OUTDIR/batch-report.json.

    ``options`` are per-clip options for every clip (any keyword of ``convert_video``/``matte``,
    plus ``mask_box``/``mask_provider``); a manifest row's own values win over them. A clip whose
    outputs a previous run completed with the same input and options is skipped unless ``force``.
    Problems with the batch itself raise before anything runs; a clip's own failure is in the
    report (``report.exit_code`` is non-zero). KeyboardInterrupt ends the batch with the finished
    clips kept and ``report.interrupted`` set.
    """
    from ...media.writers import check_writable

    started_at = time.perf_counter()
    keywords = clip_keywords()
    batch_options = check_options(options, "batch option", keywords)
    outdir = Path(output_dir).expanduser().absolute()
    plan = plan_jobs(source, outdir, batch_options, keywords)
    runner = make_executor(executor, jobs, address, cpus_per_clip, gpus_per_clip)
    check_writable(outdir)  # only now: a batch refused above leaves no OUTDIR behind
    if isinstance(runner, LocalExecutor) and runner.jobs > 1:
        share = max(1, (os.cpu_count() or 1) // runner.jobs)
        for job in plan:
            if job.options.get("threads") is None:
                job.options["threads"] = share  # the cores shared out, instead of each taking all

    reports: dict[str, ClipReport] = {}
    report = BatchReport(str(source), str(outdir), executor, [])
    fingerprints: dict[str, str] = {}
    to_run: list[ClipJob] = []
    early: list[tuple[ClipJob, ClipReport]] = []
    for job in plan:
        if job.problem:
            early.append((job, _clip_report(job, "failed", error=job.problem)))
            continue
        fingerprints[job.key] = fingerprint(job)
        record = None if force else completed(outdir, job, fingerprints[job.key])
        if record is not None:
            early.append((job, _clip_report(job, "skipped", record)))
        else:
            to_run.append(job)

    def publish(job: ClipJob, clip: ClipReport) -> None:
        reports[job.key] = clip
        report.clips = [reports[j.key] for j in plan if j.key in reports]
        report.seconds = time.perf_counter() - started_at
        report.write(outdir)
        if observer is not None:
            observer.clip_finished(clip)

    def on_result(job: ClipJob, result: dict[str, Any]) -> None:
        if result.get("status") == "done":
            write_record(outdir, job, fingerprints[job.key], result)
            publish(job, _clip_report(job, "done", result))
        else:
            remove_partials(job)
            publish(job, _clip_report(job, "failed", result))

    if observer is not None:
        observer.started(len(plan), len(to_run), runner.describe())
    for job, clip in early:
        publish(job, clip)
    with signals_as_interrupts():  # SIGTERM/SIGHUP stop the batch the way Ctrl-C does
        try:
            if to_run:
                runner.run(to_run, on_result)
        except KeyboardInterrupt:
            report.interrupted = True
    for job in to_run:
        if job.key not in reports:
            remove_partials(job)
            reports[job.key] = _clip_report(job, "cancelled", error="the batch was interrupted before it finished")
            if observer is not None:
                observer.clip_finished(reports[job.key])
    report.clips = [reports[j.key] for j in plan]
    report.seconds = time.perf_counter() - started_at
    report.write(outdir)
    return report
