"""Hook specifications: the whole plugin surface of matanyone-engine.

A plugin is a module (registered under the ``matanyone_engine`` entry-point group) that
implements any of these with ``@matanyone_engine.core.hookimpl``.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("matanyone_engine")
hookimpl = pluggy.HookimplMarker("matanyone_engine")


@hookspec
def register_backends(register: Callable) -> None:
    """Call ``register(backend)`` for each backend this plugin provides.

    ``backend`` follows core.protocol.Backend: ``name``, ``description``, ``available()`` and
    ``load(request)``. Register backends even when they cannot run here; ``available()`` says why.
    """


@hookspec
def register_exporters(register: Callable) -> None:
    """Call ``register(exporter)`` for each export format (``exporter.format`` names it, e.g. "onnx")."""


@hookspec
def register_mask_providers(register: Callable) -> None:
    """Call ``register(provider)`` for each first-frame mask source (``provider.name``, e.g. "file")."""


@hookspec
def register_commands(cli) -> None:
    """Add commands to the ``matanyone`` typer app."""
