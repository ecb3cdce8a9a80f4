"""Full-resolution alpha from a smaller network size: the guided upsampler, and `--max-size` with
`--output-size input` (default) and `network`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_clip
from PIL import Image
from typer.testing import CliRunner

from matanyone_engine.core.cli import app
from matanyone_engine.core.engine.errors import InputError
from matanyone_engine.core.media.upsample import upsample_alpha


def _edge_scene(height: int = 120, width: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A frame with a sharp slanted boundary off the 4-pixel grid, and its true alpha."""
    yy, xx = np.mgrid[0:height, 0:width]
    alpha = (xx > 0.3 * yy + 71).astype(np.float32)
    rng = np.random.default_rng(0)
    frame = np.where(alpha[..., None] > 0, [200, 180, 160], [30, 60, 90]).astype(np.float32)
    frame += rng.normal(0, 2, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8), alpha


def test_guided_follows_the_frame_edge_better_than_bilinear() -> None:
    frame, truth = _edge_scene()
    small = cv2.resize(truth, (50, 30), interpolation=cv2.INTER_AREA)
    guided = upsample_alpha(small, frame, "guided")
    bilinear = upsample_alpha(small, frame, "bilinear")
    for out in (guided, bilinear):
        assert out.shape == truth.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
    guided_error, bilinear_error = np.abs(guided - truth).mean(), np.abs(bilinear - truth).mean()
    assert guided_error < 0.25 * bilinear_error, (guided_error, bilinear_error)  # measured 0.06x


def test_same_size_is_returned_unchanged_and_unknown_method_fails() -> None:
    frame, truth = _edge_scene(32, 48)
    assert upsample_alpha(truth, frame) is truth
    with pytest.raises(InputError, match="upsampling"):
        upsample_alpha(truth[::2, ::2], frame, "nearest")


@pytest.fixture()
def clip(tmp_path: Path) -> tuple[Path, Path]:
    path = write_clip(tmp_path / "clip.mp4", frames=3, height=96, width=160)
    mask = np.zeros((96, 160), np.uint8)
    mask[20:80, 40:120] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return path, tmp_path / "mask.png"


def _run(clip, out: Path, *extra: str):
    args = ["run", str(clip[0]), "--mask", str(clip[1]), "-o", str(out), "--weights", "seeded:v1-pm"]
    args += ["-b", "torch", "--warmup", "1", "--erode", "3", "--dilate", "3", "--max-size", "48", *extra]
    return CliRunner().invoke(app, args)


def test_max_size_writes_alpha_and_rgba_at_the_input_size(clip, tmp_path: Path) -> None:
    result = _run(clip, tmp_path / "out", "--outputs", "alpha,rgba,foreground")
    assert result.exit_code == 0, result.output
    alpha = Image.open(tmp_path / "out" / "clip" / "alpha" / "000002.png")
    rgba = Image.open(tmp_path / "out" / "clip" / "rgba" / "000000.png")
    assert alpha.size == (160, 96) and rgba.size == (160, 96)
    import av

    with av.open(str(tmp_path / "out" / "clip_foreground.mp4")) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (160, 96)


def test_output_size_network_keeps_the_network_size(clip, tmp_path: Path) -> None:
    result = _run(clip, tmp_path / "net", "--output-size", "network", "--outputs", "alpha,rgba")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "net" / "clip" / "alpha" / "000001.png").size == (80, 48)
    assert Image.open(tmp_path / "net" / "clip" / "rgba" / "000001.png").size == (80, 48)


def test_full_size_alpha_is_the_network_alpha_upsampled(clip, tmp_path: Path) -> None:
    """The API's full-size alpha is exactly upsample_alpha of the network-size alpha of the same run
    with the full-resolution frame, for both methods."""
    from matanyone_engine.core.app.api import matte

    common = {"weights": "seeded:v1-pm", "backend": "torch", "warmup": 1, "erode": 3, "dilate": 3, "max_size": 48}
    small = list(matte(*clip, output_size="network", **common))
    for method in ("guided", "bilinear"):
        full = list(matte(*clip, upsample=method, **common))
        assert [f.rgb.shape for f in full] == [(96, 160, 3)] * 3
        for s, f in zip(small, full, strict=True):
            np.testing.assert_array_equal(f.alpha, upsample_alpha(s.alpha, f.rgb, method))


def test_unknown_output_size_is_one_line(clip, tmp_path: Path) -> None:
    result = _run(clip, tmp_path / "x", "--output-size", "huge")
    assert result.exit_code == InputError.exit_code
    assert [ln for ln in result.output.splitlines() if ln.startswith("error:")] == [
        "error: Invalid value for '--output-size': Value error, 'huge' is not one of 'input', 'network'. "
        "(see `matanyone run --help`)"
    ]
