#!/usr/bin/env python
"""The reduced-precision error table: the golden clip through each low-precision path, with the
official demo's 10-step first-frame warm-up, against float32.

Rows (each the whole golden clip, 30 frames at 224x400, seeded:v1-pm weights, through the
engine's state machine):

* ``coreml-sim`` fp16 — the fp16 Core ML packages run by the reference MIL executor with every
  activation stored in float16 (what the GPU / Neural Engine hold); the question the earlier iOS
  port raised is whether the matte fades to zero over the repeated first-frame feedback;
* ``onnx-cpu`` fp16 — the fp16 ONNX export on ONNX Runtime;
* ``torch`` bf16 — the official demo's CPU mode (bfloat16 autocast);
* ``coreml-sim`` fp32 — the fp32 packages, as a control (float32 error only).

Each row's alpha is compared with two float32 references: the golden file (the official code,
warm-up 3, as recorded) and a torch fp32 run with the same warm-up as the row (10), which isolates
the precision effect from the warm-up length. "Fades" compares the row's mean alpha with the
reference's, per frame: a ratio below 0.5 on any frame is a fade.

    .venv/bin/python benchmarks/coreml_sim_fp16_table.py                    # print the table
    .venv/bin/python benchmarks/coreml_sim_fp16_table.py --json t.json --update   # also rewrite the
        # tables between the coreml-sim-fp16 markers in README.md and docs/coreml-sim.md

Exports use the artifact cache (MATANYONE_CACHE), so a second run only re-runs the clips. The
torch bf16 row is slow on CPUs without bfloat16 instructions (emulated: minutes per frame at this
size on such machines); ``--skip-bf16`` leaves it out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GOLDEN = REPO.parent / "shared" / "golden"
MARKERS = ("<!-- coreml-sim-fp16:start -->", "<!-- coreml-sim-fp16:end -->")
ROWS = (
    ("coreml-sim", "fp16", "fp16 Core ML packages, float16 activations (reference MIL executor)"),
    ("onnx-cpu", "fp16", "fp16 ONNX export, ONNX Runtime CPU"),
    ("torch", "bf16", "bfloat16 autocast (the official demo's CPU mode)"),
    ("coreml-sim", "fp32", "fp32 Core ML packages (control)"),
)


def run_clip(backend: str, precision: str, frames: np.ndarray, mask: np.ndarray, warmup: int) -> dict[str, Any]:
    from matanyone_engine.core import plugins
    from matanyone_engine.core.engine.driver import matte_frames
    from matanyone_engine.core.engine.protocol import LoadRequest
    from matanyone_engine.core.engine.spec import Dims

    dims = Dims(frames.shape[1], frames.shape[2], 5)
    started = time.monotonic()
    modules = plugins.get_backend(backend).load(LoadRequest(weights="seeded:v1-pm", dims=dims, precision=precision))
    loaded = time.monotonic()
    alpha = np.stack([r.alpha for r in matte_frames(modules, frames, mask.astype(np.float32), warmup=warmup)])
    done = time.monotonic()
    steps = len(frames) + warmup
    return {"alpha": alpha, "load_s": loaded - started, "s_per_step": (done - loaded) / steps}


def compare(alpha: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    err = np.abs(alpha.astype(np.float64) - reference.astype(np.float64))
    return {
        "mean_abs": float(err.mean()),
        "p99_9": float(np.percentile(err, 99.9)),
        "max_abs": float(err.max()),
        "last_frame_mean_abs": float(err[-1].mean()),
    }


def mass(frame_means: list[float], reference_means: list[float], tail: int = 10) -> dict[str, Any]:
    """Does the matte fade? Its mean alpha against the reference's, on frame 0 (right after the
    warm-up's repeated first-frame feedback) and over the last ``tail`` frames (after the clip's
    own feedback); below 0.5 on either counts as a fade. Single frames in between are not used:
    with the seeded weights a frame's mass alone swings by 3x between neighbours."""
    first = frame_means[0] / max(reference_means[0], 1e-9)
    last = float(np.mean(frame_means[-tail:])) / max(float(np.mean(reference_means[-tail:])), 1e-9)
    return {
        "frame0_ratio": first,
        "tail_ratio": last,
        "tail_frames": min(tail, len(frame_means)),
        "fades": bool(min(first, last) < 0.5),
    }


