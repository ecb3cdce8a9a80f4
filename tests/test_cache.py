"""The artifact cache (core/cache.py) and the manifest (core/manifest.py).

Most cases use a fake build that writes placeholder files and a real manifest, so they test the
cache's bookkeeping — keys, reuse, atomic publication, locking, mismatch detection — in
milliseconds. One case exports real ONNX artifacts (stand-in modules) from two processes at once.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from matanyone_engine.core.artifacts import cache
from matanyone_engine.core.artifacts.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    ManifestMismatch,
    Tolerance,
    ValidationError,
    check_module_outputs,
    new_manifest,
    read_manifest,
    write_manifest,
)
from matanyone_engine.core.engine.errors import ExportError
from matanyone_engine.core.engine.spec import MODULE_NAMES, Dims, describe

DIMS = Dims(64, 96, 3)
DIGEST = "ab" * 32
VERSION = "test-1"


def fake_build(
    tmp: Path,
    dims: Dims = DIMS,
    precision: str = "fp32",
    digest: str = DIGEST,
    delay: float = 0.0,
    counter: Path | None = None,
) -> None:
    """Writes five placeholder module files and a manifest, optionally slowly and counting calls."""
    if counter is not None:
        with open(counter, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
    files = {}
    for name in MODULE_NAMES:
        files[name] = f"{name}.bin"
        (tmp / files[name]).write_bytes(b"x" * 16)
        time.sleep(delay / len(MODULE_NAMES))
    manifest = new_manifest(
        format="onnx",
        dims=dims,
        precision=precision,
        weights="seeded:v1-pm",
        weights_digest=digest,
        exporter="fake",
        exporter_version=VERSION,
        files=files,
        opset=18,
    )
    write_manifest(tmp, manifest)


def ensure(root: Path, build, dims: Dims = DIMS, precision: str = "fp32") -> Path:
    return cache.ensure_artifacts(
        "onnx",
        dims,
        precision,
        build,
        weights_digest=DIGEST,
        exporter_version=VERSION,
        opset=18,
        root=root,
    )


# ------------------------------------------------------------------------------------ manifest


def test_manifest_round_trip(tmp_path: Path) -> None:
    fake_build(tmp_path)
    m = read_manifest(tmp_path)
    assert isinstance(m, Manifest)
    assert (m.height, m.width, m.mem_frames, m.precision, m.format) == (64, 96, 3, "fp32", "onnx")
    declared = describe(DIMS)["modules"]
    assert m.modules == {n: declared[n] for n in MODULE_NAMES}  # the optional variant was not built
    assert m.dims == DIMS
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".manifest-")], "temp file left behind"
    raw = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert raw["manifest_version"] == 2 and raw["weights_digest"] == DIGEST
    placeholder = hashlib.sha256(b"x" * 16).hexdigest()  # what fake_build wrote into every file
    assert raw["file_digests"] == dict.fromkeys(MODULE_NAMES, placeholder)


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"manifest_version": 99}))
    with pytest.raises(ManifestError, match="version"):
        read_manifest(tmp_path)


def test_check_module_outputs_names_the_failure() -> None:
    import numpy as np

    want = {"mem_readout": np.ones((1, 256, 4, 6), np.float32)}
    tol = {"mem_readout": Tolerance(1e-4, 1e-3, 1e-5)}
    ok = check_module_outputs("read", {"mem_readout": want["mem_readout"] + 1e-6}, want, tol)
    assert ok["mem_readout"].passed
    bad = want["mem_readout"].copy()
    bad[0, 0, 0, 0] += 0.5
    with pytest.raises(ValidationError) as info:
        check_module_outputs("read", {"mem_readout": bad}, want, tol)
    err = info.value
    assert isinstance(err, ExportError)
    assert (err.module, err.output) == ("read", "mem_readout")
    assert err.max_abs == pytest.approx(0.5)
    assert "read" in str(err) and "mem_readout" in str(err)


# --------------------------------------------------------------------------------------- cache


def test_cache_root_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    assert cache.cache_root() == tmp_path / "c"
    calls = []
    path = cache.ensure_artifacts(
        "onnx",
        DIMS,
        "fp32",
        lambda t: (calls.append(t), fake_build(t)),
        weights_digest=DIGEST,
        exporter_version=VERSION,
    )
    assert path.parent.parent == tmp_path / "c" and len(calls) == 1
    monkeypatch.delenv(cache.CACHE_ENV)
    assert "matanyone-engine" in str(cache.cache_root())


def test_key_depends_on_every_field() -> None:
    base = {
        "format": "onnx",
        "weights_digest": DIGEST,
        "dims": DIMS,
        "precision": "fp32",
        "exporter_version": "1",
        "opset": 18,
    }
    key = cache.artifact_key(**base)
    assert key == cache.artifact_key(**base)
    variants = [
        {"format": "coreml"},
        {"weights_digest": "cd" * 32},
        {"dims": Dims(64, 112, 3)},
        {"dims": Dims(80, 96, 3)},
        {"dims": Dims(64, 96, 4)},
        {"precision": "fp16"},
        {"exporter_version": "2"},
        {"opset": 17},
    ]
    keys = {cache.artifact_key(**{**base, **v}) for v in variants}
    assert key not in keys and len(keys) == len(variants)


def test_second_call_reuses(tmp_path: Path) -> None:
    builds: list[Path] = []

    def build(tmp: Path) -> None:
        builds.append(tmp)
        fake_build(tmp)

    first = ensure(tmp_path, build)
    second = ensure(tmp_path, build)
    assert first == second and len(builds) == 1
    assert not builds[0].exists(), "the build directory is renamed into place"
    assert read_manifest(first).dims == DIMS
    other = ensure(tmp_path, lambda tmp: (builds.append(tmp), fake_build(tmp, precision="fp16")), precision="fp16")
    assert other != first and len(builds) == 2


def test_a_build_is_announced_once_even_without_a_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Whatever backend builds (onnx-cpu, Core ML, coreml-sim), a first run says so; a reuse is silent."""
    with caplog.at_level("WARNING", logger="matanyone_engine.build"):
        final = ensure(tmp_path, fake_build)
        ensure(tmp_path, fake_build)
    assert [r.getMessage() for r in caplog.records] == [
        f"matanyone: building onnx artifacts for {DIMS.height}x{DIMS.width} T={DIMS.mem_frames} fp32 into {final}"
    ]


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def broken(tmp: Path) -> None:
        (tmp / "encoder.bin").write_bytes(b"half")
        raise RuntimeError("export crashed")

    with pytest.raises(RuntimeError, match="export crashed"):
        ensure(tmp_path, broken)
    leftovers = [p for p in (tmp_path / "onnx").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []
    assert ensure(tmp_path, fake_build).is_dir()


def test_build_without_manifest_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="manifest"):
        ensure(tmp_path, lambda tmp: None)


