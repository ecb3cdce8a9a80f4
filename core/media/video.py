"""Input side: probe a clip or a folder of frames, stream its frames as RGB, cap its size.

Frames are streamed one at a time because a matting run at 1080p holds several hundred megabytes
per second of video; nothing here keeps more than the frame being handed out. Every failure a user
can cause (wrong path, a file that is not a video, a clip cut off half-way) surfaces as a one-line
InputError, never as a raw PyAV exception, so the CLI can print it and exit.

Frames come out as a player shows them: a phone clip's display matrix (and a JPEG frame's EXIF
orientation) is applied, so sizes reported here are upright sizes. Each video frame keeps its own
timestamp (``iter_timed_frames``), so a variable-frame-rate clip can be written back with its
timing intact; a frame folder has no timing and plays at ``FOLDER_FPS``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import natsort
import numpy as np
from av.sidedata.sidedata import SideData
from PIL import Image, ImageOps, UnidentifiedImageError

from ..engine.errors import InputError, MatanyoneWarning
from .orientation import EXIF_TRANSPOSED, UPRIGHT, Orientation, from_display_matrix

#: Extensions of frame files inside an input folder; anything else in the folder is ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Frame rate given to image folders, which carry none of their own.
FOLDER_FPS = 24.0
_EXIF_ORIENTATION = 0x0112
_DISPLAY_MATRIX = "DISPLAYMATRIX"  # PyAV's side-data key (av.sidedata.sidedata.Type's name)


@dataclass(frozen=True)
class VideoInfo:
    """What the rest of the pipeline needs to know about an input before decoding it."""

    path: Path
    name: str
    width: int
    height: int
    fps: float
    frame_count: int
    has_audio: bool
    is_folder: bool
    #: How stored frames are turned to be shown (width/height above are already the shown ones).
    orientation: Orientation = UPRIGHT
    #: The video stream's time base, in which its timestamps are exact; None for a frame folder.
    time_base: Fraction | None = None
    #: A folder's frame files in the order they are read; empty for a video.
    frame_names: tuple[str, ...] = ()
    #: A folder's hidden files (``.*``, macOS ``._*`` resource forks) that were left out.
    skipped_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class TimedFrame:
    """One upright HxWx3 uint8 RGB frame and when it is shown.

    ``time`` is in seconds from the start of the video stream (exact: a Fraction of the stream's
    time base); ``duration`` is how long it stays up when the container says so, else None.
    """

    rgb: np.ndarray
    time: Fraction
    duration: Fraction | None = None


def probe(path: str | Path) -> VideoInfo:
    """Describe ``path``; for a video this decodes the first frame, so a clip that cannot even
    start decoding is rejected here rather than after the model has been loaded."""
    path = _existing(path)
    if path.is_dir():
        return _probe_folder(path)
    return _probe_video(path)


def clip_name(path: str | Path) -> str:
    """The name a clip's outputs are filed under (OUTDIR/<name>/...): a video's stem, a frame
    folder's own name. ``batch`` needs it before probing, to find clashes and leftovers."""
    path = Path(path).expanduser()
    return path.resolve().name if path.is_dir() else path.stem


def iter_frames(path: str | Path, start: int = 0, count: int | None = None) -> Iterator[np.ndarray]:
    """Yield upright HxWx3 uint8 RGB frames ``start`` .. ``start + count`` one at a time.

    Lazy: nothing is opened until the first frame is asked for, and stopping early (or closing
    the generator) stops decoding and closes the file.
    """
    timed = iter_timed_frames(path, start, count)
    return (frame.rgb for frame in timed)


def iter_timed_frames(path: str | Path, start: int = 0, count: int | None = None) -> Iterator[TimedFrame]:
    """``iter_frames`` with each frame's presentation time, for writers that keep the timing."""
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0 or None, got {count}")
    return _frames(path, start, count)


def scaled_size(h: int, w: int, max_size: int) -> tuple[int, int]:
    """The official demo's --max_size rule: cap the shorter side, never upscale; <= 0 disables."""
    short = min(h, w)
    if max_size <= 0 or short <= max_size:
        return h, w
    return int(h / short * max_size), int(w / short * max_size)


def resize_to_max_size(frame: np.ndarray, max_size: int) -> np.ndarray:
    """Downscale with area averaging (the demo's mode="area"); returns ``frame`` itself if unchanged."""
    h, w = frame.shape[:2]
    new_h, new_w = scaled_size(h, w, max_size)
    if (new_h, new_w) == (h, w):
        return frame
    return cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA)


# --- shared -------------------------------------------------------------------------------------