def markdown(report: dict[str, Any]) -> str:
    reference = report["reference"]["frame_alpha_mean"]
    lines = [
        f"Golden clip ({report['frames']} frames at {report['size']}, seeded:v1-pm), warm-up {report['warmup']}; "
        f"measured {report['date']} on {report['machine']}, load average {report['load'][0]:.2f} at start, "
        f"{report['load'][1]:.2f} at end; `python benchmarks/coreml_sim_fp16_table.py`.",
        "",
        f"| path | vs fp32 (warm-up {report['warmup']}): mean | p99.9 | max | vs golden file (warm-up 3): mean "
        "| p99.9 | alpha mass, frame 0 | last 10 frames | fades | s/step |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in report["rows"]:
        a, g = row["vs_fp32"], row["vs_golden"]
        m = mass(row["frame_alpha_mean"], reference)
        lines.append(
            f"| `{row['backend']}` {row['precision']} | {a['mean_abs']:.2g} | {a['p99_9']:.2g} | {a['max_abs']:.2g} "
            f"| {g['mean_abs']:.2g} | {g['p99_9']:.2g} | {m['frame0_ratio']:.2f} | {m['tail_ratio']:.2f} "
            f"| {'yes' if m['fades'] else 'no'} | {row['s_per_step']:.2f} |"
        )
    return "\n".join(lines)


def update_block(path: Path, table: str) -> None:
    text = path.read_text(encoding="utf-8")
    start, end = MARKERS
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {start} ... {end} block")
    path.write_text(pattern.sub(lambda _: f"{start}\n{table}\n{end}", text), encoding="utf-8")


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from matanyone_engine.core.engine.precision import cpu_has_native_bf16

    bf16 = "with" if cpu_has_native_bf16() else "without"
    return f"{name} ({os.cpu_count()} CPUs, {bf16} bfloat16 instructions)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--golden-dir", type=Path, default=DEFAULT_GOLDEN)
    parser.add_argument("--warmup", type=int, default=10, help="first-frame warm-up steps (official: 10)")
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--skip-bf16", action="store_true", help="leave out the (slow on most CPUs) torch bf16 row")
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    parser.add_argument("--update", action="store_true", help="rewrite the tables in README.md and docs/coreml-sim.md")
    parser.add_argument("--table-from", type=Path, default=None, help="only render the table of a --json report")
    args = parser.parse_args(argv)
    if args.table_from:
        table = markdown(json.loads(args.table_from.read_text(encoding="utf-8")))
        print(table)
        if args.update:
            for path in (REPO / "README.md", REPO / "docs" / "coreml-sim.md"):
                update_block(path, table)
        return 0
    golden_path = args.golden_dir / "golden_sample1_224x400.npz"
    if not golden_path.is_file():
        print(f"golden clip not found at {golden_path}; pass --golden-dir", file=sys.stderr)
        return 2
    golden = np.load(golden_path)
    frames = golden["frames"][: args.frames] if args.frames else golden["frames"]
    mask, golden_alpha = golden["mask"], golden["alpha"][: len(frames)]
    load_start = os.getloadavg()[0]

    print(f"torch fp32, warm-up {args.warmup} (the reference)", flush=True)
    reference = run_clip("torch", "fp32", frames, mask, args.warmup)
    rows = []
    for backend, precision, what in ROWS:
        if args.skip_bf16 and precision == "bf16":
            continue
        print(f"{backend} {precision}: {what}", flush=True)
        result = run_clip(backend, precision, frames, mask, args.warmup)
        rows.append(
            {
                "backend": backend,
                "precision": precision,
                "what": what,
                "vs_fp32": compare(result["alpha"], reference["alpha"]),
                "vs_golden": compare(result["alpha"], golden_alpha),
                "alpha_mean": float(result["alpha"].mean()),
                "frame_alpha_mean": [float(a.mean()) for a in result["alpha"]],
                "mass": mass([float(a.mean()) for a in result["alpha"]], [float(a.mean()) for a in reference["alpha"]]),
                "s_per_step": result["s_per_step"],
                "load_s": result["load_s"],
            }
        )
        print(f"  {rows[-1]['vs_fp32']}, {rows[-1]['s_per_step']:.2f} s/step", flush=True)
        if args.json:  # progress survives a crash of a later row
            args.json.write_text(json.dumps({"partial_rows": rows}, indent=2) + "\n", encoding="utf-8")
    report = {
        "frames": int(len(frames)),
        "size": f"{frames.shape[1]}x{frames.shape[2]}",
        "warmup": args.warmup,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "load": [load_start, os.getloadavg()[0]],
        "reference": {
            "what": f"torch fp32, warm-up {args.warmup}",
            "vs_golden": compare(reference["alpha"], golden_alpha),
            "alpha_mean": float(reference["alpha"].mean()),
            "frame_alpha_mean": [float(a.mean()) for a in reference["alpha"]],
            "s_per_step": reference["s_per_step"],
        },
        "golden_alpha_mean": float(golden_alpha.mean()),
        "golden_frame_alpha_mean": [float(a.mean()) for a in golden_alpha],
        "rows": rows,
    }
    table = markdown(report)
    print()
    print(table)
    ref = report["reference"]["vs_golden"]
    print(f"\nreference (torch fp32, warm-up {args.warmup}) vs golden file: ", end="")
    print(f"mean {ref['mean_abs']:.2g}, p99.9 {ref['p99_9']:.2g}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.update:
        for path in (REPO / "README.md", REPO / "docs" / "coreml-sim.md"):
            update_block(path, table)
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
