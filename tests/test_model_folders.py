"""Running from an exported folder (`--models DIR`, `models=`): the manifest decides, a folder that
does not fit is refused in one line, clips of any size are fitted to the folder's size, and the
whole run path works where torch cannot be imported."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import frame_pattern, write_clip
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from matanyone_engine.core.app.api import matte
from matanyone_engine.core.artifacts.manifest import (
    MANIFEST_NAME,
    file_problems,
    path_digest,
    read_manifest,
)
from matanyone_engine.core.cli import app
from matanyone_engine.core.engine.errors import BackendError, InputError

STANDIN = "standin:v1"
FAST = ["--warmup", "1", "--erode", "3", "--dilate", "3"]


def export_folder(out: Path, size: str, mem_frames: int = 5) -> Path:
    """`matanyone export` of the tiny stand-in modules, as a user would write a folder (without the
    check against PyTorch, which tests/test_onnx_export.py covers, to keep these tests quick)."""
    result = CliRunner().invoke(
        app,
        ["export", "--format", "onnx", "--weights", STANDIN, "--size", size, "--mem-frames", str(mem_frames)]
        + ["--no-validate", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def folder(tmp_path_factory) -> Path:
    """A 64x96, T=5 ONNX folder (read-only use: tests that alter one copy it first)."""
    return export_folder(tmp_path_factory.mktemp("models") / "onnx-64x96", "64x96")


@pytest.fixture()
def clip(tmp_path) -> tuple[Path, Path]:
    path = write_clip(tmp_path / "clip.mp4", frames=4, height=64, width=96)
    mask = np.zeros((64, 96), np.uint8)
    mask[12:52, 24:72] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return path, tmp_path / "mask.png"


def alphas(folder: Path) -> np.ndarray:
    return np.stack([np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def one_error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


# ------------------------------------------------------------------------------ torch-free


@pytest.fixture(scope="session")
def no_torch_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a machine without torch: a `torch` package first on the path whose
    import fails, exactly as `import torch` fails on a runtime-only install."""
    stub = tmp_path_factory.mktemp("torch-stub")
    (stub / "torch").mkdir()
    (stub / "torch" / "__init__.py").write_text('raise ImportError("No module named torch (test stub)")\n')
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(stub), *filter(None, [env.get("PYTHONPATH")])])
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "test stub" in probe.stderr, "the stub must make torch unimportable"
    return env


