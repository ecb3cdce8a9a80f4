"""Core ML runs use one fixed package size (432x768 unless --package-size says otherwise) whatever
the clip, with the rotation / letter-box geometry applied by the app and the alpha returned at the
clip's own size — from the CLI and the API, from the cache and from an exported folder.

Core ML runs only on macOS, so here the backends are made available and coremltools is replaced
by a stand-in whose "packages" check their input shapes against the size they were exported for
and return the red channel of the frame they were given as the matte: the alpha then shows where
each pixel went.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from matanyone_engine.backends.coreml import backend as coreml_backend
from matanyone_engine.core.api import matte
from matanyone_engine.core.artifacts.manifest import new_manifest, read_manifest, write_manifest
from matanyone_engine.core.cli import app
from matanyone_engine.core.engine.spec import MODULE_NAMES, MODULE_SPECS, Dims

FAST = ["--warmup", "1", "--erode", "0", "--dilate", "0"]


def write_packages(directory: Path, dims: Dims) -> Path:
    """A folder shaped like a Core ML export: one .mlpackage folder per module and a manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in MODULE_NAMES:
        package = directory / f"{name}.mlpackage"
        (package / "Data").mkdir(parents=True, exist_ok=True)
        (package / "Data" / "model.mlmodel").write_bytes(name.encode() * 8)
        files[name] = package.name
    manifest = new_manifest(
        format="coreml",
        dims=dims,
        precision="fp16",
        weights="seeded:v1-pm",
        weights_digest="cd" * 32,
        exporter="test",
        exporter_version="1",
        files=files,
        extra={"deployment_target": "macOS14"},
    )
    write_manifest(directory, manifest)
    return directory


