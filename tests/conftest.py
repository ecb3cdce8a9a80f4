"""Shared fixtures. Data from ../shared (golden outputs, real clips) is located beside the checkout;
tests that need it skip with a reason when it is absent, and fail instead when CI is set."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# The suite never uses the user's artifact cache: a leftover placement.json or export there would
# change which backend `auto` picks and what the tests see. Every test (and every CLI subprocess it
# starts, which inherits the environment) uses one temporary cache; `user_cache_untouched` fails
# the session if anything still wrote to the real one.
_REAL_CACHE_OVERRIDE = os.environ.get("MATANYONE_CACHE")
os.environ["MATANYONE_CACHE"] = tempfile.mkdtemp(prefix="matanyone-test-cache-")

# The project's own tests load only the project's own plugins, so a third-party plugin installed in
# the same environment cannot change what they see; set MATANYONE_PLUGINS to test with others.
os.environ.setdefault("MATANYONE_PLUGINS", "torch,onnx,coreml,masks")


def _user_cache() -> Path:
    import platformdirs

    return Path(_REAL_CACHE_OVERRIDE or platformdirs.user_cache_dir("matanyone-engine"))


def _snapshot(folder: Path) -> dict[str, float]:
    if not folder.exists():
        return {}
    return {str(p): p.stat().st_mtime for p in folder.rglob("*")}


@pytest.fixture(scope="session", autouse=True)
def temporary_cache_removed():
    """Removes the suite's temporary cache at the end: its exports are hundreds of MB per session."""
    yield
    import shutil

    shutil.rmtree(os.environ["MATANYONE_CACHE"], ignore_errors=True)  # best effort at teardown


@pytest.fixture(scope="session", autouse=True)
def user_cache_untouched():
    """Fails the session when a test wrote into the user's real cache."""
    before = _snapshot(_user_cache())
    yield
    after = _snapshot(_user_cache())
    assert after == before, f"the test suite changed the user's cache {_user_cache()}"


def _need(path: Path) -> Path:
    if not path.exists():
        message = f"{path} is absent (the shared golden data and clips live in ../shared beside the checkout)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    return _need(shared_dir / "golden")


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    return _need(shared_dir / "data")


@pytest.fixture(scope="session")
def golden_modules(golden_dir: Path):
    return np.load(_need(golden_dir / "modules_112x192.npz"))


@pytest.fixture(scope="session")
def golden_clip(golden_dir: Path):
    return np.load(_need(golden_dir / "golden_sample1_224x400.npz"))


@pytest.fixture(scope="session")
def torch_net():
    """The network with seeded:v1-pm weights, shared by the tests of one session."""
    pytest.importorskip("torch")
    from matanyone_engine.backends.torch.network import load_network

    return load_network("seeded:v1-pm")


@pytest.fixture(scope="session")
def torch_modules(torch_net):
    """The torch backend's fp32 CPU modules as its ``load`` prepares them (batch norms folded, the
    CPU's memory layout), over a copy of the shared network: what the parity tests hold to the
    official outputs is what users run."""
    import copy

    import torch

    from matanyone_engine.backends.torch.inference import prepare_network
    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.backends.torch.plugin import CHANNELS_LAST, TorchModule

    net = prepare_network(copy.deepcopy(torch_net), "fp32", channels_last=CHANNELS_LAST["cpu"])
    return {n: TorchModule(s, torch.device("cpu"), "fp32") for n, s in build_torch_modules(net).items()}


@pytest.fixture(scope="session")
def coreml_fp16_small(tmp_path_factory) -> Path:
    """The real network (seeded weights) exported to Core ML at 64x96, T=2, fp16, validated (which
    runs every package through the reference MIL executor); shared by the Core ML test files."""
    pytest.importorskip("coremltools", reason="coremltools is not installed (pip install coremltools)")
    pytest.importorskip("torch")
    from matanyone_engine.core.engine.spec import Dims
    from matanyone_engine.exporters.coreml import CoreMLExporter

    out = tmp_path_factory.mktemp("coreml-export")
    CoreMLExporter().export("seeded:v1-pm", Dims(64, 96, 2), precision="fp16", target="macOS14", out_dir=out)
    return out


