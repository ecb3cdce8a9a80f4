"""ONNX Runtime backends: registration, availability, loading from artifacts or the cache,
agreement with the torch modules, and the golden clip through the state machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from matanyone_engine.backends.onnx.runtime import OrtModule, default_threads  # noqa: E402
from matanyone_engine.core import plugins  # noqa: E402
from matanyone_engine.core.artifacts import cache  # noqa: E402
from matanyone_engine.core.artifacts.manifest import ManifestMismatch  # noqa: E402
from matanyone_engine.core.engine.errors import BackendError  # noqa: E402
from matanyone_engine.core.engine.protocol import BackendUnavailable, LoadRequest, Module  # noqa: E402
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, MODULE_NAMES, Dims  # noqa: E402
from matanyone_engine.exporters.onnx import exporter as exporter_mod  # noqa: E402
from matanyone_engine.exporters.onnx.inputs import TorchNumpyModule, capture_inputs, synthetic_clip  # noqa: E402
from matanyone_engine.exporters.onnx.validate import tolerances_for  # noqa: E402
from matanyone_engine.exporters.torch_modules import resolve_torch_modules  # noqa: E402

DIMS = Dims(64, 96, 3)
STANDIN = "standin:v1"
ONNX_BACKENDS = ("onnx-cpu", "onnx-cuda", "onnx-coreml", "onnx-openvino")


@pytest.fixture(scope="session")
def standin_torch():
    modules, _ = resolve_torch_modules(STANDIN)
    return {n: TorchNumpyModule(ALL_MODULE_SPECS[n], m) for n, m in modules.items()}, modules


def _load(name: str, artifacts: Path, dims: Dims = DIMS, **options):
    backend = plugins.get_backend(name)
    request = LoadRequest(weights=STANDIN, dims=dims, options={"artifacts": str(artifacts), **options})
    return backend.load(request)


def test_backends_registered() -> None:
    table = plugins.backends()
    for name in ONNX_BACKENDS:
        assert name in table and table[name].description
    ok, reason = table["onnx-cpu"].available()
    assert ok and reason == ""


@pytest.mark.parametrize("name", ["onnx-cuda", "onnx-coreml", "onnx-openvino"])
def test_unavailable_providers_say_why(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    backend = plugins.get_backend(name)
    ok, reason = backend.available()
    assert not ok and backend.provider in reason and "CPUExecutionProvider" in reason
    assert backend.devices() == []
    with pytest.raises(BackendUnavailable, match=name):
        backend.load(LoadRequest(weights=STANDIN, dims=DIMS, options={"artifacts": str(tmp_path)}))


def test_real_provider_list_is_reported() -> None:
    have = set(ort.get_available_providers())
    for name in ONNX_BACKENDS:
        backend = plugins.get_backend(name)
        ok, reason = backend.available()
        assert ok == (backend.provider in have), (name, reason)
        assert ok or reason


@pytest.mark.parametrize(
    ("logical", "physical", "affinity", "expected"),
    [
        (16, 8, 16, 8),  # two hyper-threads per core, the whole machine: one thread per core
        (8, 8, 8, 8),  # no hyper-threads
        (16, 8, 4, 2),  # affinity to 4 logical CPUs = 2 cores
        (16, 8, 1, 1),  # one logical CPU still gets a thread
        (4, None, 4, 4),  # psutil cannot tell: one per usable CPU
    ],
)
def test_default_threads_is_one_per_usable_physical_core(
    monkeypatch: pytest.MonkeyPatch, logical: int, physical: int | None, affinity: int, expected: int
) -> None:
    from matanyone_engine.backends.onnx import runtime

    monkeypatch.setattr(runtime.os, "cpu_count", lambda: logical)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    counts = {True: logical, False: physical}
    monkeypatch.setattr(runtime.psutil, "cpu_count", lambda logical=True: counts[logical])
    assert default_threads() == expected


def test_psutil_is_a_runtime_dependency() -> None:
    """Installed copies must count physical cores too, not only a dev checkout."""
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert any(dep.split(">")[0].split("=")[0].strip() == "psutil" for dep in project["dependencies"])


def test_cpu_modules_agree_with_torch(standin_artifacts: Path, standin_torch) -> None:
    torch_numpy, torch_modules = standin_torch
    modules = _load("onnx-cpu", standin_artifacts)
    assert set(modules) == set(MODULE_NAMES) | {"mask_value"}
    sets, _ = capture_inputs(torch_modules, DIMS)
    for name, module in modules.items():
        assert isinstance(module, Module) and module.spec is ALL_MODULE_SPECS[name]
        tol = tolerances_for(name, "fp32")
        for inputs in sets[name]:
            got, want = module(**inputs), torch_numpy[name](**inputs)
            assert list(got) == list(ALL_MODULE_SPECS[name].output_names)
            for out in got:
                assert got[out].dtype == np.float32 and got[out].shape == want[out].shape
                scale = max(1.0, float(np.abs(want[out]).max()))
                err = np.abs(got[out] - want[out])
                assert err.max() <= tol[out].atol * scale + tol[out].rtol * np.abs(want[out]).max(), (name, out)
                assert err.mean() <= tol[out].mean_atol * scale, (name, out)


def test_module_input_handling(standin_artifacts: Path) -> None:
    enc = _load("onnx-cpu", standin_artifacts, cache_optimized=False)["encoder"]
    image = np.random.default_rng(1).uniform(0, 1, (1, 3, 64, 96))
    ref = enc(image=image.astype(np.float32))
    # float64 and non-contiguous inputs are converted, not rejected
    strided = np.asfortranarray(image)
    assert np.array_equal(enc(image=strided)["key"], ref["key"])
    with pytest.raises(BackendError, match="shape"):
        enc(image=np.zeros((1, 3, 32, 96), np.float32))
    with pytest.raises(BackendError, match="missing"):
        enc()


def test_threads_and_optimized_model_cache(standin_artifacts: Path, tmp_path: Path) -> None:
    import shutil

    art = tmp_path / "art"
    shutil.copytree(standin_artifacts, art, ignore=shutil.ignore_patterns("optimized"))
    backend = plugins.get_backend("onnx-cpu")
    request = LoadRequest(weights=STANDIN, dims=DIMS, threads=1, options={"artifacts": str(art)})
    first = backend.load(request)
    cached = sorted((art / "optimized").glob("*.onnx"))
    assert len(cached) == len(MODULE_NAMES) + 1 and not list((art / "optimized").glob(".*tmp*"))
    assert first["read"].session.get_session_options().intra_op_num_threads == 1
    second = backend.load(request)
    # the second load reads the optimized files, with the optimizer off
    opts = second["read"].session.get_session_options()
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    image = np.random.default_rng(2).uniform(0, 1, (1, 3, 64, 96)).astype(np.float32)
    a, b = first["encoder"](image=image), second["encoder"](image=image)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5)
    # a damaged cached file is ignored and rewritten
    cached[0].write_bytes(b"garbage")
    backend.load(request)
    assert cached[0].stat().st_size > 1000


def test_a_load_that_fails_while_optimizing_leaves_no_cached_file(
    standin_artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORT writes the optimized model while it builds the session; a load killed half-way must
    leave nothing the next load would take for a finished optimized model."""
    import shutil

    from matanyone_engine.backends.onnx import runtime

    art = tmp_path / "art"
    shutil.copytree(standin_artifacts, art, ignore=shutil.ignore_patterns("optimized"))

    def half_written(path, so, providers):
        Path(so.optimized_model_filepath).write_bytes(b"half an optimized model")
        raise RuntimeError("killed while optimizing")

    monkeypatch.setattr(ort, "InferenceSession", half_written)
    with pytest.raises(RuntimeError, match="killed while optimizing"):
        runtime._create_session(ort, art / "encoder.onnx", ["CPUExecutionProvider"], 1, True, "CPUExecutionProvider")
    assert not runtime.optimized_model_path(art / "encoder.onnx", "CPUExecutionProvider").exists()
    assert list((art / "optimized").iterdir()) == []  # no temporary sibling either