def cli_without_torch(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "matanyone_engine.core.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_from_a_folder_without_torch_matches_the_cached_run(folder, clip, tmp_path, no_torch_env):
    video, mask = clip
    done = cli_without_torch(
        no_torch_env, "run", video, "--mask", mask, "--models", folder, "--backend", "onnx-cpu", "-o", tmp_path / "a"
    )
    assert done.returncode == 0, done.stderr
    cached = CliRunner().invoke(
        app,
        ["run", str(video), "--mask", str(mask), "--backend", "onnx-cpu", "--weights", STANDIN]
        + ["-o", str(tmp_path / "b")],
    )
    assert cached.exit_code == 0, cached.output
    from_folder, from_cache = alphas(tmp_path / "a" / "clip" / "alpha"), alphas(tmp_path / "b" / "clip" / "alpha")
    assert from_folder.shape == (4, 64, 96) and from_folder.std() > 0
    assert np.array_equal(from_folder, from_cache)


def test_sample_clip_from_a_folder_without_torch_matches_the_cached_run(data_dir, tmp_path, no_torch_env):
    """The sample clip at --max-size 64 (64x113, padded to 64x128) from a 64x128 folder."""
    models = export_folder(tmp_path / "models", "64x128")
    common = [
        data_dir / "test-sample1.mp4",
        "--mask",
        data_dir / "test-sample1.png",
        "--max-size",
        "64",
        "--output-size",
        "network",
    ]
    common += ["--frames", "3", *FAST]
    done = cli_without_torch(no_torch_env, "run", *common, "--models", models, "-o", tmp_path / "a")
    assert done.returncode == 0, done.stderr
    cached = CliRunner().invoke(
        app, ["run", *map(str, common), "--backend", "onnx-cpu", "--weights", STANDIN, "-o", str(tmp_path / "b")]
    )
    assert cached.exit_code == 0, cached.output
    a, b = alphas(tmp_path / "a" / "test-sample1" / "alpha"), alphas(tmp_path / "b" / "test-sample1" / "alpha")
    assert a.shape == (3, 64, 113) and np.array_equal(a, b)


def test_bench_from_a_folder_without_torch(folder, tmp_path, no_torch_env):
    report = tmp_path / "r.json"
    done = cli_without_torch(
        no_torch_env,
        *["bench", "--models", folder, "--frames", "3", "--runs", "1", "--warmup-runs", "0"],
        *["--synthetic", "--no-prepare", "--json", report],
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    assert data["settings"]["models"] == str(folder) and data["settings"]["size"] == [64, 96]
    (result,) = data["results"]  # the one backend that runs onnx here
    assert result["backend"] == "onnx-cpu" and "error" not in result
    manifest = read_manifest(folder)
    assert set(result["flops_source"].values()) == {"manifest"}
    assert result["modules"]["encoder"]["gflops"] == round(manifest.flops["encoder"] / 1e9, 3)


def test_backends_list_torch_as_unavailable_without_torch(no_torch_env):
    done = cli_without_torch(no_torch_env, "backends", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows["onnx-cpu"]["available"]
    assert not rows["torch"]["available"]
    assert "PyTorch does not import here" in rows["torch"]["reason"]
    assert "matanyone-engine[torch]" in rows["torch"]["reason"]


@pytest.mark.parametrize("fmt", ["onnx", "coreml"])
def test_export_without_torch_says_to_install_the_torch_extra(fmt, tmp_path, no_torch_env):
    done = cli_without_torch(no_torch_env, "export", "--format", fmt, "--size", "64x96", "-o", tmp_path / "out")
    assert done.returncode == 5
    line = one_error_line(done.stderr)
    assert "exporting needs PyTorch" in line and "pip install torch==2.13.0 'matanyone-engine[torch]'" in line
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_cached_run_without_torch_points_to_models(clip, tmp_path, no_torch_env):
    """No folder and no cached export: the run cannot build one, and says how to proceed."""
    env = {**no_torch_env, "MATANYONE_CACHE": str(tmp_path / "empty-cache")}
    video, mask = clip
    done = cli_without_torch(
        env, "run", video, "--mask", mask, "--backend", "onnx-cpu", "--weights", STANDIN, "-o", tmp_path / "o"
    )
    assert done.returncode != 0
    line = one_error_line(done.stderr)
    assert "needs PyTorch" in line and "--models DIR" in line
    assert not (tmp_path / "o" / "clip").exists()


# ------------------------------------------------------------------------------- refusals


def run_models(models: Path, clip, tmp_path: Path, *more: str):
    video, mask = clip
    return CliRunner().invoke(
        app, ["run", str(video), "--mask", str(mask), "--models", str(models), "-o", str(tmp_path / "out"), *more]
    )


def test_altered_file_is_refused_naming_it_and_how_to_re_export(folder, clip, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    with open(copy / "read.onnx", "ab") as fh:
        fh.write(b"\0")
    result = run_models(copy, clip, tmp_path)
    assert result.exit_code == InputError.exit_code
    line = one_error_line(result.output)
    assert "read.onnx was altered since export" in line
    assert f"matanyone export --format onnx --weights {STANDIN} --size 64x96 --mem-frames 5 --precision fp32" in line
    assert not (tmp_path / "out" / "clip").exists()


def test_missing_file_is_refused(folder, clip, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    (copy / "decoder.onnx").unlink()
    line = one_error_line(run_models(copy, clip, tmp_path).output)
    assert "decoder.onnx is missing" in line and "matanyone export" in line


def test_manifest_of_a_newer_version_or_exporter_is_refused(folder, clip, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    raw = json.loads((copy / MANIFEST_NAME).read_text())
    (copy / MANIFEST_NAME).write_text(json.dumps({**raw, "manifest_version": raw["manifest_version"] + 1}))
    line = one_error_line(run_models(copy, clip, tmp_path).output)
    assert "written by a newer matanyone-engine" in line and "re-export" in line
    (copy / MANIFEST_NAME).write_text(json.dumps({**raw, "exporter_version": "99"}))
    line = one_error_line(run_models(copy, clip, tmp_path).output)
    assert "written by a newer onnx exporter (version 99; this install has 1)" in line
    assert "matanyone export --format onnx" in line


def test_a_folder_without_manifest_is_refused(clip, tmp_path):
    (tmp_path / "empty").mkdir()
    line = one_error_line(run_models(tmp_path / "empty", clip, tmp_path).output)
    assert "has no manifest.json" in line and "matanyone export" in line


@pytest.mark.parametrize(
    ("option", "expected", "asked"),
    [
        (["--precision", "fp16"], "precision fp32 (asked: fp16)", "--precision fp16"),
        (["--weights", "seeded:v1-pm"], "weights 'standin:v1' (asked: 'seeded:v1-pm')", "--weights seeded:v1-pm"),
        (["--package-size", "432x768"], "size 64x96 (asked: 432x768)", "--size 432x768"),
    ],
)
def test_options_that_contradict_the_folder_are_refused(folder, clip, tmp_path, option, expected, asked):
    line = one_error_line(run_models(folder, clip, tmp_path, *option).output)
    assert expected in line and "the folder decides" in line and asked in line


def test_a_backend_for_another_format_is_refused(folder, clip, tmp_path):
    line = one_error_line(run_models(folder, clip, tmp_path, "--backend", "coreml-gpu").output)
    assert "holds onnx models but backend coreml-gpu runs coreml" in line
    assert "--backend onnx-cpu" in line and "matanyone export --format coreml" in line
    line = one_error_line(run_models(folder, clip, tmp_path, "--backend", "torch").output)
    assert "backend torch builds its modules from --weights" in line and "--backend onnx-cpu" in line


def test_bench_refuses_what_the_folder_contradicts(folder):
    from matanyone_engine.core.bench.command import bench_command

    with pytest.raises(InputError, match=r"size 64x96 \(asked: 432x768\)"):
        bench_command(models=folder, size="432x768", synthetic=True)
    with pytest.raises(InputError, match=r"precision fp32 \(asked: fp16\)"):
        bench_command(models=folder, precisions=["fp16"], synthetic=True)
    with pytest.raises(BackendError, match="backend torch builds its modules from --weights"):
        bench_command(models=folder, backends=["torch"], synthetic=True)


# ------------------------------------------------------------------ fitted to the folder's size


def frame_folder(path: Path, frames: list[np.ndarray]) -> Path:
    path.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"{i:03d}.png")
    return path


def test_portrait_clip_is_rotated_into_a_landscape_folder_and_back(folder, tmp_path):
    """96x64 portrait frames through the 64x96 folder give exactly the mattes of the same frames
    turned a quarter clockwise, turned back: the frame is rotated, never squeezed."""
    portrait = [np.ascontiguousarray(np.rot90(frame_pattern(i, 64, 96), k=1)) for i in range(3)]
    mask = np.zeros((96, 64), np.uint8)
    mask[20:80, 10:40] = 255
    turned = [np.ascontiguousarray(np.rot90(f, k=-1)) for f in portrait]
    turned_mask = np.ascontiguousarray(np.rot90(mask, k=-1))
    common = {"models": folder, "warmup": 1, "erode": 0, "dilate": 0}  # an even kernel is not rotation-symmetric
    got = [f.alpha for f in matte(frame_folder(tmp_path / "p", portrait), mask, **common)]
    want = [f.alpha for f in matte(frame_folder(tmp_path / "l", turned), turned_mask, **common)]
    assert [a.shape for a in got] == [(96, 64)] * 3 and got[0].std() > 0
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, np.rot90(b, k=1))


def test_other_aspect_ratios_are_letterboxed_and_come_back_at_their_size(folder, tmp_path):
    frames = [frame_pattern(i, 80, 80) for i in range(3)]
    mask = np.zeros((80, 80), np.uint8)
    mask[20:60, 20:60] = 255
    results = list(matte(frame_folder(tmp_path / "sq", frames), mask, models=folder, warmup=1))
    for r in results:
        assert r.alpha.shape == (80, 80) and r.rgb.shape == (80, 80, 3)
        assert np.isfinite(r.alpha).all() and 0.0 <= r.alpha.min() and r.alpha.max() <= 1.0


def test_package_size_fixes_the_module_size_on_any_backend(tmp_path, monkeypatch):
    """`package_size` loads the modules once at that size (here onnx-cpu, from its cache) and fits
    the clip to it; the alpha is at the clip's size."""
    from matanyone_engine.backends.onnx.runtime import OrtBackend

    seen = []
    real = OrtBackend.load

    def recording(self, request):
        seen.append(request.dims)
        return real(self, request)

    monkeypatch.setattr(OrtBackend, "load", recording)
    frames = [frame_pattern(i, 80, 80) for i in range(2)]
    mask = np.zeros((80, 80), np.uint8)
    mask[20:60, 20:60] = 255
    results = list(
        matte(
            frame_folder(tmp_path / "sq", frames),
            mask,
            backend="onnx-cpu",
            weights=STANDIN,
            package_size="64x96",
            mem_frames=5,  # the cached run above exported this set already
            warmup=1,
        )
    )
    assert [(d.height, d.width, d.mem_frames) for d in seen] == [(64, 96, 5)]
    assert [r.alpha.shape for r in results] == [(80, 80), (80, 80)]


@pytest.mark.slow
def test_a_432x768_folder_mattes_a_portrait_clip_at_its_own_size(tmp_path, no_torch_env):
    """The deployment size: a 432x768 folder and a 200x112 portrait clip, without torch."""
    models = export_folder(tmp_path / "models", "432x768", mem_frames=3)
    video = write_clip(tmp_path / "portrait.mp4", frames=3, height=200, width=112)
    mask = np.zeros((200, 112), np.uint8)
    mask[40:160, 30:80] = 255
    Image.fromarray(mask).save(tmp_path / "portrait.png")
    done = cli_without_torch(
        no_torch_env, "run", video, "--mask", tmp_path / "portrait.png", "--models", models, *FAST, "-o", tmp_path / "o"
    )
    assert done.returncode == 0, done.stderr
    assert alphas(tmp_path / "o" / "portrait" / "alpha").shape == (3, 200, 112)


# --------------------------------------------------------------------------- file digests


def test_file_digest_is_the_sha256_of_the_bytes(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"module bytes")
    assert path_digest(tmp_path / "m.onnx") == hashlib.sha256(b"module bytes").hexdigest()


def test_package_folder_digest_changes_with_any_file_inside(tmp_path):
    package = tmp_path / "encoder.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Data" / "weights.bin").write_bytes(b"w" * 10)
    (package / "Manifest.json").write_text("{}")
    first = path_digest(package)
    assert path_digest(package) == first
    (package / "Data" / "weights.bin").write_bytes(b"w" * 9 + b"v")
    changed = path_digest(package)
    assert changed != first
    (package / "Data" / "weights.bin").rename(package / "Data" / "weights2.bin")
    assert path_digest(package) not in (first, changed)
    (package / "Data" / "weights2.bin").rename(package / "Data" / "weights.bin")
    (package / "Data" / "weights.bin").write_bytes(b"w" * 10)
    assert path_digest(package) == first
    (package / "extra").write_text("")
    assert path_digest(package) != first


def test_exported_manifest_records_every_file_and_detects_changes(folder, tmp_path):
    manifest = read_manifest(folder)
    assert set(manifest.file_digests) == set(manifest.files)
    for name, relative in manifest.files.items():
        assert manifest.file_digests[name] == hashlib.sha256((folder / relative).read_bytes()).hexdigest()
    assert file_problems(folder, manifest) == []
    copy = shutil.copytree(folder, tmp_path / "copy")
    (copy / "encoder.onnx").write_bytes(b"")
    assert file_problems(copy, manifest) == [
        "encoder.onnx was altered since export (its sha256 differs from the manifest's)"
    ]


def test_a_folder_is_hashed_once_while_its_files_are_unchanged(folder, tmp_path, monkeypatch):
    from matanyone_engine.core.app import models as models_module

    copy = shutil.copytree(folder, tmp_path / "copy")
    calls = []
    real = models_module.file_problems
    monkeypatch.setattr(models_module, "file_problems", lambda d, m: calls.append(d) or real(d, m))
    models_module.open_model_folder(copy)
    models_module.open_model_folder(copy)
    assert len(calls) == 1
    os.utime(copy / "read.onnx", ns=(1, 1))  # touched: checked again
    models_module.open_model_folder(copy)
    assert len(calls) == 2


def test_fast_precision_takes_the_folders(folder, tmp_path):
    frames = [frame_pattern(i, 64, 96) for i in range(2)]
    mask = np.zeros((64, 96), np.uint8)
    mask[12:52, 24:72] = 255
    results = list(matte(frame_folder(tmp_path / "f", frames), mask, models=folder, precision="fast", warmup=0))
    assert [r.alpha.shape for r in results] == [(64, 96), (64, 96)]
