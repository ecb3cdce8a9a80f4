"""Backends arrive through pluggy; unavailable ones stay listed with their reason."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from matanyone_engine.core import plugins
from matanyone_engine.core.cli import app


def test_torch_backends_registered():
    table = plugins.backends()
    assert {"torch", "torch-cuda", "torch-mps"} <= set(table)
    assert table["torch"].available() == (True, "")
    ok, reason = table["torch-cuda"].available()
    if not ok:
        assert reason  # never silently unavailable


def test_backends_command_json():
    result = CliRunner().invoke(app, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["torch"]["available"] is True
    for row in rows.values():
        assert row["available"] or row["reason"]


def test_unknown_backend_is_a_clear_error():
    import pytest

    from matanyone_engine.core.app.loading import resolve_backend
    from matanyone_engine.core.engine.errors import BackendError

    with pytest.raises(BackendError, match="unknown backend 'nope'; known backends: .*torch"):
        resolve_backend("nope")


def test_plugin_restriction_env(monkeypatch):
    monkeypatch.setenv("MATANYONE_PLUGINS", "torch")
    plugins.reset()
    try:
        names = [n for n, _ in plugins.get_plugin_manager().list_name_plugin()]
        assert names == ["torch"]
    finally:
        monkeypatch.delenv("MATANYONE_PLUGINS")
        plugins.reset()


def test_broken_plugin_warns_and_others_survive(monkeypatch):
    import warnings

    monkeypatch.setitem(plugins.BUILTIN_PLUGINS, "broken", "matanyone_engine.no_such_module")
    monkeypatch.setenv("MATANYONE_PLUGINS", "torch,broken")
    plugins.reset()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = plugins.backends()
        assert "torch" in table
        assert any("broken" in str(w.message) for w in caught)
    finally:
        plugins.reset()


def test_project_tests_load_only_builtin_plugins():
    names = {n for n, _ in plugins.get_plugin_manager().list_name_plugin()}
    assert names <= {"torch", "onnx", "coreml", "masks"}


def test_doctor_reports_platform_versions_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MATANYONE_CACHE", str(tmp_path))
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    for expected in (
        "python 3.",
        "numpy ",
        "torch ",
        "onnxruntime providers: ",
        "CPUExecutionProvider",
        "plugins: ",
        f"cache: {tmp_path}",
    ):
        assert expected in result.output, expected