def test_mismatched_artifacts_are_refused(standin_artifacts: Path) -> None:
    with pytest.raises(ManifestMismatch, match="T=3"):
        _load("onnx-cpu", standin_artifacts, dims=Dims(64, 96, 5))
    with pytest.raises(ManifestMismatch, match="64x96"):
        _load("onnx-cpu", standin_artifacts, dims=Dims(64, 112, 3))
    backend = plugins.get_backend("onnx-cpu")
    with pytest.raises(ManifestMismatch, match="precision"):
        backend.load(
            LoadRequest(weights=STANDIN, dims=DIMS, precision="fp16", options={"artifacts": str(standin_artifacts)})
        )
    with pytest.raises(ManifestMismatch, match="weights"):
        backend.load(LoadRequest(weights="seeded:v1-pm", dims=DIMS, options={"artifacts": str(standin_artifacts)}))


def test_load_through_the_cache(
    onnx_shared_root: Path, standin_artifacts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an artifacts option the backend uses MATANYONE_CACHE and does not export again."""
    monkeypatch.setenv(cache.CACHE_ENV, str(onnx_shared_root))

    def no_export(*args, **kwargs):
        raise AssertionError("artifacts are cached; nothing should be exported")

    monkeypatch.setattr(exporter_mod, "export_torch_modules", no_export)
    modules = plugins.get_backend("onnx-cpu").load(LoadRequest(weights=STANDIN, dims=DIMS))
    assert isinstance(modules["read"], OrtModule)
    assert Path(modules["read"].session._model_path).is_relative_to(onnx_shared_root)


def test_state_machine_runs_on_onnx(standin_artifacts: Path, standin_torch) -> None:
    from matanyone_engine.core.engine.driver import matte_frames

    torch_numpy, _ = standin_torch
    clip, mask = synthetic_clip(DIMS.height, DIMS.width, 12, seed=5)
    onnx_modules = _load("onnx-cpu", standin_artifacts)
    a = [r.alpha for r in matte_frames(onnx_modules, clip, mask.astype(np.float32), warmup=1, mem_frames=3)]
    b = [r.alpha for r in matte_frames(torch_numpy, clip, mask.astype(np.float32), warmup=1, mem_frames=3)]
    err = np.abs(np.stack(a) - np.stack(b))
    assert err.mean() < 1e-5 and err.max() < 1e-3


# ------------------------------------------------------------------------------ real network


def test_golden_clip_parity_onnx_cpu(
    golden_clip, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The golden clip (224x400, warm-up 3, erode/dilate off) through the state machine on onnx-cpu."""
    from matanyone_engine.core.engine.driver import matte_frames

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "onnx-shared-cache"))
    modules = plugins.get_backend("onnx-cpu").load(LoadRequest(weights="seeded:v1-pm", dims=Dims(224, 400, 5)))
    results = list(matte_frames(modules, golden_clip["frames"], golden_clip["mask"].astype(np.float32), warmup=3))
    alpha = np.stack([r.alpha for r in results])
    logits = np.stack([r.logits for r in results])
    err = np.abs(alpha - golden_clip["alpha"])
    errors = {
        "alpha_mean": float(err.mean()),
        "alpha_p999": float(np.percentile(err, 99.9)),
        "alpha_max": float(err.max()),
        "logits_mean": float(np.abs(logits - golden_clip["logits_preclamp"]).mean()),
    }
    print("onnx-cpu golden-clip errors:", errors)
    assert errors["alpha_mean"] <= 2e-5, errors
    assert errors["alpha_p999"] <= 2e-3, errors
    assert errors["logits_mean"] <= 1e-4, errors


