"""matanyone-openvino, tested the way a user meets it: installed (``pip install
./examples/matanyone-openvino``), found through its entry point, listed by ``matanyone backends``,
and matching the PyTorch reference module by module and on the golden clip.

The first run exports the ONNX artifacts at 112x192 and 224x400 into the engine's cache
(minutes, needs torch); later runs reuse them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from matanyone_engine.core import plugins
from matanyone_engine.core.engine.driver import matte_frames
from matanyone_engine.core.engine.protocol import BackendUnavailable, LoadRequest
from matanyone_engine.core.engine.spec import Dims

#: ../shared beside the main checkout: tests -> matanyone-openvino -> examples -> main -> its parent.
SHARED = Path(__file__).resolve().parents[4] / "shared"
GOLDEN_CLIP = SHARED / "golden" / "golden_sample1_224x400.npz"
#: The engine's golden-clip thresholds (tests/test_parity_clip.py), in fp32.
ALPHA_MEAN, ALPHA_P999, LOGITS_MEAN = 2e-5, 2e-3, 1e-4
SMALL = Dims(112, 192, 5)
WEIGHTS = "seeded:v1-pm"


def _cli(*args: str, extra_env: Mapping[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run the installed ``matanyone`` console script (falling back to ``-m`` beside this Python)."""
    script = Path(sys.executable).with_name("matanyone")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "matanyone_engine.core.cli"]
    env = {k: v for k, v in os.environ.items() if k != "MATANYONE_PLUGINS"}
    env.update(extra_env or {})
    return subprocess.run(command + list(args), capture_output=True, text=True, env=env, timeout=1800, **kwargs)


@pytest.fixture(scope="module")
def cpu_backend():
    plugins.reset()
    backend = plugins.backends().get("openvino-cpu")
    assert backend is not None, "openvino-cpu is not registered: pip install ./examples/matanyone-openvino first"
    ok, reason = backend.available()
    assert ok, reason
    return backend


def synthetic_clip(frames: int = 8, height: int = 112, width: int = 192) -> tuple[np.ndarray, np.ndarray]:
    """A bright blob drifting over a textured background, and its first-frame mask (0/255)."""
    rng = np.random.default_rng(1)
    background = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    clip, mask = [], None
    for i in range(frames):
        inside = (yy - 56) ** 2 / 30**2 + (xx - 70 - 4 * i) ** 2 / 24**2 <= 1
        frame = background.copy()
        frame[inside] = (230, 200, 120)
        clip.append(frame)
        if mask is None:
            mask = inside.astype(np.uint8) * 255
    return np.stack(clip), mask


class Recording:
    """Wraps a module and keeps every (inputs, outputs) pair it sees."""

    def __init__(self, module: Any, calls: list):
        self.module, self.spec, self.calls = module, module.spec, calls

    def __call__(self, **inputs: Any) -> Mapping[str, Any]:
        outputs = self.module(**inputs)
        # the torch backend hands over torch tensors (on the CPU here): keep numpy copies
        self.calls.append(
            (
                {k: np.array(v, dtype=np.float32) for k, v in inputs.items()},
                {k: np.array(v, dtype=np.float32) for k, v in outputs.items()},
            )
        )
        return outputs


# ------------------------------------------------------------------------------------ install


def test_entry_point_is_installed():
    found = {ep.name: ep for ep in metadata.entry_points(group="matanyone_engine")}
    assert "openvino" in found, "no openvino entry point: pip install ./examples/matanyone-openvino"
    assert found["openvino"].value == "matanyone_openvino.plugin"
    assert found["openvino"].dist.name == "matanyone-openvino"


