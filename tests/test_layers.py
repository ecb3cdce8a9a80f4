"""The dependency direction between the layers, read from the import statements themselves.

Each layer may import only the layers listed for it (and itself); anything else is a wrong arrow,
reported with the file and line. Lazy imports inside functions count too: an arrow is an arrow
whether it runs at import time or later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "matanyone_engine"

#: layer -> the layers it may import (besides itself). Bottom first.
#: ``core`` is the package root (``__init__``: ``hookimpl``, the declaration, ``__version__``);
#: ``core/api.py``, the stable re-export of the API, counts as ``core.app``.
ALLOWED: dict[str, set[str]] = {
    "core.engine": set(),
    "core.plugins": {"core", "core.engine"},
    "core.artifacts": {"core", "core.engine"},
    "core.media": {"core", "core.engine", "core.plugins"},
    "core.app": {"core", "core.engine", "core.plugins", "core.artifacts", "core.media"},
    "core.bench": {"core", "core.engine", "core.plugins", "core.artifacts", "core.media", "core.app"},
    "core.cli": {"core", "core.engine", "core.plugins", "core.artifacts", "core.media", "core.app", "core.bench"},
    "core": {"core.engine", "core.plugins"},
    # backends build their artifacts through the exporters on a cold cache
    "backends": {"core", "core.engine", "core.artifacts", "core.plugins", "exporters"},
    # exporters trace the torch backend's network and validate on the generated clip
    "exporters": {"core", "core.engine", "core.artifacts", "core.plugins", "core.media", "backends"},
}
#: Third-party packages a layer must never import, whatever the arrow.
FORBIDDEN_THIRD_PARTY = {"core": {"torch"}}
#: The engine imports numpy, array_api_compat (the array API over numpy and a backend's own tensors,
#: without importing the backend's framework) and the standard library only.
ENGINE_THIRD_PARTY = {"numpy", "array_api_compat"}


def layer_of(module: str) -> str | None:
    """``matanyone_engine.core.media.video`` -> ``core.media``; None outside the project."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    parts = module.split(".")[1:]
    if not parts:
        return None
    if parts[:2] == ["core", "api"]:
        return "core.app"
    if parts[0] == "core" and len(parts) >= 2 and f"core.{parts[1]}" in ALLOWED:
        return f"core.{parts[1]}"
    return parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import sub` may name a sub-module: count both the package and the sub-module
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def violations(paths: list[Path]) -> list[str]:
    wrong: list[str] = []
    for path in paths:
        here = layer_of(module_name(path))
        assert here is not None
        allowed = ALLOWED[here] | {here}
        for line, target in imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            top = target.split(".")[0]
            if here.startswith("core") and top in FORBIDDEN_THIRD_PARTY["core"]:
                wrong.append(f"{where}: {here} imports {target}")
            if here == "core.engine" and top != PACKAGE and top not in ENGINE_THIRD_PARTY and not _stdlib(top):
                wrong.append(
                    f"{where}: the engine imports {target} (only numpy, array_api_compat and the standard library)"
                )
            there = layer_of(target)
            if there is None or there in allowed:
                continue
            wrong.append(f"{where}: {here} imports {target} ({there} is not below {here})")
    return sorted(set(wrong))


def _stdlib(name: str) -> bool:
    import sys

    return name in sys.stdlib_module_names or name == "__future__"


def project_files() -> list[Path]:
    return sorted(p for top in ("core", "backends", "exporters") for p in (ROOT / top).rglob("*.py"))


def test_every_file_belongs_to_a_layer():
    for path in project_files():
        assert layer_of(module_name(path)) in ALLOWED, path


def test_imports_point_down():
    assert violations(project_files()) == []


@pytest.mark.parametrize(
    ("where", "line", "layer"),
    [
        ("core/engine/state.py", "from matanyone_engine.core.app import api", "core.app"),
        ("core/engine/spec.py", "from ..media import video", "core.media"),
        ("core/media/video.py", "from ..app.loading import load_modules", "core.app"),
        ("core/artifacts/cache.py", "from matanyone_engine.core.bench import report", "core.bench"),
        ("backends/torch/plugin.py", "from matanyone_engine.core.app import api", "core.app"),
        ("core/engine/padding.py", "import cv2", "cv2"),
        ("core/app/api.py", "import torch", "torch"),
        ("core/engine/driver.py", "from matanyone_engine.core import hookimpl", "core"),
        ("backends/onnx/runtime.py", "from matanyone_engine.core.api import matte", "core.app"),
        ("core/media/writers.py", "from ..cli import main", "core.cli"),
    ],
)
def test_a_wrong_arrow_is_reported_with_file_and_line(tmp_path: Path, monkeypatch, where: str, line: str, layer: str):
    """The check itself: a copy of a real file with one bad import added fails, naming the line."""
    copy = tmp_path / where
    copy.parent.mkdir(parents=True, exist_ok=True)
    original = (Path(__file__).resolve().parents[1] / where).read_text(encoding="utf-8")
    copy.write_text(original + f"\n\ndef _added():\n    {line}\n", encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    found = violations([copy])
    added_line = original.count("\n") + 4
    assert any(f.startswith(f"{where}:{added_line}: ") and layer in f for f in found), found
