"""Peak memory does not grow with clip length: peak RSS of `matanyone run` on a long clip against a
clip a tenth as long, same size, each in a fresh process. Exits 1 when the ratio exceeds --target.

    python benchmarks/memory_streaming.py --short 300 --long 3000 --size 64x112
    python benchmarks/memory_streaming.py --short 60 --long 600 --mask-frame-middle   # both directions
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image


def make_clip(path: Path, frames: int, height: int, width: int) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = np.roll(base, i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """Run ``matanyone`` in a child; its own peak RSS from wait4, and the wall time."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "matanyone_engine.core.cli", *args])
    _, status, usage = __import__("os").wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"matanyone {' '.join(args)} failed with status {status}")
    return usage.ru_maxrss / 1024.0, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", type=int, default=300)
    parser.add_argument("--long", type=int, default=3000)
    parser.add_argument("--size", default="64x112")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--target", type=float, default=1.10, help="largest acceptable long/short peak RSS ratio")
    parser.add_argument(
        "--mask-frame-middle",
        action="store_true",
        help="put the mask on the middle frame, so half of each clip is matted backwards",
    )
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
        Image.fromarray(mask).save(tmp / "mask.png")
        for label, frames in (("short", args.short), ("long", args.long)):
            clip = tmp / f"{label}.mp4"
            make_clip(clip, frames, height, width)
            rss, wall = peak_rss_mb(
                [
                    "run",
                    str(clip),
                    "--mask",
                    str(tmp / "mask.png"),
                    "-o",
                    str(tmp / f"out_{label}"),
                    "--weights",
                    "seeded:v1-pm",
                    "--backend",
                    args.backend,
                    "--warmup",
                    "1",
                    "--quiet",
                    "--outputs",
                    "alpha,foreground",
                    *(["--mask-frame", str(frames // 2)] if args.mask_frame_middle else []),
                ]
            )
            written = len(list((tmp / f"out_{label}" / label / "alpha").iterdir()))
            assert written == frames, (written, frames)
            results[label] = {"frames": frames, "peak_rss_mb": round(rss, 1), "wall_s": round(wall, 1)}
            print(f"{label}: {frames} frames, peak RSS {rss:.1f} MB, {wall:.1f} s", flush=True)
    ratio = results["long"]["peak_rss_mb"] / results["short"]["peak_rss_mb"]
    results["ratio_long_over_short"] = round(ratio, 4)
    results["target"] = args.target
    results["passed"] = ratio <= args.target
    verdict = "ok" if results["passed"] else "FAILED"
    print(f"peak RSS ratio long/short: {ratio:.3f} (target <= {args.target:.2f}): {verdict}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
