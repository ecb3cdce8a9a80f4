"""Real-world inputs (docs/inputs.md): phone rotation, frame-folder order, mask formats, timing.

Every input is generated here: clips with a display matrix or irregular timestamps are written with
PyAV, masks and frames with Pillow.
"""

from __future__ import annotations

import importlib
import typing
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import frame_pattern, write_clip
from PIL import Image
from typer.testing import CliRunner

from matanyone_engine.core.engine.errors import InputError, MatanyoneWarning
from matanyone_engine.core.media import masks, video, writers
from matanyone_engine.core.media.orientation import from_display_matrix

FAST = ["--warmup", "1", "--erode", "3", "--dilate", "3", "--weights", "seeded:v1-pm", "--backend", "torch"]


def run_cli(*args: object):
    from matanyone_engine.core.cli import app

    return CliRunner().invoke(app, ["run", *map(str, args)])


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def marked(height: int, width: int) -> np.ndarray:
    """A frame no turn or mirror maps onto itself: a bright top-left block and two ramps."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 1] = np.linspace(0, 250, width, dtype=np.float32)[None, :].astype(np.uint8)
    image[:, :, 2] = np.linspace(0, 250, height, dtype=np.float32)[:, None].astype(np.uint8)
    image[: height // 4, : width // 4, 0] = 255
    return image


def write_marked_clip(path: Path, rotation: int, hflip: bool = False, frames: int = 2) -> np.ndarray:
    """A 4:4:4 clip of ``marked`` frames (so colours survive encoding) with a display matrix."""
    stored = marked(32, 64)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv444p"
        stream.set_display_rotation(rotation, hflip=hflip)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return stored


# --- 1. display rotation --------------------------------------------------------------------------


# PyAV's documented meaning: ``degrees`` counter-clockwise, then the mirror; np.rot90 turns
# counter-clockwise for positive k.
TURNS = [
    (0, False, lambda s: s),
    (90, False, lambda s: np.rot90(s, 1)),
    (-90, False, lambda s: np.rot90(s, -1)),
    (180, False, lambda s: np.rot90(s, 2)),
    (0, True, lambda s: s[:, ::-1]),
    (90, True, lambda s: np.rot90(s, 1)[:, ::-1]),
]


@pytest.mark.parametrize(("rotation", "hflip", "shown"), TURNS)
def test_display_matrix_gives_upright_frames_and_sizes(rotation, hflip, shown, tmp_path):
    path = tmp_path / "phone.mp4"
    stored = write_marked_clip(path, rotation, hflip)
    expected = shown(stored)
    info = video.probe(path)
    assert (info.height, info.width) == expected.shape[:2]
    for frame in video.iter_frames(path):
        assert frame.shape == expected.shape and frame.flags["C_CONTIGUOUS"]
        assert np.abs(frame.astype(int) - expected.astype(int)).mean() < 3  # lossless up to RGB<->YUV rounding
    assert bool(info.orientation.describe()) == (rotation != 0 or hflip)


def test_display_matrix_that_is_no_quarter_turn_is_reported_and_ignored(tmp_path):
    path = tmp_path / "tilted.mp4"
    cos = sin = int(0.7071 * 65536)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_matrix([cos, -sin, 0, sin, cos, 0, 0, 0, 1 << 30])
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(marked(32, 64), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.warns(MatanyoneWarning, match="not a quarter turn"):
        info = video.probe(path)
    assert (info.width, info.height) == (64, 32)
    assert from_display_matrix(b"\x00" * 35) is None


def test_exif_orientation_of_frame_files_is_applied(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    stored = marked(20, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    for i in range(2):
        Image.fromarray(stored).save(folder / f"{i}.png", exif=exif)
    info = video.probe(folder)
    assert (info.height, info.width) == (40, 20)
    np.testing.assert_array_equal(next(video.iter_frames(folder)), np.rot90(stored, -1))


def test_phone_clip_is_matted_upright_end_to_end(tmp_path):
    """A clip stored landscape and shown portrait: an upright mask is accepted, the alpha and RGBA
    PNGs and the foreground video are portrait, and the video carries no rotation of its own."""
    clip = write_clip(tmp_path / "phone.mp4", frames=3, height=48, width=80, rotation=-90)
    with av.open(str(clip)) as container:
        stored = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    mask = np.zeros((80, 48), np.uint8)  # height x width as shown
    mask[20:60, 10:40] = 255
    Image.fromarray(mask).save(tmp_path / "upright.png")
    out = tmp_path / "out"
    result = run_cli(clip, "--mask", tmp_path / "upright.png", "-o", out, "--outputs", "alpha,rgba,foreground", *FAST)
    assert result.exit_code == 0, result.output
    alpha = np.asarray(Image.open(out / "phone" / "alpha" / "000000.png"))
    assert alpha.shape == (80, 48)
    for i in range(3):
        rgba = np.asarray(Image.open(out / "phone" / "rgba" / f"{i:06d}.png"))
        np.testing.assert_array_equal(rgba[:, :, :3], np.rot90(stored[i], -1))  # clockwise, as the matrix says
    with av.open(str(out / "phone_foreground.mp4")) as container:
        decoded = list(container.decode(video=0))
    assert [(f.width, f.height) for f in decoded] == [(48, 80)] * 3
    assert all(f.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX) is None for f in decoded)
    # A mask drawn on the stored (landscape) frame is refused with the reason.
    Image.fromarray(np.ascontiguousarray(mask.T)).save(tmp_path / "stored.png")
    result = run_cli(clip, "--mask", tmp_path / "stored.png", "-o", tmp_path / "o2", *FAST)
    assert result.exit_code == 2
    (line,) = error_lines(result.output)
    assert "rotated 90° clockwise" in line and "as a player shows it" in line


# --- 2. frame folders -----------------------------------------------------------------------------


def numbered_folder(folder: Path, count: int = 10, height: int = 24, width: int = 32) -> Path:
    """Frames 1.png .. COUNT.png (no zero padding) whose red level encodes the number, plus the
    debris a Mac leaves on a shared drive."""
    folder.mkdir()
    for number in range(1, count + 1):
        Image.fromarray(frame_pattern(number, height, width)).save(folder / f"{number}.png")
    (folder / "._1.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork, not a PNG")
    (folder / ".DS_Store").write_bytes(b"Bud1")
    return folder


def test_frame_folder_is_read_in_natural_order_without_hidden_files(tmp_path):
    folder = numbered_folder(tmp_path / "take")
    info = video.probe(folder)
    assert info.frame_names == tuple(f"{n}.png" for n in range(1, 11))
    assert info.skipped_names == ("._1.png",)
    reds = [int(frame[0, 0, 0]) for frame in video.iter_frames(folder)]
    assert reds == [int(frame_pattern(n, 1, 1)[0, 0, 0]) for n in range(1, 11)]
    assert [f.time for f in video.iter_timed_frames(folder, start=2, count=2)] == [Fraction(2, 24), Fraction(3, 24)]


def test_run_on_a_numbered_folder_says_the_order(tmp_path):
    folder = numbered_folder(tmp_path / "take")
    mask = np.zeros((24, 32), np.uint8)
    mask[6:18, 8:24] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    result = run_cli(folder, "--mask", tmp_path / "mask.png", "-o", tmp_path / "out", "--verbose", *FAST)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out" / "take" / "alpha").iterdir())) == 10
    assert "frames read in natural order: 1.png, 2.png, 3.png, ..., 10.png" in result.output  # the summary
    assert "10 frames in natural order: 1.png, 2.png, 3.png, ..., 10.png" in result.output  # --verbose
    assert "skipped hidden files ._1.png" in result.output


# --- 3. masks ---------------------------------------------------------------------------------------


def disc(height: int = 40, width: int = 60, radius: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return ((yy - height // 2) ** 2 + (xx - width // 2) ** 2 <= radius**2).astype(np.uint8) * 255


def test_rgba_mask_is_read_by_its_alpha_when_it_varies(tmp_path):
    shape = disc()
    paint = np.dstack([np.full((40, 60, 3), 255, np.uint8), shape])  # white paint on a transparent layer
    Image.fromarray(paint).save(tmp_path / "paint.png")
    cutout = np.dstack([frame_pattern(3, 40, 60), shape])  # a cut-out of the subject itself
    Image.fromarray(cutout).save(tmp_path / "cutout.png")
    for name in ("paint.png", "cutout.png"):
        reading = masks.read_mask(tmp_path / name)
        assert reading.source == "alpha channel"
        np.testing.assert_array_equal(reading.mask, shape)
    opaque = np.dstack([shape] * 3 + [np.full((40, 60), 255, np.uint8)])  # flat alpha: luminance
    Image.fromarray(opaque).save(tmp_path / "opaque.png")
    reading = masks.read_mask(tmp_path / "opaque.png")
    assert reading.source.startswith("luminance")
    np.testing.assert_array_equal(reading.mask, shape)
    grey_alpha = Image.fromarray(np.dstack([np.zeros((40, 60), np.uint8), shape]), mode="LA")
    grey_alpha.save(tmp_path / "la.png")
    np.testing.assert_array_equal(masks.load_mask(tmp_path / "la.png"), shape)
    # A palette image with a transparent entry (GIF-style cut-out): the transparency is the mask.
    indexed = Image.fromarray(np.where(shape > 0, 1, 0).astype(np.uint8), mode="P")
    indexed.putpalette([255, 255, 255, 255, 255, 255] + [0] * 762)
    indexed.save(tmp_path / "gif-style.png", transparency=0)
    reading = masks.read_mask(tmp_path / "gif-style.png")
    assert reading.source == "alpha channel"
    np.testing.assert_array_equal(reading.mask, shape)


def davis_palette() -> list[int]:
    """The DAVIS convention: index 0 black, then one distinct colour per object."""
    colours = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
    return [c for colour in colours for c in colour] + [0] * (768 - 3 * len(colours))


def test_label_masks_give_their_labels_and_non_zero_foreground(tmp_path):
    labels = np.zeros((30, 40), np.uint8)
    labels[5:15, 5:15] = 1
    labels[18:28, 20:35] = 3
    grey = tmp_path / "grey.png"
    Image.fromarray(labels).save(grey)
    palette = Image.fromarray(labels, mode="P")
    palette.putpalette(davis_palette())
    palette.save(tmp_path / "davis.png")
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "deep.png")
    for path, source in (
        (grey, "grey labels"),
        (tmp_path / "davis.png", "palette labels"),
        (tmp_path / "deep.png", "grey labels"),
    ):
        found = masks.read_labels(path)
        assert found is not None and found.values == (1, 3), path
        np.testing.assert_array_equal(found.labels, labels)
        reading = masks.read_mask(path)
        assert reading.source == source and reading.labels == (1, 3)
        np.testing.assert_array_equal(reading.mask, np.where(labels > 0, 255, 0))
    # Ordinary masks are no label masks, whatever their storage.
    Image.fromarray(disc()).save(tmp_path / "white.png")
    assert masks.read_labels(tmp_path / "white.png") is None
    soft16 = (disc().astype(np.uint16) * 257 // 2).astype(np.uint16)  # 16-bit half grey
    Image.fromarray(soft16).save(tmp_path / "soft16.png")
    assert masks.read_labels(tmp_path / "soft16.png") is None
    assert masks.load_mask(tmp_path / "soft16.png").max() == 127  # top 8 bits, not clipped to white


def test_black_and_white_palette_mask_is_not_inverted(tmp_path):
    """An indexed-mode export (index 0 white, 1 black) is a drawing, not labels: read by colour."""
    drawing = Image.fromarray(np.where(disc() > 0, 0, 1).astype(np.uint8), mode="P")
    drawing.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    drawing.save(tmp_path / "indexed.png")
    reading = masks.read_mask(tmp_path / "indexed.png")
    assert reading.labels == () and reading.source == "grey levels"
    np.testing.assert_array_equal(reading.mask, disc())


def test_label_mask_reaches_the_model_with_its_foreground_even_without_dilation(tmp_path):
    labels = (disc() > 0).astype(np.uint8)  # values {0, 1}
    # The premise: read as grey levels, {0, 1} has no pure white, so --erode empties it.
    assert not masks.prepare_mask(labels, erode=10, dilate=0).any()
    Image.fromarray(labels).save(tmp_path / "labels.png")
    prepared = masks.mask_for_model(masks.load_mask(tmp_path / "labels.png"), 40, 60, erode=10, dilate=0)
    assert prepared.any() and prepared.max() == 255


def dotted() -> np.ndarray:
    """Single-pixel dots between the pixels a 4x nearest-neighbour shrink keeps."""
    mask = np.zeros((40, 60), np.uint8)
    mask[1::4, 1::4] = 255
    return mask


@pytest.mark.parametrize(
    ("mask", "size", "erode", "dilate", "words"),
    [
        (np.full((40, 60), 128, np.uint8) * (disc() > 0), (40, 60), 10, 0, ("no pure-white", "--erode 0")),
        ((disc(radius=2) > 0).astype(np.uint8) * 255, (40, 60), 10, 0, ("after --erode 10", "lower --erode")),
        (np.pad(np.full((36, 56), 255, np.uint8), 2), (40, 60), 0, 10, ("after --dilate 10", "lower --dilate")),
        (dotted(), (10, 15), 0, 0, ("vanishes", "--max-size")),
        (np.zeros((40, 60), np.uint8), (40, 60), 10, 10, ("mask is empty",)),
    ],
    ids=["grey-eroded-away", "thin-eroded-away", "dilated-full", "shrunk-away", "empty-file"],
)
def test_mask_is_checked_as_the_model_gets_it(mask, size, erode, dilate, words):
    """Each mask but the last passes a check of the file alone; what the model would get does not."""
    if mask.any():
        masks.check_mask(mask)
    with pytest.raises(InputError) as excinfo:
        masks.mask_for_model(mask, *size, erode=erode, dilate=dilate)
    message = str(excinfo.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_mask_warnings_are_one_readable_line(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", frames=2, height=48, width=80)
    half = np.zeros((24, 40), np.uint8)
    half[5:20, 10:30] = 1
    half[5:20, 30:35] = 2
    Image.fromarray(half).save(tmp_path / "half.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may leak out as a Python warning
        result = run_cli(clip, "--mask", tmp_path / "half.png", "-o", tmp_path / "out", *FAST, "--dilate", "0")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert any("resized the mask to the frame size" in line for line in lines), result.output
    assert any("labels 1, 2" in line for line in lines), result.output
    assert "UserWarning" not in result.output and ".py:" not in result.output


# --- 4. timing --------------------------------------------------------------------------------------

VFR_MS = [0, 40, 100, 120, 300, 340, 360, 500]


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0)]


def audio_span(path: Path) -> tuple[float, float]:
    """(first, last) second of audio present."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.size]
    start = min(max(p.pts, 0) * p.time_base for p in packets)
    end = max((p.pts + p.duration) * p.time_base for p in packets)
    return float(start), float(end)


