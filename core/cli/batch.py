"""``matanyone batch``: parsing and printing around app.batch.run_batch.

The command takes its own options (executor, jobs, resume) plus every option of ``matanyone run``
that sets how a clip is matted, copied from ``run``'s own declaration when the command is
registered: the same flags, defaults and help, so an option added to ``run`` (and to the API it
passes through) is a batch option too, and a batch clip gets what ``run`` would give it.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..app.batch import BatchReport, ClipReport
from ..engine.errors import MatanyoneError

#: ``run`` parameters that are not per-clip options of a batch: the clip and its mask file come
#: from SOURCE, the output folder and quiet are the batch's own.
NOT_SHARED = frozenset({"input", "mask", "output", "quiet"})
#: The command's help, one paragraph per string (rich keeps a docstring's line breaks).
HELP = "\n\n".join(
    [
        "Matte many clips into OUTDIR, resumably: a rerun skips finished clips, and a failed clip does not stop "
        "the rest.",
        "Each clip's outputs are what `matanyone run` writes for it; manifest values win over the options given "
        "here. The report is OUTDIR/batch-report.json; the exit status is 1 when a clip failed, 130 when "
        "interrupted (a rerun resumes the batch). See docs/batch.md.",
    ]
)


def batch(
    source: Path = typer.Argument(
        ...,
        help="A folder of clips (videos or frame folders, each mask beside it as <name>.png), or a .csv/.jsonl "
        "manifest (columns: input, mask, output, and any run option).",
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder (OUTDIR)."),
    executor: str = typer.Option("local", "--executor", "-e", help="local (worker processes) or ray."),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        "-j",
        help="Clips at a time: local worker processes (default 1), or the local Ray instance's size.",
    ),
    address: str | None = typer.Option(
        None, "--address", help="An existing Ray cluster (ray://head:10001, or auto); default: start a local one."
    ),
    cpus_per_clip: float = typer.Option(1.0, "--cpus-per-clip", help="Ray: CPUs each clip's task asks for."),
    gpus_per_clip: float = typer.Option(0.0, "--gpus-per-clip", help="Ray: GPUs each clip's task asks for."),
    force: bool = typer.Option(False, "--force", help="Redo clips a previous run already finished."),
    set_options: list[str] = typer.Option(
        [], "--set", help="KEY=VALUE for any per-clip option (e.g. mem_frames=3), repeatable."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary table."),
    **clip_options: Any,
) -> None:
    """``matanyone batch`` with its own options; ``register`` adds ``run``'s per-clip ones."""
    from ..app.batch import run_batch

    options = dict(clip_options)
    if options.get("outputs") is not None:
        options["outputs"] = [o.strip() for item in options["outputs"] for o in str(item).split(",") if o.strip()]
    for item in set_options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            typer.echo(f"error: bad --set {item!r}; write KEY=VALUE, e.g. --set mem_frames=3", err=True)
            raise typer.Exit(2)
        options[key.strip()] = value
    view = BatchView(quiet)
    try:
        report = run_batch(
            source,
            output,
            executor=executor,
            jobs=jobs,
            address=address,
            cpus_per_clip=cpus_per_clip,
            gpus_per_clip=gpus_per_clip,
            force=force,
            observer=view,
            **options,
        )
    except MatanyoneError as exc:
        view.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        view.close()
        typer.echo("error: interrupted before any clip ran; nothing was written", err=True)
        raise typer.Exit(130) from None
    view.close()
    view.summary(report)
    if report.interrupted:
        typer.echo(f"interrupted: finished clips are kept; rerun the same command to resume ({output})", err=True)
    raise typer.Exit(report.exit_code)


class BatchView:
    """One overall rich bar (clips done/total, frames/s, ETA) on a terminal, a line per finished
    clip always (stderr), and the summary table at the end."""

    def __init__(self, quiet: bool):
        from rich.console import Console

        self.quiet = quiet
        self.console = Console(stderr=True)
        self.bar: Any = None
        self.task: Any = None
        self.frames = 0
        self.early = 0  # skipped / unrunnable clips, reported first and already counted as completed
        self.t0 = time.perf_counter()

    def started(self, total: int, to_run: int, executor: str) -> None:
        self.t0 = time.perf_counter()
        self.early = total - to_run
        if self.quiet:
            return
        self.console.print(f"batch: {total} clips, {to_run} to run, on {executor}")
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("clips  {task.fields[fps]:.2f} frames/s  ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("batch", total=total, completed=total - to_run, fps=0.0)

    def clip_finished(self, clip: ClipReport) -> None:
        if clip.status == "done":
            self.frames += clip.frames
        if self.early > 0:
            self.early -= 1
        elif self.bar is not None:
            elapsed = max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(self.task, advance=1, fps=self.frames / elapsed)
        if self.quiet:
            return
        self.console.print(_line(clip), highlight=False, markup=False, soft_wrap=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def summary(self, report: BatchReport) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table("clip", "status", "frames", "seconds", "fps", "backend", "precision", "error")
        for clip in report.clips:
            table.add_row(
                clip.name,
                clip.status,
                str(clip.frames) if clip.frames else "",
                f"{clip.seconds:.1f}" if clip.seconds else "",
                f"{clip.fps:.2f}" if clip.fps else "",
                clip.backend,
                clip.precision,
                clip.error,
            )
        Console(file=sys.stdout, width=max(120, Console().width)).print(table)
        counts = ", ".join(
            f"{report.count(s)} {s}" for s in ("done", "skipped", "failed", "cancelled") if report.count(s)
        )
        typer.echo(
            f"{counts} in {report.seconds:.1f} s; report: {Path(report.output_dir) / 'batch-report.json'}", err=True
        )


def _line(clip: ClipReport) -> str:
    if clip.status == "done":
        return (
            f"done      {clip.name}: {clip.frames} frames in {clip.seconds:.1f} s ({clip.fps:.2f} fps) "
            f"with {clip.backend} {clip.precision}" + "".join(f"\n          warning: {w}" for w in clip.warnings)
        )
    if clip.status == "skipped":
        return f"skipped   {clip.name}: already done with this input and these options (--force redoes it)"
    return f"{clip.status:<9} {clip.name}: {clip.error}"


def register(app: typer.Typer, run: Callable[..., Any]) -> None:
    """Add ``batch`` to ``app``, with ``run``'s per-clip options appended to its own."""
    from ..app.clip_options import clip_keywords

    keywords = clip_keywords()
    own = [p for p in inspect.signature(batch, eval_str=True).parameters.values() if p.kind != p.VAR_KEYWORD]
    shared = [
        p.replace(kind=p.KEYWORD_ONLY)
        for p in inspect.signature(run, eval_str=True).parameters.values()
        if p.name not in NOT_SHARED and p.name in keywords
    ]

    def command(**params: Any) -> None:
        mine = {p.name: params.pop(p.name) for p in own}
        batch(**mine, **params)

    command.__signature__ = inspect.Signature([*(p.replace(kind=p.KEYWORD_ONLY) for p in own), *shared])  # type: ignore[attr-defined]  # typer reads the signature, and this one is built
    command.__annotations__ = {p.name: p.annotation for p in (*own, *shared)}
    app.command("batch", help=HELP)(command)