def test_real_network_modules_agree(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """All five real modules on onnx-cpu against torch, on inputs from a state-machine run."""
    dims = Dims(64, 96, 2)
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "onnx-shared-cache"))
    modules = plugins.get_backend("onnx-cpu").load(LoadRequest(weights="seeded:v1-pm", dims=dims))
    torch_modules, _ = resolve_torch_modules("seeded:v1-pm")
    sets, _ = capture_inputs(torch_modules, dims, seed=11)
    assert set(modules) == set(torch_modules)
    for name in modules:
        ref = TorchNumpyModule(ALL_MODULE_SPECS[name], torch_modules[name])
        for inputs in sets[name]:
            got, want = modules[name](**inputs), ref(**inputs)
            for out in got:
                scale = max(1.0, float(np.abs(want[out]).max()))
                assert np.abs(got[out] - want[out]).max() <= 1e-4 * scale, (name, out)


def test_a_first_run_says_it_is_exporting(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A cold cache at 4K exports for minutes; without a line the terminal looks hung."""

    def export_torch_modules(*args, **kwargs):
        raise BackendError("stop here: only the notice is under test")

    monkeypatch.setattr(exporter_mod, "export_torch_modules", export_torch_modules)
    backend = plugins.get_backend("onnx-cpu")
    with caplog.at_level("WARNING", logger="matanyone_engine.build"), pytest.raises(BackendError, match="stop here"):
        backend.load(LoadRequest(weights="seeded:v1-pm", dims=Dims(64, 96, 5), precision="fp32"))
    (message,) = [r.getMessage() for r in caplog.records]
    prefix = "matanyone: building onnx artifacts for 64x96 T=5 fp32 into "
    assert message.startswith(prefix)
    assert Path(message[len(prefix) :]).parent == cache.cache_root() / "onnx"  # the final cache entry
