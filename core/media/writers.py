"""Output side: alpha/RGBA/foreground PNG sequences and alpha, foreground and transparent videos.

Every writer builds its output under a hidden temporary name beside the destination and renames
it into place only in close() (core/media/staging.py). A crash, a Ctrl-C, a SIGTERM or an abort()
therefore never leaves a folder of half the frames or an mp4 without its index where a user (or a
script) would take it for a result; an earlier complete output at the same place survives until
the new one is complete, and what a SIGKILL leaves is cleaned up by the next run into the folder.

Videos keep each input frame's timestamp (so a variable frame rate survives) and, when the input
has audio, carry its first audio stream:
copied packet for packet where the container accepts the codec, re-encoded (AAC, or Opus for
WebM) where it does not. Audio is an extra: if it cannot be carried the video is still written
and the reason is kept in ``warnings``.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream
from PIL import Image, ImageColor, UnidentifiedImageError

from ..engine.errors import InputError, MatanyoneWarning, OutputError
from .staging import Staged, check_writable, make_folders, remove_empty, remove_leftovers
from .subjects import UNION
from .video import VideoInfo, fps_fraction

#: The official demo's green-screen colour, the default foreground background.
DEFAULT_BACKGROUND = (120, 255, 155)
OUTPUT_KINDS = ("alpha", "rgba", "foreground", "transparent")
ALPHA_FORMATS = ("png16", "png8", "video")
FOREGROUND_FORMATS = ("video", "png")
VIDEO_FORMATS = ("prores", "webm")

# Encoder settings: visually lossless H.264 that every player opens, ProRes 4444 for editors,
# VP9 with alpha for browsers. All tagged BT.709 so players do not guess the colour matrix.
_H264 = ("libx264", "yuv420p", {"crf": "18", "preset": "medium"})
_PRORES = ("prores_ks", "yuva444p10le", {"profile": "4444"})
_VP9 = ("libvpx-vp9", "yuva420p", {"crf": "20", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"})
_BT709 = 1
_RANGE_MPEG, _RANGE_JPEG = 1, 2


# --- choices and checks -------------------------------------------------------------------------


def parse_choice(value: str, choices: Sequence[str], what: str) -> str:
    """``value`` as one of ``choices`` (case and spaces forgiven), else a one-line error naming them."""
    cleaned = str(value).strip().lower()
    if cleaned not in choices:
        raise OutputError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
    return cleaned


def parse_outputs(spec: str | Iterable[str]) -> list[str]:
    """Output kinds from "alpha,foreground" or a list, in order and without repeats."""
    items = spec.split(",") if isinstance(spec, str) else [str(s) for s in spec]
    kinds: list[str] = []
    for item in items:
        if not item.strip():
            continue
        kind = parse_choice(item, OUTPUT_KINDS, "output")
        if kind not in kinds:
            kinds.append(kind)
    if not kinds:
        raise OutputError(f"no outputs chosen; pass one or more of {', '.join(OUTPUT_KINDS)}")
    return kinds


def parse_background(spec: object = None) -> tuple[int, int, int] | np.ndarray:
    """An RGB colour, or an HxWx3 uint8 image to put behind the foreground.

    Accepts None (the demo's green), a colour name or #RRGGBB as CSS defines them ("green" is CSS
    green, (0, 128, 0); "default" is the demo's), "R,G,B", an (R, G, B) tuple, an image array or
    the path of an image file.
    """
    if spec is None:
        return DEFAULT_BACKGROUND
    if isinstance(spec, np.ndarray):
        return _background_array(spec)
    if isinstance(spec, (tuple, list)):
        return _rgb_triplet(spec, spec)
    text = str(spec).strip()
    if text.lower() in ("", "default", "matanyone"):
        return DEFAULT_BACKGROUND
    if Path(text).expanduser().is_file():
        return _load_background(Path(text).expanduser())
    if "," in text:
        return _rgb_triplet(text.split(","), text)
    try:
        return tuple(ImageColor.getrgb(text)[:3])  # type: ignore[return-value]
    except ValueError:
        pass
    if Path(text).suffix or os.sep in text:
        raise InputError(f"background image not found: {text}; check the path")
    raise InputError(f"unknown background {text!r}: use a colour name (green), #RRGGBB, R,G,B or an image path")


def _rgb_triplet(parts: Sequence[object], original: object) -> tuple[int, int, int]:
    try:
        values = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise InputError(f"background {original!r} is not an R,G,B colour: give three numbers 0-255")
    return (values[0], values[1], values[2])


def _background_array(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"background image must be HxWx3 uint8, got {image.shape} {image.dtype}")
    return image


def _load_background(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"background {path} is not an image ({exc}): pass a PNG/JPG or a colour") from exc


# --- per-frame conversions ------------------------------------------------------------------------


def _clean_alpha(alpha: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] and map NaN to 0, so a bad model output cannot wrap around in integers."""
    return np.clip(np.nan_to_num(alpha, nan=0.0), 0.0, 1.0)


def alpha_to_u8(alpha: np.ndarray) -> np.ndarray:
    return np.round(_clean_alpha(alpha) * 255.0).astype(np.uint8)


def alpha_to_u16(alpha: np.ndarray) -> np.ndarray:
    return np.round(_clean_alpha(alpha).astype(np.float64) * 65535.0).astype(np.uint16)


def _fit_background(background: np.ndarray, height: int, width: int) -> np.ndarray:
    if background.shape[:2] == (height, width):
        return background
    shrinking = background.shape[0] > height and background.shape[1] > width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(background, (width, height), interpolation=interpolation)


def composite(rgb: np.ndarray, alpha: np.ndarray, background: tuple[int, int, int] | np.ndarray) -> np.ndarray:
    """frame * alpha + background * (1 - alpha), rounded to uint8."""
    a = _clean_alpha(alpha).astype(np.float32)[:, :, None]
    if isinstance(background, np.ndarray):
        back = _fit_background(background, rgb.shape[0], rgb.shape[1]).astype(np.float32)
    else:
        back = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    out = rgb.astype(np.float32) * a + back * (1.0 - a)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _check_pair(rgb: np.ndarray, alpha: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb frame must be HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    if alpha.shape != rgb.shape[:2]:
        raise ValueError(f"alpha must be HxW matching the frame {rgb.shape[:2]}, got {alpha.shape}")


def _pad_even(image: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes; repeat the last row/column rather than add a visible border."""
    pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
    if not (pad_h or pad_w):
        return image
    widths = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, widths, mode="edge")


# --- sinks: where finished images go --------------------------------------------------------------


_SPACE_HINT = "free some space or choose another -o folder"


def _why(exc: Exception) -> str:
    """FFmpeg's reason without the hidden staging path it names (the user never asked for it)."""
    return getattr(exc, "strerror", None) or str(exc)


class _PngFolder:
    """Numbered PNGs (000000.png, ...) of grey, RGB or RGBA images, 8 or 16 bits."""

    def __init__(self, directory: Path):
        self._stage = Staged(directory, is_dir=True)
        self.count = 0
        self.warnings: list[str] = []

    def add(self, image: np.ndarray, time: object = None, duration: object = None) -> None:
        """Append one image; a PNG sequence has no timing, so ``time``/``duration`` are ignored."""
        path = self._stage.tmp / f"{self.count:06d}.png"
        if image.ndim == 3:
            image = image[:, :, [2, 1, 0, 3][: image.shape[2]]]  # OpenCV writes BGR(A)
        # Encode in memory, write from Python: cv2.imwrite lets libpng print "libpng error: ..."
        # straight to stderr when the disk fills up; a Python write raises a plain OSError instead.
        try:
            ok, encoded = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        except cv2.error as exc:
            raise OutputError(f"cannot encode {path.name} for {self._stage.dest}: {exc}") from exc
        if not ok:
            raise OutputError(f"cannot encode {path.name} for {self._stage.dest}")
        try:
            with open(path, "wb") as file:
                file.write(encoded.tobytes())
        except OSError as exc:
            raise OutputError(
                f"cannot write {path.name} for {self._stage.dest}: {exc.strerror or exc}; {_SPACE_HINT}"
            ) from exc
        self.count += 1

    def commit(self) -> Path:
        if self.count == 0:
            raise OutputError(f"no frames were written to {self._stage.dest}; nothing to save")
        return self._stage.commit()

    def discard(self) -> None:
        self._stage.discard()


def require_encoder(codec: str, pix_fmt: str) -> None:
    """Fail with a clear message when this PyAV build's FFmpeg lacks an encoder we rely on."""
    try:
        found = av.codec.Codec(codec, "w")
    except ValueError as exc:
        raise OutputError(
            f"this PyAV's FFmpeg has no {codec} encoder; install a PyAV wheel built with it "
            "or choose another output format"
        ) from exc
    formats = {f.name for f in (found.video_formats or ())}
    if formats and pix_fmt not in formats:
        raise OutputError(f"this PyAV's {codec} encoder cannot write {pix_fmt}; choose another output format")


class _VideoFile:
    """One video stream (plus, optionally, the input's audio) encoded into a staged file.

    Streams are created at the first frame, so the output takes the size of the frames actually
    written (after any --max_size) rather than the input's.

    Timing: a frame added with its input ``time`` keeps it (shifted so the first written frame
    starts at 0), in ``time_base`` (the input's, so the stamps stay exact), which keeps a
    variable-frame-rate clip's timing and its audio sync; a frame added without one is placed
    at ``count / fps``.
    """

    def __init__(
        self,
        path: Path,
        fps: float,
        encoder: tuple[str, str, dict[str, str]],
        input_format: str,
        *,
        container_format: str | None = None,
        full_range: bool = False,
        audio_from: Path | None = None,
        audio_start: float = 0.0,
        time_base: Fraction | None = None,
    ):
        self._codec, self._pix_fmt, self._options = encoder
        require_encoder(self._codec, self._pix_fmt)
        self._input_format = input_format
        self._range = _RANGE_JPEG if full_range else _RANGE_MPEG
        self._rate = fps_fraction(fps)
        self._step = 1 / self._rate
        self._time_base = Fraction(time_base) if time_base else self._step
        self._even = self._pix_fmt.startswith("yuv420") and self._codec == "libx264"
        self._audio_from, self._audio_start = audio_from, audio_start
        self._audio: _AudioTrack | None = None
        self._stream: VideoStream | None = None
        self._size: tuple[int, int] | None = None
        self._first_time: Fraction | None = None
        self._last_pts = -1
        self._end = Fraction(0)
        self.count = 0
        self.warnings: list[str] = []
        self._stage = Staged(path, is_dir=False)
        try:
            self._container = av.open(str(self._stage.tmp), mode="w", format=container_format)
        except av.FFmpegError as exc:
            self._stage.discard()
            raise OutputError(f"cannot create {path.name}: {exc}; choose another -o folder") from exc

    @property
    def dest(self) -> Path:
        return self._stage.dest

    def _open_streams(self, width: int, height: int) -> VideoStream:
        stream = cast(
            VideoStream, self._container.add_stream(self._codec, rate=self._rate, options=dict(self._options))
        )
        stream.width, stream.height, stream.pix_fmt = width, height, self._pix_fmt
        context = stream.codec_context
        context.time_base = self._time_base
        context.color_range = self._range
        context.colorspace = context.color_primaries = context.color_trc = _BT709
        self._stream = stream
        if self._audio_from is not None:
            self._audio = _AudioTrack.attach(
                self._audio_from, self._container, self._audio_start, self.warnings, self.dest.name
            )
        return stream

    def _output_time(self, time: Fraction | float | None) -> Fraction:
        """Seconds from the output's start at which this frame is shown."""
        if time is None:
            return self.count * self._step
        time = Fraction(time)
        if self._first_time is None:
            self._first_time = time
        return time - self._first_time

    def _frame(self, image: np.ndarray, time: Fraction | float | None, duration: Fraction | None) -> av.VideoFrame:
        frame = av.VideoFrame.from_ndarray(_pad_even(image) if self._even else image, format=self._input_format)
        frame = frame.reformat(
            format=self._pix_fmt,
            dst_colorspace="ITU709",
            dst_color_range="JPEG" if self._range == _RANGE_JPEG else "MPEG",
        )
        shown = self._output_time(time)
        # Strictly increasing stamps, whatever the input's: a muxer refuses anything else.
        pts = max(round(shown / self._time_base), self._last_pts + 1)
        lasts = Fraction(duration) if duration else self._step
        frame.pts = pts
        frame.time_base = self._time_base
        frame.duration = max(1, round(lasts / self._time_base))
        self._last_pts = pts
        self._end = pts * self._time_base + lasts
        return frame

    def add(self, image: np.ndarray, time: Fraction | float | None = None, duration: Fraction | None = None) -> None:
        size = image.shape[:2]
        if self._size is not None and size != self._size:
            raise ValueError(f"frame size changed from {self._size} to {size} within {self.dest.name}")
        try:
            frame = self._frame(image, time, duration)
            stream = self._stream
            if stream is None:
                self._size = size
                stream = self._open_streams(frame.width, frame.height)
            for packet in stream.encode(frame):
                self._container.mux(packet)
        except av.FFmpegError as exc:
            raise OutputError(f"cannot encode {self.dest.name}: {_why(exc)}; {_SPACE_HINT}") from exc
        self.count += 1
        if self._audio is not None:
            self._audio.feed(float(self._end))

    def commit(self) -> Path:
        if self.count == 0:
            raise OutputError(f"no frames were written to {self.dest}; nothing to save")
        assert self._stream is not None  # a written frame opened it
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.finish(float(self._end))
            self._container.close()
        except av.FFmpegError as exc:
            raise OutputError(f"cannot finish {self.dest.name}: {_why(exc)}; {_SPACE_HINT}") from exc
        return self._stage.commit()

    def discard(self) -> None:
        if self._audio is not None:
            self._audio.close()
        try:
            self._container.close()
        except (av.FFmpegError, OSError, ValueError):
            pass  # the file is being thrown away; a muxer complaint about it is moot
        self._stage.discard()


class _AudioTrack:
    """The input's first audio stream, fed into an output in step with the video written so far,
    so the file is interleaved, and trimmed to the video's time span."""

    def __init__(
        self, source: Path, output: av.container.OutputContainer, start: float, warnings: list[str], label: str
    ):
        self._output = output
        self._warnings = warnings
        self._label = label
        self._input = av.open(str(source), mode="r")
        try:
            self._source = self._input.streams.audio[0]
            self._remux = _can_copy(self._source, output.format.name)
            if self._remux:
                self._target = output.add_stream_from_template(self._source)
            else:
                self._target = _audio_encoder(output, self._source)
            self._begin = _video_start(self._input) + start
            base = self._source.time_base
            self._shift = round(self._begin / base) if self._begin > 0 and base else 0
            self._packets: Iterator[av.Packet] = self._input.demux(self._source)
        except BaseException:
            self._input.close()
            raise
        self._held: av.Packet | None = None
        self._open = True

    @classmethod
    def attach(
        cls, source: Path, output: av.container.OutputContainer, start: float, warnings: list[str], label: str
    ) -> _AudioTrack | None:
        """The track, or None with a warning: a video without sound beats no video at all."""
        try:
            return cls(source, output, start, warnings, label)
        except (av.FFmpegError, ValueError, IndexError, TypeError) as exc:
            warnings.append(f"{label}: audio not copied ({exc})")
            return None

    def _due(self, until: float) -> Iterator[av.Packet]:
        """Source packets that fall before ``until`` seconds of output time, in order."""
        limit = self._begin + until
        while True:
            packet = self._held if self._held is not None else next(self._packets, None)
            self._held = None
            if packet is None:
                self.close()
                return
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None or packet.size == 0:
                continue  # the demuxer's final flush packet
            seconds = float(stamp * packet.time_base)
            if seconds >= limit:
                self._held = packet
                return
            if self._begin > 0 and seconds < self._begin:
                continue
            yield packet

    def _emit(self, packet: av.Packet) -> None:
        if self._remux:
            if self._shift:
                packet.pts = None if packet.pts is None else packet.pts - self._shift
                packet.dts = None if packet.dts is None else packet.dts - self._shift
            packet.stream = self._target
            self._output.mux(packet)
            return
        for frame in self._source.codec_context.decode(packet):
            frame.pts = None  # let the encoder number samples from zero after any trimming
            for out in self._target.encode(frame):
                self._output.mux(out)

    def feed(self, until: float) -> None:
        if not self._open:
            return
        try:
            for packet in self._due(until):
                self._emit(packet)
        except (av.FFmpegError, ValueError) as exc:
            self._warnings.append(f"{self._label}: audio stopped early ({exc})")
            self.close()

    def finish(self, until: float) -> None:
        self.feed(float(until))
        self.close()
        if self._remux:
            return
        try:
            for packet in self._target.encode(None):
                self._output.mux(packet)
        except (av.FFmpegError, ValueError) as exc:
            self._warnings.append(f"{self._label}: end of audio lost ({exc})")

    def close(self) -> None:
        if self._open:
            self._open = False
            self._input.close()


def _can_copy(source: av.audio.stream.AudioStream, format_name: str) -> bool:
    """Whether a container of ``format_name`` takes the audio packets as they are. Asks the muxer
    itself on a scratch buffer: its codec list claims more than its header writer accepts
    (Opus is listed for .mov but refused)."""
    scratch = av.open(io.BytesIO(), mode="w", format=format_name)
    try:
        scratch.add_stream_from_template(source)
        scratch.start_encoding()
        return True
    except (av.FFmpegError, ValueError):
        return False
    finally:
        try:
            scratch.close()
        except (av.FFmpegError, ValueError):
            pass


def _video_start(container: av.container.InputContainer) -> float:
    """Seconds at which the input's video begins; audio before it has no frame to go with."""
    if not container.streams.video:
        return 0.0
    stream = container.streams.video[0]
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return max(0.0, float(stream.start_time * stream.time_base))


def _audio_encoder(output: av.container.OutputContainer, source) -> AudioStream:
    """AAC for mp4/mov, Opus for WebM; mono stays mono, anything wider becomes stereo."""
    webm = "webm" in output.format.name
    codec = "libopus" if webm else "aac"
    rate = 48000 if webm else (source.codec_context.sample_rate or 48000)
    stream = cast(AudioStream, output.add_stream(codec, rate=rate))
    stream.layout = "mono" if source.codec_context.channels == 1 else "stereo"
    return stream


# --- writers ----------------------------------------------------------------------------------------


class _Writer:
    """Lifecycle shared by every writer: write frames, then close() to publish or abort() to drop."""

    def __init__(self, sink: _PngFolder | _VideoFile, destination: Path):
        self._sink = sink
        self.destination = destination
        self._state = "open"

    def _render(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def write(
        self,
        rgb_u8: np.ndarray,
        alpha_f32: np.ndarray,
        time: Fraction | float | None = None,
        duration: Fraction | None = None,
    ) -> None:
        """Add one frame; ``time``/``duration`` (seconds, the input frame's) keep a video's timing."""
        if self._state != "open":
            raise ValueError(f"writer for {self.destination} is already {self._state}")
        _check_pair(rgb_u8, alpha_f32)
        self._sink.add(self._render(rgb_u8, alpha_f32), time, duration)

    def close(self) -> list[Path]:
        """Publish the output; on failure nothing is left behind and the error propagates."""
        if self._state == "closed":
            return [self.destination]
        if self._state == "aborted":
            raise ValueError(f"writer for {self.destination} was aborted")
        try:
            path = self._sink.commit()
        except BaseException:
            self.abort()
            raise
        self._state = "closed"
        return [path]

    def abort(self) -> None:
        if self._state == "open":
            self._sink.discard()
            self._state = "aborted"

    @property
    def frames_written(self) -> int:
        return self._sink.count

    @property
    def warnings(self) -> list[str]:
        return list(self._sink.warnings)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class AlphaPngWriter(_Writer):
    """Grey PNGs; 16 bits by default because 8 bits bands visibly on soft hair edges."""

    def __init__(self, directory: str | Path, bits: int = 16):
        if bits not in (8, 16):
            raise ValueError(f"bits must be 8 or 16, got {bits}")
        self.bits = bits
        directory = Path(directory)
        super().__init__(_PngFolder(directory), directory)

    def _render(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        return alpha_to_u16(alpha) if self.bits == 16 else alpha_to_u8(alpha)


class RgbaPngWriter(_Writer):
    """8-bit RGBA PNGs: the original pixels with the matte as transparency."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        super().__init__(_PngFolder(directory), directory)

    def _render(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        return np.dstack([rgb, alpha_to_u8(alpha)])


class ForegroundWriter(_Writer):
    """The subject composited over a colour or image: an H.264 video when ``destination`` has a
    video suffix (.mp4/.mov/.mkv), else a PNG folder."""

    def __init__(
        self,
        destination: str | Path,
        background: object = None,
        *,
        fps: float | None = None,
        audio_from: Path | None = None,
        audio_start: float = 0.0,
        time_base: Fraction | None = None,
    ):
        destination = Path(destination)
        self.background = parse_background(background)
        self._fitted: np.ndarray | None = None
        if destination.suffix.lower() in (".mp4", ".mov", ".mkv"):
            if fps is None:
                raise ValueError("a foreground video needs the input fps")
            sink: _VideoFile | _PngFolder = _VideoFile(
                destination, fps, _H264, "rgb24", audio_from=audio_from, audio_start=audio_start, time_base=time_base
            )
        else:
            sink = _PngFolder(destination)
        super().__init__(sink, destination)

    def _render(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        background = self.background
        if isinstance(background, np.ndarray):
            if self._fitted is None or self._fitted.shape[:2] != rgb.shape[:2]:
                self._fitted = _fit_background(background, rgb.shape[0], rgb.shape[1])
            background = self._fitted
        return composite(rgb, alpha, background)


class AlphaVideoWriter(_Writer):
    """The matte as a grey H.264 video, full range so alpha 0 and 1 decode to exactly 0 and 255."""

    def __init__(
        self,
        path: str | Path,
        fps: float,
        *,
        audio_from: Path | None = None,
        audio_start: float = 0.0,
        time_base: Fraction | None = None,
    ):
        path = Path(path)
        sink = _VideoFile(
            path,
            fps,
            _H264,
            "gray",
            full_range=True,
            audio_from=audio_from,
            audio_start=audio_start,
            time_base=time_base,
        )
        super().__init__(sink, path)

    def _render(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        return alpha_to_u8(alpha)


class TransparentVideoWriter(_Writer):
    """A video with an alpha channel: ProRes 4444 .mov for editors, or VP9 .webm for the web."""

    def __init__(
        self,
        path: str | Path,
        fps: float,
        format: str = "prores",
        *,
        audio_from: Path | None = None,
        audio_start: float = 0.0,
        time_base: Fraction | None = None,
    ):
        self.format = parse_choice(format, VIDEO_FORMATS, "transparent video format")
        path = Path(path)
        encoder, container = (_PRORES, "mov") if self.format == "prores" else (_VP9, "webm")
        sink = _VideoFile(
            path,
            fps,
            encoder,
            "rgba64le",
            container_format=container,
            audio_from=audio_from,
            audio_start=audio_start,
            time_base=time_base,
        )
        super().__init__(sink, path)

    def _render(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        # 16-bit in, so ProRes keeps 10 bits of alpha instead of 8.
        colour = rgb.astype(np.uint16) * 257
        return np.dstack([colour, alpha_to_u16(alpha)])


TRANSPARENT_SUFFIX = {"prores": ".mov", "webm": ".webm"}


# --- the set of outputs of one run ------------------------------------------------------------------


class WriterGroup:
    """All writers of one run, driven as one: a failure in any aborts the others."""

    def __init__(
        self, writers: Sequence[_Writer], made_dirs: Sequence[Path] = (), subjects: Sequence[str | None] | None = None
    ):
        self.writers = tuple(writers)
        self._made_dirs = tuple(made_dirs)
        #: the subject each writer belongs to (None: the run's one matte)
        self.subjects = tuple(subjects) if subjects is not None else (None,) * len(self.writers)

    def __iter__(self) -> Iterator[_Writer]:
        return iter(self.writers)

    def __len__(self) -> int:
        return len(self.writers)

    @property
    def destinations(self) -> list[Path]:
        return [w.destination for w in self.writers]

    @property
    def warnings(self) -> list[str]:
        return [message for w in self.writers for message in w.warnings]

    def write(
        self,
        rgb_u8: np.ndarray,
        alpha_f32: np.ndarray,
        time: Fraction | float | None = None,
        duration: Fraction | None = None,
    ) -> None:
        for writer in self.writers:
            writer.write(rgb_u8, alpha_f32, time, duration)

    def write_subjects(
        self,
        rgb_u8: np.ndarray,
        alphas: Mapping[str, np.ndarray],
        time: Fraction | float | None = None,
        duration: Fraction | None = None,
    ) -> None:
        """One frame of a several-subject run: each writer gets its own subject's matte."""
        for writer, subject in zip(self.writers, self.subjects, strict=True):
            if subject is None:
                raise ValueError(f"writer for {writer.destination} belongs to no subject; use write()")
            writer.write(rgb_u8, alphas[subject], time, duration)

    def close(self) -> list[Path]:
        """Publish every output; if one fails the unpublished rest are dropped and it raises."""
        paths: list[Path] = []
        try:
            for writer in self.writers:
                paths += writer.close()
        except BaseException:
            self.abort()
            raise
        return paths

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()
        remove_empty(list(self._made_dirs))  # innermost first, only if empty: outputs already published stay

    def __enter__(self) -> WriterGroup:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def output_path(
    outdir: Path,
    name: str,
    kind: str,
    alpha_format: str,
    foreground_format: str,
    video_format: str,
    subject: str | None = None,
) -> Path:
    """Where one output kind goes: a folder in OUTDIR/<name>/ or a file OUTDIR/<name>_<kind>.<ext>.

    A subject of a several-subject run gets a folder of its own inside each frame folder
    (OUTDIR/<name>/alpha/<subject>/) and its name in each video's (OUTDIR/<name>_<subject>_<kind>.<ext>).
    """
    stem = name if subject is None else f"{name}_{subject}"

    def folder(kind_dir: str) -> Path:
        base = outdir / name / kind_dir
        return base if subject is None else base / subject

    if kind == "alpha":
        return outdir / f"{stem}_alpha.mp4" if alpha_format == "video" else folder("alpha")
    if kind == "rgba":
        return folder("rgba")
    if kind == "foreground":
        return outdir / f"{stem}_foreground.mp4" if foreground_format == "video" else folder("foreground")
    return outdir / f"{stem}_transparent{TRANSPARENT_SUFFIX[video_format]}"


def make_writers(
    outdir: str | Path,
    info: VideoInfo,
    outputs: str | Iterable[str],
    alpha_format: str = "png16",
    background: object = None,
    video_format: str = "prores",
    foreground_format: str = "video",
    start_frame: int = 0,
    audio: bool = True,
    start_time: Fraction | float | None = None,
    subjects: Sequence[str] | None = None,
    union_outputs: Sequence[str] = (),
) -> WriterGroup:
    """Every writer a run asked for, after checking all options and that OUTDIR is writable.

    ``start_time`` (seconds from the start of the input's video stream; else ``start_frame / fps``)
    is when the first processed frame is shown, so copied audio starts there too. OUTDIR and the
    per-input folders are created here, not before, and removed again by abort() if still empty;
    leftovers of killed earlier runs in them are cleaned up first (staging.remove_leftovers).
    ``subjects`` (None: the run's one matte, written as it always was) gives each named subject
    its own set of outputs; ``union_outputs`` are the kinds also written for the union of them all,
    under the subject name ``union`` (drive such a group with ``write_subjects``).
    """
    kinds = parse_outputs(outputs)
    alpha_format = parse_choice(alpha_format, ALPHA_FORMATS, "alpha format")
    foreground_format = parse_choice(foreground_format, FOREGROUND_FORMATS, "foreground format")
    video_format = parse_choice(video_format, VIDEO_FORMATS, "transparent video format")
    union_kinds = [k for k in parse_outputs(union_outputs) if k in kinds] if union_outputs else []
    back = parse_background(background) if "foreground" in kinds else None
    outdir = check_writable(outdir)
    plan: list[tuple[str | None, str]] = []
    if subjects is None:
        plan = [(None, k) for k in kinds]
    else:
        plan = [(s, k) for s in [*subjects, UNION] for k in (kinds if s != UNION else union_kinds)]
    targets = [
        (s, k, output_path(outdir, info.name, k, alpha_format, foreground_format, video_format, s)) for s, k in plan
    ]
    timing = {
        "audio_from": info.path if audio and info.has_audio and not info.is_folder else None,
        "audio_start": float(start_time) if start_time is not None else start_frame / info.fps,
        "time_base": info.time_base,
    }
    made_dirs: list[Path] = []
    writers: list[_Writer] = []
    try:
        made_dirs += make_folders(outdir)
        _clean_leftovers([outdir, *{t.parent for _s, _k, t in targets}])
        for _subject, kind, target in targets:
            missing = [p for p in target.relative_to(outdir).parents if p != Path(".")]
            for relative in reversed(missing):  # outermost first
                folder = outdir / relative
                if not folder.exists():
                    folder.mkdir()
                    made_dirs.append(folder)
            writers.append(_writer_for(kind, target, info.fps, alpha_format, back, video_format, timing))
    except OSError as exc:
        WriterGroup(writers, made_dirs).abort()
        raise OutputError(f"cannot write to {outdir}: {exc.strerror or exc}; choose another -o folder") from exc
    except BaseException:
        WriterGroup(writers, made_dirs).abort()
        raise
    return WriterGroup(writers, made_dirs, None if subjects is None else [s for s, _k, _t in targets])


def _clean_leftovers(folders: Iterable[Path]) -> None:
    """Remove what killed earlier runs left in the folders this run writes to, and say so."""
    for folder in sorted(set(folders)):
        done = remove_leftovers(folder)
        if done:
            warnings.warn(
                f"cleaned up after an interrupted earlier run in {folder}: {'; '.join(done)}",
                MatanyoneWarning,
                stacklevel=3,
            )


def _writer_for(
    kind: str,
    target: Path,
    fps: float,
    alpha_format: str,
    background: object,
    video_format: str,
    timing: dict,
) -> _Writer:
    if kind == "alpha":
        if alpha_format == "video":
            return AlphaVideoWriter(target, fps, **timing)
        return AlphaPngWriter(target, bits=16 if alpha_format == "png16" else 8)
    if kind == "rgba":
        return RgbaPngWriter(target)
    if kind == "foreground":
        return ForegroundWriter(target, background, fps=fps, **timing)
    return TransparentVideoWriter(target, fps, video_format, **timing)