def test_backends_command_lists_openvino():
    result = _cli("backends", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["openvino-cpu"]["available"] is True, rows["openvino-cpu"]
    assert rows["openvino-cpu"]["devices"]
    gpu = rows["openvino-gpu"]
    assert gpu["available"] or gpu["reason"].startswith("OpenVINO sees no GPU device"), gpu


def test_gpu_backend_registered_with_reason():
    backend = plugins.backends()["openvino-gpu"]
    ok, reason = backend.available()
    if ok:
        assert backend.devices()
        return
    assert "GPU" in reason
    with pytest.raises(BackendUnavailable, match="cannot run here"):
        backend.load(LoadRequest(WEIGHTS, SMALL))


# ---------------------------------------------------------------------------------- precision


def test_precision_hints(cpu_backend):
    config = cpu_backend.compile_config(LoadRequest(WEIGHTS, SMALL, threads=2))
    assert config["INFERENCE_PRECISION_HINT"] == "f32" and config["INFERENCE_NUM_THREADS"] == 2
    with pytest.raises(BackendUnavailable, match="does not offer precision 'fp16'"):
        cpu_backend.compile_config(LoadRequest(WEIGHTS, SMALL, precision="fp16"))
    with pytest.raises(BackendUnavailable, match="CPU only"):
        plugins.backends()["openvino-gpu"].compile_config(LoadRequest(WEIGHTS, SMALL, precision="bf16"))


def test_bf16_where_the_cpu_supports_it(cpu_backend):
    import openvino as ov

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    request = LoadRequest(WEIGHTS, SMALL, precision="bf16")
    if "BF16" in capabilities:
        assert cpu_backend.compile_config(request)["INFERENCE_PRECISION_HINT"] == "bf16"
    else:
        with pytest.raises(BackendUnavailable, match="no bfloat16 support.*--precision fp32"):
            cpu_backend.load(request)  # refused before any export or compile


def test_fast_takes_bf16_where_openvino_reports_it(cpu_backend):
    import openvino as ov

    chosen, why = cpu_backend.fast_precision()
    assert chosen == ("bf16" if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "fp32")
    assert why
    assert plugins.backends()["openvino-gpu"].fast_precision()[0] == "fp32"


# --------------------------------------------------------------------------------- numerics


@pytest.fixture(scope="module")
def small_modules(cpu_backend) -> Mapping[str, Any]:
    pytest.importorskip("torch", reason="exporting the ONNX artifacts needs torch")
    return cpu_backend.load(LoadRequest(WEIGHTS, SMALL))


def test_modules_agree_with_torch(small_modules):
    """Each module on the inputs the state machine really feeds it, against the torch module."""
    torch_modules = plugins.get_backend("torch").load(LoadRequest(WEIGHTS, SMALL))
    calls: dict[str, list] = {name: [] for name in torch_modules}
    recorded = {name: Recording(module, calls[name]) for name, module in torch_modules.items()}
    frames, mask = synthetic_clip()
    list(matte_frames(recorded, frames, mask.astype(np.float32), warmup=2))
    worst: dict[str, float] = {}
    for name, seen in calls.items():
        if name not in small_modules:
            continue
        assert seen, f"the state machine never called {name}"
        for inputs, want in seen:
            got = small_modules[name](**inputs)
            assert set(got) == set(want)
            for key, ref in want.items():
                assert got[key].shape == ref.shape and got[key].dtype == np.float32
                scale = max(1.0, float(np.abs(ref).max()))
                err = np.abs(got[key].astype(np.float64) - ref)
                worst[f"{name}.{key}"] = max(worst.get(f"{name}.{key}", 0.0), float(err.max()) / scale)
                assert err.mean() <= 1e-5 * scale, (name, key, err.mean(), scale)
                assert np.mean(err > 1e-3 * scale) <= 1e-4, (name, key, err.max(), scale)
    print("openvino vs torch, worst max abs error / scale:", json.dumps(worst, indent=1))


def test_outputs_are_not_overwritten_by_the_next_call(small_modules):
    """Outputs must survive the next call: the state machine keeps them across frames."""
    decoder = small_modules["decoder"]
    rng = np.random.default_rng(0)
    feed = {n: rng.standard_normal(s).astype(np.float32) for n, s in decoder.spec.input_shapes(SMALL).items()}
    first = decoder(**feed)
    kept = {k: v.copy() for k, v in first.items()}
    decoder(**{n: v * 2 for n, v in feed.items()})
    for key in kept:
        np.testing.assert_array_equal(first[key], kept[key])


def test_bf16_golden_clip_error_matches_the_engines_record(cpu_backend):
    """The record ``--precision fast`` trusts (core/engine/accuracy.py) holds for openvino-cpu bf16."""
    from matanyone_engine.core.engine import accuracy
    from matanyone_engine.core.engine.precision import cpu_has_native_bf16

    if not GOLDEN_CLIP.exists():
        message = f"{GOLDEN_CLIP} is absent (../shared beside the main checkout holds the golden data)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no bfloat16 instructions, so OpenVINO offers no bf16 here")
    pytest.importorskip("torch", reason="exporting the ONNX artifacts needs torch")
    recorded = accuracy.RECORDED["openvino-cpu/bf16"]
    golden = np.load(GOLDEN_CLIP)
    modules = cpu_backend.load(LoadRequest(WEIGHTS, Dims(224, 400, 5), precision="bf16"))
    alpha = np.stack(
        [r.alpha for r in matte_frames(modules, golden["frames"], golden["mask"].astype(np.float32), warmup=3)]
    )
    err = np.abs(alpha.astype(np.float64) - golden["alpha"])
    measured = {"mean_abs": float(err.mean()), "p999_abs": float(np.percentile(err, 99.9))}
    print("openvino-cpu bf16 golden-clip errors:", measured, "recorded:", recorded)
    for stat in ("mean_abs", "p999_abs"):
        assert recorded[stat] / 1.5 <= measured[stat] <= recorded[stat] * 1.5, (stat, measured, recorded)
    assert accuracy.admissible("openvino-cpu", "bf16")[0]
    assert accuracy.within_reference(measured, accuracy.RECORDED[accuracy.REFERENCE])


