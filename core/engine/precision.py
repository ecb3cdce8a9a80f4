"""Precision names, and what ``fast`` means on this machine for each backend.

``fast`` is not a number format: it asks each backend for the quickest precision it has measured
to stay within the official CPU demo's own error (its bfloat16 autocast) against the float32
golden clip. A backend answers through an optional ``fast_precision()`` method returning
(precision, reason); one without it runs fp32. The reason is printed, so a user who asked for
``fast`` and got fp32 learns why (e.g. this CPU has no bfloat16 instructions).
"""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

FAST = "fast"
#: The precisions the project's backends offer, plus ``fast``; each backend refuses what it lacks.
CHOICES = ("fp32", "bf16", "fp16", FAST)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bfloat16 dot products in hardware.

    x86: AVX512_BF16 or AMX-BF16; Arm: the BF16 extension (Linux ``bf16`` flag, macOS
    ``hw.optional.arm.FEAT_BF16``). Without them PyTorch emulates bfloat16 matmuls and
    convolutions, which on the 2-core AVX2 machine of this project's benchmarks made the autocast
    68x slower than float32 (benchmarks/run_table.py).
    """
    system = platform.system()
    if system == "Linux":
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
        flags: set[str] = set()
        for line in text.splitlines():
            if line.startswith(("flags", "Features")):
                flags.update(line.split(":", 1)[-1].split())
        return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    if system == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return out.stdout.strip() == "1"
    return False


def resolve(backend: Any, precision: str) -> tuple[str, str]:
    """(concrete precision, why) for ``backend`` asked to run ``precision``."""
    if precision != FAST:
        return precision, ""
    chooser = getattr(backend, "fast_precision", None)
    if chooser is None:
        return "fp32", f"{getattr(backend, 'name', 'the backend')} declares no faster precision"
    return chooser()