def onset(path: Path) -> float:
    """Second at which the 440 Hz tone starts in the output's audio."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        samples = np.concatenate([f.to_ndarray().astype(np.float32).ravel() for f in container.decode(stream)])
    loud = np.flatnonzero(np.abs(samples) > 0.05)
    return float(loud[0] / rate)


@pytest.mark.parametrize(
    ("outputs", "suffixes"),
    [(["foreground", "alpha"], ("_foreground.mp4", "_alpha.mp4")), (["transparent"], ("_transparent.mov",))],
)
def test_writers_keep_each_frame_time(outputs, suffixes, tmp_path):
    clip = write_clip(tmp_path / "vfr.mp4", height=32, width=48, times_ms=VFR_MS)
    info = video.probe(clip)
    group = writers.make_writers(tmp_path / "out", info, outputs, alpha_format="video")
    for frame in video.iter_timed_frames(clip):
        group.write(frame.rgb, np.full(frame.rgb.shape[:2], 0.5, np.float32), frame.time, frame.duration)
    for path in group.close():
        assert path.name.endswith(suffixes)
        assert frame_times(path) == pytest.approx([t / 1000 for t in VFR_MS], abs=1e-3), path


def test_webm_keeps_each_frame_time(tmp_path):
    clip = write_clip(tmp_path / "vfr.mp4", height=32, width=48, times_ms=VFR_MS)
    group = writers.make_writers(tmp_path / "out", video.probe(clip), ["transparent"], video_format="webm")
    for frame in video.iter_timed_frames(clip):
        group.write(frame.rgb, np.ones(frame.rgb.shape[:2], np.float32), frame.time, frame.duration)
    (path,) = group.close()
    assert frame_times(path) == pytest.approx([t / 1000 for t in VFR_MS], abs=1e-3)


def test_variable_frame_rate_run_keeps_timing_and_audio_sync(tmp_path):
    """The whole run: every output frame at its input frame's time, and the audio lined up with
    them, also when --start skips to a frame whose time is not start / average fps."""
    clip = write_clip(tmp_path / "vfr.mp4", height=32, width=48, times_ms=VFR_MS, audio=True, tone_from=0.3)
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 12:36] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    result = run_cli(clip, "--mask", tmp_path / "mask.png", "-o", out, "--outputs", "foreground", *FAST)
    assert result.exit_code == 0, result.output
    written = out / "vfr_foreground.mp4"
    assert frame_times(written) == pytest.approx(frame_times(clip), abs=1e-3)
    assert onset(written) == pytest.approx(0.3, abs=0.03)
    assert audio_span(written)[1] == pytest.approx(audio_span(clip)[1], abs=0.03)
    # Frame 4 is shown at 0.300 s, where 4 / average fps would say 0.258 s.
    late = tmp_path / "late"
    result = run_cli(
        clip, "--mask", tmp_path / "mask.png", "-o", late, "--outputs", "foreground", "--start", "4", *FAST
    )
    assert result.exit_code == 0, result.output
    shifted = late / "vfr_foreground.mp4"
    assert frame_times(shifted) == pytest.approx([(t - 300) / 1000 for t in VFR_MS[4:]], abs=1e-3)
    assert onset(shifted) == pytest.approx(0.0, abs=0.03)


def test_audio_that_cannot_be_carried_is_a_warning_line(tmp_path, monkeypatch):
    clip = write_clip(tmp_path / "talk.mp4", frames=3, height=32, width=48, audio=True)
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 12:36] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")

    def broken(*args, **kwargs):
        raise ValueError("no decoder for this audio")

    monkeypatch.setattr(writers._AudioTrack, "__init__", broken)
    result = run_cli(clip, "--mask", tmp_path / "mask.png", "-o", tmp_path / "out", "--outputs", "foreground", *FAST)
    assert result.exit_code == 0, result.output
    assert "warning: talk_foreground.mp4: audio not copied (no decoder for this audio)" in result.output
    assert (tmp_path / "out" / "talk_foreground.mp4").is_file()


def test_cli_choices_are_the_values_the_pipeline_takes():
    from matanyone_engine.core.engine.precision import CHOICES

    cli = importlib.import_module("matanyone_engine.core.cli.main")

    from matanyone_engine.core.app.api import OUTPUT_SIZES
    from matanyone_engine.core.app.options import PrecisionChoice
    from matanyone_engine.core.media.upsample import UPSAMPLE_METHODS

    assert typing.get_args(cli.AlphaFormat) == writers.ALPHA_FORMATS
    assert typing.get_args(cli.VideoFormat) == writers.VIDEO_FORMATS
    assert typing.get_args(cli.Precision) == CHOICES
    assert tuple(p.value for p in PrecisionChoice) == CHOICES  # bench's repeatable --precision
    assert typing.get_args(cli.OutputSize) == OUTPUT_SIZES
    assert typing.get_args(cli.Upsample) == UPSAMPLE_METHODS


def test_export_choices_are_the_values_the_builtin_exporters_take():
    pytest.importorskip("torch")
    from matanyone_engine.exporters.coreml.convert import TARGETS
    from matanyone_engine.exporters.coreml.exporter import CoreMLExporter
    from matanyone_engine.exporters.onnx.exporter import OnnxExporter

    cli = importlib.import_module("matanyone_engine.core.cli.main")
    assert set(typing.get_args(cli.ExportPrecision)) == set(OnnxExporter.precisions) == set(CoreMLExporter.precisions)
    assert typing.get_args(cli.CoreMLTarget) == TARGETS


@pytest.mark.parametrize(
    ("args", "option", "allowed"),
    [
        (["run", "clip.mp4", "--output-size", "big"], "'--output-size'", "'input', 'network'"),
        (["run", "clip.mp4", "--upsample", "cubic"], "'--upsample'", "'guided', 'bilinear'"),
        (["bench", "-p", "fp64"], "'--precision' / '-p'", "'fp32', 'bf16', 'fp16', 'fast'"),
        (["export", "-f", "onnx", "-o", "out", "--precision", "fp8"], "'--precision'", "'fp32', 'fp16'"),
        (
            ["export", "-f", "coreml", "-o", "out", "--target", "iOS99"],
            "'--target'",
            "'macOS13', 'macOS14', 'macOS15', 'iOS16', 'iOS17', 'iOS18'",
        ),
    ],
)
def test_a_value_outside_the_choices_is_refused_before_anything_runs(tmp_path, monkeypatch, args, option, allowed):
    """typer refuses it while parsing (nothing loads, nothing is written): one error line that
    names the option, the value and every allowed one, and points at --help; exit 2."""
    from matanyone_engine.core.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    bad = args[-1]
    assert error_lines(result.output) == [
        f"error: Invalid value for {option}: Value error, '{bad}' is not one of {allowed}. "
        f"(see `matanyone {args[0]} --help`)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_target_with_a_format_other_than_coreml_is_refused(tmp_path):
    from matanyone_engine.core.cli import app

    result = CliRunner().invoke(app, ["export", "-f", "onnx", "--target", "iOS17", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert error_lines(result.output) == ["error: --target is a Core ML deployment target; drop it for --format onnx"]
    assert not (tmp_path / "out").exists()
