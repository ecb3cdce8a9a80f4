"""The plugin manager: entry points in, registries of backends / exporters / mask providers out."""

from __future__ import annotations

import importlib
import os
import warnings
from functools import lru_cache
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "matanyone_engine"

#: Built-in plugins load even when the package is used from a source tree without metadata.
BUILTIN_PLUGINS = {
    "torch": "matanyone_engine.backends.torch.plugin",
    "onnx": "matanyone_engine.backends.onnx.plugin",
    "coreml": "matanyone_engine.backends.coreml.plugin",
    "masks": "matanyone_engine.core.media.mask_providers",
}


def _wanted() -> set[str] | None:
    """Names allowed by MATANYONE_PLUGINS (comma separated); None means all."""
    raw = os.environ.get("MATANYONE_PLUGINS")
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


@lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    wanted = _wanted()
    seen: set[str] = set()
    try:
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # pragma: no cover - broken metadata must not kill the CLI
        entry_points = []
    candidates: list[tuple[str, str, metadata.EntryPoint | None]] = [(ep.name, ep.value, ep) for ep in entry_points]
    for name, target in BUILTIN_PLUGINS.items():
        if name not in {c[0] for c in candidates}:
            candidates.append((name, target, None))
    for name, target, ep in candidates:
        if name in seen or (wanted is not None and name not in wanted):
            continue
        seen.add(name)
        try:
            module = ep.load() if ep is not None else importlib.import_module(target)
        except Exception as exc:  # a broken plugin must not take the others down
            warnings.warn(f"matanyone plugin {name!r} ({target}) failed to load: {exc}", stacklevel=2)
            continue
        pm.register(module, name=name)
    return pm


def _collect(hook_name: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    attribute = "format" if hook_name == "register_exporters" else "name"

    def register(item: Any) -> None:
        key = getattr(item, attribute)
        if key in found:
            raise ValueError(f"two plugins register {attribute} {key!r}")
        found[key] = item

    getattr(get_plugin_manager().hook, hook_name)(register=register)
    return found


def backends() -> dict[str, Any]:
    return _collect("register_backends")


def exporters() -> dict[str, Any]:
    return _collect("register_exporters")


def mask_providers() -> dict[str, Any]:
    return _collect("register_mask_providers")


def get_backend(name: str):
    table = backends()
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise KeyError(f"unknown backend {name!r}; known backends: {known} (see `matanyone backends`)")
    return table[name]


def reset() -> None:
    """Forget loaded plugins (tests change MATANYONE_PLUGINS)."""
    get_plugin_manager.cache_clear()
