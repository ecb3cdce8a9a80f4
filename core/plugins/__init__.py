"""The plugin system: hook specifications, the manager that loads entry points, and the listing.

``from matanyone_engine.core import plugins`` gives the registries (``plugins.backends()``,
``plugins.exporters()``, ``plugins.mask_providers()``, ``plugins.get_backend(name)``).
"""

from .hookspecs import hookimpl, hookspec
from .manager import (
    BUILTIN_PLUGINS,
    ENTRY_POINT_GROUP,
    backends,
    exporters,
    get_backend,
    get_plugin_manager,
    mask_providers,
    reset,
)

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "backends",
    "exporters",
    "get_backend",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "mask_providers",
    "reset",
]
