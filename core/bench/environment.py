"""Where the numbers were measured: CPU model and features, cores, memory, libraries, commit and
load, recorded in every report (figures from different machines or runs are not comparable)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any

import psutil

from ..app.samples import checkout_root

#: The distributions whose versions explain a number (bench reports) or a problem (``doctor``).
LIBRARIES = ("matanyone-engine", "numpy", "torch", "onnxruntime", "onnx", "coremltools", "opencv-python-headless", "av")


def library_versions() -> dict[str, str | None]:
    """The installed version of each of ``LIBRARIES``, None for one that is not installed."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for dist in LIBRARIES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def environment(threads: int | None = None) -> dict[str, Any]:
    """Where the numbers were measured: CPU, cores, memory, library versions, date, commit, load."""
    libraries = {dist: version for dist, version in library_versions().items() if version is not None}
    commit, dirty = _git_state()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_count_logical": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads_requested": threads,
        "memory_total_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "libraries": libraries,
        "git_commit": commit,
        "git_dirty": dirty,
        "load_average_start": load_average(),
    }


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo, sysctl on macOS), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return (
                subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
                ).stdout.strip()
                or platform.processor()
            )
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1/5/15-minute load: a busy machine explains noisy numbers, so it goes in the report."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the code runs from; (None, None) outside a git checkout."""
    root = checkout_root()
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return commit.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None
