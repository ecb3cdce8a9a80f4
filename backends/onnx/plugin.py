"""Plugin module for the ``onnx`` entry point: ONNX Runtime backends and the ONNX exporter.

Importing it must stay cheap (it is loaded by every command): onnxruntime, onnx and torch are
imported only when a backend is asked about or loaded, or an export runs.
"""

from __future__ import annotations

from collections.abc import Callable

from matanyone_engine.core import hookimpl
from matanyone_engine.exporters.onnx import OnnxExporter

from .runtime import BACKENDS

EXPORTER = OnnxExporter()


@hookimpl
def register_backends(register: Callable) -> None:
    for backend in BACKENDS:
        register(backend)


@hookimpl
def register_exporters(register: Callable) -> None:
    register(EXPORTER)
