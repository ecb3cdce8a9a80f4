"""coreml-sim: the exported Core ML packages run by the reference MIL executor, on this machine.

Golden-clip parity of the fp32 packages at the onnx-cpu thresholds, the fp16 packages against
torch, the fixed-size geometry (rotation, letterbox) through core/engine/fixed_size.py, and a
deliberately broken export failing `matanyone export`'s validation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

ct = pytest.importorskip("coremltools", reason="coremltools is not installed (pip install coremltools)")
torch = pytest.importorskip("torch")

from matanyone_engine.backends.coreml import CoreMLBackend, CoreMLSimBackend  # noqa: E402
from matanyone_engine.core import plugins  # noqa: E402
from matanyone_engine.core.artifacts.manifest import ManifestError, read_manifest  # noqa: E402
from matanyone_engine.core.engine.driver import matte_frames  # noqa: E402
from matanyone_engine.core.engine.errors import BackendError  # noqa: E402
from matanyone_engine.core.engine.fixed_size import matte_fixed_size  # noqa: E402
from matanyone_engine.core.engine.geometry import plan_geometry  # noqa: E402
from matanyone_engine.core.engine.protocol import BackendUnavailable, LoadRequest  # noqa: E402
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, MODULE_NAMES, Dims  # noqa: E402

SMALL = Dims(64, 96, 2)
GOLDEN = Dims(224, 400, 5)


def sim() -> CoreMLSimBackend:
    plugins.reset()
    try:
        backend = plugins.get_backend("coreml-sim")
    finally:
        plugins.reset()
    assert isinstance(backend, CoreMLSimBackend)
    return backend


def load(directory: Path, dims: Dims, precision: str = "fp32", **options) -> dict:
    request = LoadRequest(
        weights="seeded:v1-pm", dims=dims, precision=precision, options={"package_dir": str(directory), **options}
    )
    return sim().load(request)


def golden_errors(alpha: np.ndarray, logits: np.ndarray | None, golden) -> dict[str, float]:
    n = len(alpha)
    err = np.abs(alpha.astype(np.float64) - golden["alpha"][:n])
    errors = {
        "alpha_mean": float(err.mean()),
        "alpha_p999": float(np.percentile(err, 99.9)),
        "alpha_max": float(err.max()),
    }
    if logits is not None:
        errors["logits_mean"] = float(np.abs(logits - golden["logits_preclamp"][:n]).mean())
    return errors


# ----------------------------------------------------------------------------------- backend


def test_registered_as_a_core_ml_backend_that_runs_here():
    backend = sim()
    assert isinstance(backend, CoreMLBackend)  # same packages, same fixed-size modules
    assert backend.available() == (True, "")
    assert "simulation" in backend.description and "not Apple's runtime" in backend.description
    assert backend.accelerated is False and backend.devices()
    from matanyone_engine.core import bench

    assert "coreml-sim" not in bench.available_backends()  # never in a default speed table


def test_unavailable_without_coremltools_or_torch_says_what_to_install(monkeypatch):
    import matanyone_engine.backends.coreml.sim as sim_module

    real = sim_module.importlib.util.find_spec
    monkeypatch.setattr(sim_module.importlib.util, "find_spec", lambda n: None if n == "torch" else real(n))
    ok, reason = sim().available()
    assert not ok and "pip install torch" in reason
    with pytest.raises(BackendUnavailable, match="torch"):
        sim().load(LoadRequest(weights="seeded:v1-pm", dims=SMALL))
    monkeypatch.setattr(sim_module.importlib.util, "find_spec", lambda n: None)
    assert "coremltools" in sim().available()[1]


def test_placement_and_other_precisions_are_refused(coreml_fp16_small: Path):
    with pytest.raises(BackendError, match="no compute units"):
        load(coreml_fp16_small, SMALL, "fp16", placement={"read": "cpu"})
    with pytest.raises(BackendError, match="fp32 or fp16"):
        load(coreml_fp16_small, SMALL, "bf16")
    with pytest.raises(ManifestError):  # fp16 packages are not what an fp32 run asked for
        load(coreml_fp16_small, SMALL, "fp32")


def test_fp16_packages_match_torch_with_half_activations(coreml_fp16_small: Path, torch_net):
    """Every fp16 package, every activation stored in float16, against the float32 torch module."""
    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.exporters.coreml.drift import recorded_inputs, run_torch
    from matanyone_engine.exporters.onnx.validate import tolerances_for

    modules = load(coreml_fp16_small, SMALL, "fp16")
    assert set(modules) == set(read_manifest(coreml_fp16_small).files) >= set(MODULE_NAMES)
    torch_modules = build_torch_modules(torch_net)
    sets = recorded_inputs(torch_modules, SMALL, keep="last")
    for name in MODULE_NAMES:
        module = modules[name]
        assert module.compute_unit == "sim" and module.model.executor.activations == "float16"
        inputs = sets[name][0]
        got = module(**inputs)
        want = run_torch(torch_modules[name], inputs, spec=ALL_MODULE_SPECS[name])
        for out, tol in tolerances_for(name, "fp16").items():
            scale = max(1.0, float(np.abs(want[out]).max()))
            err = np.abs(got[out] - want[out])
            assert got[out].dtype == np.float32 and got[out].shape == want[out].shape
            assert err.mean() <= tol.mean_atol * scale and err.max() <= 0.1 * scale, (name, out)
            assert err.max() > 0  # fp16 storage really happened: float32 would agree to ~1e-6
    trace: dict[str, np.ndarray] = {}
    modules["decoder"].model.executor.run(sets["decoder"][0], trace)
    floats = {v.dtype for v in trace.values() if v.dtype.kind == "f"}
    assert floats == {np.dtype(np.float16)}


# ------------------------------------------------------------------------------ golden clip


@pytest.fixture(scope="session")
def golden_fp32_packages(tmp_path_factory) -> Path:
    """fp32 packages at the golden clip's size (224x400, T=5), exported once for this file."""
    from matanyone_engine.exporters.coreml import CoreMLExporter

    out = tmp_path_factory.mktemp("coreml-golden-fp32")
    CoreMLExporter().export("seeded:v1-pm", GOLDEN, precision="fp32", out_dir=out, validate=False)
    return out


