"""The ``matanyone`` command line: the composition root over the app and the benchmark.

It sits above every other layer (it mounts ``bench``'s command), so nothing imports it.
"""

from .main import app, main

__all__ = ["app", "main"]
