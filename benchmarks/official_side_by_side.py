#!/usr/bin/env python
"""The torch backend beside the official implementation, measured in one run on one machine.

    python benchmarks/official_side_by_side.py --official DIR --official-python PY [--rounds 3]

DIR is a checkout of pq-yang/MatAnyone (fetched, never vendored; its ``matanyone/`` package) and
PY a Python whose environment can run it (torch==2.13.0 omegaconf hydra-core einops
huggingface_hub imageio tqdm opencv-python-headless pillow av; see ../shared/official/README.md).
Each round runs, as separate fresh processes and in an order that alternates from round to round,
the official ``InferenceCore`` through ``../shared/official/official_speed.py`` (fp32, then its
CPU bfloat16 autocast) and ``matanyone bench -b torch -p fp32 -p bf16``. Both sides get the same
clip (the sample resized to --size with INTER_AREA), the same seeded weights, the same threads,
one extra first-frame prediction, and report the median of the same steady frames (1..n-1), each
from a process that has not run the network before (no warm-up pass on either side). Ratios are
paired within a round, so a machine that slows down for a round slows both.

Run it under the shared lock: ``flock /work/.heavy.lock python benchmarks/official_side_by_side.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def official_round(args: argparse.Namespace, bf16: bool) -> float:
    script = Path(args.shared) / "official" / "official_speed.py"
    command = [
        args.official_python,
        str(script),
        "--official",
        args.official,
        "--shared",
        str(args.shared),
        "--size",
        args.size,
        "--frames",
        str(args.frames),
        "--threads",
        str(args.threads),
    ] + (["--bf16"] if bf16 else [])
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")][-1]
    return float(json.loads(line)["median_s"])


def project_round(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "bench.json"
        command = [
            sys.executable,
            "-m",
            "matanyone_engine.core.cli",
            "bench",
            "-b",
            "torch",
            "-p",
            "fp32",
            "-p",
            "bf16",
            "--size",
            args.size,
            "--frames",
            str(args.frames),
            "--runs",
            "1",
            "--warmup-runs",
            "0",
            "--state-warmup",
            "1",
            "--threads",
            str(args.threads),
            "--no-prepare",
            "--json",
            str(report),
            "-q",
        ]
        subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600, cwd=REPO)
        data = json.loads(report.read_text())
    return {r["precision"]: r["frame"]["median_ms"] / 1000.0 for r in data["results"] if "frame" in r}


def machine() -> dict[str, Any]:
    from matanyone_engine.core.bench.environment import cpu_model
    from matanyone_engine.core.engine.precision import cpu_bf16_features

    return {
        "cpu": cpu_model(),
        "bf16_features": list(cpu_bf16_features()),
        "cpus": os.cpu_count(),
        "load_average_start": list(os.getloadavg()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="checkout of pq-yang/MatAnyone")
    parser.add_argument("--official-python", required=True, help="python that can run the official code")
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--size", default="432x768")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    info = machine()
    rounds = []
    for index in range(args.rounds):
        steps = ["official", "project"] if index % 2 == 0 else ["project", "official"]
        row: dict[str, float] = {}
        for step in steps:
            if step == "official":
                row["official/fp32"] = official_round(args, bf16=False)
                row["official/bf16"] = official_round(args, bf16=True)
            else:
                for precision, seconds in project_round(args).items():
                    row[f"torch/{precision}"] = seconds
        row["load_average"] = os.getloadavg()[0]
        rounds.append(row)
        print(f"round {index + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    labels = ["official/fp32", "official/bf16", "torch/fp32", "torch/bf16"]
    summary = {label: float(np.median([r[label] for r in rounds if label in r])) for label in labels}
    paired = {
        f"torch/{p} over official/{p}": float(np.median([r[f"torch/{p}"] / r[f"official/{p}"] for r in rounds]))
        for p in ("fp32", "bf16")
    }
    result = {
        "machine": {**info, "load_average_end": list(os.getloadavg())},
        "settings": {"size": args.size, "frames": args.frames, "rounds": args.rounds, "threads": args.threads},
        "date": time.strftime("%Y-%m-%d"),
        "rounds": rounds,
        "median_s_per_frame": summary,
        "paired_ratio_median": paired,
    }
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
