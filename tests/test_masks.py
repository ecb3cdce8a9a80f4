"""core.masks: loading, the demo's dilate-then-erode, fitting to the frame size, sanity checks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from matanyone_engine.core.engine.errors import InputError
from matanyone_engine.core.media.masks import check_mask, fit_mask_to_frame, load_mask, prepare_mask
from matanyone_engine.core.media.video import probe


def one_line(excinfo: pytest.ExceptionInfo, *words: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def demo_prepare(mask: np.ndarray, erode: int, dilate: int) -> np.ndarray:
    """The official demo's first-frame mask step, written out longhand as the reference."""
    if dilate > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (dilate, dilate))
        mask = (cv2.dilate(np.not_equal(mask, 0).astype(np.float32), kernel, iterations=1) * 255).astype(np.float32)
    if erode > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (erode, erode))
        mask = (cv2.erode(np.equal(mask, 255).astype(np.float32), kernel, iterations=1) * 255).astype(np.float32)
    return mask


def disc(size: int = 40, radius: int = 10) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.where((yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius**2, 255, 0).astype(np.uint8)


# --- load_mask ---------------------------------------------------------------------------------------


def test_load_mask_converts_colour_like_pil(tmp_path):
    rgb = np.zeros((12, 16, 3), dtype=np.uint8)
    rgb[2:6, 3:9] = (255, 255, 255)
    rgb[7:10, 1:4] = (200, 30, 90)
    path = tmp_path / "mask.png"
    Image.fromarray(rgb).save(path)
    mask = load_mask(path)
    assert mask.dtype == np.uint8 and mask.shape == (12, 16)
    np.testing.assert_array_equal(mask, np.array(Image.open(path).convert("L")))
    assert mask[3, 4] == 255 and mask[0, 0] == 0 and 0 < mask[8, 2] < 255


def test_load_mask_that_is_not_an_image(tmp_path):
    path = tmp_path / "mask.png"
    path.write_text("just text")
    with pytest.raises(InputError) as excinfo:
        load_mask(path)
    one_line(excinfo, "mask", "is not an image", "pass a PNG/JPG with white foreground")


def test_load_mask_missing_or_folder(tmp_path):
    with pytest.raises(InputError) as excinfo:
        load_mask(tmp_path / "nope.png")
    one_line(excinfo, "mask not found", "nope.png")
    with pytest.raises(InputError) as excinfo:
        load_mask(tmp_path)
    one_line(excinfo, "is a folder")


# --- prepare_mask -------------------------------------------------------------------------------


@pytest.mark.parametrize(("erode", "dilate"), [(10, 10), (0, 10), (10, 0), (5, 15), (0, 0)])
def test_prepare_mask_matches_the_demo_on_synthetic_masks(erode, dilate):
    mask = disc()
    mask[5:8, 5:8] = 128  # a soft patch: counts for dilation, not for erosion
    got = prepare_mask(mask, erode=erode, dilate=dilate)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, demo_prepare(mask, erode, dilate))


def test_prepare_mask_steps_do_what_they_say():
    mask = disc(radius=10)
    area = np.count_nonzero(mask)
    assert np.count_nonzero(prepare_mask(mask, erode=0, dilate=7)) > area
    assert np.count_nonzero(prepare_mask(mask, erode=7, dilate=0)) < area
    assert set(np.unique(prepare_mask(mask, 10, 10))) <= {0.0, 255.0}
    raw = prepare_mask(mask, erode=0, dilate=0)
    np.testing.assert_array_equal(raw, mask.astype(np.float32))
    soft = np.full((20, 20), 128, dtype=np.uint8)
    # Grey is "unknown": dilation keeps it, but erosion only keeps pure white.
    assert (prepare_mask(soft, erode=0, dilate=3) == 255).all()
    assert (prepare_mask(soft, erode=3, dilate=0) == 0).all()


def test_prepare_mask_order_is_dilate_then_erode():
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[10:30, 10:30] = 255
    mask[19:21, 5:35] = 0  # a thin black slit: dilation closes it before erosion runs
    prepared = prepare_mask(mask, erode=5, dilate=5)
    assert prepared[20, 20] == 255
    eroded_first = cv2.dilate(
        cv2.erode((mask == 255).astype(np.float32), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))),
        cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)),
    )
    assert eroded_first[20, 20] == 0


def test_prepare_mask_rejects_bad_arguments():
    with pytest.raises(ValueError):
        prepare_mask(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        prepare_mask(disc(), erode=-1)


def test_prepare_mask_matches_direct_cv2_on_the_real_masks(data_dir):
    for name in ("test-sample1.png", "test-sample2.png"):
        path = data_dir / name
        mask = np.array(Image.open(path).convert("L"))
        np.testing.assert_array_equal(load_mask(path), mask)
        for erode, dilate in ((10, 10), (0, 10), (10, 0)):
            np.testing.assert_array_equal(prepare_mask(mask, erode, dilate), demo_prepare(mask, erode, dilate))
        check_mask(mask)


# --- fit_mask_to_frame --------------------------------------------------------------------------


def test_fit_mask_same_size_is_untouched():
    mask = disc(40)
    fitted, warning = fit_mask_to_frame(mask, 40, 40)
    assert fitted is mask and warning is None


def test_fit_mask_same_aspect_is_resized_nearest_with_a_warning():
    mask = np.zeros((1080, 1920), dtype=np.uint8)
    mask[300:700, 800:1100] = 255
    fitted, warning = fit_mask_to_frame(mask, 1088, 1920)
    assert fitted.shape == (1088, 1920)
    np.testing.assert_array_equal(fitted, cv2.resize(mask, (1920, 1088), interpolation=cv2.INTER_NEAREST))
    assert set(np.unique(fitted)) == {0, 255}  # nearest keeps a binary mask binary
    assert warning is not None and "1080x1920" in warning and "1088x1920" in warning and "\n" not in warning
    half, warning = fit_mask_to_frame(mask, 540, 960)
    assert half.shape == (540, 960) and warning


def test_fit_mask_other_shape_is_refused():
    with pytest.raises(InputError) as excinfo:
        fit_mask_to_frame(np.zeros((100, 50), np.uint8), 720, 1280)
    one_line(excinfo, "mask is 100x50 but frames are 720x1280", "give a mask of the first frame's size")
    with pytest.raises(InputError):
        fit_mask_to_frame(np.zeros((720, 1280), np.uint8), 720, 1306)  # aspect 2% off


def test_fit_real_mask_to_its_1088_high_clip(data_dir):
    info = probe(data_dir / "test-sample2.mp4")
    mask = load_mask(data_dir / "test-sample2.png")
    fitted, warning = fit_mask_to_frame(mask, info.height, info.width)
    assert fitted.shape == (1088, 1920) and warning


# --- check_mask ---------------------------------------------------------------------------------


def test_check_mask_refuses_empty_and_full_masks():
    with pytest.raises(InputError) as excinfo:
        check_mask(np.zeros((8, 8), np.uint8))
    one_line(excinfo, "mask is empty", "paint the target white")
    with pytest.raises(InputError) as excinfo:
        check_mask(np.full((8, 8), 255, np.uint8))
    one_line(excinfo, "whole frame", "paint only the target white")
    with pytest.raises(InputError):
        check_mask(np.full((8, 8), 255.0, np.float32))
    check_mask(disc())  # a normal mask passes
