#!/usr/bin/env python
"""Reproduce the README's performance table from scratch, with one command:

    python benchmarks/run_table.py                   # writes benchmarks/RESULTS.md and results.json
    python benchmarks/run_table.py --update-readme   # ... and the README section between the markers

It measures, through ``matanyone_engine.core.bench`` (worker process per configuration, passes
interleaved clip by clip), torch fp32, torch bf16 (the official demo's CPU autocast), onnx-cpu
fp32 when that backend is available, and every other backend x precision that can run here. Then
it runs each configuration on the float32 golden clip (``../shared/golden/golden_sample1_224x400.npz``,
made by the official implementation with the seeded:v1-pm weights) and reports the mean and the
99.9th percentile of the absolute alpha error, so a faster configuration's price in accuracy is
on the same row as its speed.

Why a script and not a test: benchmarks are measurements of a machine, never assertions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GOLDEN = REPO.parent / "shared" / "golden" / "golden_sample1_224x400.npz"
GOLDEN_WEIGHTS, GOLDEN_WARMUP = "seeded:v1-pm", 3  # as core.bench.accuracy (the golden clip's own)
MARK_START, MARK_END = "<!-- perf-table:start -->", "<!-- perf-table:end -->"


def table_configs(only: Sequence[str] | None = None) -> list[Any]:
    """torch fp32 first (the reference of every ratio), torch bf16, onnx-cpu fp32, ``fast`` and
    fp32 with the image encoder pipelined, then every other available backend with each precision
    it offers. ``only`` keeps just those backends."""
    from matanyone_engine.core import bench
    from matanyone_engine.core.engine.precision import cpu_has_native_bf16

    available = bench.available_backends()
    wanted = [
        ("torch", "fp32", False),
        ("torch", "bf16", False),
        ("onnx-cpu", "fp32", False),
        ("onnx-cpu", "fast", False),
        ("onnx-cpu", "fp32", True),
    ]
    for name in available:
        # another backend's bf16 needs bfloat16 hardware; torch's is kept anyway (emulated, it is
        # still the official demo's CPU mode, the reference the fast mode is judged against)
        wanted += [
            (name, precision, False)
            for precision in bench.backend_precisions(name)
            if precision != "bf16" or cpu_has_native_bf16()
        ]
    configs = []
    for name, precision, pipeline in dict.fromkeys(wanted):
        if name in available and (not only or name in only):
            configs.append(bench.make_config(name, precision, pipeline=pipeline))
    return configs


def golden_alpha_error(config: Any, golden: Path, threads: int | None = None) -> dict[str, Any]:
    """Alpha error of ``config`` against the official float32 mattes of the golden clip
    (core.bench.accuracy, the same measurement the accuracy record behind ``fast`` comes from)."""
    from matanyone_engine.core.bench.accuracy import golden_alpha_error as measure

    return measure(
        config.backend,
        config.precision,
        golden,
        placement=dict(config.placement),
        threads=threads,
        pipeline=config.pipeline,
    )


#: Configurations timed in a short side run beside torch fp32 instead of in the main run: on a CPU
#: without bfloat16 instructions torch's bf16 autocast is emulated and takes minutes per frame, so
#: the main run's passes would take hours. Its ratio to torch fp32 is paired within the side run.
SLOW_LABELS = ("torch/bf16",)


def merge_side_run(report: dict[str, Any], side: Mapping[str, Any]) -> None:
    """Add the side run's slow results to ``report``, with their ratio to the shared reference
    (paired in the side run, where the reference ran beside them), and keep the side settings."""
    reference = side["ratios"].get("reference")
    for result in side["results"]:
        if result["label"] == reference:
            continue
        report["results"].append({**result, "side_run": True})
        ratio = side["ratios"].get("frame", {}).get(result["label"])
        if ratio is not None:
            report["ratios"].setdefault("frame", {})[result["label"]] = ratio
    report["side_run"] = {
        "settings": side["settings"],
        "reference": reference,
        "reference_frame_median_ms": next(
            (r["frame"]["median_ms"] for r in side["results"] if r["label"] == reference and "frame" in r), None
        ),
    }


def reference_equivalent_ms(report: Mapping[str, Any], label: str) -> float | None:
    """``label``'s ms/frame expressed on the main run's clock: the reference's median there times
    the paired ratio (for a side-run result, the ratio measured beside the reference)."""
    ratio = report["ratios"].get("frame", {}).get(label)
    reference = next((r for r in report["results"] if r.get("label") == report["ratios"].get("reference")), None)
    if ratio is None or reference is None or "frame" not in reference:
        return None
    return reference["frame"]["median_ms"] * ratio


# ------------------------------------------------------------------------------------- markdown


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _sci(value: float | None) -> str:
    return "–" if value is None else f"{value:.1e}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "es")


def describe_run(report: Mapping[str, Any]) -> str:
    """The lines above a table: when, where, on what, how."""
    env, settings = report["env"], report["settings"]
    commit = (env.get("git_commit") or "unknown")[:10] + (" (with uncommitted changes)" if env.get("git_dirty") else "")
    threads = (
        ", ".join(
            f"{k} {v}"
            for k, v in sorted(
                {k: v for r in report["results"] if "threads" in r for k, v in r["threads"].items()}.items()
            )
        )
        or "runtime default"
    )
    libs = env.get("libraries", {})
    lib_text = ", ".join(f"{k} {libs[k]}" for k in ("torch", "onnxruntime", "coremltools", "numpy") if k in libs)
    size = settings["size"]
    load = env.get("load_average_start"), env.get("load_average_end")
    load_text = f" Load average (1 min) {load[0][0]} at start, {load[1][0]} at end." if all(load) else ""
    return (
        f"Measured {env['date'][:10]} on {env.get('cpu_model')} ({env.get('cpus_usable')} usable CPUs, "
        f"{env.get('memory_total_gb')} GiB), {env.get('platform')}; threads: {threads}; {lib_text}; "
        f"commit {commit}.{load_text}\n\n"
        f"Clip: {Path(settings['clip']).name} resized to {size[0]}x{size[1]}, {settings['frames']} frames per pass, "
        f"{_count(settings['runs'], 'measured pass')} per configuration after "
        f"{_count(settings['warmup_runs'], 'warm-up pass')}, "
        f"interleaved clip by clip in rotated order, one worker process each; weights {settings['weights']} "
        f"(speed does not depend on the weights). s/frame is the median steady-state frame (frames 1..n-1, "
        f"through the state machine); × torch fp32 is the speed-up paired per round against "
        f"{report['ratios'].get('reference')}, × torch bf16 the ratio of medians against the official demo's "
        f"CPU mode (bfloat16 autocast)."
        + (
            f" Rows marked † ran in a one-pass side run of {report['side_run']['settings']['frames']} frames "
            f"beside {report['side_run']['reference']} (too slow for the main run); their speed-ups are paired "
            f"there."
            if report.get("side_run")
            else ""
        )
        + (
            " Alpha error: against the official float32 mattes of the golden clip (30 frames at 224x400, "
            "warm-up 3, seeded:v1-pm)."
            if any(r.get("alpha_error") for r in report["results"])
            else ""
        )
        + "\n"
    )


def precision_text(result: Mapping[str, Any]) -> str:
    """``fp32``, ``fast (= fp32)`` where fast resolved, plus ``, pipelined`` for an overlapped encoder."""
    text = result["precision"]
    resolved = result.get("resolved_precision") or {}
    if text == "fast" and resolved:
        text += " (= " + ",".join(dict.fromkeys(resolved.values())) + ")"
    return text + (", pipelined" if result.get("pipeline") else "")


def markdown_table(report: Mapping[str, Any], modules: bool = True) -> str:
    """The results as a markdown table; ``modules=False`` leaves out the per-module columns."""
    from matanyone_engine.core.bench.configs import module_order

    ratios = report["ratios"].get("frame", {})
    names = module_order(n for r in report["results"] for n in r.get("modules", {}))
    bf16 = reference_equivalent_ms(report, "torch/bf16")
    head = ["backend", "precision", "s/frame", "p10–p90 s", "fps", "× torch fp32", "× torch bf16"]
    if modules:
        head += [f"{m} ms" for m in names]
    head += ["GFLOP/s", "load s"] + (["first load s"] if modules else []) + ["peak RSS MB", "alpha MAE", "alpha p99.9"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|"]
    for r in report["results"]:
        if "error" in r:
            lines.append(
                f"| {r['backend']} | {precision_text(r)} | failed: {r['error'].splitlines()[0][:80]} |"
                + " |" * (len(head) - 3)
            )
            continue
        frame, acc = r["frame"], r.get("alpha_error") or {}
        ratio = ratios.get(r["label"])
        own = reference_equivalent_ms(report, r["label"]) if r.get("side_run") else frame["median_ms"]
        row = [
            r["backend"],
            precision_text(r) + (" †" if r.get("side_run") else ""),
            _fmt(frame["median_ms"] / 1000, 3),
            f"{_fmt(frame['p10_ms'] / 1000, 2)}–{_fmt(frame['p90_ms'] / 1000, 2)}",
            _fmt(frame.get("fps"), 2),
            _fmt(1 / ratio if ratio else None, 2),
            _fmt(bf16 / own if bf16 and own else None, 2),
        ]
        if modules:
            row += [_fmt(r["modules"].get(m, {}).get("median_ms"), 0) for m in names]
        row += [_fmt(r.get("achieved_gflops_per_s"), 1), _fmt(r.get("load_s"), 1)]
        row += [_fmt(r.get("prepare_s"), 1)] if modules else []
        row += [_fmt(r.get("peak_rss_mb"), 0), _sci(acc.get("mean_abs")), _sci(acc.get("p999_abs"))]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def results_markdown(report: Mapping[str, Any]) -> str:
    """The whole of benchmarks/RESULTS.md."""
    flops = next((r for r in report["results"] if r.get("gflops_per_frame")), None)
    flop_line = (
        (
            f"\nWork per steady-state frame: {flops['gflops_per_frame']:.1f} GFLOP (encoder + read + decoder + "
            f"mask_encoder; convolutions and matrix products). GFLOP/s is that over ms/frame.\n"
        )
        if flops
        else ""
    )
    return (
        "# Performance\n\n"
        "Generated by `python benchmarks/run_table.py`; do not edit by hand.\n\n"
        + describe_run(report)
        + flop_line
        + "\n"
        + markdown_table(report, modules=True)
        + "\nPer-module columns are median ms per call (read_first runs only on frame 0; mask_value, "
        "where a backend has it, is the shallow mask encoding that replaces mask_encoder on "
        "non-memory frames). "
        "load s is a start with a warm artifact cache; first load s is the first load of the run "
        "(it includes the export when the cache was cold). "
        "Peak RSS is each configuration's worker process, model and runtime included.\n"
    )


def readme_block(report: Mapping[str, Any]) -> str:
    """What goes between the README markers: a compact table and a pointer to the full one."""
    return (
        describe_run(report)
        + "\n"
        + markdown_table(report, modules=False)
        + "\nPer-module latencies: [benchmarks/RESULTS.md](benchmarks/RESULTS.md). "
        "Reproduce with `python benchmarks/run_table.py --update-readme`.\n"
    )


def update_readme(readme: Path, block: str) -> bool:
    """Replace what lies between the perf-table markers with ``block``; False (file untouched)
    when the file or either marker is missing, so the script never rewrites a README it does not
    understand."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return False
    start, end = text.find(MARK_START), text.find(MARK_END)
    if start < 0 or end < start:
        return False
    head = text[: start + len(MARK_START)]
    readme.write_text(head + "\n" + block.rstrip("\n") + "\n" + text[end:], encoding="utf-8")
    return True


