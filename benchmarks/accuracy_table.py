#!/usr/bin/env python
"""Write the accuracy record behind ``--precision fast`` (core/engine/accuracy.py's RECORDED).

    python benchmarks/accuracy_table.py            # measure what runs here, rewrite the record
    python benchmarks/accuracy_table.py --check    # measure and compare, change nothing
    python benchmarks/accuracy_table.py --official DIR --official-python PY   # ... and the reference

Every reduced precision a backend here offers is run on the golden clip (core.bench.accuracy) and
its alpha error recorded; entries of backends that cannot run here are kept as they were. The
record decides which precisions ``fast`` may take (within the torch bf16 autocast's error, the
official demo's CPU mode) and tests/test_accuracy_table.py checks it on every machine.
Install the OpenVINO example plugin first (pip install ./examples/matanyone-openvino) to include it.
The reference (``official/bf16``, the official code under its CPU autocast) is measured only when
a checkout of pq-yang/MatAnyone and a Python that runs it are given.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECORD_FILE = REPO / "core" / "engine" / "accuracy.py"
START, END = "# recorded:start", "# recorded:end"
#: The reduced precisions worth recording (fp32 is the golden clip's own precision).
CANDIDATES = (
    ("torch", "bf16"),
    ("torch", "fp16"),
    ("onnx-cpu", "fp16"),
    ("openvino-cpu", "bf16"),
)


def render(recorded: dict[str, dict[str, Any]]) -> str:
    """The RECORDED literal, one field a line (what ruff format would make of it)."""
    lines = ["RECORDED: dict[str, dict[str, Any]] = {"]
    for name in sorted(recorded):
        lines.append(f"    {json.dumps(name)}: {{")
        lines += [f"        {json.dumps(k)}: {json.dumps(v)}," for k, v in sorted(recorded[name].items())]
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines)


def rewrite(recorded: dict[str, dict[str, Any]]) -> None:
    text = RECORD_FILE.read_text()
    start = text.index(START)
    start = text.index("\n", start) + 1
    end = text.index(END)
    RECORD_FILE.write_text(text[:start] + render(recorded) + "\n" + text[end:])


def _rounded(measured: dict[str, Any]) -> dict[str, float]:
    return {k: float(f"{measured[k]:.3g}") for k in ("mean_abs", "p999_abs", "max_abs")}


def official_error(official: str, python: str, golden: Path) -> dict[str, Any]:
    """The official code's bf16 CPU-mode error on the golden clip (its own script, its own Python)."""
    script = REPO / "benchmarks" / "official_reference_error.py"
    shared = golden.parent.parent
    command = [python, str(script), "--official", official, "--shared", str(shared), "--bf16"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600)
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])


def machine() -> str:
    from matanyone_engine.core.bench.environment import cpu_model
    from matanyone_engine.core.engine.precision import cpu_bf16_features

    features = ",".join(cpu_bf16_features()) or "no bf16 instructions"
    return f"{cpu_model() or platform.processor()} ({features})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="measure and compare; do not rewrite")
    parser.add_argument("--golden", type=Path, default=None, help="golden clip .npz (default: ../shared/golden)")
    parser.add_argument("--only", action="append", help="backend/precision to measure (repeatable)")
    parser.add_argument("--official", help="checkout of pq-yang/MatAnyone, to measure the reference")
    parser.add_argument("--official-python", help="a Python that can run the official code")
    args = parser.parse_args()

    from matanyone_engine.core.app.loading import runs_here
    from matanyone_engine.core.bench.accuracy import find_golden, golden_alpha_error
    from matanyone_engine.core.bench.configs import backend_precisions
    from matanyone_engine.core.engine import accuracy

    golden = args.golden or find_golden()
    if golden is None:
        print("error: the golden clip is not beside the checkout (../shared/golden)", file=sys.stderr)
        return 2
    recorded = {k: dict(v) for k, v in accuracy.RECORDED.items()}
    where = machine()
    if args.official and args.official_python and (not args.only or accuracy.REFERENCE in args.only):
        measured = official_error(args.official, args.official_python, golden)
        entry = {**_rounded(measured), "measured_on": where, "measured_by": "benchmarks/official_reference_error.py"}
        print(f"{accuracy.REFERENCE}: {entry} (was {recorded.get(accuracy.REFERENCE)})")
        recorded[accuracy.REFERENCE] = entry
    for backend, precision in CANDIDATES:
        name = accuracy.key(backend, precision)
        if args.only and name not in args.only:
            continue
        if not runs_here(backend) or precision not in backend_precisions(backend):
            print(f"{name}: cannot run here, record kept: {recorded.get(name)}")
            continue
        measured = golden_alpha_error(backend, precision, golden)
        entry = {**_rounded(measured), "measured_on": where}
        print(f"{name}: {entry} (was {recorded.get(name)})")
        recorded[name] = entry
    if args.check:
        return 0
    rewrite(recorded)
    print(f"wrote {RECORD_FILE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
