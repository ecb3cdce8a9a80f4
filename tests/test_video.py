"""core.video: probing and streaming clips and frame folders, --max_size, and every input error."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import frame_pattern
from PIL import Image

from matanyone_engine.core.engine.errors import InputError
from matanyone_engine.core.media import video
from matanyone_engine.core.media.video import VideoInfo, iter_frames, probe, resize_to_max_size, scaled_size


def one_line_error(excinfo: pytest.ExceptionInfo, *words: str) -> str:
    """The message is what the CLI prints: a single line, naming the problem and the fix."""
    message = str(excinfo.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def red_level(frame: np.ndarray) -> float:
    return float(frame[:, :, 0].mean())


def expected_red(index: int) -> int:
    return int(frame_pattern(index, 2, 2)[0, 0, 0])


# --- video files -----------------------------------------------------------------------------------


def test_probe_video(make_clip):
    path = make_clip("walk.mp4", frames=10, height=64, width=96, fps=24)
    info = probe(path)
    assert info == VideoInfo(
        path=path,
        name="walk",
        width=96,
        height=64,
        fps=24.0,
        frame_count=10,
        has_audio=False,
        is_folder=False,
        time_base=Fraction(1, 12288),  # what FFmpeg's mp4 muxer picks for 24 fps
    )


def test_probe_sees_audio_and_ntsc_rate(make_clip):
    path = make_clip("talk.mp4", frames=6, fps=Fraction(30000, 1001), audio=True)
    info = probe(path)
    assert info.has_audio
    assert info.fps == pytest.approx(29.97, abs=0.001)
    assert video.fps_fraction(info.fps) == Fraction(30000, 1001)


def test_iter_frames_yields_rgb_frames_in_order(make_clip):
    path = make_clip(frames=8, height=48, width=80)
    frames = list(iter_frames(path))
    assert len(frames) == 8
    for i, frame in enumerate(frames):
        assert frame.shape == (48, 80, 3) and frame.dtype == np.uint8
        assert red_level(frame) == pytest.approx(expected_red(i), abs=3)


def test_iter_frames_start_and_count_slice_the_clip(make_clip):
    path = make_clip(frames=10)
    everything = list(iter_frames(path))
    part = list(iter_frames(path, start=3, count=4))
    assert len(part) == 4
    for got, want in zip(part, everything[3:7], strict=False):
        np.testing.assert_array_equal(got, want)
    assert len(list(iter_frames(path, start=7))) == 3
    assert list(iter_frames(path, start=50)) == []
    assert list(iter_frames(path, count=0)) == []


def test_iter_frames_rejects_negative_arguments(make_clip):
    path = make_clip(frames=2)
    with pytest.raises(ValueError):
        iter_frames(path, start=-1)
    with pytest.raises(ValueError):
        iter_frames(path, count=-2)


class _CountingFile(io.FileIO):
    """A file that adds up the bytes FFmpeg reads from it."""

    bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        _CountingFile.bytes_read += len(data)
        return data

    def readinto(self, buffer) -> int | None:
        n = super().readinto(buffer)
        _CountingFile.bytes_read += n or 0
        return n


def test_iter_frames_streams_instead_of_decoding_the_whole_clip(make_clip, monkeypatch):
    path = make_clip("long.mp4", frames=240, noise=True)
    real_open = av.open

    def counting_open(file, mode="r", **kwargs):
        if mode == "r" and isinstance(file, str):
            return real_open(_CountingFile(file, "r"), mode="r", **kwargs)
        return real_open(file, mode, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    _CountingFile.bytes_read = 0
    frames = iter_frames(path, count=3)
    assert _CountingFile.bytes_read == 0, "iter_frames must not touch the file before the first frame is asked for"
    assert len(list(frames)) == 3
    first_three = _CountingFile.bytes_read
    _CountingFile.bytes_read = 0
    assert sum(1 for _ in iter_frames(path)) == 240
    whole = _CountingFile.bytes_read
    assert whole >= path.stat().st_size * 0.9  # the counter does see every read
    assert first_three < 0.25 * whole, f"3 of 240 frames read {first_three} of {whole} bytes"


def test_closing_the_generator_early_releases_the_clip(make_clip):
    path = make_clip(frames=10)
    frames = iter_frames(path)
    next(frames)
    frames.close()  # must not raise; the finally block closes the container
    with pytest.raises(StopIteration):
        next(frames)


# --- image folders -------------------------------------------------------------------------------


def _save(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image).save(path)


def test_folder_probe_and_frames_in_name_order(tmp_path):
    folder = tmp_path / "shot_07"
    folder.mkdir()
    for i in (2, 0, 1):
        _save(folder / f"frame_{i:03d}.png", frame_pattern(i, 30, 40))
    (folder / "notes.txt").write_text("not a frame")
    (folder / "thumbs").mkdir()
    info = probe(folder)
    assert info == VideoInfo(
        path=folder,
        name="shot_07",
        width=40,
        height=30,
        fps=24.0,
        frame_count=3,
        has_audio=False,
        is_folder=True,
        frame_names=("frame_000.png", "frame_001.png", "frame_002.png"),
    )
    frames = list(iter_frames(folder))
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, frame_pattern(i, 30, 40))
    np.testing.assert_array_equal(next(iter_frames(folder, start=2)), frame_pattern(2, 30, 40))
    assert len(list(iter_frames(folder, start=1, count=1))) == 1


def test_folder_frames_become_rgb(tmp_path):
    folder = tmp_path / "modes"
    folder.mkdir()
    grey = np.full((10, 12), 77, dtype=np.uint8)
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., 1] = 200
    grey16 = np.full((10, 12), 0x1234, dtype=np.uint16)
    Image.fromarray(grey).save(folder / "a.png")
    Image.fromarray(rgba).save(folder / "b.png")
    Image.fromarray(grey16).save(folder / "c.png")
    cv2.imwrite(str(folder / "d.jpg"), np.full((10, 12, 3), 128, np.uint8))
    a, b, c, d = iter_frames(folder)
    assert all(f.shape == (10, 12, 3) and f.dtype == np.uint8 for f in (a, b, c, d))
    assert (a == 77).all()
    assert (b[..., 1] == 200).all() and (b[..., 0] == 0).all()
    assert (c == 0x12).all()  # the top 8 bits, not PIL's clip-to-white
    assert abs(int(d.mean()) - 128) <= 1


def test_folder_without_frames(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(InputError) as excinfo:
        probe(tmp_path)
    one_line_error(excinfo, "holds no image frames", "png")
    with pytest.raises(InputError):
        list(iter_frames(tmp_path))


def test_folder_with_mismatched_frame_sizes(tmp_path):
    _save(tmp_path / "0.png", frame_pattern(0, 20, 30))
    _save(tmp_path / "1.png", frame_pattern(1, 20, 31))
    with pytest.raises(InputError) as excinfo:
        list(iter_frames(tmp_path))
    one_line_error(excinfo, "1.png", "same size")


def test_folder_with_unreadable_frame(tmp_path):
    _save(tmp_path / "0.png", frame_pattern(0, 20, 30))
    (tmp_path / "1.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError) as excinfo:
        list(iter_frames(tmp_path))
    one_line_error(excinfo, "1.png", "not a readable image")


# --- input errors ---------------------------------------------------------------------------------


def test_missing_input(tmp_path):
    missing = tmp_path / "x.mp4"
    with pytest.raises(InputError) as excinfo:
        probe(missing)
    one_line_error(excinfo, "input not found", "x.mp4", "check the path")
    with pytest.raises(InputError):
        next(iter_frames(missing))


def test_file_that_is_not_a_video(tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_text("these are not the frames you are looking for\n" * 50)
    with pytest.raises(InputError) as excinfo:
        probe(fake)
    one_line_error(excinfo, "cannot decode clip.mp4", "ffmpeg -i clip.mp4")
    with pytest.raises(InputError):
        next(iter_frames(fake))


def test_file_without_video_stream(tmp_path):
    path = tmp_path / "voice.m4a"
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100)
        stream.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 4410), np.float32), format="flt", layout="mono")
        chunk.sample_rate = 44100
        container.mux(stream.encode(chunk))
        container.mux(stream.encode(None))
    with pytest.raises(InputError) as excinfo:
        probe(path)
    one_line_error(excinfo, "no video stream in voice.m4a")
    with pytest.raises(InputError):
        next(iter_frames(path))


def _empty_video(path: Path) -> Path:
    """A Matroska file whose video stream has no frames (only its audio stream has packets)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        sound = container.add_stream("aac", rate=44100)
        sound.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 44100), np.float32), format="flt", layout="mono")
        chunk.sample_rate = 44100
        container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    return path


