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


#: Hand-written excerpts of /proc/cpuinfo (two logical CPUs each where it matters), with the answer.
CPUINFO_CASES = {
    "sapphire-rapids": (
        "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n"
        "processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n",
        True,
    ),
    "zen4 (avx512_bf16, no amx)": ("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n", True),
    "epyc avx2 only": (
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\nbugs\t\t: bf16_not_a_flag\n",
        False,
    ),
    "avx512 without bf16": ("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n", False),
    "graviton3 (arm bf16)": ("processor\t: 0\nFeatures\t: fp asimd sve i8mm bf16 svebf16\n", True),
    "graviton2 (arm, none)": ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics\n", False),
    "no flags line": ("processor\t: 0\nmodel name\t: unknown\n", False),
}


@pytest.fixture()
def fresh_flag_cache():
    P.cpu_has_native_bf16.cache_clear()
    yield
    P.cpu_has_native_bf16.cache_clear()  # the real machine's answer again for later tests


@pytest.mark.parametrize("case", list(CPUINFO_CASES))
def test_cpu_flag_reader_on_hand_written_cpuinfo(monkeypatch, fresh_flag_cache, case):
    text, expected = CPUINFO_CASES[case]

    class FakePath:
        def __init__(self, path):
            assert path == "/proc/cpuinfo"

        def read_text(self, errors="strict"):
            return text

    monkeypatch.setattr(P.platform, "system", lambda: "Linux")
    monkeypatch.setattr(P, "Path", FakePath)
    assert P.cpu_has_native_bf16() is expected


def test_cpu_flag_reader_without_cpuinfo_says_no(monkeypatch, fresh_flag_cache):
    class Unreadable:
        def __init__(self, path):
            pass

        def read_text(self, errors="strict"):
            raise PermissionError("denied")

    monkeypatch.setattr(P.platform, "system", lambda: "Linux")
    monkeypatch.setattr(P, "Path", Unreadable)
    assert P.cpu_has_native_bf16() is False


def test_accelerated_backends_pipeline_and_cpu_ones_do_not():
    from matanyone_engine.core.app import loading

    assert not loading.pipeline_pays("onnx-cpu")
    assert not loading.pipeline_pays("onnx-cpu", {"read": "torch"})
    # where the encoder runs decides; an accelerator backend says so (checked without running it)
    assert plugins.get_backend("onnx-cuda").accelerated is True
    assert plugins.get_backend("coreml-gpu").accelerated is True
    assert plugins.get_backend("torch").accelerated is False