def test_golden_clip_parity(cpu_backend):
    """The official implementation's mattes on 30 real frames at 224x400, in fp32."""
    if not GOLDEN_CLIP.exists():
        message = f"{GOLDEN_CLIP} is absent (../shared beside the main checkout holds the golden data)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    pytest.importorskip("torch", reason="exporting the ONNX artifacts needs torch")
    golden = np.load(GOLDEN_CLIP)
    modules = cpu_backend.load(LoadRequest(WEIGHTS, Dims(224, 400, 5)))
    results = list(matte_frames(modules, golden["frames"], golden["mask"].astype(np.float32), warmup=3))
    alpha = np.stack([r.alpha for r in results])
    logits = np.stack([r.logits for r in results])
    err = np.abs(alpha - golden["alpha"])
    errors = {
        "alpha_mean": float(err.mean()),
        "alpha_p999": float(np.percentile(err, 99.9)),
        "alpha_max": float(err.max()),
        "logits_mean": float(np.abs(logits - golden["logits_preclamp"]).mean()),
    }
    print("openvino-cpu golden-clip errors:", errors)
    assert errors["alpha_mean"] <= ALPHA_MEAN, errors
    assert errors["alpha_p999"] <= ALPHA_P999, errors
    assert errors["logits_mean"] <= LOGITS_MEAN, errors


# ---------------------------------------------------------------------------------------- CLI


def _clip_folder(tmp_path: Path, frames: int) -> Path:
    """A generated clip as a PNG folder in ``tmp_path/clip``, its mask as ``tmp_path/mask.png``."""
    images, mask = synthetic_clip(frames=frames)
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, frame in enumerate(images):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return folder


def test_cli_run_with_openvino(small_modules, tmp_path: Path):
    """`matanyone run --backend openvino-cpu` on a short clip gives the torch backend's matte."""
    from matanyone_engine.core.api import matte

    folder = _clip_folder(tmp_path, frames=6)
    out = tmp_path / "out"
    result = _cli(
        "run",
        str(folder),
        "--mask",
        str(tmp_path / "mask.png"),
        "-o",
        str(out),
        "--backend",
        "openvino-cpu",
        "--weights",
        WEIGHTS,
        "--warmup",
        "2",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    written = sorted(out.rglob("*.png"))
    assert len(written) == 6, written
    alpha = np.stack([np.asarray(Image.open(p), dtype=np.float64) / 65535.0 for p in written])
    reference = np.stack(
        [f.alpha for f in matte(folder, tmp_path / "mask.png", weights=WEIGHTS, backend="torch", warmup=2)]
    )
    assert np.abs(alpha - reference).max() <= 2e-3


def test_auto_fast_runs_openvino_bf16_on_a_bf16_cpu_and_says_why(small_modules, tmp_path: Path):
    """The engine's rule without a placement profile: on a CPU with bfloat16 instructions and this
    plugin installed, `--backend auto --precision fast` runs openvino-cpu bf16 (tests/test_precision.py
    checks the rule on mocked CPUs; this is the real one)."""
    import shutil

    from matanyone_engine.core.artifacts.cache import cache_root
    from matanyone_engine.core.engine.precision import cpu_bf16_features
    from matanyone_engine.exporters.onnx import OnnxExporter

    features = cpu_bf16_features()
    if not features:
        pytest.skip("this CPU has no bfloat16 instructions (tests/test_precision.py mocks them)")
    # a cache with no placement profile (so the rule decides), holding the artifacts exported above
    exported = OnnxExporter().ensure(WEIGHTS, SMALL, "fp32")
    cache = tmp_path / "cache"
    shutil.copytree(exported, cache / exported.relative_to(cache_root()))
    folder = _clip_folder(tmp_path, frames=4)
    out = tmp_path / "out"
    result = _cli(
        "run",
        str(folder),
        "--mask",
        str(tmp_path / "mask.png"),
        "-o",
        str(out),
        "--backend",
        "auto",
        "--precision",
        "fast",
        "--weights",
        WEIGHTS,
        "--warmup",
        "1",
        extra_env={"MATANYONE_CACHE": str(cache)},
    )
    assert result.returncode == 0, result.stderr
    assert "backend auto: openvino-cpu at bf16" in result.stderr, result.stderr
    assert features[0] in result.stderr and "within the official CPU mode" in result.stderr
    assert "precision fast on openvino-cpu: bf16" in result.stderr
    assert "frames in" in result.stderr and "with openvino-cpu bf16:" in result.stderr  # what actually ran
    assert len(sorted(out.rglob("*.png"))) == 4
