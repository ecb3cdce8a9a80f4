"""`matanyone run` end to end on real and synthetic clips, and every bad input as one clean line."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import write_clip
from PIL import Image
from typer.testing import CliRunner

from matanyone_engine.core.cli import app

FAST = ["--warmup", "1", "--erode", "3", "--dilate", "3"]


def run_cli(*args: str):
    """`matanyone run` with seeded test weights unless the case names its own."""
    args = list(map(str, args))
    if "--weights" not in args:
        args += ["--weights", "seeded:v1-pm"]
    return CliRunner().invoke(app, ["run", *args])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".partial" in p.name) if folder.exists() else []


@pytest.fixture()
def clip(tmp_path):
    path = write_clip(tmp_path / "clip.mp4", frames=5, height=48, width=80)
    mask = np.zeros((48, 80), np.uint8)
    mask[10:40, 20:60] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return path, tmp_path / "mask.png"


def test_run_video_writes_16bit_alpha_per_frame(clip, tmp_path):
    video, mask = clip
    result = run_cli(video, "--mask", mask, "-o", tmp_path / "out", *FAST)
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "out" / "clip" / "alpha").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    image = Image.open(files[0])
    assert image.mode in ("I;16", "I") and image.size == (80, 48)
    assert stat.S_IMODE(os.stat(files[0]).st_mode) & 0o044  # readable by others, not a private temp file
    assert leftovers(tmp_path / "out") == []


def test_run_frame_folder_in_natural_order(clip, tmp_path):
    """frame2 comes before frame10 (natural order; by plain string order it would come after):
    each frame's colour codes its number, and the RGBA outputs carry the frames' colours."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for number in (10, 1, 2):
        image = np.full((48, 80, 3), (number * 20, 7, 200), dtype=np.uint8)
        Image.fromarray(image).save(frames / f"frame{number}.png")
    (frames / "notes.txt").write_text("ignored")
    result = run_cli(frames, "--mask", clip[1], "-o", tmp_path / "out", *FAST, "--outputs", "rgba")
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out" / "frames" / "rgba").iterdir())
    assert [p.name for p in written] == ["000000.png", "000001.png", "000002.png"]
    reds = [int(np.array(Image.open(p))[0, 0, 0]) for p in written]
    assert reds == [20, 40, 200]  # frame1, frame2, frame10


def test_real_clip_with_max_size(data_dir, tmp_path):
    result = run_cli(
        data_dir / "test-sample1.mp4",
        "--mask",
        data_dir / "test-sample1.png",
        "-o",
        tmp_path / "o",
        "--max-size",
        "64",
        "--frames",
        "3",
        "--warmup",
        "1",
        "--outputs",
        "alpha,rgba",
        "--output-size",
        "network",
    )
    assert result.exit_code == 0, result.output
    alpha = np.array(Image.open(tmp_path / "o" / "test-sample1" / "alpha" / "000002.png"))
    assert alpha.shape == (64, 113)
    rgba = Image.open(tmp_path / "o" / "test-sample1" / "rgba" / "000000.png")
    assert rgba.mode == "RGBA"


def _bad_cases(tmp_path: Path, clip: tuple[Path, Path]):
    video, mask = clip
    truncated = tmp_path / "truncated.mp4"
    data = video.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    not_image = tmp_path / "mask.txt"
    not_image.write_text("hello")
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((48, 80), np.uint8)).save(empty)
    white = tmp_path / "white.png"
    Image.fromarray(np.full((48, 80), 255, np.uint8)).save(white)
    wrong_aspect = tmp_path / "square.png"
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(wrong_aspect)
    bad_ckpt = tmp_path / "matanyone.pth"
    bad_ckpt.write_bytes(b"garbage")
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    # (arguments, the whole error line as a regular expression: the problem and the fix, exit code)
    return {
        "missing input": (
            [tmp_path / "nope.mp4", "--mask", mask],
            re.escape(f"error: input not found: {tmp_path / 'nope.mp4'}; check the path"),
            2,
        ),
        "truncated video": (
            [truncated, "--mask", mask],
            r"error: cannot decode truncated\.mp4 \(it is not a video PyAV can read: .+\): "
            r"re-encode it with ffmpeg -i truncated\.mp4 truncated-fixed\.mp4",
            2,
        ),
        "mask not an image": (
            [video, "--mask", not_image],
            re.escape(f"error: mask {not_image} is not an image (")
            + r".+"
            + re.escape("): pass a PNG/JPG with white foreground"),
            2,
        ),
        "empty mask": (
            [video, "--mask", empty],
            re.escape("error: mask is empty (no white pixels): paint the target white on a black background"),
            2,
        ),
        "all-white mask": (
            [video, "--mask", white],
            re.escape("error: mask covers the whole frame (no black background): paint only the target white"),
            2,
        ),
        "mask of another shape": (
            [video, "--mask", wrong_aspect],
            re.escape(
                "error: mask is 50x50 but frames are 48x80 (height x width): give a mask of the first frame's size"
            ),
            2,
        ),
        "corrupt checkpoint": (
            [video, "--mask", mask, "--weights", bad_ckpt],
            r"error: cannot read checkpoint matanyone\.pth \(.+\); "
            r"re-download the official matanyone\.pth or model\.safetensors",
            3,
        ),
        "unknown backend": (
            [video, "--mask", mask, "--backend", "nope"],
            r"error: unknown backend 'nope'; known backends: (\S+, )*torch(, \S+)* \(see `matanyone backends`\)",
            4,
        ),
        "unwritable output": (
            [video, "--mask", mask, "-o", a_file / "sub"],
            re.escape(
                f"error: cannot write to {a_file / 'sub'}: {a_file} is a file, not a folder; choose another -o folder"
            ),
            6,
        ),
    }


