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


def _marks(size: int, *cells: tuple[int, int], value: int = 255) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    for row, col in cells:
        mask[row, col] = value
    return mask


#: cv2's 3x3 and 5x5 elliptical kernels, as the official demo gets them, written out by hand.
PLUS = [(4, 5), (5, 4), (5, 5), (5, 6), (6, 5)]
ELLIPSE_5 = [(3, 5), *((r, c) for r in (4, 5, 6) for c in range(3, 8)), (7, 5)]


@pytest.mark.parametrize(
    ("mask", "erode", "dilate", "expected"),
    [
        (_marks(11, (5, 5)), 0, 3, _marks(11, *PLUS)),  # one pixel grows into the 3x3 ellipse
        (_marks(11, (5, 5)), 0, 5, _marks(11, *ELLIPSE_5)),
        (_marks(11, (5, 5), value=128), 0, 3, _marks(11, *PLUS)),  # grey counts as foreground to dilate
        (_marks(11, (5, 5)), 3, 3, _marks(11, (5, 5))),  # dilated, then eroded back to the pixel
        (
            _marks(11, *((r, c) for r in range(3, 8) for c in range(3, 8))),
            3,
            0,
            _marks(11, *((r, c) for r in range(4, 7) for c in range(4, 7))),
        ),
        (
            _marks(11, *((r, c) for r in range(3, 8) for c in range(3, 8)), value=254),
            3,
            0,
            _marks(11),
        ),  # only 255 survives erosion
        (_marks(11, (2, 2), value=77), 0, 0, _marks(11, (2, 2), value=77)),  # both off: the mask as given
    ],
)
def test_prepare_mask_on_hand_computed_masks(mask, erode, dilate, expected):
    got = prepare_mask(mask, erode=erode, dilate=dilate)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected.astype(np.float32))


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


def test_prepare_mask_gives_the_mask_the_official_code_fed(data_dir, golden_dir):
    """GOLDEN.md: the golden clip's mask is test-sample1.png dilated then eroded (10, 10) at full
    size by the official demo, then resized nearest to 224x400; ours must be that mask exactly."""
    from matanyone_engine.core.media.masks import resize_mask

    fed = np.load(golden_dir / "golden_sample1_224x400.npz")["mask"]
    mask = load_mask(data_dir / "test-sample1.png")
    np.testing.assert_array_equal(mask, np.array(Image.open(data_dir / "test-sample1.png").convert("L")))
    prepared = resize_mask(prepare_mask(mask, erode=10, dilate=10), *fed.shape)
    np.testing.assert_array_equal(prepared, fed.astype(np.float32))
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
