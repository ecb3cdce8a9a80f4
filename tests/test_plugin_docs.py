"""docs/plugins.md is the plugin contract, so it is tested like code.

* every hook of core/plugins/hookspecs.py has a reference heading with its exact arguments, and the docs
  name no hook that does not exist;
* every hook has at least one test that exercises it (HOOK_TESTS below; checked by parsing the
  test files, so a renamed or deleted test fails here);
* every example block in the docs runs: each is executed as a module, registered with a fresh
  pluggy manager, and driven through its hook — the echo backend all the way through the state
  machine and through the engine's own plugin loading.

Also tests core.plugin_info (`matanyone plugins`), the listing the docs point users to.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import pytest
import typer
from typer.testing import CliRunner

from matanyone_engine.core import plugins
from matanyone_engine.core.engine.protocol import BackendUnavailable, LoadRequest, Module
from matanyone_engine.core.engine.spec import MODULE_NAMES, MODULE_SPECS, STRIDE, Dims, describe
from matanyone_engine.core.plugins import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins.md"

#: hook -> tests ("file::function", relative to the repository root) that exercise it.
HOOK_TESTS: dict[str, list[str]] = {
    "register_backends": [
        "tests/test_plugins.py::test_torch_backends_registered",
        "tests/test_plugin_docs.py::test_docs_echo_backend_runs_through_the_state_machine",
        "tests/test_plugin_docs.py::test_docs_echo_backend_loads_through_the_engine",
    ],
    "register_exporters": [
        "tests/test_plugin_docs.py::test_docs_exporter_example",
        "tests/test_plugin_docs.py::test_plugins_command_attributes_registrations",
    ],
    "register_mask_providers": [
        "tests/test_mask_providers.py::test_builtin_providers_register_through_the_hook",
        "tests/test_plugin_docs.py::test_docs_mask_provider_example",
    ],
    "register_commands": [
        "tests/test_plugin_docs.py::test_docs_command_example",
    ],
}

#: What a test's source must mention to count as exercising a hook: the hook or its registry.
HOOK_EVIDENCE: dict[str, tuple[str, ...]] = {
    "register_backends": ("register_backends", "plugins.backends(", "get_backend("),
    "register_exporters": ("register_exporters", "plugins.exporters("),
    "register_mask_providers": ("register_mask_providers", "plugins.mask_providers("),
    "register_commands": ("register_commands",),
}


def hookspec_functions() -> dict[str, Any]:
    """The hook specifications, found by pluggy's own marker rather than by a hard-coded list."""
    marker = f"{hookspecs.hookspec.project_name}_spec"
    return {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, marker)}


def docs_text() -> str:
    return DOCS.read_text(encoding="utf-8")


def doc_examples() -> dict[str, tuple[str, str]]:
    """``<!-- example: NAME -->`` followed by a fenced block -> {NAME: (language, code)}."""
    pattern = re.compile(r"<!-- example: ([\w-]+) -->\s*\n```(\w+)\n(.*?)\n```", re.DOTALL)
    found: dict[str, tuple[str, str]] = {}
    for name, language, code in pattern.findall(docs_text()):
        assert name not in found, f"two examples named {name} in {DOCS}"
        found[name] = (language, code + "\n")
    return found


def load_example(name: str) -> types.ModuleType:
    """Execute a python example of the docs as a module of its own (in sys.modules while used)."""
    language, code = doc_examples()[name]
    assert language == "python", f"example {name} is {language}, not python"
    module_name = f"_matanyone_docs_example_{name.replace('-', '_')}"
    module = types.ModuleType(module_name)
    module.__file__ = f"{DOCS}#{name}"
    sys.modules[module_name] = module  # dataclasses and typing resolve names through sys.modules
    exec(compile(code, module.__file__, "exec"), module.__dict__)
    return module


@pytest.fixture
def fresh_pm() -> Iterator[pluggy.PluginManager]:
    pm = pluggy.PluginManager(plugins.ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    yield pm


def collect(pm: pluggy.PluginManager, hook: str, key: str = "name") -> dict[str, Any]:
    found: dict[str, Any] = {}
    getattr(pm.hook, hook)(register=lambda item: found.setdefault(getattr(item, key), item))
    return found


# ------------------------------------------------------------------------- docs vs hookspecs


def test_hookspecs_are_found():
    assert set(hookspec_functions()) >= {
        "register_backends",
        "register_exporters",
        "register_mask_providers",
        "register_commands",
    }


def test_every_hook_is_documented_with_its_arguments():
    text = docs_text()
    for name, fn in hookspec_functions().items():
        arguments = ", ".join(inspect.signature(fn).parameters)
        heading = f"### `{name}({arguments})`"
        assert heading in text, f"{DOCS} lacks the reference heading {heading!r} for hook {name}"


def test_docs_name_no_hook_that_does_not_exist():
    documented = set(re.findall(r"^### `(\w+)\(", docs_text(), re.MULTILINE))
    stale = documented - set(hookspec_functions())
    assert not stale, f"{DOCS} documents hooks that core/plugins/hookspecs.py does not declare: {sorted(stale)}"


def test_docs_cover_registration_and_inspection():
    text = docs_text()
    for needle in (
        "[project.entry-points.matanyone_engine]",
        "MATANYONE_PLUGINS",
        "matanyone plugins",
        "available()",
        "load(request: LoadRequest)",
        "make_mask(",
        "export(",
        "BackendUnavailable",
    ):
        assert needle in text, f"{DOCS} does not mention {needle}"


# --------------------------------------------------------------------------- hooks vs tests


def _test_functions(relative: str) -> dict[str, str]:
    """{function name: source} of the module-level test functions in a test file."""
    path = ROOT / relative
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, str(path))
    return {
        node.name: ast.get_source_segment(source, node) or ""
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
    }