class StandInPackage:
    """What ``ct.models.MLModel`` returns: checks its inputs against the exported size."""

    loaded: list[Path] = []

    def __init__(self, path: str, compute_units: str) -> None:
        self.path = Path(path)
        self.spec = MODULE_SPECS[self.path.stem]
        self.dims = read_manifest(self.path.parent).dims
        StandInPackage.loaded.append(self.path)

    def predict(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for t in self.spec.inputs:
            assert feed[t.name].shape == t.resolve(self.dims), (self.spec.name, t.name, feed[t.name].shape)
        out = {t.name: np.zeros(t.resolve(self.dims), np.float16) for t in self.spec.outputs}
        if self.spec.name == "encoder":
            out["f1"] = feed["image"]
        if self.spec.name == "decoder":
            out["logits"] = feed["f1"][:, :1].copy()
        return out


@pytest.fixture()
def stand_in_coreml(monkeypatch, tmp_path):
    """Core ML made available, packages from the stand-in; returns the sizes the cache was asked for."""
    units = SimpleNamespace(CPU_ONLY="cpu", CPU_AND_GPU="gpu", CPU_AND_NE="ane", ALL="all")
    fake_ct = SimpleNamespace(models=SimpleNamespace(MLModel=StandInPackage), ComputeUnit=units)
    monkeypatch.setattr(coreml_backend, "coreml_status", lambda: (True, ""))
    monkeypatch.setattr("matanyone_engine.exporters.coreml.compat.import_coremltools", lambda: fake_ct)
    StandInPackage.loaded = []
    asked: list[Dims] = []
    real_locate = coreml_backend.locate_packages

    def cache(request):
        if request.options.get("artifacts"):
            return real_locate(request)  # a --models folder: the backend's own check
        asked.append(request.dims)
        d = request.dims
        return write_packages(tmp_path / "cache" / f"{d.height}x{d.width}x{d.mem_frames}", d)

    monkeypatch.setattr(coreml_backend, "locate_packages", cache)
    return asked


def smooth_frames(folder: Path, height: int, width: int, count: int = 3) -> tuple[Path, Path, np.ndarray]:
    """PNG frames (lossless) of a smooth picture, a mask, and the red channel in [0, 1]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    red = (0.5 + 0.3 * np.sin(2 * np.pi * xx / width) * np.cos(np.pi * yy / height)) * 255
    rgb = np.stack([red, red / 2, red / 3], -1).astype(np.uint8)
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rgb).save(folder / f"{i:03d}.png")
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    Image.fromarray(mask).save(folder.parent / f"{folder.name}-mask.png")
    return folder, folder.parent / f"{folder.name}-mask.png", rgb[..., 0] / 255.0


def read_alphas(folder: Path) -> np.ndarray:
    return np.stack([np.array(Image.open(p)) / 65535.0 for p in sorted(folder.glob("*.png"))])


def assert_follows(alpha: np.ndarray, red: np.ndarray) -> None:
    """The matte is the frame's red channel at the frame's own size (resampled there and back)."""
    assert alpha.shape[-2:] == red.shape
    err = np.abs(alpha - red)
    assert err.mean() < 3e-3 and err.max() < 4e-2, (err.mean(), err.max())


def test_cli_coreml_run_uses_432x768_packages_for_every_clip(stand_in_coreml, tmp_path):
    """Two clips of other sizes (a portrait one, rotated in; a 5:3 one, letter-boxed) load one
    package size, and each gets its matte at its own size."""
    for name, (h, w) in {"portrait": (200, 112), "wide": (60, 100)}.items():
        frames, mask, red = smooth_frames(tmp_path / name, h, w)
        result = CliRunner().invoke(
            app,
            ["run", str(frames), "--mask", str(mask), "--backend", "coreml-gpu", "--weights", "seeded:v1-pm"]
            + [*FAST, "-o", str(tmp_path / "out")],
        )
        assert result.exit_code == 0, result.output
        assert_follows(read_alphas(tmp_path / "out" / name / "alpha"), red)
    assert [(d.height, d.width) for d in stand_in_coreml] == [(432, 768), (432, 768)]


def test_api_package_size_chooses_the_size(stand_in_coreml, tmp_path):
    frames, mask, red = smooth_frames(tmp_path / "clip", 48, 80)
    results = list(
        matte(frames, mask, backend="coreml-ane", weights="seeded:v1-pm", package_size="64x112", warmup=1, erode=0)
    )
    assert [(d.height, d.width) for d in stand_in_coreml] == [(64, 112)]
    assert_follows(np.stack([r.alpha for r in results]), red)


def test_package_size_is_rounded_up_like_an_export(stand_in_coreml, tmp_path):
    frames, mask, _ = smooth_frames(tmp_path / "clip", 48, 80, count=1)
    list(matte(frames, mask, backend="coreml-cpu", weights="seeded:v1-pm", package_size=(60, 100), warmup=0))
    assert [(d.height, d.width) for d in stand_in_coreml] == [(64, 112)]


def test_coreml_models_folder_runs_a_portrait_clip_at_its_size(stand_in_coreml, tmp_path):
    models = write_packages(tmp_path / "models", Dims(64, 112, 3))
    frames, mask, red = smooth_frames(tmp_path / "portrait", 112, 64)
    result = CliRunner().invoke(
        app,
        ["run", str(frames), "--mask", str(mask), "--backend", "coreml-gpu", "--models", str(models)]
        + [*FAST, "-o", str(tmp_path / "out")],
    )
    assert result.exit_code == 0, result.output
    alpha = read_alphas(tmp_path / "out" / "portrait" / "alpha")
    assert alpha.shape == (3, 112, 64)
    assert np.abs(alpha - red).max() < 1e-4  # 112x64 turned is exactly 64x112: no resampling at all
    assert stand_in_coreml == []  # nothing came from the cache
    assert {p.parent for p in StandInPackage.loaded} == {models}


def test_altered_package_is_refused(stand_in_coreml, tmp_path):
    models = write_packages(tmp_path / "models", Dims(64, 112, 3))
    (models / "read.mlpackage" / "Data" / "model.mlmodel").write_bytes(b"changed")
    frames, mask, _ = smooth_frames(tmp_path / "clip", 64, 112, count=1)
    result = CliRunner().invoke(
        app, ["run", str(frames), "--mask", str(mask), "--backend", "coreml-gpu", "--models", str(models)]
    )
    assert result.exit_code == 2
    (line,) = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert "read.mlpackage was altered since export" in line
    assert "matanyone export --format coreml --weights seeded:v1-pm --size 64x112 --mem-frames 3" in line
    assert "--precision fp16 --target macOS14" in line
    assert StandInPackage.loaded == []
