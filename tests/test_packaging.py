"""The wheel maps core/, backends/ and exporters/ into one matanyone_engine namespace, with the
console script and the plugin entry points."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_layout_and_entry_points(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("matanyone_engine-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    # every source file of the three folders ships, under its namespace path (a sub-package left
    # out of pyproject's package list would be missing here)
    sources = [p for top in ("core", "backends", "exporters") for p in (ROOT / top).rglob("*.py")]
    assert len(sources) > 60
    for source in sources:
        shipped = "matanyone_engine/" + source.relative_to(ROOT).as_posix()
        assert shipped in names, shipped
    assert not any(n.startswith(("core/", "backends/", "tests/")) for n in names)
    assert "matanyone = matanyone_engine.core.cli.entry:main" in entry_points
    assert "torch = matanyone_engine.backends.torch.plugin" in entry_points
    assert "[matanyone_engine]" in entry_points


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "matanyone_engine.core.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "run" in result.stdout and "backends" in result.stdout
