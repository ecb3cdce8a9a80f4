"""The ``matanyone`` command line: the composition root over the app and the benchmark.

It sits above every other layer (it mounts ``bench``'s command), so nothing imports it.

The console script is ``entry.main``, which installs the signal handling before the command tree
(typer, PyAV, the plugins: most of a second) is imported, so this package imports nothing
until ``app`` or ``main`` is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        module = importlib.import_module(f"{__name__}.main")
        globals().update(app=module.app, main=module.main)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
