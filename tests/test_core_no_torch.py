"""core/ must work without torch: importing every core module in a fresh interpreter loads no torch."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import matanyone_engine.core as core


def test_core_imports_no_torch():
    names = [m.name for m in pkgutil.walk_packages(core.__path__, prefix="matanyone_engine.core.")]
    names = [n for n in names if not n.endswith(".__main__")]  # running the CLI is not importing it
    assert "matanyone_engine.core.engine.state" in names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"core pulled in: {result.stdout.strip()}"
