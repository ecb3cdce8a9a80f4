#!/usr/bin/env python
"""Measure how far fp16 (Core ML FLOAT16 compute) moves each module's outputs, and the matte.

Why: fp16 CoreML packages are half the size and run on the Neural Engine, but the earlier iOS
port saw fp16 drift the alpha to zero over repeated warm-up steps. This script puts numbers on
the drift without a Mac, by running the engine's own torch modules in a simulated Core ML
FLOAT16 world (see matanyone_engine/exporters/coreml/drift.py for what is and is not simulated):

1. per module, on the official model's own intermediate tensors (``modules_112x192.npz``):
   max / mean abs error of every output against float32;
2. with ``--clip``, the whole golden clip (``golden_sample1_224x400.npz``, 30 frames, warm-up 3)
   through the state machine, all five modules in half: alpha error against the float32 run
   (mean, 99.9th percentile, max, and per frame — drift that grows over the clip shows up here).

The macOS parity tests take their fp16 bounds from these numbers.

    .venv/bin/python benchmarks/coreml_fp16_drift.py                 # per-module table
    .venv/bin/python benchmarks/coreml_fp16_drift.py --clip --json drift.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GOLDEN = REPO.parent / "shared" / "golden"


def module_drift(
    golden_dir: Path, dtype: str = "float16", weights: str = "seeded:v1-pm", modules: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Per-module drift on the golden module inputs at 112x192 (T=5, one valid memory frame)."""
    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.backends.torch.network import load_network
    from matanyone_engine.core.engine.spec import Dims
    from matanyone_engine.exporters.coreml.drift import golden_module_inputs, measure_drift

    dims = Dims(112, 192, 5)
    net = load_network(weights)
    torch_modules = build_torch_modules(net)
    golden = np.load(golden_dir / "modules_112x192.npz")
    sets = golden_module_inputs(golden, dims)
    if modules:
        sets = {k: v for k, v in sets.items() if k in modules}
    report = measure_drift(torch_modules, sets, dtype=dtype)
    report["inputs"] = "modules_112x192.npz (official intermediate tensors), 112x192, T=5"
    return report


def clip_drift(
    golden_dir: Path, dtype: str = "float16", weights: str = "seeded:v1-pm", frames: int | None = None, warmup: int = 3
) -> dict[str, Any]:
    """Alpha drift of the golden clip run entirely in simulated half vs the float32 run."""
    import torch

    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.backends.torch.network import load_network
    from matanyone_engine.core.engine.driver import matte_frames
    from matanyone_engine.core.engine.spec import MODULE_NAMES
    from matanyone_engine.exporters.coreml.drift import TorchAsModule

    clip = np.load(golden_dir / "golden_sample1_224x400.npz")
    video = clip["frames"][:frames] if frames else clip["frames"]
    mask = clip["mask"]
    golden_alpha = clip["alpha"][: len(video)]
    torch_modules = build_torch_modules(load_network(weights))
    half = {"float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]

    def run(half_dtype: Any) -> np.ndarray:
        wrapped = {n: TorchAsModule(n, torch_modules[n], half=half_dtype) for n in MODULE_NAMES}
        return np.stack([r.alpha for r in matte_frames(wrapped, video, mask, warmup=warmup)])

    started = time.monotonic()
    alpha32 = run(None)
    alpha16 = run(half)
    err = np.abs(alpha16.astype(np.float64) - alpha32)
    err_golden = np.abs(alpha16.astype(np.float64) - golden_alpha)
    err32_golden = np.abs(alpha32.astype(np.float64) - golden_alpha)
    return {
        "dtype": dtype,
        "frames": int(len(video)),
        "warmup": warmup,
        "size": [int(video.shape[1]), int(video.shape[2])],
        "alpha_vs_fp32": _stats(err),
        "alpha_vs_golden": _stats(err_golden),
        "fp32_vs_golden": _stats(err32_golden),
        "per_frame_mean_abs": [float(e.mean()) for e in err],
        "alpha_mean": {"fp32": float(alpha32.mean()), dtype: float(alpha16.mean())},
        "seconds": round(time.monotonic() - started, 1),
    }


def _stats(err: np.ndarray) -> dict[str, float]:
    return {
        "mean_abs": float(err.mean()),
        "p99_9": float(np.percentile(err, 99.9)),
        "max_abs": float(err.max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--golden-dir", type=Path, default=DEFAULT_GOLDEN)
    parser.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16")
    parser.add_argument("--weights", default="seeded:v1-pm")
    parser.add_argument("--clip", action="store_true", help="also run the whole golden clip in half precision")
    parser.add_argument("--frames", type=int, default=None, help="limit the clip to its first N frames")
    parser.add_argument(
        "--warmup",
        type=int,
        default=3,
        help="first-frame warm-up steps (3 as in the golden run; the official demo uses 10)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the full report here")
    args = parser.parse_args(argv)
    if not args.golden_dir.is_dir():
        print(f"golden data not found in {args.golden_dir}; pass --golden-dir", file=sys.stderr)
        return 2

    from matanyone_engine.exporters.coreml.drift import format_drift

    report: dict[str, Any] = {"modules": module_drift(args.golden_dir, args.dtype, args.weights)}
    print(format_drift(report["modules"]))
    for note in report["modules"].get("notes", []):
        print("note:", note)
    if args.clip:
        report["clip"] = clip_drift(args.golden_dir, args.dtype, args.weights, args.frames, args.warmup)
        c = report["clip"]
        print(f"\nclip {c['size'][0]}x{c['size'][1]}, {c['frames']} frames, warm-up {c['warmup']}, {c['dtype']}:")
        keys = ("alpha_vs_fp32", "alpha_vs_golden", "fp32_vs_golden") if args.warmup == 3 else ("alpha_vs_fp32",)
        for key in keys:
            s = c[key]
            print(f"  {key:<16} mean {s['mean_abs']:.3g}  p99.9 {s['p99_9']:.3g}  max {s['max_abs']:.3g}")
        print(
            f"  per-frame mean abs error: first {c['per_frame_mean_abs'][0]:.3g}, "
            f"last {c['per_frame_mean_abs'][-1]:.3g}, worst {max(c['per_frame_mean_abs']):.3g}"
        )
        print(f"  alpha mean: {c['alpha_mean']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
