"""``matanyone plugins``: which plugins loaded, where they come from, and what each registered.

When a backend is missing from ``matanyone backends`` the question is always "did its plugin
load, and if not, why?". The plugin manager only warns once about a broken plugin, so this
command answers it on demand: every plugin the entry points (or the built-in table) name, its
distribution and version, its status (loaded, excluded by MATANYONE_PLUGINS, failed with the
error), the hooks it implements, and the names it registers through each hook — attributed per
plugin by calling each plugin's own hook implementation with a collecting ``register``.
"""

from __future__ import annotations

import importlib
import json
from importlib import metadata
from typing import Any

from . import manager as plugins

#: hook -> (key in the output, attribute that names what it registers)
_REGISTRIES = {
    "register_backends": ("backends", "name"),
    "register_exporters": ("exporters", "format"),
    "register_mask_providers": ("mask_providers", "name"),
}


def _entry_points() -> dict[str, metadata.EntryPoint]:
    try:
        return {ep.name: ep for ep in metadata.entry_points(group=plugins.ENTRY_POINT_GROUP)}
    except Exception:  # pragma: no cover - broken metadata; the manager tolerates it too
        return {}


def _origin(name: str, ep: metadata.EntryPoint | None) -> tuple[str, str, str]:
    """(module path, distribution, version) of a plugin name."""
    if ep is not None:
        dist = getattr(ep, "dist", None)
        return ep.value, getattr(dist, "name", "") or "", getattr(dist, "version", "") or ""
    target = plugins.BUILTIN_PLUGINS.get(name, "")
    try:
        version = metadata.version("matanyone-engine")
    except metadata.PackageNotFoundError:
        version = ""
    return target, "matanyone-engine (built in)", version


def _registered_names(plugin_name: str, hook: Any) -> list[str]:
    """Names one plugin registers through one ``register_*`` hook (its own implementation only)."""
    key_attr = _REGISTRIES[hook.name][1]
    names: list[str] = []
    for impl in hook.get_hookimpls():
        if impl.plugin_name != plugin_name:
            continue
        kwargs = {"register": lambda item: names.append(str(getattr(item, key_attr, repr(item))))}
        impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
    return names


def _added_commands(plugin_name: str, hook: Any) -> list[str]:
    """Commands one plugin adds, found by letting it register on a scratch typer app."""
    import typer

    scratch = typer.Typer()
    for impl in hook.get_hookimpls():
        if impl.plugin_name == plugin_name:
            impl.function(**({"cli": scratch} if "cli" in impl.argnames else {}))
    names = [
        c.name or (c.callback.__name__.replace("_", "-") if c.callback else "?") for c in scratch.registered_commands
    ]
    names += [g.name or "?" for g in scratch.registered_groups]
    return names


def plugin_rows() -> list[dict[str, Any]]:
    """One JSON-ready row per known plugin, loaded or not, sorted by name."""
    pm = plugins.get_plugin_manager()
    entry_points = _entry_points()
    loaded = dict(pm.list_name_plugin())
    wanted = plugins._wanted()
    names = sorted(set(loaded) | set(entry_points) | set(plugins.BUILTIN_PLUGINS))
    rows: list[dict[str, Any]] = []
    for name in names:
        ep = entry_points.get(name)
        module, dist, version = _origin(name, ep)
        row: dict[str, Any] = {
            "name": name,
            "module": module,
            "distribution": dist,
            "version": version,
            "status": "loaded",
            "error": "",
            "hooks": [],
            "registers": {"backends": [], "exporters": [], "mask_providers": [], "commands": []},
        }
        plugin = loaded.get(name)
        if plugin is None:
            if wanted is not None and name not in wanted:
                row["status"] = "excluded"
                row["error"] = "not in MATANYONE_PLUGINS"
            else:
                row["status"] = "failed"
                row["error"] = _load_error(ep, module)
            rows.append(row)
            continue
        row["module"] = getattr(plugin, "__name__", module)
        callers = pm.get_hookcallers(plugin) or []
        row["hooks"] = sorted(c.name for c in callers)
        errors: list[str] = []
        for caller in callers:
            try:
                if caller.name in _REGISTRIES:
                    row["registers"][_REGISTRIES[caller.name][0]] = _registered_names(name, caller)
                elif caller.name == "register_commands":
                    row["registers"]["commands"] = _added_commands(name, caller)
            except Exception as exc:  # one broken hook must not hide the rest of the listing
                errors.append(f"{caller.name}: {type(exc).__name__}: {exc}")
        row["error"] = "; ".join(errors)
        rows.append(row)
    return rows


def _load_error(ep: metadata.EntryPoint | None, module: str) -> str:
    """Why a plugin that should have loaded did not: import it again and keep the message."""
    try:
        if ep is not None:
            ep.load()
        else:
            importlib.import_module(module)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "not registered (loaded after the plugin manager was built?)"


def plugins_command(as_json: bool) -> None:
    """Body of ``matanyone plugins [--json]``: print the rows as JSON or as a table."""
    import typer

    rows = plugin_rows()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("plugin", "status", "from", "hooks", "registers")
    for r in rows:
        origin = f"{r['distribution']} {r['version']}".strip() + f"\n{r['module']}"
        registered = "\n".join(f"{kind}: {', '.join(items)}" for kind, items in r["registers"].items() if items)
        status = r["status"] + (f"\n{r['error']}" if r["error"] else "")
        table.add_row(r["name"], status, origin, "\n".join(r["hooks"]), registered)
    Console().print(table)
