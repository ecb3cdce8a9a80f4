"""A scratch folder for the backward pass: decoded frames and finished mattes, one file each.

Matting from a mask on frame K backwards needs frames K, K-1, ..., 0, the reverse of the order a
video decodes in, and the writers need those mattes back in input order before the forward pass
from K begins (a video cannot be written out of order). Holding either in RAM would grow with the
clip, so both go to disk: frames as PNG (lossless, compressed, fast to write at level 1), mattes as
float32 ``.npy`` (exactly what the writers would have been handed, so the written outputs do not
depend on the detour). A frame and its mattes are deleted as soon as they are read back for the
last time, so the folder peaks at the frames before K.

The folder is removed when the store is closed, and on garbage collection or interpreter exit
if nobody closed it.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from ..engine.errors import OutputError
from .video import TimedFrame

#: What the store keeps per position: a bare frame, or a frame with its timestamp.
Frame = np.ndarray | TimedFrame


class FrameStore:
    """Frames and per-subject mattes by position, in a private temporary folder."""

    def __init__(self, parent: str | Path | None = None, prefix: str = ".matanyone-scratch-"):
        try:
            self.folder = Path(tempfile.mkdtemp(prefix=prefix, dir=None if parent is None else str(parent)))
        except OSError as exc:
            where = parent or tempfile.gettempdir()
            raise OutputError(
                f"cannot make a scratch folder in {where}: {exc.strerror or exc}; free some space"
            ) from exc
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        #: position -> (time, duration) of the TimedFrames stored (a few bytes a frame)
        self._times: dict[int, tuple[Fraction, Fraction | None]] = {}

    def _frame_path(self, position: int) -> Path:
        return self.folder / f"frame-{position:06d}.png"

    def _alpha_path(self, position: int, index: int) -> Path:
        return self.folder / f"alpha-{position:06d}-{index:03d}.npy"

    def put_frame(self, position: int, frame: Frame) -> None:
        if isinstance(frame, TimedFrame):
            self._times[position] = (frame.time, frame.duration)
            rgb = frame.rgb
        else:
            rgb = frame
        path = self._frame_path(position)
        if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OutputError(f"cannot write scratch frame {path}; check free space in {self.folder.parent}")

    def frame(self, position: int) -> Frame:
        """The frame stored at ``position``, of the kind it was stored as."""
        image = cv2.imread(str(self._frame_path(position)), cv2.IMREAD_COLOR)
        if image is None:
            raise OutputError(f"scratch frame {position} is missing from {self.folder}; was the folder cleaned?")
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        if position in self._times:
            time, duration = self._times[position]
            return TimedFrame(rgb, time, duration)
        return rgb

    def put_alphas(self, position: int, alphas: Mapping[str, np.ndarray]) -> list[str]:
        """Stores the mattes of one frame; returns the subject order to read them back with."""
        names = list(alphas)
        for index, name in enumerate(names):
            try:
                np.save(self._alpha_path(position, index), np.asarray(alphas[name], dtype=np.float32))
            except OSError as exc:
                raise OutputError(
                    f"cannot write a scratch matte in {self.folder}: {exc.strerror or exc}; free some space"
                ) from exc
        return names

    def alphas(self, position: int, names: list[str]) -> dict[str, np.ndarray]:
        return {name: np.load(self._alpha_path(position, index)) for index, name in enumerate(names)}

    def drop(self, position: int, names: list[str]) -> None:
        """Forget a frame and its mattes once they have been handed on."""
        self._frame_path(position).unlink(missing_ok=True)
        self._times.pop(position, None)
        for index in range(len(names)):
            self._alpha_path(position, index).unlink(missing_ok=True)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> FrameStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
