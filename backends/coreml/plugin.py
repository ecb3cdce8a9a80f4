"""Plugin entry point (``coreml = "matanyone_engine.backends.coreml.plugin"``).

Registers the four Core ML backends and the ``coreml`` exporter on every OS: a Linux machine can
export packages (and list the backends with the reason they cannot run), a Mac can also run them.
Importing this module imports neither torch nor coremltools.
"""

from __future__ import annotations

from collections.abc import Callable

from matanyone_engine.core import hookimpl

from .backend import BACKENDS


@hookimpl
def register_backends(register: Callable) -> None:
    for backend in BACKENDS:
        register(backend)


@hookimpl
def register_exporters(register: Callable) -> None:
    from matanyone_engine.exporters.coreml.exporter import CoreMLExporter

    register(CoreMLExporter())