def test_golden_clip_parity_coreml_sim_fp32(golden_clip, golden_fp32_packages: Path):
    """The golden clip (224x400, warm-up 3, erode/dilate off) through the fp32 packages, at the
    onnx-cpu thresholds (tests/test_onnx_backend.py::test_golden_clip_parity_onnx_cpu)."""
    modules = load(golden_fp32_packages, GOLDEN)
    results = list(matte_frames(modules, golden_clip["frames"], golden_clip["mask"].astype(np.float32), warmup=3))
    alpha = np.stack([r.alpha for r in results])
    logits = np.stack([r.logits for r in results])
    errors = golden_errors(alpha, logits, golden_clip)
    print("coreml-sim fp32 golden-clip errors:", errors)
    assert errors["alpha_mean"] <= 2e-5, errors
    assert errors["alpha_p999"] <= 2e-3, errors
    assert errors["logits_mean"] <= 1e-4, errors


def test_portrait_clip_is_rotated_into_the_landscape_package(golden_clip, golden_fp32_packages: Path):
    """A portrait clip (the golden frames turned a quarter left) through the fixed-size path:
    rotated clockwise it is the golden clip exactly, so the matte is the golden matte, turned back."""
    frames = np.rot90(golden_clip["frames"][:6], k=1, axes=(1, 2))
    mask = np.rot90(golden_clip["mask"], k=1)
    modules = load(golden_fp32_packages, GOLDEN)
    results = list(matte_fixed_size(modules, frames, mask, (GOLDEN.height, GOLDEN.width), warmup=3))
    geometry = plan_geometry(frames.shape[1:3], (GOLDEN.height, GOLDEN.width))
    assert geometry.rotate and geometry.mode == "identity"
    alpha = np.stack([r.alpha for r in results])
    assert alpha.shape == (6, 400, 224)
    errors = golden_errors(np.rot90(alpha, k=-1, axes=(1, 2)), None, golden_clip)
    assert errors["alpha_mean"] <= 2e-5 and errors["alpha_p999"] <= 2e-3, errors


def test_letterboxed_clip_matches_torch_through_the_same_geometry(golden_clip, golden_fp32_packages, torch_net):
    """A square clip is letter-boxed into the 224x400 package and the alpha mapped back; the
    simulated packages and the torch modules agree through the same geometry."""
    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.exporters.coreml.drift import TorchAsModule

    frames = np.ascontiguousarray(golden_clip["frames"][:3, :, 88:312])  # 224x224
    mask = np.ascontiguousarray(golden_clip["mask"][:, 88:312])
    package_hw = (GOLDEN.height, GOLDEN.width)
    simulated = list(matte_fixed_size(load(golden_fp32_packages, GOLDEN), frames, mask, package_hw, warmup=1))
    reference = {n: TorchAsModule(n, m) for n, m in build_torch_modules(torch_net).items()}
    expected = list(matte_fixed_size(reference, frames, mask, package_hw, warmup=1))
    geometry = plan_geometry(frames.shape[1:3], package_hw)
    assert geometry.mode == "letterbox" and not geometry.rotate
    for got, want in zip(simulated, expected, strict=True):
        assert got.alpha.shape == (224, 224)
        err = np.abs(got.alpha - want.alpha)
        assert err.mean() <= 2e-5 and err.max() <= 2e-3, (float(err.mean()), float(err.max()))


