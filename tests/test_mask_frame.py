"""A mask on any frame: --mask-frame K mattes K..end forwards and K..first backwards, every matte
written under its own input index; and the bad inputs of subjects and mask frames, each one line
before any model loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_clip
from PIL import Image
from typer.testing import CliRunner

from matanyone_engine.core.app import passes
from matanyone_engine.core.cli import app
from matanyone_engine.core.engine.errors import InputError
from matanyone_engine.core.engine.spec import MODULE_SPECS

FAST = ["--warmup", "1", "--erode", "3", "--dilate", "3", "--weights", "seeded:v1-pm", "--backend", "torch"]
H, W, N, K = 48, 80, 6, 3


def _run(*args) -> object:
    return CliRunner().invoke(app, ["run", *map(str, args)])


def _alphas(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.iterdir())]


@pytest.fixture()
def frame_folders(tmp_path):
    """The clip as PNG frames (lossless, so a reversed copy holds exactly the same frames), the
    frames K, K-1, ..., 0 as a second clip, and a mask drawn on frame K."""
    rng = np.random.default_rng(7)
    clip, reverse = tmp_path / "clip", tmp_path / "rev"
    clip.mkdir()
    reverse.mkdir()
    frames = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(N)]
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(clip / f"{i:03d}.png")
    for i, frame in enumerate(frames[K::-1]):
        Image.fromarray(frame).save(reverse / f"{i:03d}.png")
    mask = np.zeros((H, W), np.uint8)
    mask[10:40, 20:60] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return clip, reverse, tmp_path / "mask.png"


def test_mask_frame_matches_a_start_run_forwards_and_a_reversed_run_backwards(frame_folders, tmp_path):
    clip, reverse, mask = frame_folders
    out = tmp_path / "out"
    both = _run(clip, "--mask", mask, "--mask-frame", K, "-o", out / "both", *FAST)
    assert both.exit_code == 0, both.output
    started = _run(clip, "--mask", mask, "--start", K, "-o", out / "start", *FAST)
    reversed_run = _run(reverse, "--mask", mask, "-o", out / "reversed", *FAST)
    assert started.exit_code == 0 and reversed_run.exit_code == 0, started.output + reversed_run.output
    alpha = out / "both" / "clip" / "alpha"
    assert sorted(p.name for p in alpha.iterdir()) == [f"{i:06d}.png" for i in range(N)]  # one per input frame
    mine = _alphas(alpha)
    forward = _alphas(out / "start" / "clip" / "alpha")
    backward = _alphas(out / "reversed" / "rev" / "alpha")
    for i in range(K, N):
        np.testing.assert_array_equal(mine[i], forward[i - K])
    for i in range(K):
        np.testing.assert_array_equal(mine[i], backward[K - i])
    assert not any(p.name.startswith(".matanyone-scratch") for p in (out / "both").iterdir())


# --- the two-way pass with modules whose matte is their frame's brightness ------------------------


class _Brightness:
    """Modules whose alpha is the mean of the frame being matted, so a matte names its frame."""

    def __init__(self, dims):
        self.dims = dims

    def modules(self):
        return {name: self._make(name) for name in MODULE_SPECS}

    def _make(self, name):
        spec, shapes = MODULE_SPECS[name], MODULE_SPECS[name].output_shapes(self.dims)

        class Module:
            def __init__(self):
                self.spec = spec

            def __call__(self, **inputs):
                out = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
                if name == "encoder":
                    out["f1"] = inputs["image"].copy()
                if name == "decoder":
                    out["logits"][:] = inputs["f1"].mean()
                if "obj_summary" in out:
                    out["obj_summary"][..., -1] = 1.0
                return out

        return Module()


def test_both_ways_hands_every_frame_on_in_input_order_and_decodes_forwards_only(tmp_path):
    from matanyone_engine.core.engine.driver import clip_dims

    frames = [np.full((16, 32, 3), 10 * (i + 1), np.uint8) for i in range(8)]
    reads: list[tuple[int, int | None]] = []

    def read(first, count):
        reads.append((first, count))
        stop = None if count is None else first + count
        yield from frames[first:stop]

    dims, _ = clip_dims(16, 32, 3)
    mask = {"1": np.full((16, 32), 255.0, np.float32), "2": np.full((16, 32), 255.0, np.float32)}
    out = list(
        passes.both_ways(
            _Brightness(dims).modules(),
            read,
            mask,
            first=1,
            anchor=4,
            count=6,
            scratch_dir=tmp_path,
            warmup=1,
            mem_frames=3,
        )
    )
    assert [m.position for m in out] == list(range(6))  # input frames 1..6
    for item in out:
        expected = np.float32(10 * (item.position + 2)) / np.float32(255.0)
        np.testing.assert_array_equal(item.frame, frames[item.position + 1])
        for alpha in item.alphas.values():
            np.testing.assert_allclose(alpha, expected, rtol=1e-6)
    assert reads == [(1, 4), (4, 3)]  # frames 1..4 once into the scratch store, then 4.. forwards
    assert list(tmp_path.iterdir()) == []  # the scratch folder is gone


def test_both_ways_on_a_clip_shorter_than_its_estimate_is_one_clear_error(tmp_path):
    from matanyone_engine.core.engine.driver import clip_dims

    dims, _ = clip_dims(16, 32, 3)
    frames = [np.full((16, 32, 3), 50, np.uint8)] * 3
    matted = passes.both_ways(
        _Brightness(dims).modules(),
        lambda first, count: iter(frames[first:]),
        {"1": np.full((16, 32), 255.0, np.float32)},
        first=0,
        anchor=5,
        count=None,
        scratch_dir=tmp_path,
        mem_frames=3,
    )
    with pytest.raises(InputError, match="only 3 frames, so --mask-frame 5 is outside the clip"):
        list(matted)
    assert list(tmp_path.iterdir()) == []


# --- bad input: one line, before any model loads ---------------------------------------------------


def _bad_cases(tmp_path: Path):
    clip = write_clip(tmp_path / "clip.mp4", frames=5, height=H, width=W)
    a = tmp_path / "a.png"
    mask = np.zeros((H, W), np.uint8)
    mask[10:40, 20:60] = 255
    Image.fromarray(mask).save(a)
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((H, W), np.uint8)).save(empty)
    small = tmp_path / "small.png"
    Image.fromarray(mask[::2, ::2]).save(small)
    labels = tmp_path / "labels.png"
    palette = Image.fromarray((mask // 255) * 2, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (253 * 3))
    palette.save(labels)
    return clip, {
        "subject not in label image": (["--mask", labels, "--subjects", "1"], "subject 1 is not in label image"),
        "masks of different sizes": (["--mask", a, "--mask", small], "masks differ in size"),
        "mask frame outside the clip": (["--mask", a, "--mask-frame", "9"], "--mask-frame 9 is outside the clip"),
        "mask frame before start": (["--mask", a, "--start", "2", "--mask-frame", "1"], "is before --start 2"),
        "mask frame after the frames": (["--mask", a, "--frames", "2", "--mask-frame", "3"], "after the last frame"),
        "empty subject mask": (["--mask", a, "--mask", empty], "subject 2 (empty.png): mask is empty"),
        "union of one subject": (["--mask", a, "--union"], "--union needs two or more subjects"),
        "box with several masks": (["--mask", a, "--mask", a, "--mask-box", "1,1,10,10"], "one --mask per subject"),
    }


CASES = [
    "subject not in label image",
    "masks of different sizes",
    "mask frame outside the clip",
    "mask frame before start",
    "mask frame after the frames",
    "empty subject mask",
    "union of one subject",
    "box with several masks",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_subjects_and_mask_frames_fail_in_one_line_before_the_model_loads(case, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("matanyone_engine.core.app.api.load_modules", never)
    clip, cases = _bad_cases(tmp_path)
    args, expected = cases[case]
    out = tmp_path / "out"
    result = _run(clip, *args, "-o", out, *FAST)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], result.output
    assert "Traceback" not in result.output
    if out.exists():
        assert not (out / "clip").exists() and not list(out.glob("*.mp4")), list(out.iterdir())


def test_a_box_mask_is_made_from_the_mask_frame(tmp_path, monkeypatch):
    from matanyone_engine.core.media import mask_providers

    seen = {}

    def capture(input, **kwargs):
        seen.update(kwargs)
        raise InputError("stop here")

    monkeypatch.setattr(mask_providers, "first_frame_mask", capture)
    clip = write_clip(tmp_path / "clip.mp4", frames=5, height=H, width=W)
    result = _run(clip, "--mask-box", "10,10,30,20", "--start", "1", "--mask-frame", "3", "-o", tmp_path / "o", *FAST)
    assert result.exit_code == 2 and "stop here" in result.output
    assert seen["start"] == 3 and seen["mask_box"] == "10,10,30,20"


def test_sample_clip_mask_on_a_later_frame(data_dir, tmp_path):
    """On the MatAnyone sample (video input, --max-size): one alpha per input frame, frames from K
    equal a --start K run, frames before K a run over the decoded frames K..0."""
    from matanyone_engine.core.media import video

    clip, mask = data_dir / "test-sample1.mp4", data_dir / "test-sample1.png"
    frames, k = 4, 2
    reverse = tmp_path / "rev"
    reverse.mkdir()
    for i, frame in enumerate(list(video.iter_frames(clip, count=k + 1))[::-1]):
        Image.fromarray(frame).save(reverse / f"{i:03d}.png")
    common = ["--mask", mask, "--max-size", "64", *FAST]
    runs = {
        "both": [clip, "--frames", frames, "--mask-frame", k],
        "start": [clip, "--start", k, "--frames", frames - k],
        "reversed": [reverse],
    }
    for name, args in runs.items():
        result = _run(*args, *common, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
    mine = _alphas(tmp_path / "both" / "test-sample1" / "alpha")
    assert len(mine) == frames
    forward = _alphas(tmp_path / "start" / "test-sample1" / "alpha")
    backward = _alphas(tmp_path / "reversed" / "rev" / "alpha")
    for i in range(k, frames):
        np.testing.assert_array_equal(mine[i], forward[i - k])
    for i in range(k):
        np.testing.assert_array_equal(mine[i], backward[k - i])
