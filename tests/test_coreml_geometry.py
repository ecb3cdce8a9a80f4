"""core/engine/geometry.py and fixed_size.py: fitting any frame to fixed-size modules (a Core ML
package set, an exported folder) and mapping the alpha back."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from matanyone_engine.core.engine.geometry import (
    alpha_to_frame,
    frame_to_package,
    nchw_to_frame,
    nchw_to_package,
    plan_geometry,
    resize,
)

PACKAGE = (432, 768)


def smooth(h: int, w: int, channels: int | None = None, seed: int = 0) -> np.ndarray:
    """A band-limited test image: resampling it loses almost nothing, so round trips are tight."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    layers = []
    for _ in range(channels or 1):
        a, b, c = rng.uniform(0.5, 1.5, 3)
        layers.append(0.5 + 0.2 * np.sin(a * xx / w * 2 * np.pi + c) * np.cos(b * yy / h * 2 * np.pi))
    out = np.stack(layers, -1).astype(np.float32)
    return out if channels else out[..., 0]


# ----------------------------------------------------------------------------------- planning


def test_exact_size_is_identity_and_exact():
    g = plan_geometry((432, 768), PACKAGE)
    assert g.mode == "identity" and not g.rotate and g.content == (0, 0, 432, 768)
    frame = np.random.default_rng(1).integers(0, 256, (432, 768, 3), dtype=np.uint8)
    packed = frame_to_package(frame, g)
    assert packed.dtype == np.uint8 and np.array_equal(packed, frame)
    alpha = np.random.default_rng(2).random((432, 768)).astype(np.float32)
    assert np.array_equal(alpha_to_frame(alpha, g), alpha)


def test_same_aspect_is_resized_not_letterboxed():
    g = plan_geometry((1080, 1920), PACKAGE)
    assert g.mode == "resize" and not g.rotate and g.content == (0, 0, 432, 768)


def test_aspect_within_one_percent_is_resized():
    # 224x400 is 1.786:1, the package 1.778:1 (0.45 % apart): stretch, no border.
    assert plan_geometry((224, 400), PACKAGE).mode == "resize"


def test_aspect_beyond_one_percent_is_letterboxed_and_centred():
    g = plan_geometry((480, 640), PACKAGE)  # 4:3 into 16:9: pillar-boxed
    assert g.mode == "letterbox" and not g.rotate
    top, left, ch, cw = g.content
    assert (top, ch) == (0, 432)
    assert cw == 576 and left == (768 - 576) // 2
    wide = plan_geometry((100, 400), PACKAGE)  # 4:1 into 16:9: letter-boxed top and bottom
    top, left, ch, cw = wide.content
    assert (left, cw) == (0, 768) and ch == 192 and top == (432 - 192) // 2


def test_tolerance_is_configurable():
    assert plan_geometry((480, 640), PACKAGE, tolerance=0.5).mode == "resize"
    assert plan_geometry((224, 400), PACKAGE, tolerance=0.0).mode == "letterbox"


def test_portrait_is_rotated_to_landscape():
    g = plan_geometry((768, 432), PACKAGE)
    assert g.rotate and g.mode == "identity" and g.oriented_hw == (432, 768)
    g = plan_geometry((1920, 1080), PACKAGE)
    assert g.rotate and g.mode == "resize"


def test_square_is_never_rotated_and_portrait_package_rotates_landscape_frames():
    assert not plan_geometry((500, 500), PACKAGE).rotate
    assert plan_geometry((432, 768), (768, 432)).rotate
    assert not plan_geometry((768, 432), PACKAGE, allow_rotation=False).rotate


def test_invalid_sizes_raise():
    with pytest.raises(ValueError):
        plan_geometry((0, 10), PACKAGE)
    with pytest.raises(ValueError):
        frame_to_package(np.zeros((10, 10)), plan_geometry((20, 20), PACKAGE))


# --------------------------------------------------------------------------------- round trips


def test_portrait_round_trip_is_exact_and_orientation_preserved():
    frame = np.random.default_rng(3).integers(0, 256, (768, 432, 3), dtype=np.uint8)
    g = plan_geometry(frame.shape[:2], PACKAGE)
    packed = frame_to_package(frame, g)
    assert packed.shape == (432, 768, 3)
    # Rotated clockwise: the frame's top-left corner lands at the package's top-right corner.
    assert np.array_equal(packed[0, -1], frame[0, 0])
    assert np.array_equal(packed[-1, 0], frame[-1, -1])
    back = alpha_to_frame(packed, g)
    assert back.shape == frame.shape and np.array_equal(back, frame)


