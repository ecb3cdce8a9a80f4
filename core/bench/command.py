"""``matanyone bench``: the command line over the runner, the placement search and the report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from .. import plugins
from ..app.loading import backend_for, check_runs_folder, folder_backends, resolve_backend, write_profile
from ..app.models import ModelFolder, open_model_folder, settle_request
from ..app.options import PrecisionChoice, parse_size
from ..engine.errors import BackendError, InputError, MatanyoneError
from .clip import load_clip
from .configs import available_backends, plan_configs
from .placement import keep_single, search_configs, search_placement, verification_configs
from .report import render_table, write_json, write_plot
from .runner import DEFAULT_WEIGHTS, Log, run_bench

DEFAULT_SIZE = "432x768"


def bench(
    backend: list[str] | None = typer.Option(
        None,
        "--backend",
        "-b",
        help="Backend to measure (repeatable; default: every available one; 'auto' = the search profile).",
    ),
    size: str | None = typer.Option(
        None, help=f"Frame size HxW the clip is resized to (default {DEFAULT_SIZE}; with --models the folder's)."
    ),
    frames: int = typer.Option(8, help="Frames per clip pass (frame 0 seeds; the rest are timed per frame)."),
    runs: int = typer.Option(3, help="Measured clip passes per configuration."),
    warmup_runs: int = typer.Option(2, "--warmup-runs", help="Discarded clip passes per configuration first."),
    state_warmup: int = typer.Option(
        1, "--state-warmup", help="Extra first-frame predictions on frame 0 per pass (the demo uses 10)."
    ),
    threads: int | None = typer.Option(None, help="CPU threads for every backend (default: the runtime's)."),
    weights: str | None = typer.Option(
        None,
        "--weights",
        "-w",
        help=f"Checkpoint or seeded:v1-pm (timing is the same; default {DEFAULT_WEIGHTS}, with --models the folder's).",
    ),
    models: Path | None = typer.Option(
        None,
        "--models",
        help="Time the models of a folder written by `matanyone export` (no torch needed): its manifest decides "
        "size, memory frames, precision and weights; default backends: those that run its format here.",
    ),
    precision: list[PrecisionChoice] | None = typer.Option(
        None, "--precision", "-p", help="Precision (repeatable, default fp32); one result per backend x precision."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full report as JSON here."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG bar chart of per-module medians here."),
    placement: str | None = typer.Option(
        None, help="Also measure this mix (encoder=onnx-cpu,read=torch or a profile.json) next to the plain backends."
    ),
    search: bool = typer.Option(
        False,
        "--search",
        help="Measure every backend at every admissible precision (-p restricts them); write the fastest "
        "precision per backend, configuration and per-module placement for --backend auto / --precision fast.",
    ),
    profile_out: Path | None = typer.Option(
        None, "--profile", help="Where --search writes the placement profile (default: the cache's placement.json)."
    ),
    clip: Path | None = typer.Option(
        None, "--clip", help="Clip to time (default: ../shared/data sample, else generated)."
    ),
    mask: Path | None = typer.Option(
        None, "--mask", help="First-frame mask for --clip (default: the clip's name .png)."
    ),
    synthetic: bool = typer.Option(False, "--synthetic", help="Use the generated clip even if the sample exists."),
    in_process: bool = typer.Option(
        False, "--in-process", help="Run every configuration in this process (peak memory is then the process's)."
    ),
    prepare: bool = typer.Option(
        True, "--prepare/--no-prepare", help="Load each configuration once first, so exports do not count as load."
    ),
    pipeline: bool = typer.Option(
        False, "--pipeline", help="Also measure each configuration with the next frame's image encoder overlapped."
    ),
    subjects: int = typer.Option(
        1,
        "--subjects",
        help="Also measure 2..K subjects per run (one state machine each, one shared image encoder), "
        "each against K separate one-subject runs.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Time each module and each frame per backend x precision through the real state machine."""
    from rich.console import Console

    log_console = Console(stderr=True)
    log: Log | None = None if quiet else (lambda m: log_console.print(f"[dim]{m}[/dim]"))
    try:
        report, profile_path = bench_command(
            backends=backend,
            size=size,
            frames=frames,
            runs=runs,
            warmup_runs=warmup_runs,
            state_warmup=state_warmup,
            threads=threads,
            weights=weights,
            models=models,
            precisions=[p.value for p in precision] if precision else None,
            json_out=json_out,
            plot=plot,
            placement=placement,
            search=search,
            profile_out=profile_out,
            clip=clip,
            mask=mask,
            synthetic=synthetic,
            isolate=not in_process,
            prepare=prepare,
            log=log,
            pipeline=pipeline,
            subjects=subjects,
        )
    except MatanyoneError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    render_table(report)
    if profile_path is not None:
        log_console.print(f"placement profile: {profile_path}")
    failed = [r["label"] for r in report["results"] if "error" in r]
    if failed and not search:
        typer.echo(f"error: {len(failed)} configuration(s) failed: {', '.join(failed)}", err=True)
        raise typer.Exit(BackendError.exit_code)