@pytest.mark.slow
def test_golden_clip_fp16_packages_stay_within_the_drift_and_do_not_fade(golden_clip, tmp_path):
    """fp16 packages with half activations, official 10-step warm-up: within the fp16 bounds the
    macOS tests use for Apple's runtime (tests/test_coreml_backend.py), and the matte keeps its mass."""
    from matanyone_engine.exporters.coreml import CoreMLExporter

    CoreMLExporter().export("seeded:v1-pm", GOLDEN, precision="fp16", out_dir=tmp_path, validate=False)
    modules = load(tmp_path, GOLDEN, "fp16")
    results = list(matte_frames(modules, golden_clip["frames"], golden_clip["mask"].astype(np.float32), warmup=10))
    alpha = np.stack([r.alpha for r in results])
    errors = golden_errors(alpha, None, golden_clip)
    print("coreml-sim fp16 golden-clip errors (warm-up 10):", errors)
    assert 0.5 * golden_clip["alpha"].mean() < alpha.mean() < 1.5 * golden_clip["alpha"].mean()
    assert errors["alpha_mean"] <= 0.06 and errors["alpha_p999"] <= 0.40, errors


@pytest.mark.slow
def test_matanyone_run_backend_coreml_sim_matches_the_golden_clip(golden_clip, tmp_path):
    """`matanyone run --backend coreml-sim` on the golden frames (the sample clip's first 30 frames
    as fed), through the CLI, the artifact cache and a first-use export."""
    from PIL import Image

    from matanyone_engine.core.cli import app

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(golden_clip["frames"]):
        Image.fromarray(frame).save(folder / f"{i:04d}.png")
    Image.fromarray(golden_clip["mask"]).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    args = ["run", str(folder), "-m", str(tmp_path / "mask.png"), "-o", str(out), "--backend", "coreml-sim"]
    args += ["--weights", "seeded:v1-pm", "--warmup", "3", "--erode", "0", "--dilate", "0", "--quiet"]
    args += ["--package-size", "224x400"]  # the clip's own size: the plain padded path, as the golden run
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    pngs = sorted((out / "frames" / "alpha").glob("*.png"))
    assert len(pngs) == 30
    alpha = np.stack([np.asarray(Image.open(p), dtype=np.float64) / 65535.0 for p in pngs])
    errors = golden_errors(alpha, None, golden_clip)
    print("matanyone run --backend coreml-sim:", errors)
    assert errors["alpha_mean"] <= 2e-5 and errors["alpha_p999"] <= 2e-3, errors


# --------------------------------------------------------------------------- export validation


def _break_a_conv_weight_of(module: str, monkeypatch) -> None:
    """Make the exporter save ``module`` with one 3x3 conv weight transposed (conftest.py)."""
    from conftest import transpose_conv_weight

    import matanyone_engine.exporters.coreml.exporter as exporter

    original = exporter.convert_module

    def convert_then_break(name, *args, **kwargs):
        path = original(name, *args, **kwargs)
        if name == module:
            transpose_conv_weight(Path(path))
        return path

    monkeypatch.setattr(exporter, "convert_module", convert_then_break)


def test_matanyone_export_refuses_a_broken_package_with_the_typed_error(tmp_path, monkeypatch):
    from matanyone_engine.core.cli import app

    _break_a_conv_weight_of("decoder", monkeypatch)
    out = tmp_path / "models"
    args = ["export", "--format", "coreml", "--size", "32x48", "--mem-frames", "1", "--precision", "fp32"]
    result = CliRunner().invoke(app, [*args, "-o", str(out)])
    assert result.exit_code == 5, result.output  # ExportError's exit code
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    line = lines[0]
    assert "module 'decoder'" in line and "decoder.mlpackage" in line and "reference MIL executor" in line
    assert "output 'new_sensory'" in line or "output 'logits'" in line
    assert "max abs error" in line and "Traceback" not in result.output
    assert not (out / "manifest.json").exists()  # nothing vouches for the broken set


@pytest.mark.slow
def test_no_validate_skips_the_executor_check(tmp_path, monkeypatch):
    from matanyone_engine.core.cli import app

    _break_a_conv_weight_of("decoder", monkeypatch)
    out = tmp_path / "models"
    args = ["export", "--format", "coreml", "--size", "32x48", "--mem-frames", "1", "--precision", "fp32"]
    result = CliRunner().invoke(app, [*args, "-o", str(out), "--no-validate"])
    assert result.exit_code == 0, result.output
    assert "mil_executor_vs_torch" not in read_manifest(out).validation
