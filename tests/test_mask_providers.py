"""First-frame mask providers: file round trip, GrabCut from a box, Apple Vision's gate."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pluggy
import pytest
from PIL import Image

from matanyone_engine.core import plugins
from matanyone_engine.core.engine.errors import InputError
from matanyone_engine.core.media import mask_providers
from matanyone_engine.core.media.mask_providers import (
    VISION_UNAVAILABLE,
    BoxMaskProvider,
    FileMaskProvider,
    VisionMaskProvider,
    binarise_and_dilate,
    first_frame_mask,
)
from matanyone_engine.core.plugins import hookspecs

HEIGHT, WIDTH = 224, 400
#: The object of the synthetic frame: rows 60..160, columns 120..280.
OBJECT = (slice(60, 160), slice(120, 280))


def synthetic_frame(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright, lightly textured rectangle on a dark textured background, and its true mask."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 70, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    stripes = (np.arange(WIDTH) // 7 % 2 * 25).astype(np.uint8)
    frame[:, :, 1] += stripes[None, :]
    obj = rng.integers(190, 256, (100, 160, 3), dtype=np.uint8)
    obj[:, :, 2] //= 2  # a yellowish object, unlike any background colour
    frame[OBJECT] = obj
    truth = np.zeros((HEIGHT, WIDTH), np.uint8)
    truth[OBJECT] = 255
    return frame, truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_builtin_providers_register_through_the_hook():
    """The module is a pluggy plugin: a fresh manager with only it yields the three providers."""
    pm = pluggy.PluginManager("matanyone_engine")
    pm.add_hookspecs(hookspecs)
    pm.register(mask_providers, name="masks")
    found: dict[str, object] = {}
    pm.hook.register_mask_providers(register=lambda p: found.setdefault(p.name, p))
    assert set(found) == {"file", "box", "vision"}
    for provider in found.values():
        assert isinstance(provider, mask_providers.MaskProvider)
        assert provider.description
        ok, reason = provider.available()
        assert ok or reason


def test_providers_reach_the_global_registry():
    """core.plugins loads core.mask_providers as a built-in plugin (BUILTIN_PLUGINS)."""
    plugins.reset()
    assert {"file", "box", "vision"} <= set(plugins.mask_providers())


def test_file_provider_round_trip(tmp_path: Path):
    frame, truth = synthetic_frame()
    path = tmp_path / "mask.png"
    Image.fromarray(truth).save(path)
    mask = FileMaskProvider().make_mask(frame, path=str(path))
    assert mask.dtype == np.uint8 and mask.shape == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(mask, truth)


def test_file_provider_fits_a_mask_of_another_resolution(tmp_path: Path):
    frame, truth = synthetic_frame()
    path = tmp_path / "half.png"
    Image.fromarray(truth[::2, ::2]).save(path)
    with pytest.warns(UserWarning, match="resized the mask"):
        mask = FileMaskProvider().make_mask(frame, path=path)
    assert mask.shape == (HEIGHT, WIDTH)
    assert iou(mask, truth) > 0.95


def test_file_provider_errors(tmp_path: Path):
    frame, _ = synthetic_frame()
    with pytest.raises(InputError, match="needs a path"):
        FileMaskProvider().make_mask(frame)
    with pytest.raises(InputError, match="mask not found"):
        FileMaskProvider().make_mask(frame, path=tmp_path / "absent.png")
    with pytest.raises(InputError, match="does not take box"):
        FileMaskProvider().make_mask(frame, path=tmp_path / "x.png", box="1,2,3,4")


def test_box_provider_recovers_the_object():
    frame, truth = synthetic_frame()
    # A loose box, 15-20 px of background on each side, as a user would drag it.
    mask = BoxMaskProvider().make_mask(frame, box="100,42,200,136")
    assert mask.dtype == np.uint8 and mask.shape == (HEIGHT, WIDTH)
    assert set(np.unique(mask)) <= {0, 255}
    score = iou(mask, truth)
    assert score > 0.8, score
    assert not mask[:42].any() and not mask[:, :100].any()  # nothing outside the box


@pytest.mark.parametrize(
    "box, message",
    [
        ("10,10,50", "write x,y,w,h"),
        ("a,b,c,d", "whole numbers"),
        ("10,10,0,40", "degenerate"),
        ("10,10,40,1", "degenerate"),
        ("-5,10,40,40", "outside"),
        ("380,10,40,40", "outside"),
        ("10,200,40,40", "outside"),
        ("500,500,10,10", "outside"),
        ("0,0,400,224", "whole frame"),
        ("10,10,3,3", "too small"),
    ],
)
def test_bad_boxes_are_clear_input_errors(box: str, message: str):
    frame, _ = synthetic_frame()
    with pytest.raises(InputError, match=message):
        BoxMaskProvider().make_mask(frame, box=box)


def test_box_provider_needs_a_box_and_a_frame():
    frame, _ = synthetic_frame()
    with pytest.raises(InputError, match="--mask-box"):
        BoxMaskProvider().make_mask(frame)
    with pytest.raises(InputError, match="HxWx3 uint8"):
        BoxMaskProvider().make_mask(frame[:, :, 0], box="10,10,40,40")


@pytest.mark.skipif(sys.platform == "darwin", reason="Apple Vision may be available on macOS")
def test_vision_unavailable_here_with_its_reason():
    provider = VisionMaskProvider()
    assert provider.available() == (False, VISION_UNAVAILABLE)
    frame, _ = synthetic_frame()
    with pytest.raises(InputError) as caught:
        provider.make_mask(frame)
    assert str(caught.value) == VISION_UNAVAILABLE


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="needs macOS (Apple Vision)")
def test_vision_segments_a_person_on_macos():
    provider = VisionMaskProvider()
    ok, reason = provider.available()
    if not ok:
        pytest.skip(reason)
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    clip, painted = data / "test-sample1.mp4", data / "test-sample1.png"
    if not clip.exists():
        pytest.skip(f"{clip} is absent")
    from matanyone_engine.core.media.masks import load_mask
    from matanyone_engine.core.media.video import iter_frames

    frame = next(iter_frames(clip, count=1))
    mask = provider.make_mask(frame)
    assert mask.shape == frame.shape[:2] and mask.dtype == np.uint8
    assert iou(mask, load_mask(painted)) > 0.5


def test_vision_postprocess_thresholds_resizes_and_dilates():
    """The platform-independent half of the vision provider: 0.5 threshold, resize, 8 px growth."""
    soft = np.zeros((56, 100), np.float32)
    soft[20:36, 40:60] = 0.9
    soft[0:4, 0:4] = 0.4  # below the threshold: dropped
    mask = binarise_and_dilate(soft, HEIGHT, WIDTH)
    assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == np.uint8
    assert not mask[:10, :10].any()
    rows = np.flatnonzero(mask[:, 200])
    # The 16-row block covers rows 80..143 at 4x; dilation adds about 8 px on each side.
    assert 68 <= rows.min() <= 74 and 149 <= rows.max() <= 155, (rows.min(), rows.max())


def test_first_frame_mask_resolution(tmp_path: Path):
    """What `matanyone run` does with --mask / --mask-box / --mask-provider (a folder of frames)."""
    clip = tmp_path / "frames"
    clip.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_frame(seed=i)[0]).save(clip / f"{i:05d}.png")
    truth = synthetic_frame()[1]
    painted = tmp_path / "m.png"
    assert first_frame_mask(clip, mask=painted) == painted  # plain --mask: unchanged path
    box = first_frame_mask(clip, mask_box="100,42,200,136")
    assert isinstance(box, np.ndarray) and box.shape == (HEIGHT, WIDTH) and box.dtype == np.uint8
    assert iou(box, truth) > 0.8
    Image.fromarray(truth).save(painted)
    np.testing.assert_array_equal(first_frame_mask(clip, mask=painted, mask_provider="file"), truth)
    with pytest.raises(InputError, match="either --mask or --mask-box"):
        first_frame_mask(clip, mask=painted, mask_box="100,42,200,136")
    with pytest.raises(InputError, match="does not take box"):
        first_frame_mask(clip, mask=painted, mask_box="100,42,200,136", mask_provider="file")
    with pytest.raises(InputError, match="no first-frame mask"):
        first_frame_mask(clip)
    with pytest.raises(InputError, match="unknown mask provider 'nope'; known providers: .*box"):
        first_frame_mask(clip, mask_provider="nope")
    if sys.platform != "darwin":
        with pytest.raises(InputError, match="unavailable here"):
            first_frame_mask(clip, mask_provider="vision")