def bench_command(
    *,
    backends: Sequence[str] | None = None,
    size: str | None = None,
    frames: int = 8,
    runs: int = 3,
    warmup_runs: int = 2,
    state_warmup: int = 1,
    threads: int | None = None,
    weights: str | None = None,
    models: str | Path | None = None,
    precisions: Sequence[str] | None = None,
    json_out: Path | None = None,
    plot: Path | None = None,
    placement: str | None = None,
    search: bool = False,
    profile_out: Path | None = None,
    clip: Path | None = None,
    mask: Path | None = None,
    synthetic: bool = False,
    isolate: bool = True,
    prepare: bool = True,
    log: Log | None = None,
    pipeline: bool = False,
    subjects: int = 1,
) -> tuple[dict[str, Any], Path | None]:
    """Everything ``bench`` does except printing: returns (report, profile path or None).

    With ``search`` the configurations are every available backend (or the listed ones) at every
    precision it offers that is admissible and not emulated here (``-p`` restricts them); the
    chosen mix, when it uses more than one backend, is then measured against the fastest single
    configuration and kept only if it wins (the comparison is stored under ``verified``).

    With ``models`` (a folder from ``matanyone export``) every configuration loads from it: the
    clip is resized to the folder's size and its precision, memory frames and weights are used
    (asking for others is refused); backends default to those that run its format here.
    """
    folder = open_model_folder(models) if models is not None else None
    mem_frames = 5
    if folder is not None:
        asked = parse_size(size) if size is not None else None
        for asked_precision in precisions or []:
            settle_request(folder, precision=asked_precision)
        weights, folder_precision, mem_frames = settle_request(folder, weights=weights, size=asked)
        precisions = [folder_precision]
        backends = _folder_backend_names(folder, backends)
        height, width = folder.size
    else:
        height, width = parse_size(size if size is not None else DEFAULT_SIZE)
    weights = DEFAULT_WEIGHTS if weights is None else weights
    if plot is not None:
        try:  # fail before minutes of measuring, not after
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError("--plot needs matplotlib: pip install matplotlib") from None
    common: dict[str, Any] = {
        "weights": weights,
        "runs": runs,
        "warmup_runs": warmup_runs,
        "state_warmup": state_warmup,
        "threads": threads,
        "isolate": isolate,
        "prepare": prepare,
        "log": log,
        "models": folder,
        "mem_frames": mem_frames,
    }
    if search:
        chosen = list(dict.fromkeys(b for b in (backends or available_backends()) if b != "auto"))
        if not chosen:
            raise BackendError("no backend is available here; see `matanyone backends`")
        configs = search_configs(chosen, list(precisions or []), log)
    else:
        configs = plan_configs(backends, precisions, placement, pipeline, subjects)
    _check_memory(configs, height, width)
    data = load_clip((height, width), frames, clip, mask, synthetic)
    if log:
        log(
            f"clip: {data.source}, {frames} frames at {height}x{width}; "
            f"{len(configs)} configuration(s): {', '.join(c.label for c in configs)}"
        )
    report = run_bench(configs, data, **common)
    profile_path: Path | None = None
    if search:
        profile = search_placement(report)
        pair = verification_configs(profile)
        if pair is None and len(set(profile["placement"].values())) > 1:
            keep_single(profile, "the per-module winners run at different precisions; one load runs one")
        elif pair is not None:
            single, placed = pair
            if log:
                log(f"verifying the mixed placement {profile['placement']} against {single.label}")
            check = run_bench([single, placed], data, **common)
            ratio = check["ratios"].get("frame", {}).get(placed.label)
            profile["verified"] = {
                "frame_median_ms": {r["label"]: r.get("frame", {}).get("median_ms") for r in check["results"]},
                "ratio_placed_over_single": ratio,
            }
            report["verification"] = check
            if ratio is None or ratio >= 1.0:
                keep_single(profile, f"the mix measured {ratio} x the single configuration's frame time")
        report["placement_profile"] = profile
        profile_path = write_profile(profile, profile_out)
    if json_out is not None:
        write_json(report, json_out)
    if plot is not None:
        write_plot(report, plot)
    return report, profile_path


def _folder_backend_names(folder: ModelFolder, asked: Sequence[str] | None) -> list[str]:
    """The backends to time a model folder on: the asked ones (``auto`` resolved for the folder),
    each checked to run its format, else every one that runs it here."""
    if not asked:
        names = folder_backends(folder)
        if not names:
            backend_for("auto", folder)  # raises the one line saying what to install
        return names
    names = [backend_for(name, folder) for name in asked]
    for name in names:
        if name in plugins.backends():  # the format first: it says which backend would run the folder
            check_runs_folder(name, plugins.backends()[name], folder)
        resolve_backend(name)
    return list(dict.fromkeys(names))


def _check_memory(configs: Sequence[Any], height: int, width: int) -> None:
    """Refuse up front, with the one-line estimate, a size some configuration cannot fit; every
    configuration runs in its own worker, so each must fit on its own."""
    from ..app.loading import module_memory_profiles
    from ..app.memory import check_fits

    for config in configs:
        check_fits(height, width, module_memory_profiles(config.backend, dict(config.placement)), backend=config.label)