def test_portrait_alpha_follows_the_subject():
    """A mark in the frame's top-left corner must come back in the top-left corner."""
    g = plan_geometry((1280, 720), PACKAGE)
    mask = np.zeros((1280, 720), np.float32)
    mask[:200, :100] = 1.0
    packed = frame_to_package(mask, g)
    back = alpha_to_frame(packed, g)
    assert back.shape == (1280, 720)
    assert back[:150, :70].min() > 0.99 and back[300:, 200:].max() < 1e-6


@pytest.mark.parametrize("size", [(1080, 1920), (360, 640), (224, 400), (216, 384)])
def test_resize_round_trip_is_close(size):
    frame = smooth(*size, channels=3)
    g = plan_geometry(size, PACKAGE)
    back = alpha_to_frame(frame_to_package(frame, g), g)
    assert back.shape == frame.shape
    err = np.abs(back - frame)
    assert err.mean() < 2e-3 and err.max() < 2e-2


@pytest.mark.parametrize("size", [(480, 640), (100, 400), (720, 720), (1080, 1440)])
def test_letterbox_round_trip_is_close(size):
    frame = smooth(*size)
    g = plan_geometry(size, PACKAGE)
    assert g.mode == "letterbox"
    back = alpha_to_frame(frame_to_package(frame, g), g)
    assert back.shape == frame.shape
    err = np.abs(back - frame)
    assert err.mean() < 2e-3 and err.max() < 3e-2


def test_letterbox_border_is_zero_and_content_mask_matches():
    frame = np.full((480, 640, 3), 200, np.uint8)
    g = plan_geometry(frame.shape[:2], PACKAGE)
    packed = frame_to_package(frame, g)
    inside = g.content_mask()
    assert inside.sum() == g.content[2] * g.content[3]
    assert np.all(packed[~inside] == 0)
    assert np.all(packed[inside] == 200)  # constant stays constant through the filter


def test_letterbox_region_is_excluded_from_the_alpha():
    """Whatever the network writes on the border must not reach the frame's matte."""
    g = plan_geometry((480, 640), PACKAGE)
    alpha = np.zeros(PACKAGE, np.float32)
    inside = g.content_mask()
    alpha[inside] = 0.25
    alpha[~inside] = 1.0  # garbage on the border
    back = alpha_to_frame(alpha, g)
    assert back.shape == (480, 640)
    np.testing.assert_allclose(back, 0.25, atol=1e-6)


def test_portrait_letterbox_round_trip():
    size = (1000, 500)  # portrait 1:2 -> rotated 2:1, still not 16:9 -> letter-boxed
    g = plan_geometry(size, PACKAGE)
    assert g.rotate and g.mode == "letterbox"
    frame = smooth(*size, channels=2)
    back = alpha_to_frame(frame_to_package(frame, g), g)
    assert back.shape == frame.shape
    assert np.abs(back - frame).mean() < 2e-3


def test_nchw_helpers_match_the_hwc_path():
    image = smooth(480, 640, channels=3).transpose(2, 0, 1)[None]
    g = plan_geometry((480, 640), PACKAGE)
    packed = nchw_to_package(image, g)
    assert packed.shape == (1, 3, 432, 768) and packed.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(packed[0].transpose(1, 2, 0), frame_to_package(image[0].transpose(1, 2, 0), g))
    back = nchw_to_frame(packed[:, :1], g)
    assert back.shape == (1, 1, 480, 640)


# ----------------------------------------------------------------------------------- resampling


def test_resize_matches_pillow_bilinear():
    from PIL import Image

    rng = np.random.default_rng(5)
    x = rng.random((37, 53)).astype(np.float32)
    for size in [(74, 106), (20, 30), (11, 13), (100, 29), (1, 1)]:
        want = np.asarray(Image.fromarray(x, mode="F").resize((size[1], size[0]), Image.BILINEAR))
        np.testing.assert_allclose(resize(x, size), want, atol=1e-5)


def test_resize_upscale_matches_opencv_linear():
    cv2 = pytest.importorskip("cv2")
    x = np.random.default_rng(6).random((30, 40)).astype(np.float32)
    np.testing.assert_allclose(
        resize(x, (75, 110)), cv2.resize(x, (110, 75), interpolation=cv2.INTER_LINEAR), atol=1e-5
    )