# ------------------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="432x768", help="HxW of the timed clip (default 432x768)")
    parser.add_argument("--frames", type=int, default=8, help="frames per pass (default 8)")
    parser.add_argument("--runs", type=int, default=3, help="measured passes per configuration (default 3)")
    parser.add_argument("--warmup-runs", type=int, default=2, help="discarded passes first (default 2)")
    parser.add_argument("--state-warmup", type=int, default=1, help="first-frame predictions per pass (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per backend (default: runtime's)")
    parser.add_argument(
        "--slow-frames",
        type=int,
        default=3,
        help="frames of the one-pass side run of the slow configurations (torch bf16; default 3)",
    )
    parser.add_argument("--backend", action="append", default=None, help="only these backends (repeatable)")
    parser.add_argument("--clip", type=Path, default=None, help="clip to time (default: the shared sample)")
    parser.add_argument("--golden", type=Path, default=DEFAULT_GOLDEN, help="golden clip .npz for the alpha error")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the golden-clip alpha error")
    parser.add_argument(
        "--out-dir", type=Path, default=REPO / "benchmarks", help="where RESULTS.md and results.json go"
    )
    parser.add_argument("--update-readme", action="store_true", help="replace the README's perf-table section")
    parser.add_argument(
        "--from-json", type=Path, default=None, help="re-render the tables from this results.json instead of measuring"
    )
    parser.add_argument("--readme", type=Path, default=REPO / "README.md", help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)

    from rich.console import Console

    from matanyone_engine.core import bench
    from matanyone_engine.core.app.options import parse_size

    console = Console(stderr=True)
    if args.from_json is not None:
        import json

        report = json.loads(args.from_json.read_text(encoding="utf-8"))
        return _write_outputs(report, args, console)
    log = None if args.quiet else (lambda m: console.print(f"[dim]{m}[/dim]"))
    configs = table_configs(args.backend)
    if not configs:
        console.print("[red]no backend is available here[/red]")
        return 1
    size = parse_size(args.size)
    clip = bench.load_clip(size, args.frames, args.clip)
    slow = [c for c in configs if c.label in SLOW_LABELS and c is not configs[0]]
    timed = [c for c in configs if c not in slow]
    if log:
        log(f"configurations: {', '.join(c.label for c in timed)}; clip {clip.source}")
    report = bench.run_bench(
        timed,
        clip,
        runs=args.runs,
        warmup_runs=args.warmup_runs,
        state_warmup=args.state_warmup,
        threads=args.threads,
        log=log,
    )
    if slow:
        side_clip = bench.load_clip(size, args.slow_frames, args.clip)
        if log:
            log(
                f"side run: {', '.join(c.label for c in slow)} beside {configs[0].label}, "
                f"{args.slow_frames} frames, one pass"
            )
        side = bench.run_bench(
            [configs[0], *slow],
            side_clip,
            runs=1,
            warmup_runs=0,
            state_warmup=args.state_warmup,
            threads=args.threads,
            log=log,
        )
        merge_side_run(report, side)

    bench.write_json(report, args.out_dir / "results.json")  # the timings survive a failure below
    if not args.no_accuracy:
        if args.golden.is_file():
            by_label = {c.label: c for c in configs}
            for result in report["results"]:
                if "error" in result:
                    continue
                if log:
                    log(f"alpha error of {result['label']} on {args.golden.name}")
                try:
                    result["alpha_error"] = golden_alpha_error(by_label[result["label"]], args.golden, args.threads)
                except Exception as exc:  # one failing configuration must not lose the table
                    result["alpha_error"] = {"error": f"{type(exc).__name__}: {exc}"}
            report["golden"] = {"path": str(args.golden), "weights": GOLDEN_WEIGHTS, "warmup": GOLDEN_WARMUP}
        else:
            console.print(f"[yellow]{args.golden} not found: no alpha error column[/yellow]")

    return _write_outputs(report, args, console)


def _write_outputs(report: dict[str, Any], args: argparse.Namespace, console: Any) -> int:
    """results.json, RESULTS.md, the terminal table and (when asked) the README section."""
    from matanyone_engine.core import bench

    out_dir = args.out_dir
    if args.from_json is None or args.from_json.resolve() != (out_dir / "results.json").resolve():
        bench.write_json(report, out_dir / "results.json")
    (out_dir / "RESULTS.md").write_text(results_markdown(report), encoding="utf-8")
    bench.render_table(report)
    console.print(f"wrote {out_dir / 'RESULTS.md'} and {out_dir / 'results.json'}")
    if args.update_readme:
        if update_readme(args.readme, readme_block(report)):
            console.print(f"updated the perf table in {args.readme}")
        else:
            console.print(f"[yellow]{args.readme} has no {MARK_START} ... {MARK_END} section; left unchanged[/yellow]")
    return 0 if all("error" not in r for r in report["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
