"""`--backend auto` has one rule (core.app.loading.auto_choice), used by run and by bench alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matanyone_engine.core import bench
from matanyone_engine.core.app import loading
from matanyone_engine.core.engine.spec import MODULE_NAMES


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("MATANYONE_CACHE", str(tmp_path))
    return tmp_path


def write_profile(cache: Path, placement: dict[str, str]) -> Path:
    path = cache / "placement.json"
    path.write_text(json.dumps({"profile_version": 1, "placement": placement}))
    return path


def test_without_a_profile_auto_takes_the_first_preferred_backend_that_runs(cache: Path):
    if any(loading.runs_here(n) for n in ("onnx-cuda", "torch-cuda", "coreml-all")):
        pytest.skip("an accelerator backend runs here, so auto rightly prefers it")
    # without CUDA or the Core ML runtime, onnx-cpu comes before torch in the preference
    assert loading.module_backends("auto") == dict.fromkeys(MODULE_NAMES, "onnx-cpu")
    assert "no placement profile" in loading.auto_choice().reason


def test_a_profile_places_each_module_and_the_majority_is_the_default(cache: Path):
    write_profile(
        cache,
        {
            "encoder": "torch",
            "mask_encoder": "onnx-cpu",
            "read_first": "onnx-cpu",
            "read": "onnx-cpu",
            "decoder": "torch",
        },
    )
    choice = loading.auto_choice()
    assert choice.backend == "onnx-cpu"
    assert choice.placement == {"encoder": "torch", "decoder": "torch"}
    assert loading.module_backends("auto") == {
        "encoder": "torch",
        "mask_encoder": "onnx-cpu",
        "read_first": "onnx-cpu",
        "read": "onnx-cpu",
        "decoder": "torch",
    }
    # what bench measures for `-b auto` is exactly that mix
    (config,) = bench.plan_configs(["auto"], ["fp32"], None)
    assert config.module_backends() == loading.module_backends("auto")


def test_modules_on_backends_that_cannot_run_here_fall_to_the_default(cache: Path):
    path = write_profile(
        cache,
        {
            "encoder": "coreml-gpu",
            "mask_encoder": "torch",
            "read_first": "torch",
            "read": "coreml-gpu",
            "decoder": "torch",
        },
    )
    assert not loading.runs_here("coreml-gpu")
    choice = loading.auto_choice()
    assert choice.backend == "torch" and choice.placement == {}
    assert str(path) in choice.reason and "coreml-gpu" in choice.reason and "cannot run here" in choice.reason


def test_an_unreadable_profile_is_ignored(cache: Path):
    (cache / "placement.json").write_text("{not json")
    assert loading.auto_choice().reason.startswith("no placement profile")