def transpose_conv_weight(package: Path) -> str:
    """Swap the two spatial axes of the first 3x3 convolution weight in the package's weight.bin
    (the layout mistake a converter makes), in place; returns that conv's output name."""
    from matanyone_engine.backends.coreml.mil import load_program

    program = load_program(package)
    for op in program.main.operations:
        weight = op.inputs.get("weight", [None])[0] if op.type == "conv" else None
        if weight is None or not weight.is_const or weight.value.shape[2:] != (3, 3):
            continue
        blob = next(package.rglob("weight.bin"))
        data = blob.read_bytes()
        old = np.ascontiguousarray(weight.value).tobytes()
        at = data.find(old)
        assert at >= 0 and data.find(old, at + 1) < 0, "weight bytes not found exactly once"
        new = np.ascontiguousarray(weight.value.transpose(0, 1, 3, 2)).tobytes()
        blob.write_bytes(data[:at] + new + data[at + len(old) :])
        return op.name
    raise AssertionError(f"no 3x3 conv weight in {package}")


# --- synthetic clips for the video/mask/writer tests ---------------------------------------------


def frame_pattern(index: int, height: int, width: int) -> np.ndarray:
    """A frame whose red level encodes its index (16 + (20 * index) % 220), so order is checkable
    after lossy encoding, on a smooth gradient that H.264 keeps nearly exact."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:, :, 0] = 16 + (20 * index) % 220
    frame[:, :, 1] = np.linspace(40, 200, width, dtype=np.float32)[None, :].astype(np.uint8)
    frame[:, :, 2] = np.linspace(60, 180, height, dtype=np.float32)[:, None].astype(np.uint8)
    return frame


def write_clip(
    path: Path,
    frames: int = 10,
    height: int = 64,
    width: int = 96,
    fps: Fraction | int = 24,
    audio: bool = False,
    faststart: bool = False,
    noise: bool = False,
    tone_from: float = 0.0,
    audio_codec: str = "aac",
    rotation: int | None = None,
    hflip: bool = False,
    times_ms: list[int] | None = None,
) -> Path:
    """An H.264 clip of frame_pattern frames (or random noise, for big files), optionally with a
    mono track (AAC unless ``audio_codec`` says otherwise) as long as the video (silent until
    ``tone_from`` seconds, then a 440 Hz tone),
    optionally with the index at the front (faststart).

    ``rotation`` (degrees counter-clockwise, PyAV's convention) and ``hflip`` write a display
    matrix, as a phone does; ``times_ms`` gives each frame its own timestamp (variable frame rate;
    ``frames`` is then its length)."""
    options = {"movflags": "faststart"} if faststart else {}
    rng = np.random.default_rng(0)
    if times_ms is not None:
        frames = len(times_ms)
    with av.open(str(path), mode="w", options=options) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if times_ms is not None:
            video.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None or hflip:
            video.set_display_rotation(rotation or 0, hflip=hflip)
        sound = None
        rate = 48000 if audio_codec == "libopus" else 44100
        if audio:
            sound = container.add_stream(audio_codec, rate=rate)
            sound.layout = "mono"
        for i in range(frames):
            if noise:
                image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            else:
                image = frame_pattern(i, height, width)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[i], Fraction(1, 1000)
            else:
                frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            seconds = (times_ms[-1] / 1000 + 1 / float(fps)) if times_ms is not None else frames / float(fps)
            samples = int(rate * seconds)
            t = np.arange(samples, dtype=np.float32) / rate
            tone = np.where(t >= tone_from, 0.2 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)[None, :]
            chunk = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            chunk.sample_rate = rate
            chunk.pts = 0
            container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


@pytest.fixture
def make_clip(tmp_path: Path) -> Callable[..., Path]:
    """write_clip into tmp_path: ``make_clip("name.mp4", frames=10, audio=True, ...)``."""

    def make(name: str = "clip.mp4", **kwargs) -> Path:
        return write_clip(tmp_path / name, **kwargs)

    return make


# --- ONNX tests: one artifact cache per session, so each artifact set is exported once -----------

ONNX_TEST_DIMS = (64, 96, 3)


@pytest.fixture(scope="session")
def onnx_shared_root(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "onnx-shared-cache"


@pytest.fixture(scope="session")
def standin_artifacts(onnx_shared_root: Path) -> Path:
    """Exported stand-in modules (spec-shaped, tiny) at ONNX_TEST_DIMS."""
    from matanyone_engine.core.engine.spec import Dims
    from matanyone_engine.exporters.onnx import OnnxExporter

    return OnnxExporter().ensure("standin:v1", Dims(*ONNX_TEST_DIMS), root=onnx_shared_root)
