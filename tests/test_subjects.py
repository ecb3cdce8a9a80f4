"""Several subjects: reading them (mask files, palette and gray label images, --subjects), the
driver's one state machine per subject over one shared encoder run, and the per-subject outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_clip
from PIL import Image
from typer.testing import CliRunner

from matanyone_engine.core.cli import app
from matanyone_engine.core.engine.driver import matte_frames, matte_subjects
from matanyone_engine.core.engine.errors import InputError
from matanyone_engine.core.media.subjects import (
    is_label_image,
    parse_subject_ids,
    read_label_image,
    resolve_subjects,
)

FAST = ["--warmup", "1", "--erode", "3", "--dilate", "3", "--weights", "seeded:v1-pm", "--backend", "torch"]
H, W = 48, 80


def _labels() -> np.ndarray:
    labels = np.zeros((H, W), np.uint8)
    labels[8:40, 6:30] = 1
    labels[10:44, 44:70] = 3
    return labels


def _save_palette(path: Path, labels: np.ndarray) -> Path:
    image = Image.fromarray(labels, mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (252 * 3))
    image.save(path)
    return path


def _subject_files(tmp_path: Path) -> tuple[Path, Path]:
    labels = _labels()
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.where(labels == 1, 255, 0).astype(np.uint8)).save(a)
    Image.fromarray(np.where(labels == 3, 255, 0).astype(np.uint8)).save(b)
    return a, b


# --- reading ------------------------------------------------------------------------------------


def test_palette_label_image_is_read_by_index_and_split_by_id(tmp_path):
    path = _save_palette(tmp_path / "labels.png", _labels())
    assert is_label_image(path)
    table = read_label_image(path)
    assert list(table) == [1, 3]
    np.testing.assert_array_equal(table[3] == 255, _labels() == 3)
    assert set(np.unique(table[1])) == {0, 255}
    chosen = resolve_subjects(path)
    assert chosen.names == ["1", "3"] and chosen.named
    assert chosen.where("3") == "subject 3 (id 3 of labels.png)"


def test_gray_label_image_needs_subjects_and_a_plain_mask_stays_one_unnamed_subject(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(_labels()).save(gray)
    plain = resolve_subjects(gray)  # gray without --subjects: an ordinary mask (non-zero = foreground)
    assert plain.names == ["1"] and not plain.named
    # read as one mask: foreground = every non-zero label (docs/inputs.md)
    np.testing.assert_array_equal(plain.masks["1"], np.where(_labels() != 0, 255, 0).astype(np.uint8))
    picked = resolve_subjects(gray, "3")
    assert picked.names == ["3"] and picked.named
    np.testing.assert_array_equal(picked.masks["3"] == 255, _labels() == 3)
    assert resolve_subjects(gray, "all").names == ["1", "3"]
    # a palette PNG with one non-zero index is the official repo's plain mask, not a label image
    single = _save_palette(tmp_path / "single.png", np.where(_labels() > 0, 255, 0).astype(np.uint8))
    assert not is_label_image(single) and not resolve_subjects(single).named


def test_several_masks_are_subjects_by_position(tmp_path):
    a, b = _subject_files(tmp_path)
    both = resolve_subjects([a, b])
    assert both.names == ["1", "2"] and both.sources == {"1": "a.png", "2": "b.png"}
    assert resolve_subjects([a, b], [2]).names == ["2"]
    named = resolve_subjects({"left": a, "right": b})
    assert named.names == ["left", "right"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("absent id", "subject 2 is not in label image labels.png (its ids are 1, 3)"),
        ("absent position", "subject 3 does not exist: 2 masks were given"),
        ("sizes differ", "masks differ in size: a.png is 48x80 but small.png is 24x40"),
        ("bad ids", "bad --subjects"),
        ("rgb label image", "label image rgb.png is RGB"),
        ("bad name", "cannot name an output folder"),
    ],
)
def test_bad_subjects_are_one_line_errors(case, expected, tmp_path):
    a, b = _subject_files(tmp_path)
    labels = _save_palette(tmp_path / "labels.png", _labels())
    small = tmp_path / "small.png"
    Image.fromarray(np.full((24, 40), 255, np.uint8)).save(small)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(rgb)
    calls = {
        "absent id": lambda: resolve_subjects(labels, "1,2"),
        "absent position": lambda: resolve_subjects([a, b], "3"),
        "sizes differ": lambda: resolve_subjects([a, small]),
        "bad ids": lambda: parse_subject_ids("one"),
        "rgb label image": lambda: resolve_subjects(rgb, "1"),
        "bad name": lambda: resolve_subjects({"../x": a}),
    }
    with pytest.raises(InputError) as info:
        calls[case]()
    assert expected in str(info.value) and "\n" not in str(info.value)


# --- the driver ---------------------------------------------------------------------------------


def _frames(count: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize("pipeline", [False, True])
def test_a_subjects_matte_is_the_same_alone_and_with_others(torch_modules, pipeline):
    """Same backend, same frames: subject 3 beside subject 1 gets bit for bit its solo matte."""
    masks = {name: np.where(_labels() == int(name), 255.0, 0.0).astype(np.float32) for name in ("1", "3")}
    frames = _frames(4)
    together = list(matte_subjects(torch_modules, frames, masks, warmup=0, pipeline=pipeline))
    assert [r.index for r in together] == list(range(len(frames)))
    for name, mask in masks.items():
        alone = list(matte_frames(torch_modules, frames, mask, warmup=0, pipeline=pipeline))
        for solo, both in zip(alone, together, strict=True):
            np.testing.assert_array_equal(solo.alpha, both.subjects[name].alpha)
            np.testing.assert_array_equal(solo.logits, both.subjects[name].logits)
    assert not np.array_equal(together[-1].subjects["1"].alpha, together[-1].subjects["3"].alpha)


def test_the_image_encoder_runs_once_per_frame_for_every_subject(torch_modules):
    calls: dict[str, int] = {}

    class Counted:
        def __init__(self, name, module):
            self.name, self.module, self.spec = name, module, module.spec

        def __call__(self, **inputs):
            calls[self.name] = calls.get(self.name, 0) + 1
            return self.module(**inputs)

    counted = {n: Counted(n, m) for n, m in torch_modules.items()}
    mask = np.where(_labels() > 0, 255.0, 0.0).astype(np.float32)
    frames = _frames(3)
    list(matte_subjects(counted, frames, {"1": mask, "2": mask, "3": mask}, warmup=1))
    assert calls["encoder"] == len(frames)  # frame 0 once for seed + warm-up, then once per frame
    assert calls["decoder"] == 3 * (2 + len(frames) - 1)  # per subject: 2 first-frame steps + 2 frames


# --- end to end ---------------------------------------------------------------------------------


def _run(*args) -> object:
    return CliRunner().invoke(app, ["run", *map(str, args)])


def test_two_subjects_in_one_run_match_their_solo_runs_and_are_written_apart(tmp_path):
    video = write_clip(tmp_path / "clip.mp4", frames=4, height=H, width=W)
    a, b = _subject_files(tmp_path)
    out = tmp_path / "out"
    both = _run(video, "--mask", a, "--mask", b, "-o", out / "both", "--outputs", "alpha,foreground", "--union", *FAST)
    assert both.exit_code == 0, both.output
    solo = _run(video, "--mask", b, "-o", out / "solo", *FAST)
    assert solo.exit_code == 0, solo.output
    root = out / "both" / "clip" / "alpha"
    assert sorted(p.name for p in root.iterdir()) == ["1", "2", "union"]
    assert sorted(p.name for p in (out / "both").glob("*.mp4")) == [
        "clip_1_foreground.mp4",
        "clip_2_foreground.mp4",
        "clip_union_foreground.mp4",
    ]
    for name in [f"{i:06d}.png" for i in range(4)]:
        together = np.asarray(Image.open(root / "2" / name))
        alone = np.asarray(Image.open(out / "solo" / "clip" / "alpha" / name))
        np.testing.assert_array_equal(together, alone)
        union = np.asarray(Image.open(root / "union" / name))
        np.testing.assert_array_equal(union, np.maximum(np.asarray(Image.open(root / "1" / name)), together))


def test_label_image_subjects_through_the_api(tmp_path):
    from matanyone_engine.core.api import matte

    video = write_clip(tmp_path / "clip.mp4", frames=3, height=H, width=W)
    labels = _save_palette(tmp_path / "labels.png", _labels())
    frames = list(matte(video, labels, backend="torch", warmup=1, erode=3, dilate=3))
    assert [f.index for f in frames] == [0, 1, 2]
    assert all(list(f.subjects) == ["1", "3"] for f in frames)
    np.testing.assert_array_equal(frames[1].alpha, np.maximum(frames[1].subjects["1"], frames[1].subjects["3"]))
    one = list(matte(video, labels, subjects="3", backend="torch", warmup=1, erode=3, dilate=3))
    np.testing.assert_array_equal(one[2].alpha, frames[2].subjects["3"])
    assert list(one[2].subjects) == ["3"]


def test_writers_put_each_subject_apart_and_an_abort_leaves_nothing(tmp_path):
    from matanyone_engine.core.media import writers
    from matanyone_engine.core.media.video import VideoInfo

    out = tmp_path / "out"
    assert writers.output_path(out, "clip", "alpha", "png16", "video", "prores", "2") == out / "clip" / "alpha" / "2"
    assert writers.output_path(out, "clip", "foreground", "png16", "video", "prores", "2") == (
        out / "clip_2_foreground.mp4"
    )
    assert writers.output_path(out, "clip", "alpha", "png16", "video", "prores") == out / "clip" / "alpha"
    info = VideoInfo(tmp_path / "clip.mp4", "clip", W, H, 24.0, 3, False, False)
    group = writers.make_writers(out, info, ["alpha", "rgba"], subjects=["1", "2"], union_outputs=["alpha"])
    assert group.subjects == ("1", "1", "2", "2", "union")
    rgb = np.zeros((H, W, 3), np.uint8)
    alphas = {"1": np.zeros((H, W), np.float32), "2": np.ones((H, W), np.float32), "union": np.ones((H, W))}
    group.write_subjects(rgb, alphas)
    group.abort()
    assert not out.exists() or list(out.iterdir()) == []  # staged frames and the folders made for them are gone
    group = writers.make_writers(out, info, ["alpha"], subjects=["1", "2"])
    group.write_subjects(rgb, alphas)
    paths = group.close()
    assert paths == [out / "clip" / "alpha" / "1", out / "clip" / "alpha" / "2"]
    assert np.asarray(Image.open(paths[1] / "000000.png")).max() == 65535


def test_sample_clip_two_subjects_get_their_solo_mattes(data_dir, tmp_path):
    """On the MatAnyone sample: its mask cut into a left and a right subject, matted together and
    each alone; every frame's alpha of each subject is the same bit for bit."""
    clip, mask = data_dir / "test-sample1.mp4", data_dir / "test-sample1.png"
    full = np.asarray(Image.open(mask).convert("L"))
    columns = np.flatnonzero(full.any(axis=0))
    middle = (columns[0] + columns[-1]) // 2
    left, right = full.copy(), full.copy()
    left[:, middle:], right[:, :middle] = 0, 0
    paths = []
    for name, part in (("left", left), ("right", right)):
        Image.fromarray(part).save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    common = ["--max-size", "64", "--frames", "3", *FAST]
    both = _run(clip, "--mask", paths[0], "--mask", paths[1], "-o", tmp_path / "both", *common)
    assert both.exit_code == 0, both.output
    for subject, path in (("1", paths[0]), ("2", paths[1])):
        solo = _run(clip, "--mask", path, "-o", tmp_path / f"solo{subject}", *common)
        assert solo.exit_code == 0, solo.output
        for i in range(3):
            together = np.asarray(Image.open(tmp_path / "both" / "test-sample1" / "alpha" / subject / f"{i:06d}.png"))
            alone = np.asarray(Image.open(tmp_path / f"solo{subject}" / "test-sample1" / "alpha" / f"{i:06d}.png"))
            np.testing.assert_array_equal(together, alone)
