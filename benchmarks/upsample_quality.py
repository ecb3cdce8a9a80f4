#!/usr/bin/env python
"""How close 1080p alpha from a 540p network comes to running the network at 1080p, guided vs
bilinear upsampling, and what the upsampling costs:

    flock /work/.heavy.lock python benchmarks/upsample_quality.py --frames 8 --json out.json

The clip is ../shared/data/test-sample2.mp4 (1920x1088, a real 1080p clip). The network runs once
at the clip's own size and once with ``--max-size 540`` (the official demo's behaviour: alpha at
540x955); the small alphas are then upsampled to 1088x1920 with the full-resolution frames
(core/media/upsample.py) and compared with the native ones: mean absolute error over the frame
and over the edge band (where the native alpha is between 0.05 and 0.95, dilated by 5 pixels),
and the gradient error (mean absolute difference of Sobel gradient magnitudes). ``round_trip_*``
scores the upsampler alone: the native alpha area-downsampled to the network's size and
upsampled back, which separates its error from the network's own change with scale. With the seeded
random weights the mattes are not meaningful mattes, so these numbers say how well the upsampler
reproduces the network's own full-size output, not how good a matte is.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "test-sample2.mp4"


def gradient(alpha: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(alpha, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(alpha, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=SAMPLE)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--max-size", type=int, default=540)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from matanyone_engine.core.app.api import matte

    common = {"weights": "seeded:v1-pm", "backend": args.backend, "warmup": args.warmup, "frames": args.frames}
    mask = args.clip.with_suffix(".png")
    started = time.perf_counter()
    native = [(f.rgb, f.alpha) for f in matte(args.clip, mask, **common)]
    native_s = time.perf_counter() - started
    started = time.perf_counter()
    small = [f.alpha for f in matte(args.clip, mask, max_size=args.max_size, output_size="network", **common)]
    small_s = time.perf_counter() - started
    results: dict[str, object] = {
        "clip": str(args.clip),
        "frames": len(native),
        "native_size": list(native[0][1].shape),
        "network_size": list(small[0].shape),
        "backend": args.backend,
        "weights": "seeded:v1-pm (random: the mattes are not meaningful)",
        "native_run_s": round(native_s, 1),
        "small_run_s": round(small_s, 1),
    }
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
    height, width = small[0].shape
    # the upsampler alone: the native alpha area-downsampled to the network size and brought back
    round_trip = [cv2.resize(a, (width, height), interpolation=cv2.INTER_AREA) for _, a in native]
    for label, sources in (("", small), ("round_trip_", round_trip)):
        compare(label, native, sources, kernel, results)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def compare(label: str, native, sources, kernel, results: dict) -> None:
    """Upsample every small alpha both ways and score it against the native one."""
    from matanyone_engine.core.media.upsample import upsample_alpha

    for method in ("guided", "bilinear"):
        mae, edge, grad, seconds = [], [], [], []
        for (rgb, truth), alpha in zip(native, sources, strict=True):
            t0 = time.perf_counter()
            up = upsample_alpha(alpha, rgb, method)
            seconds.append(time.perf_counter() - t0)
            band = cv2.dilate(((truth > 0.05) & (truth < 0.95)).astype(np.uint8), kernel) > 0
            error = np.abs(up - truth)
            mae.append(float(error.mean()))
            edge.append(float(error[band].mean()) if band.any() else float("nan"))
            grad.append(float(np.abs(gradient(up) - gradient(truth)).mean()))
        results[label + method] = {
            "alpha_mae": round(float(np.mean(mae)), 5),
            "edge_band_mae": round(float(np.nanmean(edge)), 5),
            "gradient_error": round(float(np.mean(grad)), 5),
            "upsample_ms_per_frame": round(1000 * float(np.median(seconds)), 1),
        }


if __name__ == "__main__":
    main()
