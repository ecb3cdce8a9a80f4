"""The streaming-memory benchmark runs, and fails when its target fails (slow: two whole runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "memory_streaming.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_clip_length():
    result = run("--short", "20", "--long", "200", "--size", "48x64")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout.splitlines()[-1]


@pytest.mark.slow
def test_an_impossible_target_fails_the_benchmark():
    result = run("--short", "5", "--long", "10", "--size", "48x64", "--target", "0.5")
    assert result.returncode == 1
    assert "FAILED" in result.stdout.splitlines()[-1]
