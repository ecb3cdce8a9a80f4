"""The ``matanyone`` command line."""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import typer
import typer.core

from .. import plugins
from ..app import interrupts
from ..app.options import Precision, check_run_options, parse_size
from ..bench.command import bench
from ..engine.errors import MatanyoneError, MemoryLimitError
from .batch import register as register_batch

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="MatAnyone video matting through interchangeable backends (PyTorch, ONNX Runtime, CoreML).",
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


class OneLineErrors(typer.core.TyperCommand):
    """A command whose usage errors (an unknown choice, a missing argument) are one ``error:``
    line and exit 2, like every other refusal, instead of click's usage block."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except typer.TyperException as exc:  # typer's own (vendored) click usage errors derive from it
            typer.echo(f"error: {exc.format_message()} (see `matanyone {info_name} --help`)", err=True)
            raise typer.Exit(2) from None


#: Fixed-value options as Literal types, so typer shows the choices in --help and refuses others;
#: tests/test_inputs.py checks they list exactly the values the writers, the API, the built-in
#: exporters and backends take (``Precision`` is app.options', shared with bench).
AlphaFormat = Literal["png16", "png8", "video"]
VideoFormat = Literal["prores", "webm"]
OutputSize = Literal["input", "network"]
Upsample = Literal["guided", "bilinear"]
ExportPrecision = Literal["fp32", "fp16"]
CoreMLTarget = Literal["macOS13", "macOS14", "macOS15", "iOS16", "iOS17", "iOS18"]


@contextmanager
def _console(verbose: bool) -> Iterator[None]:
    """Warnings as one ``warning:`` line each (never Python's file:line banner) and, with
    --verbose, the pipeline's notes (input orientation, frame order, mask reading) on stderr."""

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        typer.echo(f"warning: {text}", err=True)

    logger = logging.getLogger("matanyone_engine")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        if verbose:
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            if verbose:
                logger.removeHandler(handler)
                logger.setLevel(level)


@app.command(cls=OneLineErrors)
def run(
    input: Path = typer.Argument(..., help="Video file or folder of image frames."),
    mask: list[Path] | None = typer.Option(
        None,
        "--mask",
        "-m",
        help="First-frame mask (white = foreground); repeat it for several subjects, or give one label image "
        "(palette/gray PNG of subject ids); or use --mask-box / --mask-provider.",
    ),
    subjects: str | None = typer.Option(
        None,
        "--subjects",
        help="Subjects to matte: ids of a label image, or positions of the --mask files (1,3 or all). "
        "Each gets its own outputs (OUTDIR/<input>/alpha/<subject>/, <input>_<subject>_foreground.mp4).",
    ),
    union: bool = typer.Option(
        False, "--union", help="With several subjects, also write every output for their union (subject 'union')."
    ),
    mask_frame: int | None = typer.Option(
        None,
        "--mask-frame",
        help="Input frame the mask belongs to (default: the first processed); frames before it are matted "
        "backwards from it.",
    ),
    mask_box: str | None = typer.Option(
        None, "--mask-box", help="First-frame box x,y,w,h in pixels; the mask is cut out by GrabCut."
    ),
    mask_provider: str | None = typer.Option(
        None,
        "--mask-provider",
        help="First-frame mask source: file, box, vision or a plugin's (see `matanyone plugins`).",
    ),
    output: Path = typer.Option(Path("out"), "-o", "--output", help="Output folder."),
    backend: str = typer.Option(
        "auto",
        "--backend",
        "-b",
        help="Backend name (see `matanyone backends`); auto = the measured placement profile, "
        "else the fastest available.",
    ),
    weights: str | None = typer.Option(
        None,
        "--weights",
        "-w",
        help="official (MatAnyone, the default) or official2 (MatAnyone 2): cached, downloaded on first use; "
        "a .pth/.safetensors path; or seeded:v1-pm (random test weights). With --models the folder's weights.",
        show_default=False,
    ),
    models: Path | None = typer.Option(
        None,
        "--models",
        help="Run from a folder written by `matanyone export` (ONNX or Core ML): its manifest decides size, "
        "memory frames, precision and weights; no checkpoint or torch needed. Clips of any size are fitted to it.",
    ),
    package_size: str | None = typer.Option(
        None,
        "--package-size",
        help="HxW the modules are built for, every clip fitted to it (rotated/letter-boxed, alpha mapped back); "
        "Core ML backends default to 432x768.",
    ),
    warmup: int = typer.Option(10, help="First-frame warm-up iterations (official default 10)."),
    erode: int = typer.Option(10, help="Mask erosion kernel size; 0 disables."),
    dilate: int = typer.Option(10, help="Mask dilation kernel size; 0 disables."),
    max_size: int = typer.Option(
        -1, "--max-size", help="Run the network with this shorter side (downscale); -1 keeps the size."
    ),
    output_size: OutputSize = typer.Option(
        "input",
        "--output-size",
        help="input: outputs at the input's resolution (alpha upsampled, see --upsample); "
        "network: at the --max-size resolution, as the official demo writes them.",
    ),
    upsample: Upsample = typer.Option(
        "guided", "--upsample", help="How alpha reaches the input's resolution: guided (edge-aware) or bilinear."
    ),
    start: int = typer.Option(0, help="First input frame to process (0 is the first)."),
    frames: int | None = typer.Option(None, help="Number of frames to process (default: all)."),
    outputs: list[str] = typer.Option(["alpha"], "--outputs", help="alpha, foreground, rgba, transparent."),
    alpha_format: AlphaFormat = typer.Option("png16", "--alpha-format", help="Alpha output."),
    background: str = typer.Option("120,255,155", help="Composite background: colour name, #RRGGBB, R,G,B or image."),
    video_format: VideoFormat = typer.Option("prores", "--video-format", help="Transparent video format."),
    precision: Precision | None = typer.Option(
        None,
        help="fp32 (the default) | bf16: torch's official-demo CPU autocast | fp16: fp16 exports | fast: each "
        "backend's quickest precision within the official demo's accuracy (the choice is printed). With --models "
        "the folder's.",
        show_default=False,
    ),
    placement: str | None = typer.Option(
        None, help="Per-module backends: encoder=onnx-cpu,read=torch or a profile.json."
    ),
    threads: int | None = typer.Option(None, help="CPU threads for the backend."),
    pipeline: bool | None = typer.Option(
        None,
        "--pipeline/--no-pipeline",
        help="Run the next frame's image encoder during the current frame (default: only when "
        "the encoder is on a GPU/ANE).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Say how the input and mask are read (rotation, frame order, mask kind)."
    ),
) -> None:
    """Matte INPUT, writing one alpha frame per input frame under OUTPUT/<input name>/."""
    matte_clip(
        input,
        output,
        mask=mask,
        mask_box=mask_box,
        mask_provider=mask_provider,
        quiet=quiet,
        verbose=verbose,
        subjects=subjects,
        union=union,
        mask_frame=mask_frame,
        outputs=[o.strip() for item in outputs for o in item.split(",") if o.strip()],
        alpha_format=alpha_format,
        background=background,
        video_format=video_format,
        weights=weights if weights is not None or models is not None else "official",
        models=models,
        package_size=package_size,
        backend=backend,
        warmup=warmup,
        erode=erode,
        dilate=dilate,
        max_size=max_size,
        output_size=output_size,
        upsample=upsample,
        start=start,
        frames=frames,
        precision=precision,
        placement=placement,
        threads=threads,
        pipeline=pipeline,
    )


def matte_clip(
    input: Path,
    output: Path,
    *,
    mask: Path | Sequence[Path] | None,
    mask_box: str | None,
    mask_provider: str | None,
    quiet: bool,
    verbose: bool = False,
    **options: Any,
) -> None:
    """What ``run`` does with its parsed options; ``demo`` calls it too, with plain values.

    Plain Python (no typer defaults), so a caller that leaves an option out gets the API's
    default rather than a typer ``OptionInfo`` object. The work is ``app.jobs.run_clip`` (which
    ``batch`` runs for each clip); this only prints. However it ends (bad input, Ctrl-C,
    SIGTERM, SIGHUP), it ends with one line and either complete outputs or none."""
    from ..app.jobs import run_clip

    def announce(plan) -> None:
        if not quiet:
            for name, (chosen, why) in plan.items():
                typer.echo(f"precision fast on {name}: {chosen} ({why})", err=True)

    progress_cb, finish = _progress(quiet)
    try:
        with interrupts.signals_as_interrupts(), _console(verbose and not quiet):
            check_run_options(**options)
            if not quiet and options.get("backend", "auto") == "auto" and options.get("models") is None:
                _say_auto(options.get("precision") or "fp32")
            result = run_clip(
                input,
                output,
                mask=mask,
                mask_box=mask_box,
                mask_provider=mask_provider,
                progress=progress_cb,
                announce=announce,
                **options,
            )
    except MatanyoneError as exc:
        finish()
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt as exc:
        finish()
        _fail(f"{interrupts.describe(exc)}; no output was written", interrupts.exit_code(exc))
    except MemoryError:  # an allocation outside the backends (decoding, writing, upsampling)
        finish()
        _fail(
            "ran out of memory; pass a smaller --max-size or free memory (no output was written)",
            MemoryLimitError.exit_code,
        )
    finish()
    if not quiet:
        names = ", ".join(str(p) for p in result.outputs)
        typer.echo(
            f"{result.frames} frames in {result.seconds:.1f} s ({result.fps:.2f} fps) with "
            f"{result.backend} {result.precision}: {names}",
            err=True,
        )
        if Path(input).is_dir():
            typer.echo(_folder_order(Path(input), options.get("start", 0), result.frames), err=True)


def _folder_order(folder: Path, start: int, count: int) -> str:
    """'frames in natural order: 1.png, 2.png, ..., 10.png', the files the run actually read."""
    from ..media.video import frame_files

    names = [p.name for p in frame_files(folder)][start : start + count]
    shown = names if len(names) <= 4 else [*names[:3], "...", names[-1]]
    return f"frames read in natural order: {', '.join(shown)}"


def _first_mask(
    input: Path, mask: Path | Sequence[Path] | None, mask_box: str | None, mask_provider: str | None, options: Any
):
    """The ``--mask`` files (one per subject) or the one mask a box or provider makes, on the
    mask's frame (``--mask-frame``, else ``--start``)."""
    from ..engine.errors import InputError
    from ..media.mask_providers import first_frame_mask

    files = [mask] if isinstance(mask, Path) else list(mask or [])
    if len(files) > 1:
        if mask_box is not None or mask_provider is not None:
            raise InputError(
                "--mask-box and --mask-provider make one subject's mask: pass one --mask per subject instead"
            )
        return files
    frame = options.get("mask_frame")
    return first_frame_mask(
        input,
        mask=files[0] if files else None,
        mask_box=mask_box,
        mask_provider=mask_provider,
        start=frame if frame is not None else options.get("start", 0),
    )


def _say_auto(precision: str) -> None:
    """What ``--backend auto`` turned into here, and why (one line; ``fast``'s plan follows it)."""
    from ..app.loading import auto_choice

    choice = auto_choice(precision=precision)
    placed = "".join(f", {m}={b}" for m, b in choice.placement.items())
    typer.echo(f"backend auto: {choice.backend}{placed} at {choice.precision} ({choice.reason})", err=True)


class _ProgressBar:
    """A rich progress bar on a terminal, nothing otherwise; counts the frames either way."""

    def __init__(self, quiet: bool) -> None:
        self.count = 0
        self._shown = not quiet and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._started = 0.0

    def update(self, index: int) -> None:
        self.count = index + 1
        if not self._shown:
            return
        if self._bar is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("matting"),
                BarColumn(),
                TextColumn("{task.completed} frames"),
                TextColumn("{task.fields[fps]:.2f} fps"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("matting", total=None, fps=0.0)
            self._started = time.perf_counter()
        elapsed = time.perf_counter() - self._started
        self._bar.update(self._task, completed=index + 1, fps=(index + 1) / max(elapsed, 1e-9))

    def finish(self) -> int:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        return self.count


def _progress(quiet: bool) -> tuple[Callable[[int], None], Callable[[], int]]:
    """(update, finish -> frame count) of a progress bar shown only on a terminal."""
    bar = _ProgressBar(quiet)
    return bar.update, bar.finish


@app.command()
def demo(
    output: Path = typer.Option(Path("out"), "-o", "--output", help="Output folder."),
    backend: str = typer.Option("torch", "--backend", "-b"),
    frames: int = typer.Option(20, help="Frames of the clip to process."),
    max_size: int = typer.Option(240, "--max-size", help="Shorter-side cap, to keep the demo quick."),
) -> None:
    """Run the whole job offline on the sample clip (or a generated one) with seeded random weights.

    The weights are random, so the mattes show the pipeline working, not the model's quality.
    """
    from ..app.samples import find_sample_clip, write_generated_clip

    found = find_sample_clip()
    if found is None:
        clip, mask = write_generated_clip(output / "demo_input")
        typer.echo(f"../shared/data not found: generated {clip}", err=True)
    else:
        clip, mask = found
    typer.echo(f"demo: {clip} with seeded:v1-pm weights (random: output shows the pipeline, not quality)", err=True)
    matte_clip(
        clip,
        output,
        mask=mask,
        mask_box=None,
        mask_provider=None,
        quiet=False,
        backend=backend,
        weights="seeded:v1-pm",
        max_size=max_size,
        frames=frames,
        outputs=["alpha", "foreground", "rgba"],
    )


@app.command()
def backends(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List registered backends, whether they run here, and why not."""
    rows = []
    for name, backend in sorted(plugins.backends().items()):
        ok, reason = backend.available()
        devices = backend.devices() if hasattr(backend, "devices") and ok else []
        rows.append(
            {
                "name": name,
                "available": ok,
                "reason": reason,
                "devices": devices,
                "description": getattr(backend, "description", ""),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("backend", "available", "reason / devices", "description")
    for r in rows:
        table.add_row(
            r["name"],
            "yes" if r["available"] else "no",
            ", ".join(r["devices"]) if r["available"] else r["reason"],
            r["description"],
        )
    Console().print(table)


@app.command(cls=OneLineErrors)
def export(
    format: str = typer.Option(..., "--format", "-f", help="Export format (see `matanyone doctor`)."),
    weights: str = typer.Option("seeded:v1-pm", "--weights", "-w"),
    size: str = typer.Option("432x768", help="HxW; rounded up to multiples of 16."),
    mem_frames: int = typer.Option(5, "--mem-frames", help="Working-memory frames T."),
    precision: ExportPrecision = typer.Option("fp32", help="Precision of the exported modules."),
    target: CoreMLTarget | None = typer.Option(None, help="Core ML deployment target (--format coreml only)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    no_validate: bool = typer.Option(False, "--no-validate", help="Skip the check against PyTorch."),
) -> None:
    """Export the five modules for one size, with a manifest."""
    from ..engine.padding import padded_size
    from ..engine.spec import Dims

    exporters = plugins.exporters()
    if format not in exporters:
        _fail(f"unknown export format {format!r}; known: {', '.join(sorted(exporters)) or 'none'}", 2)
    if target is not None and format != "coreml":
        _fail(f"--target is a Core ML deployment target; drop it for --format {format}", 2)
    try:
        dims = Dims(*padded_size(*parse_size(size)), mem_frames)
    except MatanyoneError as exc:
        _fail(str(exc), exc.exit_code)
    kwargs = {"target": target} if target else {}
    try:
        manifest = exporters[format].export(
            weights=weights, dims=dims, precision=precision, out_dir=output, validate=not no_validate, **kwargs
        )
    except MatanyoneError as exc:
        _fail(str(exc), exc.exit_code)
    typer.echo(f"exported {format} ({dims.height}x{dims.width}, T={mem_frames}, {precision}) to {output}")
    del manifest


@app.command("plugins")
def plugins_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List plugins (loaded, excluded, failed), where they come from, their hooks and what they register."""
    from ..plugins.info import plugins_command

    plugins_command(as_json)


@app.command()
def modules(size: str = typer.Option("432x768", help="HxW to resolve shapes for."), mem_frames: int = 5) -> None:
    """Print the declared inputs and outputs of the five modules."""
    from ..engine.padding import padded_size
    from ..engine.spec import Dims, describe

    try:
        dims = Dims(*padded_size(*parse_size(size)), mem_frames)
    except MatanyoneError as exc:
        _fail(str(exc), exc.exit_code)
    typer.echo(json.dumps(describe(dims), indent=2))


@app.command()
def doctor() -> None:
    """Platform, library versions, plugins, providers and cache location."""
    from ..bench.environment import library_versions

    lines = [f"python {platform.python_version()} on {platform.platform()} ({platform.machine()})"]
    lines += [f"{dist} {version or 'not installed'}" for dist, version in library_versions().items()]
    try:
        import onnxruntime

        lines.append("onnxruntime providers: " + ", ".join(onnxruntime.get_available_providers()))
    except ImportError:
        pass
    pm = plugins.get_plugin_manager()
    lines.append("plugins: " + ", ".join(name for name, _ in pm.list_name_plugin()))
    lines.append("exporters: " + ", ".join(sorted(plugins.exporters())))
    from ..artifacts.cache import cache_root

    lines.append(f"cache: {cache_root()}")
    typer.echo("\n".join(lines))


app.command("bench", cls=OneLineErrors)(bench)
register_batch(app, run)


def main() -> None:
    """The console script. Signals end start-up (plugin imports) as cleanly as a run."""
    try:
        with interrupts.signals_as_interrupts():
            plugins.get_plugin_manager().hook.register_commands(cli=app)
            app()
    except KeyboardInterrupt as exc:
        typer.echo(f"error: {interrupts.describe(exc)}", err=True)
        sys.exit(interrupts.exit_code(exc))


if __name__ == "__main__":
    main()
