"""The ``matanyone`` command line."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import typer

from .. import plugins
from ..app.options import parse_size
from ..bench.command import bench
from ..engine.errors import MatanyoneError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="MatAnyone video matting through interchangeable backends (PyTorch, ONNX Runtime, CoreML).",
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def run(
    input: Path = typer.Argument(..., help="Video file or folder of image frames."),
    mask: Path | None = typer.Option(
        None, "--mask", "-m", help="First-frame mask (white = foreground); or use --mask-box / --mask-provider."
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
    weights: str = typer.Option(
        "official",
        "--weights",
        "-w",
        help="official (cached, downloaded on first use), a .pth/.safetensors path, or "
        "seeded:v1-pm (random test weights).",
    ),
    warmup: int = typer.Option(10, help="First-frame warm-up iterations (official default 10)."),
    erode: int = typer.Option(10, help="Mask erosion kernel size; 0 disables."),
    dilate: int = typer.Option(10, help="Mask dilation kernel size; 0 disables."),
    max_size: int = typer.Option(-1, "--max-size", help="Cap the shorter side (downscale); -1 keeps the size."),
    start: int = typer.Option(0, help="First input frame to process."),
    frames: int | None = typer.Option(None, help="Number of frames to process."),
    outputs: list[str] = typer.Option(["alpha"], "--outputs", help="alpha, foreground, rgba, transparent."),
    alpha_format: str = typer.Option("png16", "--alpha-format", help="png16, png8 or video."),
    background: str = typer.Option("120,255,155", help="Composite background: colour name, #RRGGBB, R,G,B or image."),
    video_format: str = typer.Option("prores", "--video-format", help="Transparent video: prores or webm."),
    precision: str = typer.Option(
        "fp32",
        help="fp32 | bf16 (torch: the official demo's CPU autocast) | fp16 | fast (each backend's quickest "
        "precision within the official demo's accuracy; the choice is printed).",
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
) -> None:
    """Matte INPUT, writing one alpha frame per input frame under OUTPUT/<input name>/."""
    matte_clip(
        input,
        output,
        mask=mask,
        mask_box=mask_box,
        mask_provider=mask_provider,
        quiet=quiet,
        outputs=[o.strip() for item in outputs for o in item.split(",") if o.strip()],
        alpha_format=alpha_format,
        background=background,
        video_format=video_format,
        weights=weights,
        backend=backend,
        warmup=warmup,
        erode=erode,
        dilate=dilate,
        max_size=max_size,
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
    mask: Path | None,
    mask_box: str | None,
    mask_provider: str | None,
    quiet: bool,
    **options: Any,
) -> None:
    """What ``run`` does with its parsed options; ``demo`` calls it too, with plain values.

    Plain Python (no typer defaults), so a caller that leaves an option out gets the API's
    default rather than a typer ``OptionInfo`` object."""
    from ..app.api import convert_video
    from ..media.mask_providers import first_frame_mask

    started = time.perf_counter()
    progress_cb, finish = _progress(quiet)
    try:
        first_mask = first_frame_mask(
            input, mask=mask, mask_box=mask_box, mask_provider=mask_provider, start=options.get("start", 0)
        )
        if not quiet:
            _say_choices(options.get("backend", "auto"), options.get("precision", "fp32"), options.get("placement"))
        written = convert_video(input, first_mask, output, progress=progress_cb, **options)
    except MatanyoneError as exc:
        finish()
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        finish()
        _fail("interrupted; no output was written", 130)
    count = finish()
    if not quiet:
        elapsed = time.perf_counter() - started
        fps = count / elapsed if elapsed > 0 else 0.0
        names = ", ".join(str(p) for p in written)
        typer.echo(
            f"{count} frames in {elapsed:.1f} s ({fps:.2f} fps) with {options.get('backend', 'auto')}: {names}",
            err=True,
        )


def _say_choices(backend: str, precision: str, placement: Any) -> None:
    """What ``--backend auto`` and ``--precision fast`` turned into here, and why (one line each)."""
    from ..app.loading import auto_choice, precision_plan

    if backend == "auto":
        choice = auto_choice(precision=precision)
        placed = "".join(f", {m}={b}" for m, b in choice.placement.items())
        typer.echo(f"backend auto: {choice.backend}{placed} at {choice.precision} ({choice.reason})", err=True)
    if precision == "fast":
        for name, (chosen, why) in precision_plan(backend, "fast", placement).items():
            typer.echo(f"precision fast on {name}: {chosen} ({why})", err=True)


def _progress(quiet: bool):
    """A rich progress bar on a terminal; nothing otherwise. Returns (update, finish->count)."""
    state = {"count": 0, "bar": None, "task": None}

    def update(index: int) -> None:
        state["count"] = index + 1
        if quiet or not sys.stderr.isatty():
            return
        if state["bar"] is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            bar = Progress(
                TextColumn("matting"),
                BarColumn(),
                TextColumn("{task.completed} frames"),
                TextColumn("{task.fields[fps]:.2f} fps"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            bar.start()
            state["bar"], state["task"], state["t0"] = (
                bar,
                bar.add_task("matting", total=None, fps=0.0),
                time.perf_counter(),
            )
        elapsed = time.perf_counter() - state["t0"]
        state["bar"].update(state["task"], completed=index + 1, fps=(index + 1) / max(elapsed, 1e-9))

    def finish() -> int:
        if state["bar"] is not None:
            state["bar"].stop()
        return state["count"]

    return update, finish


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


@app.command()
def export(
    format: str = typer.Option(..., "--format", "-f", help="Export format (see `matanyone doctor`)."),
    weights: str = typer.Option("seeded:v1-pm", "--weights", "-w"),
    size: str = typer.Option("432x768", help="HxW; rounded up to multiples of 16."),
    mem_frames: int = typer.Option(5, "--mem-frames", help="Working-memory frames T."),
    precision: str = typer.Option("fp32", help="fp32 or fp16."),
    target: str | None = typer.Option(None, help="Deployment target (coreml: macOS14 or iOS17)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    no_validate: bool = typer.Option(False, "--no-validate", help="Skip the check against PyTorch."),
) -> None:
    """Export the five modules for one size, with a manifest."""
    from ..engine.padding import padded_size
    from ..engine.spec import Dims

    exporters = plugins.exporters()
    if format not in exporters:
        _fail(f"unknown export format {format!r}; known: {', '.join(sorted(exporters)) or 'none'}", 2)
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
    from importlib import metadata

    lines = [f"python {platform.python_version()} on {platform.platform()} ({platform.machine()})"]
    for dist in (
        "matanyone-engine",
        "numpy",
        "torch",
        "onnxruntime",
        "onnx",
        "coremltools",
        "av",
        "opencv-python-headless",
    ):
        try:
            lines.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{dist} not installed")
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


app.command("bench")(bench)


def main() -> None:
    plugins.get_plugin_manager().hook.register_commands(cli=app)
    app()


if __name__ == "__main__":
    main()