def test_build_for_wrong_request_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestMismatch, match="T=4"):
        ensure(tmp_path, lambda tmp: fake_build(tmp, dims=Dims(64, 96, 4)))


def test_mismatched_manifest_gives_clear_error(tmp_path: Path) -> None:
    path = ensure(tmp_path, fake_build)
    # Someone copies artifacts for another memory length and precision into this key's directory.
    fake_build(path, dims=Dims(64, 96, 5), precision="fp16")
    with pytest.raises(ManifestMismatch) as info:
        ensure(tmp_path, fake_build)
    text = str(info.value)
    assert "T=5" in text and "T=3" in text and "fp16" in text and "Export again" in text


def test_incomplete_artifacts_are_rebuilt(tmp_path: Path) -> None:
    builds: list[int] = []
    path = ensure(tmp_path, lambda t: (builds.append(1), fake_build(t)))
    (path / "read.bin").unlink()
    again = ensure(tmp_path, lambda t: (builds.append(1), fake_build(t)))
    assert again == path and len(builds) == 2 and (path / "read.bin").is_file()


def test_weights_digest_is_memoised(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return DIGEST

    assert cache.cached_weights_digest("seeded:v1-pm", compute, root=tmp_path) == DIGEST
    assert cache.cached_weights_digest("seeded:v1-pm", compute, root=tmp_path) == DIGEST
    assert len(calls) == 1
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"1")
    cache.cached_weights_digest(str(ckpt), lambda: "11" * 32, root=tmp_path)
    os.utime(ckpt, ns=(1, 1))  # a replaced checkpoint must not reuse the old digest
    assert cache.cached_weights_digest(str(ckpt), lambda: "22" * 32, root=tmp_path) == "22" * 32


# --------------------------------------------------------------------------------- concurrency


def _worker_fake(root: str, counter: str, queue) -> None:
    path = ensure(Path(root), lambda tmp: fake_build(tmp, delay=1.5, counter=Path(counter)))
    queue.put(str(path))


def test_two_processes_build_once(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    counter = tmp_path / "builds.txt"
    procs = [ctx.Process(target=_worker_fake, args=(str(tmp_path / "c"), str(counter), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    paths = {queue.get(timeout=5), queue.get(timeout=5)}
    assert len(paths) == 1
    assert len(counter.read_text().splitlines()) == 1, "the second process must wait and reuse, not rebuild"
    assert read_manifest(Path(paths.pop())).dims == DIMS


def _worker_export(root: str, queue) -> None:
    from matanyone_engine.exporters.onnx import OnnxExporter

    path = OnnxExporter().ensure("standin:v1", Dims(32, 48, 2), root=Path(root))
    queue.put(str(path))


def test_two_processes_export_the_same_key(tmp_path: Path) -> None:
    """Real ONNX export (stand-in modules) requested by two processes at once: one valid set."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    root = tmp_path / "c"
    procs = [ctx.Process(target=_worker_export, args=(str(root), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    paths = {queue.get(timeout=5), queue.get(timeout=5)}
    assert len(paths) == 1
    path = Path(paths.pop())
    sets = [p for p in (root / "onnx").iterdir() if p.is_dir()]
    assert sets == [path], f"exactly one artifact directory expected, found {sets}"
    manifest = read_manifest(path)
    assert manifest.validation["performed"] and all(m["passed"] for m in manifest.validation["modules"].values())

    import onnxruntime as ort

    for _name, file in manifest.files.items():
        ort.InferenceSession(str(path / file), providers=["CPUExecutionProvider"])
