"""Plugin entry point (``coreml = "matanyone_engine.backends.coreml.plugin"``).

Registers the four Core ML backends, ``coreml-sim`` (the packages through the reference MIL
executor, sim.py) and the ``coreml`` exporter on every OS: a Linux machine can export packages,
run them in the simulation, and list the four runtime backends with the reason they cannot run;
a Mac can also run them on Apple's runtime.
Importing this module imports neither torch nor coremltools.
"""

from __future__ import annotations

from collections.abc import Callable

from matanyone_engine.core import hookimpl

from .backend import BACKENDS
from .sim import SIM_BACKENDS


@hookimpl
def register_backends(register: Callable) -> None:
    for backend in (*BACKENDS, *SIM_BACKENDS):
        register(backend)


@hookimpl
def register_exporters(register: Callable) -> None:
    from matanyone_engine.exporters.coreml.exporter import CoreMLExporter

    register(CoreMLExporter())
