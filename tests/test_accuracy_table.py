"""The accuracy record behind ``--precision fast`` (core/engine/accuracy.py) is true here.

Each recorded backend/precision that runs on this machine is run on the golden clip and must land
near its recorded error, on the same side of the admissibility line (within the error of the
official demo's CPU mode, the official code under its bf16 autocast). The reference itself is
re-measured only where a checkout of the official code is named (MATANYONE_OFFICIAL, and
MATANYONE_OFFICIAL_PYTHON for a Python that runs it). ``benchmarks/accuracy_table.py`` rewrites
the record.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from matanyone_engine.core.app.loading import runs_here
from matanyone_engine.core.engine import accuracy as A
from matanyone_engine.core.engine.precision import cpu_has_native_bf16

#: Reduced-precision errors depend on the kernels' accumulation order (AMX, AVX512-BF16 and
#: emulation differ), so a record is checked to a factor, and its verdict exactly.
FACTOR = 1.5


def _entry_param(name: str):
    backend, precision = name.split("/")
    marks = []
    # emulated bfloat16 (a CPU without bf16 instructions) takes minutes per clip; an fp16 ONNX export
    # of the golden size takes minutes too
    if (precision == "bf16" and not cpu_has_native_bf16()) or (backend.startswith("onnx") and precision == "fp16"):
        marks.append(pytest.mark.slow)
    return pytest.param(name, marks=marks, id=name)


def test_the_record_has_its_reference_and_every_stand_in_points_at_a_record():
    assert A.REFERENCE in A.RECORDED
    assert A.admissible(*A.REFERENCE.split("/"))[0]  # within itself
    # the torch backend's bf16 autocast reproduces the official CPU mode, so it is within it
    assert A.admissible("torch", "bf16")[0]
    for own, stand_in in A.STANDS_FOR.items():
        assert stand_in in A.RECORDED, f"{own} stands for {stand_in}, which is not recorded"


def test_admissibility_follows_the_recorded_numbers(monkeypatch):
    monkeypatch.setattr(
        A,
        "RECORDED",
        {
            A.REFERENCE: {"mean_abs": 0.03, "p999_abs": 0.2},
            "x-cpu/bf16": {"mean_abs": 0.01, "p999_abs": 0.1},
            "x-cpu/fp16": {"mean_abs": 0.04, "p999_abs": 0.1},  # mean above the reference
            "y-cpu/fp16": {"mean_abs": 0.01, "p999_abs": 0.3},  # tail above the reference
            "y-cpu/bf16": {"mean_abs": 0.01, "p999_abs": 0.21},  # tail within the allowance
        },
    )
    assert A.admissible("y-cpu", "bf16")[0]
    monkeypatch.setattr(A, "STANDS_FOR", {"x-gpu/bf16": "x-cpu/bf16"})
    assert A.admissible("x-cpu", "bf16")[0]
    assert not A.admissible("x-cpu", "fp16")[0] and "above" in A.admissible("x-cpu", "fp16")[1]
    assert not A.admissible("y-cpu", "fp16")[0]
    ok, why = A.admissible("x-gpu", "bf16")
    assert ok and "x-cpu/bf16" in why  # judged by its stand-in, and says so
    ok, why = A.admissible("z", "bf16")
    assert not ok and "no golden-clip alpha error is recorded" in why
    assert A.admissible("z", "fp32")[0]


@pytest.mark.parametrize("name", [_entry_param(n) for n in sorted(A.RECORDED)])
def test_recorded_error_matches_the_golden_clip(name, golden_dir):
    from matanyone_engine.core.bench.accuracy import GOLDEN_NAME, golden_alpha_error
    from matanyone_engine.core.bench.configs import backend_precisions

    backend, precision = name.split("/")
    if name == A.REFERENCE:
        measured = _official_error(golden_dir)
    elif not runs_here(backend) or precision not in backend_precisions(backend):
        pytest.skip(f"{backend} {precision} cannot run here (its own package's tests check it where it can)")
    else:
        measured = golden_alpha_error(backend, precision, golden_dir / GOLDEN_NAME)
    recorded = A.RECORDED[name]
    print(f"{name}: measured {measured}, recorded {recorded}")
    for stat in ("mean_abs", "p999_abs"):
        assert recorded[stat] / FACTOR <= measured[stat] <= recorded[stat] * FACTOR, (stat, measured, recorded)
    reference = A.RECORDED[A.REFERENCE]
    assert A.within_reference(measured, reference) == A.within_reference(recorded, reference)


def _official_error(golden_dir: Path) -> dict:
    official, python = os.environ.get("MATANYONE_OFFICIAL"), os.environ.get("MATANYONE_OFFICIAL_PYTHON")
    if not official or not python:
        pytest.skip(
            "the reference is the official code: set MATANYONE_OFFICIAL (a checkout) and MATANYONE_OFFICIAL_PYTHON"
        )
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "official_reference_error.py"
    command = [python, str(script), "--official", official, "--shared", str(golden_dir.parent), "--bf16"]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600)
    return json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
