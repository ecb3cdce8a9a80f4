#!/usr/bin/env python
"""Seconds per frame and peak memory at 432x768, 1080p and 4K, for onnx-cpu and torch, in one command:

    flock /work/.heavy.lock python benchmarks/large_sizes.py --update-readme

Each size is one ``matanyone bench`` (core/bench: one worker process per backend, peak RSS is the
worker's VmHWM, the clip is the MatAnyone sample resized to the size), few frames and one pass,
because a 4K frame takes a minute on a 2-core CPU. ONNX artifacts are exported for each size on
first use (the export's time is the bench's prepare step, not part of the numbers). Also listed:
how many tiles the memory read takes at the size, and the up-front estimate of core/app/memory.py
for the same run, so the estimate can be checked against what was measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = ("432x768", "1088x1920", "2160x3840")
DEFAULT_BACKENDS = ("onnx-cpu", "torch")
MARK_START, MARK_END = "<!-- large-sizes:start -->", "<!-- large-sizes:end -->"


def measure(sizes: list[str], backends: list[str], frames: int) -> list[dict[str, Any]]:
    from matanyone_engine.core.bench.command import bench_command

    rows = []
    for size in sizes:
        report, _ = bench_command(
            backends=backends,
            size=size,
            frames=frames,
            runs=1,
            warmup_runs=0,
            state_warmup=0,
            log=lambda m: print(m, file=sys.stderr, flush=True),
        )
        settings = report["settings"]
        for result in report["results"]:
            rows.append(
                {
                    "size": size,
                    "backend": result["backend"],
                    "error": result.get("error"),
                    "s_per_frame": (result.get("frame", {}).get("median_ms") or 0) / 1000.0 or None,
                    "peak_rss_mb": result.get("peak_rss_mb"),
                    "load_s": result.get("load_s"),
                    "read_tiles": settings["read_tiles"],
                    "read_tile_rows": settings["read_tile_rows"],
                    "estimate_mb": estimate_mb(size, result["backend"]),
                    "env": report["env"],
                }
            )
    return rows


def estimate_mb(size: str, backend: str) -> int:
    """What core/app/memory.py estimates for a run of ``backend`` at ``size`` (HxW)."""
    from matanyone_engine.core.app.loading import module_memory_profiles
    from matanyone_engine.core.app.memory import estimate

    height, width = (int(v) for v in size.split("x"))
    return round(estimate(height, width, module_memory_profiles(backend)).needed_bytes / 2**20)


def render(rows: list[dict[str, Any]], frames: int) -> str:
    env = rows[0]["env"] if rows else {}
    lines = [
        f"Measured {env.get('date', '')} on {env.get('cpu_model', '?')} ({env.get('cpus_usable', '?')} usable CPUs, "
        f"{env.get('memory_total_gb', '?')} GiB), load average (1 min) {env.get('load_average_start', '?')} at the "
        f"start and {env.get('load_average_end', '?')} at the end of the last size; "
        f"{frames} frames per size, one pass (frame 0 seeds; s/frame is the median of the others); "
        "seeded:v1-pm weights (speed and memory do not depend on them). "
        "Reproduce with `python benchmarks/large_sizes.py --update-readme`.",
        "",
        "| size | backend | s/frame | peak RSS MB | estimate MB | read tiles (rows) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['size']} | {r['backend']} | failed: {r['error']} | | | |")
            continue
        lines.append(
            f"| {r['size']} | {r['backend']} | {r['s_per_frame']:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['estimate_mb']} | {r['read_tiles']} ({r['read_tile_rows']}) |"
        )
    return "\n".join(lines)


def update_readme(table: str) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    start, end = text.index(MARK_START) + len(MARK_START), text.index(MARK_END)
    readme.write_text(text[:start] + "\n" + table + "\n" + text[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(DEFAULT_SIZES))
    parser.add_argument("--backends", default=",".join(DEFAULT_BACKENDS))
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "large_sizes.json")
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument(
        "--from-json", action="store_true", help="Re-render the table from --json (estimates recomputed), no measuring"
    )
    args = parser.parse_args()
    if args.from_json:
        rows = json.loads(args.json.read_text())
        for row in rows:
            row["estimate_mb"] = estimate_mb(row["size"], row["backend"])
    else:
        rows = measure(args.sizes.split(","), args.backends.split(","), args.frames)
    table = render(rows, args.frames)
    print(table)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.update_readme:
        update_readme(table)


if __name__ == "__main__":
    main()