def test_empty_video(tmp_path):
    path = _empty_video(tmp_path / "empty.mkv")
    with av.open(str(path)) as container:  # the premise: a video stream that is there but empty
        assert len(container.streams.video) == 1
    with pytest.raises(InputError) as excinfo:
        probe(path)
    one_line_error(excinfo, "empty.mkv", "no frames")
    with pytest.raises(InputError) as excinfo:
        list(iter_frames(path))
    one_line_error(excinfo, "no frames")


def test_video_truncated_mid_stream(make_clip, tmp_path):
    whole = make_clip("whole.mp4", frames=40, noise=True, faststart=True)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    info = probe(cut)  # the index is intact, so the clip opens and starts decoding
    assert info.frame_count == 40
    frames = iter_frames(cut)
    assert next(frames).shape == (64, 96, 3)
    with pytest.raises(InputError) as excinfo:
        list(frames)
    message = one_line_error(excinfo, "cut.mp4", "truncated or corrupt")
    assert "Errno" not in message
    assert not isinstance(excinfo.value, av.FFmpegError)


def test_video_truncated_before_its_index(make_clip, tmp_path):
    whole = make_clip("whole.mp4", frames=20)  # moov at the end: a cut file has no index at all
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:-2000])
    with pytest.raises(InputError) as excinfo:
        probe(cut)
    one_line_error(excinfo, "cannot decode cut.mp4", "re-encode")