def _existing(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"input not found: {path}; check the path")
    return path


def _frames(path: str | Path, start: int, count: int | None) -> Iterator[TimedFrame]:
    """The generator behind iter_frames, kept separate so argument errors raise at call time."""
    if count == 0:
        return
    path = _existing(path)
    if path.is_dir():
        yield from _folder_frames(path, start, count)
    else:
        yield from _video_frames(path, start, count)


# --- image folders ------------------------------------------------------------------------------


def _is_hidden(path: Path) -> bool:
    """Dot files: macOS ``._name`` resource forks and ``.DS_Store``, editors' swap files, ..."""
    return path.name.startswith(".")


def _candidates(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]


def frame_files(folder: Path) -> list[Path]:
    """Frame files of ``folder`` in natural order (``2.png`` before ``10.png``), hidden files left out.

    Natural order equals plain name order for zero-padded names (the official tools' case) and
    is what a person means by ``1.png ... 10.png``; a plain sort would read 1, 10, 2, ...
    """
    visible = [p for p in _candidates(folder) if not _is_hidden(p)]
    return natsort.natsorted(visible, key=lambda p: p.name)


def hidden_frame_files(folder: Path) -> list[str]:
    """Names of image-like hidden files that ``frame_files`` leaves out, for the run's report."""
    return natsort.natsorted(p.name for p in _candidates(folder) if _is_hidden(p))


def _frame_files_or_fail(folder: Path) -> list[Path]:
    files = frame_files(folder)
    if not files:
        raise InputError(
            f"folder {folder} holds no image frames (png/jpg/jpeg/bmp/tif/webp); "
            "put the frames there or pass a video file"
        )
    return files


def _image_size(path: Path) -> tuple[int, int]:
    """Upright (width, height) from the header only, so probing a folder does not decode every frame."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(_EXIF_ORIENTATION) in EXIF_TRANSPOSED:
                return height, width
            return width, height
    except (UnidentifiedImageError, OSError) as exc:
        raise _bad_frame_file(path, exc) from exc


def _bad_frame_file(path: Path, exc: Exception) -> InputError:
    return InputError(f"frame {path} is not a readable image ({exc}); replace or remove it")


def _probe_folder(folder: Path) -> VideoInfo:
    files = _frame_files_or_fail(folder)
    width, height = _image_size(files[0])
    return VideoInfo(
        path=folder,
        name=clip_name(folder),
        width=width,
        height=height,
        fps=FOLDER_FPS,
        frame_count=len(files),
        has_audio=False,
        is_folder=True,
        frame_names=tuple(p.name for p in files),
        skipped_names=tuple(hidden_frame_files(folder)),
    )


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            if image.mode.startswith("I;16"):
                # PIL's convert("RGB") clips 16-bit grey to white; keep its top 8 bits instead.
                grey = (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise _bad_frame_file(path, exc) from exc


def _folder_frames(folder: Path, start: int, count: int | None) -> Iterator[TimedFrame]:
    files = _frame_files_or_fail(folder)
    width, height = _image_size(files[0])
    stop = None if count is None else start + count
    step = 1 / fps_fraction(FOLDER_FPS)
    for index, path in enumerate(files[start:stop], start=start):
        frame = _read_rgb(path)
        if frame.shape[:2] != (height, width):
            raise InputError(
                f"frame {path.name} is {frame.shape[0]}x{frame.shape[1]} but {files[0].name} is "
                f"{height}x{width} (height x width); give every frame in {folder} the same size"
            )
        yield TimedFrame(frame, index * step, step)


# --- video files --------------------------------------------------------------------------------


def _reencode_hint(path: Path) -> str:
    return f"re-encode it with ffmpeg -i {path.name} {path.stem}-fixed.mp4"


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except PermissionError as exc:
        raise InputError(f"cannot read {path}: permission denied; check its permissions") from exc
    except av.FFmpegError as exc:
        raise InputError(
            f"cannot decode {path.name} (it is not a video PyAV can read: {_reason(exc)}): {_reencode_hint(path)}"
        ) from exc


def _reason(exc: Exception) -> str:
    """A short cause without PyAV's repeated file name and errno."""
    return getattr(exc, "strerror", None) or str(exc)


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise InputError(f"no video stream in {path.name}; pass a file that contains video")
    # Slice threading only (PyAV's default): frame threading silently drops the packets of a
    # truncated clip instead of reporting them, and decoding is never the bottleneck here.
    return container.streams.video[0]


def _decode_error(path: Path, index: int, exc: Exception) -> InputError:
    return InputError(
        f"{path.name} is truncated or corrupt: decoding failed after {index} frames "
        f"({_reason(exc)}); {_reencode_hint(path)} or get an intact copy"
    )