def test_every_hook_has_a_test():
    hooks = set(hookspec_functions())
    assert set(HOOK_TESTS) == hooks, (
        f"HOOK_TESTS must list every hook: missing {sorted(hooks - set(HOOK_TESTS))}, "
        f"unknown {sorted(set(HOOK_TESTS) - hooks)}"
    )
    for hook, tests in HOOK_TESTS.items():
        assert tests, f"hook {hook} has no test"
        for entry in tests:
            relative, function = entry.split("::")
            assert (ROOT / relative).is_file(), f"{entry}: no file {relative}"
            functions = _test_functions(relative)
            assert function in functions, f"{entry}: no test function {function} in {relative}"
            assert any(e in functions[function] for e in HOOK_EVIDENCE[hook]), (
                f"{entry} is listed for {hook} but mentions none of {HOOK_EVIDENCE[hook]}"
            )


# ------------------------------------------------------------------------------ the examples


def test_docs_have_the_examples():
    assert set(doc_examples()) >= {
        "echo-backend",
        "echo-pyproject",
        "spec-json-exporter",
        "threshold-mask-provider",
        "command",
    }


def test_docs_pyproject_snippet_registers_the_echo_module():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    language, text = doc_examples()["echo-pyproject"]
    assert language == "toml"
    data = tomllib.loads(text)
    assert data["project"]["entry-points"]["matanyone_engine"] == {"echo": "matanyone_echo.plugin"}
    assert any(d.startswith("matanyone-engine") for d in data["project"]["dependencies"])


