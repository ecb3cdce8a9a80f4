"""One loader for what every exporter traces: ONNX and Core ML take their torch modules and the
weights digest from exporters/torch_modules.py, the optional ``mask_value`` variant included."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS
from matanyone_engine.exporters import torch_modules
from matanyone_engine.exporters.coreml import exporter as coreml_exporter
from matanyone_engine.exporters.onnx import exporter as onnx_exporter


def test_both_exporters_use_the_one_loader_and_digest() -> None:
    for exporter in (onnx_exporter, coreml_exporter):
        assert exporter.resolve_torch_modules is torch_modules.resolve_torch_modules
        assert not hasattr(exporter, "_network_modules") and not hasattr(exporter, "_modules_digest")
    assert coreml_exporter.modules_digest is torch_modules.modules_digest


def test_the_real_network_resolves_with_mask_value_and_the_golden_digest(golden_dir) -> None:
    modules, digest = torch_modules.resolve_torch_modules("seeded:v1-pm")
    assert list(modules) == list(ALL_MODULE_SPECS)  # the five and mask_value
    recorded = json.loads((golden_dir / "weights_seeded-v1-pm.sha256.json").read_text())
    assert digest == recorded["all_entries_sha256"]


def test_stand_ins_resolve_with_mask_value() -> None:
    modules, digest = torch_modules.resolve_torch_modules("standin:v1")
    assert set(modules) == set(ALL_MODULE_SPECS)
    assert digest == torch_modules.resolve_torch_modules("standin:v1")[1]
    assert digest != torch_modules.resolve_torch_modules("standin:v2")[1]


def test_a_failure_building_the_variants_is_not_silently_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error while building the modules surfaces; no fallback quietly exports without mask_value."""
    from matanyone_engine.backends.torch import modules as torch_stage_modules

    def broken(net, *, optional=False):
        raise TypeError("mask_value stage broke")

    monkeypatch.setattr(torch_stage_modules, "build_torch_modules", broken)
    with pytest.raises(TypeError, match="mask_value stage broke"):
        torch_modules.resolve_torch_modules("seeded:v1-pm")