def test_resize_keeps_dtype_range_and_constants():
    u8 = np.full((50, 70, 3), 255, np.uint8)
    out = resize(u8, (20, 33))
    assert out.dtype == np.uint8 and np.all(out == 255)
    f = np.full((9, 9), 0.3, np.float32)
    assert np.allclose(resize(f, (4, 17)), 0.3)


def test_nearest_keeps_binary_masks_binary():
    mask = (np.random.default_rng(7).random((64, 96)) > 0.5).astype(np.uint8) * 255
    g = plan_geometry((64, 96), PACKAGE)
    packed = frame_to_package(mask, g, interpolation="nearest")
    assert set(np.unique(packed)) <= {0, 255}


def test_geometry_module_is_numpy_only():
    """The geometry helper must run where torch and OpenCV are absent (a phone-class Mac app)."""
    import subprocess

    code = (
        "import sys; import matanyone_engine.core.engine.fixed_size, matanyone_engine.core.engine.geometry; "
        "print(sorted(m for m in ('torch', 'cv2', 'coremltools') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------- a whole clip, any size


class _FakeModule:
    """numpy stand-in of one package at a fixed size: zeros, except the decoder, whose logits are
    the red channel of the frame it was given — so the matte shows where each pixel went."""

    def __init__(self, name: str, dims):
        from matanyone_engine.core.engine.spec import MODULE_SPECS

        self.spec = MODULE_SPECS[name]
        self.dims = dims

    def __call__(self, **inputs):
        for t in self.spec.inputs:
            assert inputs[t.name].shape == t.resolve(self.dims), (self.spec.name, t.name)
        out = {t.name: np.zeros(t.resolve(self.dims), np.float32) for t in self.spec.outputs}
        if self.spec.name == "encoder":
            out["f1"] = inputs["image"]  # the fake "normalised image" is the image itself
        if self.spec.name == "decoder":
            out["logits"] = inputs["f1"][:, :1].copy()
        return out


@pytest.mark.parametrize("size", [(432, 768), (768, 432), (480, 640), (1280, 720), (224, 400)])
def test_matte_fixed_size_maps_any_clip_through_fixed_size_modules(size):
    from matanyone_engine.core.engine.fixed_size import matte_fixed_size
    from matanyone_engine.core.engine.spec import MODULE_NAMES, Dims

    dims = Dims(*PACKAGE, 2)
    modules = {name: _FakeModule(name, dims) for name in MODULE_NAMES}
    red = (smooth(*size) * 255).astype(np.uint8)
    frames = [np.stack([red, red // 2, red // 3], -1) for _ in range(3)]
    mask = np.zeros(size, np.uint8)
    results = list(matte_fixed_size(modules, frames, mask, PACKAGE, warmup=1, mem_frames=2))
    assert [r.index for r in results] == [0, 1, 2]
    for r in results:
        assert r.alpha.shape == size and r.alpha.dtype == np.float32
        err = np.abs(r.alpha - red / 255.0)
        assert err.mean() < 3e-3 and err.max() < 4e-2


def test_fixed_size_logits_are_mapped_back_only_when_read(monkeypatch):
    """The app reads only the alpha; resizing the logits too would cost a frame-sized map per frame."""
    from matanyone_engine.core.engine import fixed_size
    from matanyone_engine.core.engine.spec import MODULE_NAMES, Dims

    mapped = []
    real = fixed_size.alpha_to_frame
    monkeypatch.setattr(fixed_size, "alpha_to_frame", lambda x, g: mapped.append(x.shape) or real(x, g))
    dims = Dims(*PACKAGE, 2)
    modules = {name: _FakeModule(name, dims) for name in MODULE_NAMES}
    size = (480, 640)
    red = (smooth(*size) * 255).astype(np.uint8)
    frames = [np.stack([red, red // 2, red // 3], -1) for _ in range(3)]
    results = list(
        fixed_size.matte_fixed_size(modules, frames, np.zeros(size, np.uint8), PACKAGE, warmup=1, mem_frames=2)
    )
    assert len(mapped) == 3  # one alpha per frame, no logits
    logits = results[1].logits
    assert len(mapped) == 4 and logits.shape == size
    # the fake decoder's logits are the red channel, so clamped they are the alpha
    np.testing.assert_array_equal(np.clip(logits, 0.0, 1.0), results[1].alpha)
