"""`matanyone batch`: four small generated clips (one broken) through a real local Ray and the
local executor, compared with what `matanyone run` writes for each; resume records; the
manifest forms; checks before anything runs; a worker killed and a Ctrl-C in the middle.

Sizes are tiny (48x64, 3 frames, --warmup 0, seeded weights, torch) to keep the suite quick.
Both sides of every alpha comparison run with --threads 1: a different thread count changes the
order of float sums and can move the last bit of a 16-bit alpha.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_clip
from PIL import Image
from typer.testing import CliRunner

from matanyone_engine.core.cli import app

H, W = 48, 64
CLIP = ["--weights", "seeded:v1-pm", "--backend", "torch", "--warmup", "0", "--threads", "1"]
GOOD = ("a", "b", "c")


def _mask() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[10:40, 16:48] = 255
    return mask


def make_source(folder: Path, frames: dict[str, int] | None = None, broken: str | None = "d") -> Path:
    """A folder of clips with masks beside them; ``broken`` is cut to a third of its bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    names = dict(frames or dict.fromkeys(GOOD, 3))
    if broken:
        names[broken] = 3
    for name, count in names.items():
        write_clip(folder / f"{name}.mp4", frames=count, height=H, width=W)
        Image.fromarray(_mask()).save(folder / f"{name}.png")
    if broken:
        data = (folder / f"{broken}.mp4").read_bytes()
        (folder / f"{broken}.mp4").write_bytes(data[: len(data) // 3])
    return folder


def alpha_frames(folder: Path) -> list[np.ndarray]:
    files = sorted(folder.iterdir())
    assert files, f"no frames in {folder}"
    return [np.asarray(Image.open(f)) for f in files]


def partials(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if ".partial" in p.name) if folder.exists() else []


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def report_of(outdir: Path) -> dict:
    return json.loads((outdir / "batch-report.json").read_text())


def statuses(report: dict) -> dict[str, str]:
    return {clip["name"]: clip["status"] for clip in report["clips"]}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_source(tmp_path_factory.mktemp("batch") / "src")


@pytest.fixture(scope="module")
def run_alpha(source: Path, tmp_path_factory) -> dict[str, list[np.ndarray]]:
    """What `matanyone run` writes for each good clip."""
    out = tmp_path_factory.mktemp("run")
    for name in GOOD:
        result = cli("run", source / f"{name}.mp4", "--mask", source / f"{name}.png", "-o", out, *CLIP)
        assert result.exit_code == 0, result.output
    return {name: alpha_frames(out / name / "alpha") for name in GOOD}


def assert_same_as_run(outdir: Path, run_alpha: dict[str, list[np.ndarray]]) -> None:
    for name, expected in run_alpha.items():
        got = alpha_frames(outdir / name / "alpha")
        assert len(got) == len(expected)
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b), f"{name}: batch alpha differs from `run`"


def assert_three_done_one_failed(report: dict) -> None:
    assert statuses(report) == {"a": "done", "b": "done", "c": "done", "d": "failed"}
    broken = next(c for c in report["clips"] if c["name"] == "d")
    assert "d.mp4" in broken["error"] and "\n" not in broken["error"]
    for clip in report["clips"]:
        if clip["status"] == "done":
            assert clip["frames"] == 3 and clip["seconds"] > 0 and clip["fps"] > 0
            assert clip["backend"] == "torch" and clip["precision"] == "fp32"
    assert report["counts"] == {"done": 3, "skipped": 0, "failed": 1, "cancelled": 0}


def test_ray_batch_matches_run_records_the_broken_clip_and_resumes(source, run_alpha, tmp_path):
    """Four clips, one broken, as Ray tasks two at a time on a local Ray the command starts."""
    pytest.importorskip("ray")
    out = tmp_path / "out"
    result = cli("batch", source, "-o", out, "--executor", "ray", "--jobs", "2", *CLIP, "--set", "mem_every=5")
    assert result.exit_code == 1, result.output
    assert "local Ray instance (2 clips at a time)" in result.output
    report = report_of(out)
    assert report["executor"] == "ray"
    assert_three_done_one_failed(report)
    assert_same_as_run(out, run_alpha)
    assert sorted(p.name for p in (out / ".matanyone-batch").iterdir()) == ["a.json", "b.json", "c.json"]
    assert partials(out) == [] and not (out / "d").exists()

    import ray

    assert not ray.is_initialized(), "the batch stops the Ray instance it started"

    # the rerun, as a JSON Lines manifest of the same clips: the same jobs, so the three are skipped
    manifest = source.parent / "clips.jsonl"
    rows = [{"input": f"src/{n}.mp4", "mask": f"src/{n}.png", "mem_every": 5} for n in ("a", "b", "c", "d")]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    again = cli("batch", manifest, "-o", out, "--executor", "ray", "--jobs", "2", *CLIP)
    assert again.exit_code == 1, again.output
    assert statuses(report_of(out)) == {"a": "skipped", "b": "skipped", "c": "skipped", "d": "failed"}
    assert_same_as_run(out, run_alpha)


def test_manifest_with_local_workers_gives_the_same(source, run_alpha, tmp_path):
    """A CSV manifest (relative paths, a per-row option) through two local worker processes."""
    rows = ["input,mask,erode", *(f"src/{n}.mp4,src/{n}.png,10" for n in ("a", "b", "c", "d"))]
    manifest = source.parent / "clips.csv"
    manifest.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = cli("batch", manifest, "-o", out, "--jobs", "2", *CLIP)
    assert result.exit_code == 1, result.output
    report = report_of(out)
    assert report["executor"] == "local"
    assert_three_done_one_failed(report)
    assert_same_as_run(out, run_alpha)
    assert partials(out) == []


def test_jsonl_and_csv_manifests_and_the_folder_plan_the_same_jobs(source):
    from matanyone_engine.core.app.batch.plan import plan_jobs

    csv_file = source.parent / "same.csv"
    csv_file.write_text('input,mask,max_size,outputs\nsrc/a.mp4,src/a.png,32,"alpha,rgba"\n')
    jsonl = source.parent / "same.jsonl"
    jsonl.write_text(
        json.dumps({"input": "src/a.mp4", "mask": "src/a.png", "max-size": 32, "outputs": ["alpha", "rgba"]})
    )
    from_csv, from_jsonl = plan_jobs(csv_file, "/tmp/o", {}), plan_jobs(jsonl, "/tmp/o", {})
    assert [j.to_json() for j in from_csv] == [j.to_json() for j in from_jsonl]
    assert from_csv[0].options == {"mask": str(source / "a.png"), "max_size": 32, "outputs": ["alpha", "rgba"]}
    folder = plan_jobs(source, source / "out", {"max_size": 32})
    assert [j.name for j in folder] == ["a", "b", "c", "d"]
    assert folder[0].options == {"max_size": 32, "mask": str(source / "a.png")}


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ("input,mask,colour\nsrc/a.mp4,src/a.png,red\n", "clips.csv line 2: unknown option 'colour'"),
        (
            "input,mask,max_size\nsrc/a.mp4,src/a.png,32\nsrc/b.mp4,src/b.png,big\n",
            "clips.csv line 3: --max-size must be a whole number, got 'big'",
        ),
        ("input,mask\nsrc/a.mp4,src/a.png\nsrc/missing.mp4,src/a.png\n", "clips.csv line 3: input not found"),
        ("input,mask\nsrc/a.mp4,src/nomask.png\n", "clips.csv line 2: mask not found"),
        ("input,mask,outputs\nsrc/a.mp4,src/a.png,alpha,rgba\n", "clips.csv line 2: more cells than the header"),
        ("input,mask,backend\nsrc/a.mp4,src/a.png,nope\n", "clips.csv line 2: unknown backend 'nope'"),
        (
            "input,mask\nsrc/a.mp4,src/a.png\nsrc/a.mp4,src/b.png\n",
            "clips.csv line 2 and clips.csv line 3 would both write",
        ),
        ("mask\nsrc/a.png\n", "no 'input' column"),
    ],
)
def test_a_bad_manifest_stops_before_anything_runs(source, tmp_path, rows, expected):
    manifest = source.parent / "clips.csv"
    manifest.write_text(rows)
    out = tmp_path / "out"
    result = cli("batch", manifest, "-o", out, *CLIP)
    assert result.exit_code in (2, 4), result.output  # InputError, or BackendError for the backend
    assert expected in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists(), "a refused batch leaves no OUTDIR"