# --- max size ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "max_size", "expected"),
    [
        (720, 1280, 480, (480, 853)),
        (1280, 720, 480, (853, 480)),
        (1088, 1920, 512, (512, 903)),
        (720, 1280, 720, (720, 1280)),  # already at the cap
        (720, 1280, 1080, (720, 1280)),  # never upscaled
        (720, 1280, -1, (720, 1280)),  # disabled, the demo's default
        (720, 1280, 0, (720, 1280)),
    ],
)
def test_scaled_size(h, w, max_size, expected):
    assert scaled_size(h, w, max_size) == expected


def test_resize_to_max_size_uses_area_interpolation():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    small = resize_to_max_size(frame, 40)
    assert small.shape == (40, 71, 3) and small.dtype == np.uint8
    np.testing.assert_array_equal(small, cv2.resize(frame, (71, 40), interpolation=cv2.INTER_AREA))
    assert not np.array_equal(small, cv2.resize(frame, (71, 40), interpolation=cv2.INTER_LINEAR))
    assert resize_to_max_size(frame, 90) is frame
    assert resize_to_max_size(frame, -1) is frame


# --- the real clips ---------------------------------------------------------------------------------


def test_real_clips(data_dir):
    one = probe(data_dir / "test-sample1.mp4")
    assert (one.height, one.width, one.fps, one.frame_count, one.has_audio) == (720, 1280, 30.0, 79, True)
    two = probe(data_dir / "test-sample2.mp4")
    assert (two.height, two.width, two.fps, two.frame_count, two.has_audio) == (1088, 1920, 24.0, 108, False)
    first, second = iter_frames(data_dir / "test-sample1.mp4", count=2)
    assert first.shape == (720, 1280, 3) and first.dtype == np.uint8
    assert not np.array_equal(first, second)
