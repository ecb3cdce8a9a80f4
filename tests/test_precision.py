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
    P.cpu_bf16_features.cache_clear()
    yield
    P.cpu_bf16_features.cache_clear()  # the real machine's answer again for later tests


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


# --- fast and auto from the accuracy record, the CPU's features and the measured profile ----------


class _CpuFake:
    """A CPU backend offering fp32 and bf16, with its own rule for fast (like the OpenVINO plugin)."""

    accelerated = False
    description = "fake CPU backend"
    precisions = ("fp32", "bf16")

    def __init__(self, name: str):
        self.name = name

    def available(self):
        return True, ""

    def fast_precision(self):
        return ("bf16", "fake bf16 support") if P.cpu_has_native_bf16() else ("fp32", "no bf16 here")

    def load(self, request):
        raise AssertionError("not loaded in these tests")


@pytest.fixture
def openvino_fake(monkeypatch, tmp_path):
    """A backend registered as openvino-cpu, an empty cache (no placement profile), and a record
    that admits openvino-cpu bf16 and names torch bf16 the reference."""
    from matanyone_engine.core import hookimpl
    from matanyone_engine.core.engine import accuracy

    class Plugin:
        @hookimpl
        def register_backends(self, register):
            register(_CpuFake("openvino-cpu"))

    monkeypatch.setenv("MATANYONE_CACHE", str(tmp_path))
    monkeypatch.setattr(
        accuracy,
        "RECORDED",
        {
            accuracy.REFERENCE: {"mean_abs": 0.03, "p999_abs": 0.2},
            "openvino-cpu/bf16": {"mean_abs": 0.02, "p999_abs": 0.15},
        },
    )
    manager = plugins.get_plugin_manager()
    manager.register(Plugin(), name="test-precision-openvino")
    yield
    manager.unregister(name="test-precision-openvino")


def _cpu_features(monkeypatch, features: tuple[str, ...]) -> None:
    monkeypatch.setattr(P, "cpu_bf16_features", lambda: features)


@pytest.mark.parametrize("features", [("amx_bf16", "avx512_bf16"), ("avx512_bf16",)])
def test_auto_fast_on_a_bf16_cpu_runs_openvino_bf16_and_says_why(monkeypatch, openvino_fake, features):
    from matanyone_engine.core.app import loading

    _cpu_features(monkeypatch, features)
    choice = loading.auto_choice(precision="fast")
    assert (choice.backend, choice.precision) == ("openvino-cpu", "bf16")
    assert "no placement profile" in choice.reason and features[0] in choice.reason
    assert "within the official CPU mode" in choice.reason
    assert loading.precision_plan("auto", "fast")["openvino-cpu"][0] == "bf16"
    # fp32 asked: the bf16 rule does not apply
    assert loading.auto_choice(precision="fp32").precision == "fp32"


def test_auto_fast_without_bf16_instructions_or_without_admission_keeps_the_preference(monkeypatch, openvino_fake):
    from matanyone_engine.core.app import loading
    from matanyone_engine.core.engine import accuracy

    _cpu_features(monkeypatch, ())
    assert loading.auto_choice(precision="fast").backend == next(
        n for n in loading.AUTO_PREFERENCE if loading.runs_here(n)
    )
    _cpu_features(monkeypatch, ("avx512_bf16",))
    monkeypatch.setitem(accuracy.RECORDED, "openvino-cpu/bf16", {"mean_abs": 0.05, "p999_abs": 0.15})
    assert loading.auto_choice(precision="fast").backend != "openvino-cpu"
    chosen, why = P.resolve(plugins.get_backend("openvino-cpu"), "fast")
    assert chosen == "fp32" and "not admissible" in why and "above" in why


def test_fast_takes_the_measured_precision_from_the_profile(monkeypatch, openvino_fake, tmp_path):
    """A search that measured fp32 faster for openvino-cpu overrides its bf16 rule; and `auto`
    takes the profile's backend."""
    from matanyone_engine.core.app import loading

    _cpu_features(monkeypatch, ("avx512_bf16",))
    profile = {
        "profile_version": 2,
        "placement": dict.fromkeys(("encoder", "mask_encoder", "read_first", "read", "decoder"), "openvino-cpu"),
        "precisions": {"openvino-cpu": "fp32"},
    }
    loading.write_profile(profile)
    choice = loading.auto_choice(precision="fast")
    assert (choice.backend, choice.precision) == ("openvino-cpu", "fp32")
    chosen, why = loading.precision_plan("auto", "fast")["openvino-cpu"]
    assert chosen == "fp32" and "measured" in why
    profile["precisions"] = {"openvino-cpu": "bf16"}
    loading.write_profile(profile)
    assert loading.auto_choice(precision="fast").precision == "bf16"


def test_an_unrecorded_reduced_precision_is_never_fast(monkeypatch):
    from matanyone_engine.core.engine import accuracy

    monkeypatch.setattr(accuracy, "RECORDED", {accuracy.REFERENCE: {"mean_abs": 0.03, "p999_abs": 0.2}})

    class Gpu:
        name = "gpu-fake"

        def fast_precision(self):
            return "fp16", "fake tensor cores"

    chosen, why = P.resolve(Gpu(), "fast")
    assert chosen == "fp32" and "no golden-clip alpha error is recorded for gpu-fake/fp16" in why