CASES = [
    "missing input",
    "truncated video",
    "mask not an image",
    "empty mask",
    "all-white mask",
    "mask of another shape",
    "corrupt checkpoint",
    "unknown backend",
    "unwritable output",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_nonzero_and_leaves_nothing(case, clip, tmp_path):
    args, expected, code = _bad_cases(tmp_path, clip)[case]
    out = tmp_path / "out"
    if "-o" not in args:
        args = [*args, "-o", out]
    result = run_cli(*args, *FAST)
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.output
    assert re.fullmatch(expected, lines[0]), lines[0]
    assert "Traceback" not in result.output
    assert leftovers(tmp_path) == [] and not out.exists()  # not even an empty -o folder


def test_mask_with_same_aspect_is_resized_with_a_warning(clip, tmp_path):
    video, _ = clip
    half = np.zeros((24, 40), np.uint8)
    half[5:20, 10:30] = 255
    Image.fromarray(half).save(tmp_path / "half.png")
    result = run_cli(video, "--mask", tmp_path / "half.png", "-o", tmp_path / "out", *FAST, "--frames", "2")
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "resized the mask to the frame size" in warned[0], result.output
    assert "UserWarning" not in result.output


def test_default_weights_offline_say_how_to_get_them(clip, tmp_path, monkeypatch):
    monkeypatch.setenv("MATANYONE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["run", str(clip[0]), "--mask", str(clip[1]), "-o", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "official MatAnyone checkpoint is not in" in result.output and "--weights" in result.output


def test_unavailable_backend_says_why(clip, tmp_path):
    from matanyone_engine.core import plugins

    unavailable = [n for n, b in plugins.backends().items() if not b.available()[0]]
    if not unavailable:
        pytest.skip("every registered backend runs on this machine")
    result = run_cli(clip[0], "--mask", clip[1], "-o", tmp_path / "out", "--backend", unavailable[0], *FAST)
    assert result.exit_code != 0
    assert f"backend {unavailable[0]} is unavailable here:" in result.output


def test_ctrl_c_mid_run_leaves_no_output(clip, tmp_path, monkeypatch):
    from matanyone_engine.core.engine import driver

    real = driver.matte_subjects

    def interrupted(*args, **kwargs):
        for i, frame in enumerate(real(*args, **kwargs)):
            if i == 2:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr("matanyone_engine.core.app.api.matte_subjects", interrupted)
    result = run_cli(clip[0], "--mask", clip[1], "-o", tmp_path / "out", *FAST, "--outputs", "alpha,foreground")
    assert result.exit_code == 130
    assert "interrupted" in result.output
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "out" / "clip").exists() and not (tmp_path / "out" / "clip_foreground.mp4").exists()


def test_fast_precision_and_pipeline_match_the_plain_run(clip, tmp_path, monkeypatch):
    """`--precision fast` says what it chose; where it chose fp32 (torch on a CPU without
    bfloat16 instructions) and with the encoder pipelined, the mattes equal the plain run's."""
    from matanyone_engine.core.engine import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    video, mask = clip
    plain = run_cli(video, "--mask", mask, "-o", tmp_path / "plain", "--backend", "torch", *FAST)
    fast = run_cli(
        video, "--mask", mask, "-o", tmp_path / "fast", "--backend", "torch", "--precision", "fast", "--pipeline", *FAST
    )
    assert plain.exit_code == 0 and fast.exit_code == 0, plain.output + fast.output
    assert "precision fast on torch: fp32 (this CPU has no bfloat16 instructions" in fast.output
    for name in [f"{i:06d}.png" for i in range(5)]:
        a = np.asarray(Image.open(tmp_path / "plain" / "clip" / "alpha" / name))
        b = np.asarray(Image.open(tmp_path / "fast" / "clip" / "alpha" / name))
        np.testing.assert_array_equal(a, b)
