#!/usr/bin/env python
"""Clips per hour of ``matanyone batch`` on this machine, local and Ray, side by side in one run:

    flock /work/.heavy.lock python benchmarks/batch_throughput.py [--clips 8] [--frames 10] [--size 240x320]

It writes CLIPS generated clips (core.media.synthetic, the project's one generated clip, with its
first-frame mask beside each), then runs the same batch into a fresh OUTDIR with each executor
setting: local with one worker (all cores for one clip), local with two workers, and Ray on a
local instance with two one-CPU tasks at a time (Ray's start and stop included: that is what a
user waits for). Weights are the seeded random ones (no download), backend torch, fp32. A batch's
wall time includes each clip's process start and model load, which is the point: that is the
overhead a batch pays per clip. Prints a table and writes benchmarks/batch_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "local, 1 worker": ["--executor", "local"],
    "local, 2 workers": ["--executor", "local", "--jobs", "2"],
    "ray, 2 tasks x 1 CPU": ["--executor", "ray", "--jobs", "2", "--cpus-per-clip", "1"],
}


def write_clips(folder: Path, clips: int, frames: int, height: int, width: int) -> None:
    import av
    from PIL import Image

    from matanyone_engine.core.media.synthetic import moving_shapes

    folder.mkdir(parents=True)
    for index in range(clips):
        rgb, mask = moving_shapes(height, width, frames, seed=index)
        Image.fromarray(mask).save(folder / f"shot{index:03d}.png")
        with av.open(str(folder / f"shot{index:03d}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=24)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for frame in rgb:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--size", default="240x320", help="HxW of the generated clips")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "batch_throughput.json")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="matanyone-batch-bench-") as tmp:
        source = Path(tmp) / "src"
        write_clips(source, args.clips, args.frames, height, width)
        common = ["--weights", "seeded:v1-pm", "--backend", "torch", "--warmup", "3", "-q"]
        for label, extra in SETTINGS.items():
            outdir = Path(tmp) / label.replace(" ", "_").replace(",", "")
            command = [sys.executable, "-m", "matanyone_engine.core.cli", "batch", str(source), "-o", str(outdir)]
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            done = subprocess.run([*command, *common, *extra], capture_output=True, text=True)
            seconds = time.perf_counter() - started
            report = json.loads((outdir / "batch-report.json").read_text())
            finished = report["counts"]["done"]
            if done.returncode != 0 or finished != args.clips:
                print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
                return 1
            frames = sum(c["frames"] for c in report["clips"])
            rows.append(
                {
                    "setting": label,
                    "clips": finished,
                    "seconds": round(seconds, 1),
                    "clips_per_hour": round(finished * 3600 / seconds, 1),
                    "frames_per_s": round(frames / seconds, 2),
                    "load_before": round(load_before, 2),
                }
            )
    machine = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_after": round(os.getloadavg()[0], 2),
        "clips": args.clips,
        "frames_per_clip": args.frames,
        "size": args.size,
    }
    args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"{machine['cpu']}, {machine['cores']} cores; {args.clips} clips x {args.frames} frames at {args.size}")
    print(f"{'setting':<24} {'seconds':>8} {'clips/hour':>11} {'frames/s':>9} {'load':>5}")
    for row in rows:
        print(
            f"{row['setting']:<24} {row['seconds']:>8} {row['clips_per_hour']:>11} "
            f"{row['frames_per_s']:>9} {row['load_before']:>5}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
