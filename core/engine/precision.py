"""Precision names, what ``fast`` means on this machine for each backend, and what is admissible.

``fast`` is not a number format: it asks for the quickest precision that stays within the official
CPU demo's own error (its bfloat16 autocast) against the float32 golden clip. A precision is
admissible only where the project's tests recorded its golden-clip alpha error and that error is
within the autocast's (``accuracy.py`` holds the record, ``tests/test_accuracy_table.py`` checks it
against the golden clip). Which admissible precision is quickest is measured by
``matanyone bench --search`` (the placement profile's ``precisions``); without a measurement a
backend answers through its optional ``fast_precision()`` -> (precision, reason), a rule from its
hardware, and an answer that is not admissible becomes fp32. The reason is always printed, so a
user who asked for ``fast`` and got fp32 learns why (e.g. this CPU has no bfloat16 instructions).
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from .accuracy import admissible

FAST = "fast"
#: The precisions the project's backends offer, plus ``fast``; each backend refuses what it lacks.
CHOICES = ("fp32", "bf16", "fp16", FAST)
#: CPU flags (Linux /proc/cpuinfo) that mean bfloat16 arithmetic in hardware.
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


@lru_cache(maxsize=1)
def cpu_bf16_features() -> tuple[str, ...]:
    """The CPU's bfloat16 features by name, empty where it has none.

    x86: AVX512_BF16 or AMX-BF16; Arm: the BF16 extension (Linux ``bf16`` flag, macOS
    ``hw.optional.arm.FEAT_BF16``). Without them PyTorch emulates bfloat16 matmuls and
    convolutions (on the project's first 2-core AVX2 benchmark machine the autocast was 68x
    slower than float32) and OpenVINO refuses bf16.
    """
    system = platform.system()
    if system == "Linux":
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return ()
        flags: set[str] = set()
        for line in text.splitlines():
            if line.startswith(("flags", "Features")):
                flags.update(line.split(":", 1)[-1].split())
        return tuple(f for f in BF16_FLAGS if f in flags)
    if system == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.SubprocessError):
            return ()
        return ("FEAT_BF16",) if out.stdout.strip() == "1" else ()
    return ()


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bfloat16 dot products in hardware (see cpu_bf16_features)."""
    return bool(cpu_bf16_features())


def resolve(backend: Any, precision: str, measured: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(concrete precision, why) for ``backend`` asked to run ``precision``.

    ``measured`` maps backend names to the fastest admissible precision a ``bench --search`` on
    this machine measured for them (the placement profile's ``precisions``); it wins over the
    backend's own rule."""
    if precision != FAST:
        return precision, ""
    name = getattr(backend, "name", "the backend")
    if measured and measured.get(name):
        chosen = measured[name]
        ok, verdict = admissible(name, chosen)
        if ok:
            return chosen, f"measured fastest admissible precision here (bench --search); {verdict}"
    chooser = getattr(backend, "fast_precision", None)
    if chooser is None:
        return "fp32", f"{name} declares no faster precision"
    chosen, why = chooser()
    if chosen == "fp32":
        return chosen, why
    ok, verdict = admissible(name, chosen)
    if not ok:
        return "fp32", f"{why}, but {chosen} is not admissible: {verdict}"
    return chosen, f"{why}; {verdict}"
