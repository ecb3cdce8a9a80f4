"""core.writers: every output format, what it decodes back to, staging/abort, audio and layout."""

from __future__ import annotations

import gc
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import frame_pattern
from PIL import Image

from matanyone_engine.core.engine.errors import InputError, OutputError
from matanyone_engine.core.media import writers
from matanyone_engine.core.media.video import iter_frames, probe
from matanyone_engine.core.media.writers import (
    DEFAULT_BACKGROUND,
    AlphaPngWriter,
    AlphaVideoWriter,
    ForegroundWriter,
    RgbaPngWriter,
    TransparentVideoWriter,
    check_writable,
    composite,
    make_writers,
    parse_background,
    parse_outputs,
    require_encoder,
)


def one_line(excinfo: pytest.ExceptionInfo, *words: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def everything_in(folder: Path) -> list[str]:
    """Every file and folder below ``folder``, hidden ones included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def ramp(height: int, width: int) -> np.ndarray:
    return np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))


def frames(count: int, height: int = 48, width: int = 64):
    for i in range(count):
        yield frame_pattern(i, height, width), ramp(height, width)


def fill(writer, count: int = 3, height: int = 48, width: int = 64):
    for rgb, alpha in frames(count, height, width):
        writer.write(rgb, alpha)
    return writer


def video_streams(path: Path) -> dict[str, av.stream.Stream]:
    with av.open(str(path)) as container:
        return {s.type: (s.codec_context.name, s) for s in container.streams}


def decode(path: Path) -> tuple[list[av.VideoFrame], Fraction, str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        got = list(container.decode(stream))
        return got, stream.average_rate, stream.codec_context.name


def decode_vp9_with_alpha(path: Path) -> list[av.VideoFrame]:
    """FFmpeg's native VP9 decoder drops the alpha side channel; libvpx's keeps it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoder = av.CodecContext.create("libvpx-vp9", "r")
        return [f for packet in container.demux(stream) for f in decoder.decode(packet)]


def audio_of(path: Path) -> tuple[str, int, float, list[bytes]] | None:
    """(codec, sample rate, seconds covered, packet payloads) of the first audio stream, if any."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        packets = [p for p in container.demux(stream) if p.size]
        end = max((p.pts + (p.duration or 0)) * p.time_base for p in packets)
        start = min(max(p.pts, 0) * p.time_base for p in packets)
        return (
            stream.codec_context.name,
            stream.codec_context.sample_rate,
            float(end - start),
            [bytes(p) for p in packets],
        )


def loudness(path: Path) -> float:
    with av.open(str(path)) as container:
        samples = [f.to_ndarray().astype(np.float32).ravel() for f in container.decode(audio=0)]
    return float(np.sqrt(np.mean(np.concatenate(samples) ** 2)))


# --- option parsing and checks -------------------------------------------------------------------


def test_check_writable_creates_nothing(tmp_path):
    """A run that fails on its input or weights must not leave an empty -o folder behind, so the
    check proves the folder could be made without making it, and leaves no probe file."""
    target = tmp_path / "a" / "b"
    assert check_writable(target) == target
    assert everything_in(tmp_path) == []
    target.mkdir(parents=True)
    assert check_writable(target) == target
    assert everything_in(target) == []


def test_check_writable_refuses_files_and_paths_below_files(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    for bad in (blocker, blocker / "sub"):
        with pytest.raises(OutputError) as excinfo:
            check_writable(bad)
        one_line(excinfo, f"cannot write to {bad}", "choose another -o folder")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_check_writable_refuses_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(OutputError) as excinfo:
            check_writable(locked)
        one_line(excinfo, "cannot write to", "choose another -o folder")
    finally:
        locked.chmod(0o700)


def test_parse_outputs():
    assert parse_outputs("alpha, foreground,alpha") == ["alpha", "foreground"]
    assert parse_outputs(["RGBA", "transparent"]) == ["rgba", "transparent"]
    with pytest.raises(OutputError) as excinfo:
        parse_outputs("alpha,matte")
    one_line(excinfo, "'matte'", "alpha, rgba, foreground, transparent")
    with pytest.raises(OutputError):
        parse_outputs(" , ")


def test_parse_background(tmp_path):
    assert parse_background(None) == DEFAULT_BACKGROUND == (120, 255, 155)
    assert parse_background("default") == DEFAULT_BACKGROUND
    assert parse_background("green") == (0, 128, 0)
    assert parse_background("#78FF9B") == (120, 255, 155)
    assert parse_background("10, 20,30") == (10, 20, 30)
    assert parse_background((1, 2, 3)) == (1, 2, 3)
    image = np.zeros((5, 7, 3), dtype=np.uint8)
    image[..., 2] = 99
    Image.fromarray(image).save(tmp_path / "bg.png")
    np.testing.assert_array_equal(parse_background(str(tmp_path / "bg.png")), image)
    for bad, words in (
        ("blurple", ("unknown background 'blurple'", "#RRGGBB")),
        ("1,2", ("R,G,B",)),
        ("1,2,300", ("0-255",)),
        (str(tmp_path / "missing.jpg"), ("background image not found",)),
    ):
        with pytest.raises(InputError) as excinfo:
            parse_background(bad)
        one_line(excinfo, *words)
    (tmp_path / "broken.png").write_text("no")
    with pytest.raises(InputError) as excinfo:
        parse_background(str(tmp_path / "broken.png"))
    one_line(excinfo, "is not an image")


def test_composite_blends_over_colour_and_image():
    rgb = np.full((2, 3, 3), 200, dtype=np.uint8)
    alpha = np.array([[1.0, 0.0, 0.5], [0.25, -3.0, np.nan]], dtype=np.float32)
    out = composite(rgb, alpha, (0, 100, 40))
    np.testing.assert_array_equal(out[0, 0], [200, 200, 200])
    np.testing.assert_array_equal(out[0, 1], [0, 100, 40])
    np.testing.assert_array_equal(out[0, 2], [100, 150, 120])
    np.testing.assert_array_equal(out[1, 0], [50, 125, 80])
    np.testing.assert_array_equal(out[1, 1], [0, 100, 40])  # clamped
    np.testing.assert_array_equal(out[1, 2], [0, 100, 40])  # NaN is background
    big = np.full((8, 12, 3), 60, dtype=np.uint8)
    np.testing.assert_array_equal(composite(rgb, np.zeros((2, 3), np.float32), big), np.full((2, 3, 3), 60))


def test_require_encoder():
    require_encoder("libx264", "yuv420p")
    with pytest.raises(OutputError) as excinfo:
        require_encoder("libnosuchcodec", "yuv420p")
    one_line(excinfo, "no libnosuchcodec encoder")
    with pytest.raises(OutputError) as excinfo:
        require_encoder("libx264", "yuva444p10le")
    one_line(excinfo, "cannot write yuva444p10le")


# --- PNG sequences ------------------------------------------------------------------------------


def test_alpha_png16_round_trip(tmp_path):
    alpha = np.linspace(0.0, 1.0, 48 * 64, dtype=np.float32).reshape(48, 64)
    alpha[0, :4] = [1 / 65535, 2.4 / 65535, 1.2, -0.1]
    writer = AlphaPngWriter(tmp_path / "alpha", bits=16)
    writer.write(frame_pattern(0, 48, 64), alpha)
    writer.write(frame_pattern(1, 48, 64), 1.0 - alpha)
    assert writer.close() == [tmp_path / "alpha"]
    assert everything_in(tmp_path) == ["alpha", "alpha/000000.png", "alpha/000001.png"]
    back = cv2.imread(str(tmp_path / "alpha" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == (48, 64)
    expected = np.round(np.clip(alpha.astype(np.float64), 0, 1) * 65535).astype(np.uint16)
    np.testing.assert_array_equal(back, expected)
    assert list(back[0, :4]) == [1, 2, 65535, 0]
    with Image.open(tmp_path / "alpha" / "000001.png") as image:
        assert image.mode.startswith("I")  # 16-bit grey for PIL too
        inverse = (1.0 - np.clip(alpha, 0, 1)).astype(np.float64)
        np.testing.assert_array_equal(np.array(image), np.round(inverse * 65535))


def test_alpha_png8(tmp_path):
    alpha = ramp(10, 256)
    writer = AlphaPngWriter(tmp_path / "a8", bits=8)
    writer.write(frame_pattern(0, 10, 256), alpha)
    writer.close()
    back = cv2.imread(str(tmp_path / "a8" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, np.round(alpha * 255).astype(np.uint8))


def test_rgba_png_round_trip(tmp_path):
    rgb, alpha = next(frames(1))
    writer = RgbaPngWriter(tmp_path / "rgba")
    writer.write(rgb, alpha)
    writer.close()
    back = np.array(Image.open(tmp_path / "rgba" / "000000.png"))
    assert back.shape == (48, 64, 4) and back.dtype == np.uint8
    np.testing.assert_array_equal(back[..., :3], rgb)
    np.testing.assert_array_equal(back[..., 3], np.round(alpha * 255).astype(np.uint8))


def test_foreground_png_over_colour_and_resized_image(tmp_path):
    rgb = np.full((2, 3, 3), 200, dtype=np.uint8)
    rgb[1, 2] = (10, 20, 30)
    alpha = np.array([[1.0, 0.0, 0.5], [0.25, 0.75, 1.0]], dtype=np.float32)
    writer = ForegroundWriter(tmp_path / "fg", "#102030")  # (16, 32, 48)
    writer.write(rgb, alpha)
    writer.close()
    back = np.array(Image.open(tmp_path / "fg" / "000000.png"))
    # frame * alpha + background * (1 - alpha), worked out by hand
    expected = [
        [[200, 200, 200], [16, 32, 48], [108, 116, 124]],
        [[62, 74, 86], [154, 158, 162], [10, 20, 30]],
    ]
    np.testing.assert_array_equal(back, np.array(expected, dtype=np.uint8))
    rgb, alpha = next(frames(1))
    background = np.zeros((24, 32, 3), dtype=np.uint8)
    background[:, :16] = 250
    writer = ForegroundWriter(tmp_path / "fg2", background)
    writer.write(rgb, np.zeros_like(alpha))
    writer.close()
    back = np.array(Image.open(tmp_path / "fg2" / "000000.png"))
    assert back.shape == (48, 64, 3) and back[10, 5, 0] == 250 and back[10, 60, 0] == 0


# --- staging, abort, replacement ----------------------------------------------------------------


def test_output_appears_only_on_close(tmp_path):
    writer = fill(AlphaPngWriter(tmp_path / "alpha"), count=2)
    partial = everything_in(tmp_path)
    assert not (tmp_path / "alpha").exists()
    assert partial and all(p.startswith(".alpha.partial-") for p in partial)
    video = fill(AlphaVideoWriter(tmp_path / "clip_alpha.mp4", fps=24), count=2)
    assert not (tmp_path / "clip_alpha.mp4").exists()
    writer.close()
    video.close()
    assert everything_in(tmp_path) == ["alpha", "alpha/000000.png", "alpha/000001.png", "clip_alpha.mp4"]


WRITER_KINDS = {
    "png16": lambda d, src: AlphaPngWriter(d / "alpha"),
    "png8": lambda d, src: AlphaPngWriter(d / "alpha8", bits=8),
    "rgba": lambda d, src: RgbaPngWriter(d / "rgba"),
    "foreground-png": lambda d, src: ForegroundWriter(d / "fg"),
    "foreground-mp4": lambda d, src: ForegroundWriter(d / "fg.mp4", fps=24, audio_from=src),
    "alpha-mp4": lambda d, src: AlphaVideoWriter(d / "a.mp4", fps=24, audio_from=src),
    "prores": lambda d, src: TransparentVideoWriter(d / "t.mov", fps=24, format="prores", audio_from=src),
    "webm": lambda d, src: TransparentVideoWriter(d / "t.webm", fps=24, format="webm", audio_from=src),
}


@pytest.mark.parametrize("kind", sorted(WRITER_KINDS))
def test_abort_leaves_nothing_behind(kind, tmp_path, make_clip):
    source = make_clip("in.mp4", frames=12, audio=True)
    out = tmp_path / "out"
    out.mkdir()
    writer = fill(WRITER_KINDS[kind](out, source), count=3)
    assert everything_in(out) != []
    writer.abort()
    assert everything_in(out) == []
    writer.abort()  # twice is harmless
    with pytest.raises(ValueError):
        writer.write(*next(frames(1)))


@pytest.mark.parametrize("kind", ["png16", "prores"])
def test_exception_or_forgotten_writer_leaves_nothing_behind(kind, tmp_path):
    with pytest.raises(RuntimeError):
        with WRITER_KINDS[kind](tmp_path, None) as writer:
            fill(writer, count=2)
            raise RuntimeError("model crashed")
    assert everything_in(tmp_path) == []
    writer = fill(WRITER_KINDS[kind](tmp_path, None), count=2)
    assert everything_in(tmp_path) != []
    del writer
    gc.collect()
    assert everything_in(tmp_path) == []


def test_close_without_frames_is_an_error_and_leaves_nothing(tmp_path):
    for writer in (AlphaPngWriter(tmp_path / "alpha"), ForegroundWriter(tmp_path / "fg.mp4", fps=24)):
        with pytest.raises(OutputError) as excinfo:
            writer.close()
        one_line(excinfo, "no frames were written")
    assert everything_in(tmp_path) == []


def test_existing_output_is_replaced_only_on_success(tmp_path):
    target = tmp_path / "alpha"
    target.mkdir()
    (target / "old-run.png").write_text("previous result")
    fill(AlphaPngWriter(target), count=2).abort()
    assert everything_in(tmp_path) == ["alpha", "alpha/old-run.png"]
    fill(AlphaPngWriter(target), count=2).close()
    assert everything_in(tmp_path) == ["alpha", "alpha/000000.png", "alpha/000001.png"]

    clip = tmp_path / "fg.mp4"
    clip.write_bytes(b"previous video")
    fill(ForegroundWriter(clip, fps=24), count=2).abort()
    assert clip.read_bytes() == b"previous video"
    fill(ForegroundWriter(clip, fps=24), count=2).close()
    assert len(decode(clip)[0]) == 2


# --- videos -------------------------------------------------------------------------------------


def test_foreground_video_keeps_fps_and_pads_odd_sizes(tmp_path):
    path = tmp_path / "fg.mp4"
    writer = ForegroundWriter(path, "black", fps=30000 / 1001)
    rgbs = []
    for rgb, alpha in frames(5, height=47, width=63):
        writer.write(rgb, np.ones_like(alpha))
        rgbs.append(rgb)
    assert writer.close() == [path]
    got, rate, codec = decode(path)
    assert codec == "h264" and rate == Fraction(30000, 1001) and len(got) == 5
    assert got[0].format.name == "yuv420p" and (got[0].width, got[0].height) == (64, 48)
    for frame, rgb in zip(got, rgbs, strict=False):
        back = frame.to_ndarray(format="rgb24")[:47, :63].astype(np.float32)
        assert np.abs(back - rgb).mean() < 3
    assert audio_of(path) is None


def test_alpha_video_full_range_round_trip(tmp_path):
    path = tmp_path / "a.mp4"
    alpha = ramp(48, 64)
    alpha[:, :8] = 0.0
    alpha[:, -8:] = 1.0
    writer = AlphaVideoWriter(path, fps=12.5)
    for _ in range(3):
        writer.write(frame_pattern(0, 48, 64), alpha)
    writer.close()
    got, rate, codec = decode(path)
    assert codec == "h264" and rate == Fraction(25, 2) and len(got) == 3
    grey = got[0].to_ndarray(format="gray").astype(np.float32)
    assert np.abs(grey - alpha * 255).max() <= 4
    assert grey[:, 2:6].max() <= 1 and grey[:, -6:-2].min() >= 254  # 0 and 1 stay black and white


@pytest.mark.parametrize(("fmt", "codec", "suffix"), [("prores", "prores", ".mov"), ("webm", "vp9", ".webm")])
def test_transparent_video_decodes_back_with_alpha(fmt, codec, suffix, tmp_path):
    path = tmp_path / f"t{suffix}"
    writer = TransparentVideoWriter(path, fps=25, format=fmt)
    written = list(frames(4, height=47, width=63))
    for rgb, alpha in written:
        writer.write(rgb, alpha)
    writer.close()
    got, rate, stream_codec = decode(path)
    assert stream_codec == codec and rate == 25 and len(got) == 4
    if fmt == "webm":
        got = decode_vp9_with_alpha(path)
        assert len(got) == 4
        assert video_streams(path)["video"][1].metadata.get("alpha_mode") == "1"
    else:
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.profile == "4444"
    frame = got[0]
    assert frame.format.name.startswith("yuva"), frame.format.name
    assert (frame.width, frame.height) == (63, 47)
    rgba = frame.to_ndarray(format="rgba").astype(np.float32)
    rgb, alpha = written[0]
    assert np.abs(rgba[..., 3] - alpha * 255).max() <= (2 if fmt == "prores" else 6)
    assert np.abs(rgba[..., :3] - rgb).mean() < 4


def test_missing_encoder_is_an_output_error(tmp_path, monkeypatch):
    monkeypatch.setattr(writers, "_PRORES", ("prores_from_mars", "yuva444p10le", {}))
    with pytest.raises(OutputError) as excinfo:
        TransparentVideoWriter(tmp_path / "t.mov", fps=24, format="prores")
    one_line(excinfo, "no prores_from_mars encoder")
    assert everything_in(tmp_path) == []


def test_unknown_transparent_format(tmp_path):
    with pytest.raises(OutputError) as excinfo:
        TransparentVideoWriter(tmp_path / "t.avi", fps=24, format="avi")
    one_line(excinfo, "'avi'", "prores, webm")


# --- audio --------------------------------------------------------------------------------------


def test_videos_carry_the_input_audio(tmp_path, make_clip):
    source = make_clip("talk.mp4", frames=24, fps=24, audio=True)
    info = probe(source)
    group = make_writers(tmp_path / "out", info, "alpha,foreground,transparent", alpha_format="video")
    for rgb in iter_frames(source):
        group.write(rgb, ramp(*rgb.shape[:2]))
    paths = group.close()
    assert group.warnings == []
    _, _, _, source_packets = audio_of(source)
    for path in paths:
        codec, rate, seconds, packets = audio_of(path)
        assert codec == "aac" and rate == 44100, path
        assert seconds == pytest.approx(1.0, abs=0.05), path
        assert set(packets) <= set(source_packets), f"{path.name}: audio was re-encoded, not copied"
        assert decode(path)[1] == 24
    webm = make_writers(tmp_path / "out", info, ["transparent"], video_format="webm")
    for rgb in iter_frames(source):
        webm.write(rgb, ramp(*rgb.shape[:2]))
    (path,) = webm.close()
    codec, rate, seconds, _ = audio_of(path)
    assert (codec, rate) == ("opus", 48000)  # WebM cannot hold AAC: transcoded
    assert seconds == pytest.approx(1.0, abs=0.05)


def test_audio_a_container_refuses_is_transcoded(tmp_path, make_clip):
    source = make_clip("opus.mkv", frames=12, fps=24, audio=True, audio_codec="libopus")
    group = make_writers(tmp_path / "out", probe(source), ["foreground", "transparent"], video_format="prores")
    for rgb in iter_frames(source):
        group.write(rgb, ramp(*rgb.shape[:2]))
    mp4, mov = group.close()
    assert group.warnings == []
    assert audio_of(mp4)[0] == "opus"  # mp4 takes Opus as it is
    codec, _, seconds, _ = audio_of(mov)
    assert codec == "aac"  # .mov lists Opus but refuses it: re-encoded
    assert seconds == pytest.approx(0.5, abs=0.06)


def test_audio_follows_the_processed_range(tmp_path, make_clip):
    source = make_clip("half.mp4", frames=24, fps=24, audio=True, tone_from=0.5)
    info = probe(source)
    late = make_writers(tmp_path / "late", info, ["foreground"], start_frame=12)
    early = make_writers(tmp_path / "early", info, ["foreground"], start_frame=0)
    for rgb in iter_frames(source, start=12):
        late.write(rgb, ramp(*rgb.shape[:2]))
        early.write(rgb, ramp(*rgb.shape[:2]))
    (late_path,) = late.close()
    (early_path,) = early.close()
    assert audio_of(late_path)[2] == pytest.approx(0.5, abs=0.05)
    assert audio_of(early_path)[2] == pytest.approx(0.5, abs=0.05)
    assert loudness(late_path) > 0.1  # frames 12..23 go with the tone
    assert loudness(early_path) < 0.05  # frames 0..11 go with the silence (AAC smears the onset a little)


def test_no_audio_input_gives_silent_videos(tmp_path, make_clip):
    source = make_clip("mute.mp4", frames=4)
    group = make_writers(tmp_path, probe(source), ["foreground", "transparent"])
    for rgb in iter_frames(source):
        group.write(rgb, ramp(*rgb.shape[:2]))
    for path in group.close():
        assert audio_of(path) is None


# --- make_writers ----------------------------------------------------------------------------------


def test_make_writers_layout(tmp_path, make_clip):
    source = make_clip("dance.mp4", frames=2)
    out = tmp_path / "results"
    group = make_writers(out, probe(source), "alpha,rgba,foreground,transparent", foreground_format="png")
    assert group.destinations == [
        out / "dance" / "alpha",
        out / "dance" / "rgba",
        out / "dance" / "foreground",
        out / "dance_transparent.mov",
    ]
    for rgb in iter_frames(source):
        group.write(rgb, ramp(*rgb.shape[:2]))
    assert group.close() == group.destinations
    assert everything_in(out) == [
        "dance",
        "dance/alpha",
        "dance/alpha/000000.png",
        "dance/alpha/000001.png",
        "dance/foreground",
        "dance/foreground/000000.png",
        "dance/foreground/000001.png",
        "dance/rgba",
        "dance/rgba/000000.png",
        "dance/rgba/000001.png",
        "dance_transparent.mov",
    ]
    videos = make_writers(
        out, probe(source), ["alpha", "foreground", "transparent"], alpha_format="video", video_format="webm"
    )
    assert videos.destinations == [
        out / "dance_alpha.mp4",
        out / "dance_foreground.mp4",
        out / "dance_transparent.webm",
    ]
    videos.abort()


def test_make_writers_for_a_frame_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(frame_pattern(i, 32, 48)).save(folder / f"{i}.png")
    group = make_writers(tmp_path / "out", probe(folder), ["alpha", "foreground"])
    for rgb in iter_frames(folder):
        group.write(rgb, ramp(32, 48))
    alpha_dir, fg_video = group.close()
    assert alpha_dir == tmp_path / "out" / "frames" / "alpha"
    got, rate, _ = decode(fg_video)
    assert fg_video.name == "frames_foreground.mp4" and rate == 24 and len(got) == 2
    assert audio_of(fg_video) is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"outputs": "alpha,mask"}, ("unknown output 'mask'",)),
        ({"alpha_format": "exr"}, ("unknown alpha format 'exr'", "png16, png8, video")),
        ({"video_format": "gif"}, ("unknown transparent video format 'gif'",)),
        ({"foreground_format": "tiff"}, ("unknown foreground format 'tiff'",)),
    ],
)
def test_make_writers_rejects_bad_options_before_touching_disk(kwargs, words, tmp_path, make_clip):
    info = probe(make_clip("in.mp4", frames=1))
    args = {"outputs": "alpha,foreground"} | kwargs
    with pytest.raises(OutputError) as excinfo:
        make_writers(tmp_path / "out", info, **args)
    one_line(excinfo, *words)
    assert not (tmp_path / "out").exists()


def test_make_writers_bad_background_and_unwritable_outdir(tmp_path, make_clip):
    info = probe(make_clip("in.mp4", frames=1))
    with pytest.raises(InputError):
        make_writers(tmp_path / "out", info, ["foreground"], background="no-such-colour")
    assert not (tmp_path / "out").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError) as excinfo:
        make_writers(blocker / "out", info, ["alpha"])
    one_line(excinfo, "cannot write to", "choose another -o folder")


def test_group_failure_on_close_drops_the_unpublished_rest(tmp_path, make_clip):
    source = make_clip("in.mp4", frames=2)
    group = make_writers(tmp_path, probe(source), ["alpha", "rgba"])
    for rgb in iter_frames(source):
        group.write(rgb, ramp(*rgb.shape[:2]))

    def broken_commit():
        raise OutputError("disk full")

    group.writers[1]._sink.commit = broken_commit
    with pytest.raises(OutputError, match="disk full"):
        group.close()
    assert everything_in(tmp_path) == ["in", "in.mp4", "in/alpha", "in/alpha/000000.png", "in/alpha/000001.png"]


def test_group_abort_removes_the_folder_it_made(tmp_path, make_clip):
    source = make_clip("in.mp4", frames=2)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with make_writers(out, probe(source), ["alpha", "rgba", "foreground"]) as group:
            group.write(next(iter_frames(source)), ramp(64, 96))
            raise KeyboardInterrupt
    assert everything_in(out) == []


# --- the real clip --------------------------------------------------------------------------------


def test_real_clip_outputs(tmp_path, data_dir):
    source = data_dir / "test-sample1.mp4"
    info = probe(source)
    mask = cv2.imread(str(data_dir / "test-sample1.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    group = make_writers(tmp_path, info, ["alpha", "foreground", "transparent"])
    for rgb in iter_frames(source, count=4):
        group.write(rgb, mask)
    alpha_dir, fg_video, mov = group.close()
    back = cv2.imread(str(alpha_dir / "000003.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back, np.round(mask * 65535).astype(np.uint16))
    for path in (fg_video, mov):
        got, rate, _ = decode(path)
        assert rate == 30 and len(got) == 4 and (got[0].width, got[0].height) == (1280, 720)
        codec, _, seconds, _ = audio_of(path)
        assert codec == "aac" and seconds == pytest.approx(4 / 30, abs=0.05)