def test_bad_batch_options_are_one_line(source, tmp_path):
    out = tmp_path / "out"
    for args, expected in [
        (["--executor", "spark"], "unknown executor 'spark'"),
        (["--max-size", "x"], "Invalid value for '--max-size'"),
        (["--set", "mem_frames=lots"], "batch option: --mem-frames must be a whole number"),
        (["--set", "nonsense"], "bad --set 'nonsense'"),
        (["--gpus-per-clip", "1"], "--gpus-per-clip is a Ray resource request"),
    ]:
        result = cli("batch", source, "-o", out, *CLIP, *args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output, (args, result.output)
    assert not out.exists()
    into_source = cli("batch", source, "-o", source, *CLIP)
    assert into_source.exit_code == 2 and "is the source folder" in into_source.output


def test_ray_executor_without_ray_says_how_to_install(source, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = cli("batch", source, "-o", tmp_path / "out", "--executor", "ray", *CLIP)
    assert result.exit_code == 2
    assert "pip install 'matanyone-engine[ray]'" in result.output
    assert not (tmp_path / "out").exists()


def test_resume_fingerprint_follows_input_mask_and_options(tmp_path):
    from matanyone_engine.core.app.batch.plan import ClipJob
    from matanyone_engine.core.app.batch.record import fingerprint

    src = make_source(tmp_path / "src", frames={"a": 3}, broken=None)

    def job(**options) -> ClipJob:
        return ClipJob("a", src / "a.mp4", tmp_path / "out", {"mask": str(src / "a.png"), **options}, "t")

    base = fingerprint(job(max_size=32))
    assert fingerprint(job(max_size=32)) == base
    assert fingerprint(job(max_size=32, threads=1, pipeline=False)) == base, "speed-only options do not redo"
    assert fingerprint(job(max_size=32, warmup=10)) == base, "an option spelled at its default is the same job"
    assert fingerprint(job(max_size=24)) != base
    clip, stat = src / "a.mp4", (src / "a.mp4").stat()
    data = bytearray(clip.read_bytes())
    data[-1] ^= 0xFF  # same size, same modification time, other content
    clip.write_bytes(bytes(data))
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint(job(max_size=32)) != base
    changed = fingerprint(job(max_size=32))
    mask = np.asarray(Image.open(src / "a.png")).copy()
    mask[0, 0] = 255
    Image.fromarray(mask).save(src / "a.png")
    assert fingerprint(job(max_size=32)) != changed


def test_a_record_counts_only_with_its_outputs_in_place(tmp_path):
    from matanyone_engine.core.app.batch.plan import ClipJob
    from matanyone_engine.core.app.batch.record import completed, write_record

    out = tmp_path / "out"
    (out / "a" / "alpha").mkdir(parents=True)
    job = ClipJob("a", tmp_path / "a.mp4", out, {}, "t", key="a")
    write_record(out, job, "f1", {"frames": 3, "outputs": [str(out / "a" / "alpha")]})
    assert completed(out, job, "f1")["frames"] == 3
    assert completed(out, job, "f2") is None, "another fingerprint: inputs or options changed"
    (out / "a" / "alpha").rmdir()
    assert completed(out, job, "f1") is None, "an output was deleted"
    (out / ".matanyone-batch" / "a.json").write_text("{half")
    assert completed(out, job, "f1") is None


def test_python_api_returns_the_report_and_force_redoes(tmp_path):
    from matanyone_engine.core.api import batch

    src = make_source(tmp_path / "src", frames={"a": 3}, broken=None)
    options = {"weights": "seeded:v1-pm", "backend": "torch", "warmup": 0}
    first = batch(src, tmp_path / "out", **options)
    assert [(c.name, c.status, c.frames) for c in first.clips] == [("a", "done", 3)] and first.exit_code == 0
    assert report_of(tmp_path / "out") == first.to_dict()
    record = tmp_path / "out" / ".matanyone-batch" / "a.json"
    written = record.stat().st_mtime_ns
    forced = batch(src, tmp_path / "out", force=True, **options)
    assert [c.status for c in forced.clips] == ["done"] and record.stat().st_mtime_ns > written


def _workers(pid: int) -> list:
    import psutil

    try:
        return [p for p in psutil.Process(pid).children() if "batch.worker" in " ".join(p.cmdline())]
    except psutil.Error:
        return []


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_worker_and_ctrl_c_leave_no_partial_output_and_the_rerun_resumes(tmp_path):
    """Clip a's worker is killed (as the OOM killer would), b finishes, Ctrl-C arrives while c is
    writing: a failed, b kept, c cancelled with nothing of it left; the rerun does a and c only."""
    pytest.importorskip("psutil")
    src = make_source(tmp_path / "src", frames={"a": 3, "b": 3, "c": 24}, broken=None)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "matanyone_engine.core.cli", "batch", str(src), "-o", str(out), *CLIP]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        first = _wait_for(lambda: _workers(proc.pid), 60, "the first worker")[0]
        first.kill()
        _wait_for(lambda: (out / ".matanyone-batch" / "b.json").exists(), 90, "clip b to finish")
        _wait_for(
            lambda: list((out / "c").glob(".alpha.partial-*")) if (out / "c").is_dir() else [],
            90,
            "clip c to be writing",
        )
        worker_pids = [p.pid for p in _workers(proc.pid)]
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C at the terminal sends
        output = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "rerun the same command to resume" in output
    report = report_of(out)
    assert report["interrupted"] is True
    assert statuses(report) == {"a": "failed", "b": "done", "c": "cancelled"}
    assert "killed by SIGKILL" in next(c for c in report["clips"] if c["name"] == "a")["error"]
    assert partials(out) == []
    assert not (out / "a").exists() and not (out / "c").exists()
    assert len(alpha_frames(out / "b" / "alpha")) == 3
    import psutil

    assert not [pid for pid in worker_pids if psutil.pid_exists(pid)], "the batch waits for its workers"

    again = cli("batch", src, "-o", out, *CLIP)
    assert again.exit_code == 0, again.output
    assert statuses(report_of(out)) == {"a": "done", "b": "skipped", "c": "done"}
    assert len(alpha_frames(out / "c" / "alpha")) == 24


@pytest.mark.slow
def test_ray_clips_share_one_onnx_export_per_node(tmp_path, monkeypatch):
    """Two clips of one size on two Ray workers at once: the artifact cache's lock lets one
    export and the other wait and reuse it, so the node holds one ONNX set."""
    pytest.importorskip("ray")
    pytest.importorskip("onnxruntime")
    cache = tmp_path / "cache"
    monkeypatch.setenv("MATANYONE_CACHE", str(cache))  # the local Ray workers inherit it
    src = make_source(tmp_path / "src", frames={"a": 3, "b": 3}, broken=None)
    args = ["--weights", "seeded:v1-pm", "--backend", "onnx-cpu", "--warmup", "0"]
    result = cli("batch", src, "-o", tmp_path / "out", "--executor", "ray", "--jobs", "2", *args)
    assert result.exit_code == 0, result.output
    assert statuses(report_of(tmp_path / "out")) == {"a": "done", "b": "done"}
    sets = [p for p in (cache / "onnx").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(sets) == 1 and (sets[0] / "manifest.json").is_file()
