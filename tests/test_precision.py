"""What ``--precision fast`` turns into, per backend and CPU, and how the choice is told."""

from __future__ import annotations

import pytest

from matanyone_engine.core import plugins
from matanyone_engine.core.engine import precision as P


def test_concrete_precisions_pass_through_unchanged():
    backend = plugins.get_backend("onnx-cpu")
    assert P.resolve(backend, "fp32") == ("fp32", "")
    assert P.resolve(backend, "fp16") == ("fp16", "")


def test_backend_without_a_fast_choice_runs_fp32():
    class Bare:
        name = "bare"

    chosen, why = P.resolve(Bare(), "fast")
    assert chosen == "fp32" and "bare" in why


@pytest.mark.parametrize("native, want", [(False, "fp32"), (True, "bf16")])
def test_torch_cpu_takes_bf16_only_with_bf16_hardware(monkeypatch, native: bool, want: str):
    pytest.importorskip("torch")
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: native)
    chosen, why = P.resolve(plugins.get_backend("torch"), "fast")
    assert chosen == want and why


def test_onnx_cpu_fast_is_fp32_and_gpu_providers_fp16():
    assert P.resolve(plugins.get_backend("onnx-cpu"), "fast")[0] == "fp32"
    assert P.resolve(plugins.get_backend("onnx-cuda"), "fast")[0] == "fp16"
    assert P.resolve(plugins.get_backend("coreml-ane"), "fast")[0] == "fp16"
    assert P.resolve(plugins.get_backend("coreml-cpu"), "fast")[0] == "fp32"


def test_cpu_flag_reader_matches_proc_cpuinfo(monkeypatch):
    import platform
    from pathlib import Path

    if platform.system() != "Linux":
        pytest.skip("reads /proc/cpuinfo, Linux only")
    P.cpu_has_native_bf16.cache_clear()
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    assert P.cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def test_accelerated_backends_pipeline_and_cpu_ones_do_not():
    from matanyone_engine.core.app import loading

    assert not loading.pipeline_pays("onnx-cpu")
    assert not loading.pipeline_pays("onnx-cpu", {"read": "torch"})
    # where the encoder runs decides; an accelerator backend says so (checked without running it)
    assert plugins.get_backend("onnx-cuda").accelerated is True
    assert plugins.get_backend("coreml-gpu").accelerated is True
    assert plugins.get_backend("torch").accelerated is False