def _decoded(container: av.container.InputContainer, stream, path: Path) -> Iterator[av.VideoFrame]:
    """Decoded frames with every mid-stream FFmpeg failure turned into an InputError."""
    index = 0
    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.FFmpegError as exc:
            raise _decode_error(path, index, exc) from exc
        yield frame
        index += 1


def _no_frames(path: Path) -> InputError:
    return InputError(f"{path.name} has a video stream but no frames; pass a clip with at least one frame")


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return FOLDER_FPS


def _estimate_count(container: av.container.InputContainer, stream, fps: float) -> int:
    """Exact for containers with an index (mp4/mov), else from the duration; at least one."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    if seconds is None:
        return 1
    return max(1, round(seconds * fps))


def _orientation(frame: av.VideoFrame, path: Path) -> Orientation:
    """The display orientation a decoded frame carries (FFmpeg attaches the stream's display
    matrix to every frame); a matrix that is no quarter turn is reported and ignored."""
    matrix = frame.side_data.get(_DISPLAY_MATRIX)
    if not isinstance(matrix, SideData):
        return UPRIGHT
    orientation = from_display_matrix(bytes(matrix))
    if orientation is None:
        warnings.warn(
            f"{path.name} asks to be shown rotated by {frame.rotation}°, not a quarter turn; "
            "its frames are used as stored",
            MatanyoneWarning,
            stacklevel=2,
        )
        return UPRIGHT
    return orientation


def _stream_start(stream) -> int:
    """The pts the stream's timeline starts at; frame times are counted from here."""
    return int(stream.start_time) if stream.start_time is not None else 0


def _probe_video(path: Path) -> VideoInfo:
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        first = next(_decoded(container, stream, path), None)
        if first is None:
            raise _no_frames(path)
        fps = _stream_fps(stream)
        orientation = _orientation(first, path)
        width, height = orientation.displayed_size(first.width, first.height)
        return VideoInfo(
            path=path,
            name=clip_name(path),
            width=width,
            height=height,
            fps=fps,
            frame_count=_estimate_count(container, stream, fps),
            has_audio=bool(container.streams.audio),
            is_folder=False,
            orientation=orientation,
            time_base=Fraction(stream.time_base) if stream.time_base else None,
        )
    finally:
        container.close()


class _Clock:
    """Presentation times of decoded frames in seconds from the stream's start.

    A frame without a pts (raw streams) is placed one average frame after the previous one.
    """

    def __init__(self, stream, fps: float):
        self._base = Fraction(stream.time_base) if stream.time_base else None
        self._origin = _stream_start(stream)
        self._step = 1 / fps_fraction(fps)
        self._last: Fraction | None = None

    def time(self, frame: av.VideoFrame) -> Fraction:
        if frame.pts is not None and self._base is not None:
            now = (frame.pts - self._origin) * self._base
        else:
            now = Fraction(0) if self._last is None else self._last + self._step
        self._last = now
        return now

    def duration(self, frame: av.VideoFrame) -> Fraction | None:
        if self._base is None or not frame.duration or frame.duration <= 0:
            return None
        return frame.duration * self._base


def _video_frames(path: Path, start: int, count: int | None) -> Iterator[TimedFrame]:
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        clock = _Clock(stream, _stream_fps(stream))
        size = None
        orientation = UPRIGHT
        produced = 0
        for index, frame in enumerate(_decoded(container, stream, path)):
            if index == 0:
                orientation = _orientation(frame, path)
            time = clock.time(frame)
            if index < start:
                continue  # decoded but never converted: inter-frames need their predecessors
            if size is None:
                size = (frame.width, frame.height)
            elif (frame.width, frame.height) != size:
                raise InputError(
                    f"{path.name} changes frame size at frame {index}: re-encode it at one size with "
                    f"ffmpeg -i {path.name} -vf scale={size[0]}:{size[1]} {path.stem}-fixed.mp4"
                )
            rgb = orientation.apply(frame.to_ndarray(format="rgb24"))
            yield TimedFrame(rgb, time, clock.duration(frame))
            produced += 1
            if count is not None and produced >= count:
                return
        if produced == 0 and start == 0:
            raise _no_frames(path)
        # A start past the end yields nothing, like slicing: only a clip with no frames is an error.
    finally:
        container.close()


def fps_fraction(fps: float) -> Fraction:
    """A rational frame rate for encoders; recovers NTSC rates such as 30000/1001 from a float."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return Fraction(fps).limit_denominator(1001)
