"""Showing a report: the terminal tables, the JSON file and the PNG chart."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.errors import InputError
from ..engine.files import atomic_write_json
from .configs import module_order


def write_json(data: Mapping[str, Any], path: Path) -> Path:
    """The report as JSON, written atomically (numpy scalars and paths become plain values)."""
    return atomic_write_json(path, data, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def shown_label(result: Mapping[str, Any]) -> str:
    """The result's label, with what ``fast`` became on each backend (``onnx-cpu/fast=fp32``)."""
    resolved = result.get("resolved_precision") or {}
    if result.get("precision") != "fast" or not resolved:
        return result["label"]
    chosen = ",".join(dict.fromkeys(resolved.values()))
    return result["label"].replace("/fast", f"/fast={chosen}", 1)


def render_table(report: Mapping[str, Any], console: Any = None) -> None:
    """The report on ``console`` (stdout by default): a per-frame summary table, a per-module
    table of medians, then the ratios. Two narrow tables rather than one wide one, so they stay
    readable in an 80-column terminal."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    settings, env = report.get("settings", {}), report.get("env", {})
    ratios = report.get("ratios", {})
    size = settings.get("size", ["?", "?"])
    title = (
        f"{size[0]}x{size[1]}, {settings.get('frames')} frames x {settings.get('runs')} runs, "
        f"{env.get('cpu_model')}, {env.get('cpus_usable')} cpus"
    )
    summary = Table(title=title)
    for column in ("config", "ms/frame", "p10-p90", "fps", "ratio", "GFLOP/s", "load s", "peak MB"):
        summary.add_column(column, justify="left" if column == "config" else "right")
    names = module_order(n for r in report["results"] for n in r.get("modules", {}))
    per_module = Table(title="median ms per call")
    per_module.add_column("config")
    for name in names:
        per_module.add_column(name, justify="right")
    for result in report["results"]:
        if "error" in result:
            summary.add_row(result["label"], "[red]failed[/red]", "", "", "", "", "", "")
            continue
        frame = result["frame"]
        spread = "-" if frame.get("p10_ms") is None else f"{frame['p10_ms']:.0f}-{frame['p90_ms']:.0f}"
        summary.add_row(
            shown_label(result),
            _num(frame.get("median_ms"), 1),
            spread,
            _num(frame.get("fps"), 2),
            _num(ratios.get("frame", {}).get(result["label"]), 3),
            _num(result.get("achieved_gflops_per_s"), 1),
            _num(result.get("load_s"), 1),
            _num(result.get("peak_rss_mb"), 0),
        )
        per_module.add_row(result["label"], *[_num(result["modules"].get(n, {}).get("median_ms"), 1) for n in names])
    console.print(summary)
    console.print(per_module)
    for result in report["results"]:
        if "error" in result:
            console.print(f"[red]{result['label']} failed: {result['error']}[/red]")
    if len(ratios.get("frame", {})) > 1:
        parts = [f"{label}: {value:.3f}" for label, value in ratios["frame"].items() if value is not None]
        console.print(f"per-frame median / {ratios['reference']} (paired by round): " + ", ".join(parts))
    for label, entry in ratios.get("subjects", {}).items():
        value = entry.get("vs_separate_runs")
        shown = "-" if value is None else f"{value:.3f}"
        console.print(
            f"{label}: {shown} of {entry['subjects']} separate runs of {entry['one_subject']} "
            "(per frame, paired by round)"
        )


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_plot(report: Mapping[str, Any], path: Path) -> Path:
    """A PNG bar chart: per-module and per-frame median latency for each configuration, with
    p10-p90 whiskers. Drawn on a bare Agg canvas, so no display and no pyplot state is touched."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install matplotlib") from None

    results = [r for r in report["results"] if "error" not in r]
    groups = [*module_order(n for r in results for n in r["modules"]), "frame"]
    figure = Figure(figsize=(max(8.0, 1.6 * len(groups) + 0.4 * len(results)), 4.8), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(results))
    for index, result in enumerate(results):
        stats = [result["modules"].get(g, {}) if g != "frame" else result["frame"] for g in groups]
        medians = np.array([s.get("median_ms") or 0.0 for s in stats])
        lower = medians - np.array([s.get("p10_ms") or 0.0 for s in stats])
        upper = np.array([s.get("p90_ms") or 0.0 for s in stats]) - medians
        positions = np.arange(len(groups)) + (index - (len(results) - 1) / 2) * width
        axes.bar(
            positions, medians, width, label=result["label"], yerr=np.clip(np.stack([lower, upper]), 0, None), capsize=2
        )
    axes.set_xticks(np.arange(len(groups)), groups)
    axes.set_ylabel("median latency (ms), whiskers p10-p90")
    settings, env = report.get("settings", {}), report.get("env", {})
    size = settings.get("size", ["?", "?"])
    axes.set_title(f"MatAnyone modules at {size[0]}x{size[1]} on {env.get('cpu_model', '?')}", fontsize=10)
    if results:
        axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