def _blocky(mask: np.ndarray) -> np.ndarray:
    """What the echo backend should reproduce: the mask averaged over 16x16 blocks."""
    h, w = mask.shape
    pooled = mask.reshape(h // STRIDE, STRIDE, w // STRIDE, STRIDE).mean(axis=(1, 3))
    return pooled.repeat(STRIDE, axis=0).repeat(STRIDE, axis=1)


def test_docs_echo_backend_runs_through_the_state_machine(fresh_pm):
    from matanyone_engine.core.engine.driver import matte_frames

    fresh_pm.register(load_example("echo-backend"), name="echo")
    backends = collect(fresh_pm, "register_backends")
    assert set(backends) == {"echo"}
    backend = backends["echo"]
    assert backend.description and backend.available() == (True, "")
    dims = Dims(64, 96, 3)
    modules = backend.load(LoadRequest(weights="unused", dims=dims))
    assert set(modules) == set(MODULE_NAMES)
    rng = np.random.default_rng(0)
    for name, module in modules.items():
        assert isinstance(module, Module) and module.spec is MODULE_SPECS[name]
        inputs = {n: rng.random(s, dtype=np.float32) for n, s in module.spec.input_shapes(dims).items()}
        outputs = module(**inputs)
        assert {n: o.shape for n, o in outputs.items()} == module.spec.output_shapes(dims)
        assert all(o.dtype == np.float32 for o in outputs.values())
    with pytest.raises(BackendUnavailable, match="fp32 only"):
        backend.load(LoadRequest(weights="unused", dims=dims, precision="bf16"))

    frames = rng.integers(0, 256, (4, 64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.float32)
    mask[10:50, 20:70] = 255
    results = list(matte_frames(modules, frames, mask, warmup=2, mem_frames=3))
    assert [r.index for r in results] == [0, 1, 2, 3]
    for result in results:
        np.testing.assert_allclose(result.alpha, _blocky(mask / 255), atol=1e-6)


def test_docs_echo_backend_loads_through_the_engine(tmp_path: Path, monkeypatch):
    """The example as a real importable module, picked up by core.plugins and the CLI."""
    from matanyone_engine.core.app.loading import load_modules
    from matanyone_engine.core.cli import app

    language, code = doc_examples()["echo-backend"]
    (tmp_path / "matanyone_echo_docs.py").write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(plugins.BUILTIN_PLUGINS, "echo", "matanyone_echo_docs")
    monkeypatch.delenv("MATANYONE_PLUGINS", raising=False)
    plugins.reset()
    try:
        assert "echo" in plugins.backends()
        result = CliRunner().invoke(app, ["backends", "--json"])
        assert result.exit_code == 0, result.output
        rows = {r["name"]: r for r in json.loads(result.output)}
        assert rows["echo"]["available"] is True
        modules = load_modules("echo", "unused", Dims(32, 48, 2))
        assert set(MODULE_NAMES) <= set(modules)
    finally:
        plugins.reset()
        sys.modules.pop("matanyone_echo_docs", None)


def test_docs_exporter_example(fresh_pm, tmp_path: Path):
    fresh_pm.register(load_example("spec-json-exporter"), name="specjson")
    exporters = collect(fresh_pm, "register_exporters", key="format")
    assert set(exporters) == {"spec-json"}
    dims = Dims(64, 96, 3)
    # the keywords `matanyone export` passes
    written = exporters["spec-json"].export(
        weights="seeded:v1-pm", dims=dims, precision="fp32", out_dir=tmp_path / "out", validate=True
    )
    data = json.loads(Path(written).read_text())
    assert data["modules"] == json.loads(json.dumps(describe(dims)["modules"]))
    assert data["weights"] == "seeded:v1-pm"


def test_docs_mask_provider_example(fresh_pm):
    from matanyone_engine.core.engine.errors import InputError

    fresh_pm.register(load_example("threshold-mask-provider"), name="threshold")
    providers = collect(fresh_pm, "register_mask_providers")
    provider = providers["threshold"]
    assert provider.available() == (True, "")
    frame = np.zeros((32, 48, 3), np.uint8)
    frame[8:24, 10:30] = 220
    mask = provider.make_mask(frame)
    assert mask.dtype == np.uint8 and mask.shape == (32, 48)
    assert mask[8:24, 10:30].all() and mask.sum() == 255 * 16 * 20
    with pytest.raises(InputError, match="takes no options"):
        provider.make_mask(frame, box="1,2,3,4")
    with pytest.raises(InputError, match="brighter than 128"):
        provider.make_mask(np.zeros_like(frame))


def test_docs_command_example(fresh_pm):
    fresh_pm.register(load_example("command"), name="runnable")
    cli = typer.Typer()

    @cli.command()
    def version() -> None:  # a second command, so typer keeps sub-command dispatch
        typer.echo("0")

    fresh_pm.hook.register_commands(cli=cli)
    result = CliRunner().invoke(cli, ["runnable"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output.split()


# ------------------------------------------------------------------------ matanyone plugins


def _rows(capsys) -> dict[str, dict[str, Any]]:
    from matanyone_engine.core.plugins.info import plugins_command

    plugins_command(as_json=True)
    return {r["name"]: r for r in json.loads(capsys.readouterr().out)}


def test_plugins_command_attributes_registrations(capsys, monkeypatch, tmp_path: Path):
    """Each plugin row shows its hooks and what it registered, attributed to that plugin only."""
    language, code = doc_examples()["spec-json-exporter"]
    (tmp_path / "matanyone_specjson_docs.py").write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(plugins.BUILTIN_PLUGINS, "specjson", "matanyone_specjson_docs")
    monkeypatch.delenv("MATANYONE_PLUGINS", raising=False)
    plugins.reset()
    try:
        rows = _rows(capsys)
        assert set(plugins.exporters()) >= {"spec-json"}
    finally:
        plugins.reset()
        sys.modules.pop("matanyone_specjson_docs", None)
    torch_row = rows["torch"]
    assert torch_row["status"] == "loaded" and "register_backends" in torch_row["hooks"]
    assert {"torch", "torch-cuda", "torch-mps"} <= set(torch_row["registers"]["backends"])
    assert torch_row["distribution"].startswith("matanyone-engine")
    spec_row = rows["specjson"]
    assert spec_row["hooks"] == ["register_exporters"]
    assert spec_row["registers"] == {"backends": [], "exporters": ["spec-json"], "mask_providers": [], "commands": []}


def test_plugins_command_reports_excluded_and_broken_plugins(capsys, monkeypatch):
    monkeypatch.setitem(plugins.BUILTIN_PLUGINS, "broken", "matanyone_engine.no_such_module")
    monkeypatch.setenv("MATANYONE_PLUGINS", "torch,broken")
    plugins.reset()
    try:
        with pytest.warns(UserWarning, match="broken"):
            rows = _rows(capsys)
    finally:
        plugins.reset()
    assert rows["torch"]["status"] == "loaded"
    assert rows["broken"]["status"] == "failed"
    assert "No module named 'matanyone_engine.no_such_module'" in rows["broken"]["error"]
    assert rows["coreml"]["status"] == "excluded" and "MATANYONE_PLUGINS" in rows["coreml"]["error"]


def test_plugins_command_table(capsys):
    from matanyone_engine.core.plugins.info import plugins_command

    plugins.reset()
    plugins_command(as_json=False)
    out = capsys.readouterr().out
    assert "torch" in out and "loaded" in out
