"""Every way a run can end leaves complete outputs or none (docs/inputs.md, "How a run ends").

Signals are sent to a real ``matanyone run`` in a subprocess, mid-run; option errors, missing
inputs and a full disk are driven through the CLI as a user meets them.
"""

from __future__ import annotations

import os
import resource
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

from matanyone_engine.core.app import interrupts
from matanyone_engine.core.engine.errors import OptionError
from matanyone_engine.core.media import staging

FAST = ["--warmup", "1", "--erode", "3", "--dilate", "3", "--weights", "seeded:v1-pm", "--backend", "torch"]
POSIX_ONLY = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
#: How long a subprocess may take to get going on this shared 2-core machine.
STARTUP_S = 180


def run_cli(*args: object):
    from matanyone_engine.core.cli import app

    return CliRunner().invoke(app, ["run", *map(str, args)])


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def staged_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*")) if folder.exists() else []


@pytest.fixture()
def long_clip(tmp_path):
    """Long enough that a run is still busy when the test signals it, small enough to make fast."""
    clip = write_clip(tmp_path / "clip.mp4", frames=400, height=32, width=48)
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 12:36] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return clip, tmp_path / "mask.png"


def start_run(clip: Path, mask: Path, out: Path, *extra: str, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "matanyone_engine.core.cli", "run", str(clip), "--mask", str(mask)]
    command += ["-o", str(out), "--outputs", "alpha,foreground", *FAST, *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_until(condition, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + STARTUP_S
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run ended (rc {process.returncode}) before {what}: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} within {STARTUP_S} s")
        time.sleep(0.05)


def writing(out: Path) -> bool:
    """The run is mid-way: its staged outputs exist and hold frames."""
    partials = list(out.rglob(".*partial-*")) if out.exists() else []
    return any(p.is_dir() and any(p.iterdir()) for p in partials)


# --- signals ----------------------------------------------------------------------------------------


@POSIX_ONLY
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_signal_mid_run_ends_like_ctrl_c(signum, long_clip, tmp_path):
    clip, mask = long_clip
    out = tmp_path / "out"
    process = start_run(clip, mask, out)
    wait_until(lambda: writing(out), process, "staged frames")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    (line,) = error_lines(stderr)
    name = "Ctrl-C" if signum == signal.SIGINT else signum.name
    assert line == f"error: interrupted ({name}); no output was written", stderr
    assert "Traceback" not in stderr
    assert not out.exists(), sorted(str(p) for p in out.rglob("*"))  # no outputs, no staging, no empty folder


@POSIX_ONLY
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches /proc/PID/maps to catch start-up")
def test_ctrl_c_during_start_up_is_one_line(long_clip, tmp_path):
    """SIGINT while the command is still importing its modules: once PyAV's library is mapped the
    console script has installed its handlers (it imports PyAV only after), and the run has not begun."""
    clip, mask = long_clip
    out = tmp_path / "out"
    process = start_run(clip, mask, out)
    maps = Path(f"/proc/{process.pid}/maps")

    def importing() -> bool:
        try:
            return f"{os.sep}av{os.sep}" in maps.read_text()
        except OSError:
            return False

    wait_until(importing, process, "start-up")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and len(error_lines(stderr)) == 1, stderr
    assert "interrupted (Ctrl-C)" in stderr
    assert not out.exists()


def test_signal_handler_raises_once_and_restores(monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(interrupts.Interrupted) as excinfo:
        with interrupts.signals_as_interrupts():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # a second one during the clean-up is ignored
                time.sleep(0.05)
    assert excinfo.value.exit_code == 143 and isinstance(excinfo.value, KeyboardInterrupt)
    assert interrupts.describe(excinfo.value) == "interrupted (SIGTERM)"
    assert signal.getsignal(signal.SIGTERM) == before
    assert interrupts.exit_code(KeyboardInterrupt()) == 130


def test_ignored_signal_stays_ignored():
    """Under nohup SIGHUP is ignored on purpose; the run must not start reacting to it."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with interrupts.signals_as_interrupts():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


# --- leftovers of killed runs ---------------------------------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@POSIX_ONLY
def test_sigkill_leftovers_are_removed_by_the_next_run(long_clip, tmp_path):
    clip, mask = long_clip
    out = tmp_path / "out"
    process = start_run(clip, mask, out)
    wait_until(lambda: writing(out), process, "staged frames")
    process.kill()
    process.wait(timeout=60)
    left = staged_entries(out)
    assert any(".partial-" in name for name in left), left  # the premise: SIGKILL leaves debris
    # Beside it: a user's own dot file, and staging of a run that is still alive (this process).
    (out / ".notes.partial-mine").write_text("mine")
    alive = staging.staged_name(out / "clip_alpha.mp4", "partial", ".mp4")
    alive.write_bytes(b"another run is writing this")
    result = run_cli(clip, "--mask", mask, "-o", out, "--outputs", "alpha,foreground", "--frames", "3", *FAST)
    assert result.exit_code == 0, result.output
    assert "warning: cleaned up after an interrupted earlier run" in result.output
    assert staged_entries(out) == sorted([".notes.partial-mine", alive.name])
    assert len(list((out / "clip" / "alpha").iterdir())) == 3 and (out / "clip_foreground.mp4").is_file()


def test_remove_leftovers_touches_only_dead_staging(tmp_path):
    pid = dead_pid()
    host = staging._host_tag()
    files = {
        f".clip_foreground.mp4.partial-{host}-{pid}-0123abcd.mp4": "removed",
        f".alpha.partial-{host}-{pid}-89abcdef": "removed",  # a staged PNG folder
        f".matanyone-write-test-{host}-{pid}-00ff00ff": "removed",
        ".clip_alpha.mp4.partial-k3j_9xq2.mp4": "removed",  # the format of earlier versions
        f".clip_foreground.mp4.partial-{'f' * 8}-{pid}-0123abcd.mp4": "kept",  # another host's: cannot tell
        f".clip_foreground.mp4.partial-{host}-{os.getpid()}-0123abcd.mp4": "kept",  # a live run's
        ".bashrc.partial": "kept",
        ".notes.partial-my-draft": "kept",
        "clip_foreground.mp4": "kept",
    }
    (tmp_path / f".alpha.partial-{host}-{pid}-89abcdef").mkdir()
    (tmp_path / f".alpha.partial-{host}-{pid}-89abcdef" / "000000.png").write_bytes(b"png")
    for name in files:
        if not (tmp_path / name).exists():
            (tmp_path / name).write_text(name)
    # A set-aside earlier output whose replacement never arrived comes back; one whose did is dropped.
    (tmp_path / f".rgba.old-{host}-{pid}-11111111").mkdir()
    (tmp_path / f".clip_foreground.mp4.old-{host}-{pid}-22222222").write_text("superseded")
    done = staging.remove_leftovers(tmp_path)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted([n for n, fate in files.items() if fate == "kept"] + ["rgba"])
    assert len(done) == 6 and any(line.startswith("restored rgba") for line in done)


# --- options, missing inputs, full disks --------------------------------------------------------------


BAD_OPTIONS = [
    (["--start", "-1"], "--start must be 0 or more"),
    (["--frames", "-1"], "--frames must be 1 or more"),
    (["--frames", "0"], "--frames must be 1 or more"),
    (["--erode", "-1"], "--erode must be 0 or more"),
    (["--dilate", "-2"], "--dilate must be 0 or more"),
    (["--warmup", "-1"], "--warmup must be 0 or more"),
    (["--max-size", "8"], "--max-size 8 is too small"),
    (["--threads", "0"], "--threads must be 1 or more"),
    (["--outputs", "alpha,mask"], "unknown output 'mask'"),
    (["--alpha-format", "exr"], "'exr' is not one of"),
    (["--precision", "fp8"], "'fp8' is not one of"),
    (["--frames", "ten"], "Invalid value for '--frames'"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_is_one_line_exit_2_before_anything_loads(args, expected, tmp_path, monkeypatch):
    """The input does not even exist: the option error comes first, so nothing was probed or loaded."""

    def must_not_run(*a, **k):
        raise AssertionError("loaded before the options were checked")

    monkeypatch.setattr("matanyone_engine.core.app.api.load_modules", must_not_run)
    out = tmp_path / "out"
    result = run_cli(tmp_path / "missing.mp4", "--mask", tmp_path / "missing.png", "-o", out, *FAST, *args)
    assert result.exit_code == 2, result.output
    (line,) = error_lines(result.output)
    assert expected in line, line
    assert "Traceback" not in result.output and "Usage:" not in result.output
    assert not out.exists()


def test_api_checks_options_before_probing(tmp_path):
    from matanyone_engine.core.api import convert_video, matte

    with pytest.raises(OptionError, match="--start must be 0 or more"):
        matte(tmp_path / "missing.mp4", tmp_path / "missing.png", start=-1)
    with pytest.raises(OptionError, match="--frames must be 1 or more"):
        convert_video(tmp_path / "missing.mp4", tmp_path / "missing.png", tmp_path / "out", frames=-5)
    with pytest.raises(OptionError, match="unknown --alpha-format"):
        convert_video(tmp_path / "missing.mp4", tmp_path / "missing.png", tmp_path / "out", alpha_format="tiff")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["missing input", "bad weights", "empty mask"])
def test_run_that_never_started_leaves_no_output_folder(case, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=2, height=32, width=48)
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 12:36] = 255 if case != "empty mask" else 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    args = [clip, "--mask", tmp_path / "mask.png", *FAST]
    if case == "missing input":
        args[0] = tmp_path / "nope.mp4"
    if case == "bad weights":
        (tmp_path / "broken.pth").write_bytes(b"garbage")
        args += ["--weights", tmp_path / "broken.pth"]
    out = tmp_path / "results" / "today"
    result = run_cli(*args, "-o", out)
    assert result.exit_code not in (0, None) and len(error_lines(result.output)) == 1, result.output
    assert not (tmp_path / "results").exists()


@POSIX_ONLY
@pytest.mark.parametrize("outputs", ["rgba", "foreground"])
def test_full_disk_is_one_clean_line(outputs, tmp_path):
    """Writes past a file-size limit fail like a full disk (EFBIG instead of ENOSPC); OpenCV's
    libpng used to print 'libpng error: Write Error' to stderr before the clean message."""
    clip = write_clip(tmp_path / "noise.mp4", frames=4, height=96, width=128, noise=True)
    mask = np.zeros((96, 128), np.uint8)
    mask[20:70, 30:90] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "matanyone_engine.core.cli",
        "run",
        str(clip),
        "--mask",
        str(tmp_path / "mask.png"),
    ]
    command += ["-o", str(out), "--outputs", outputs, *FAST]
    limit = 16_000  # below one 96x128 RGBA noise PNG; Python ignores SIGXFSZ, so writes fail with EFBIG

    def cap_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(command, capture_output=True, text=True, timeout=600, preexec_fn=cap_file_size)
    assert result.returncode == 6, result.stderr
    assert "libpng" not in result.stderr and "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert "File too large" in line and "free some space" in line and ".partial" not in line, line
    assert [ln for ln in result.stderr.splitlines() if ln.strip()] == [line], result.stderr
    assert not out.exists()
