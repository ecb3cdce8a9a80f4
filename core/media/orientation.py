"""Display orientation: turning frames as stored into frames as a player shows them.

Phones record landscape sensor frames and tag the stream with a display matrix (FFmpeg's
``AV_FRAME_DATA_DISPLAYMATRIX``) saying how to turn them; JPEG/TIFF frames carry the same idea as
an EXIF orientation (applied with Pillow's ``ImageOps.exif_transpose``). A user draws the
first-frame mask on what the player shows, so the whole pipeline works on upright frames: the
mask, the network, every output. Outputs are written upright without any rotation tag (see
docs/inputs.md for why).

Only quarter turns and mirrors are honoured, which is everything cameras and editors write; a
matrix with any other angle (or a skew) is reported and the frames are used as stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: How far a display-matrix coefficient may stray from 0 or +-1 and still count as a right angle.
_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Orientation:
    """Transpose the stored frame (optionally), then mirror rows and/or columns: the eight ways
    to lay a rectangle on a screen. ``rotation`` is FFmpeg's angle (degrees counter-clockwise,
    -180..180) and ``mirrored`` whether a flip is involved; both only describe it to the user."""

    transpose: bool = False
    flip_rows: bool = False
    flip_columns: bool = False
    rotation: int = 0
    mirrored: bool = False

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_columns)

    def displayed_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) as shown, from the stored (width, height)."""
        return (height, width) if self.transpose else (width, height)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The upright view of an HxW[xC] stored image (a contiguous copy unless nothing changes)."""
        if self.is_identity:
            return image
        out = image.swapaxes(0, 1) if self.transpose else image
        if self.flip_rows:
            out = out[::-1]
        if self.flip_columns:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def describe(self) -> str:
        """'rotated 90° clockwise', 'mirrored', ... for messages; '' when upright as stored."""
        if self.is_identity:
            return ""
        parts = []
        if self.rotation:
            turn = "clockwise" if self.rotation < 0 else "counter-clockwise"
            parts.append(f"rotated {abs(self.rotation)}° {turn}" if abs(self.rotation) != 180 else "rotated 180°")
        if self.mirrored:
            parts.append("mirrored")
        return " and ".join(parts)


UPRIGHT = Orientation()


def _right_angle(value: float) -> int | None:
    """-1, 0 or 1 when ``value`` is one of them (within tolerance), else None."""
    for unit in (-1, 0, 1):
        if abs(value - unit) <= _TOLERANCE:
            return unit
    return None


def _rotation_degrees(a: float, b: float) -> int:
    """FFmpeg's av_display_rotation_get convention: counter-clockwise degrees in -180..180."""
    return int(round(-np.degrees(np.arctan2(b, a)))) if (a or b) else 0


def from_display_matrix(raw: bytes) -> Orientation | None:
    """Orientation from the 36 bytes of a display matrix, or None when it is not a quarter turn
    or mirror (the caller warns and keeps the stored frames).

    The matrix maps a stored pixel (p, q) to the displayed (x, y) = (a p + c q + tx, b p + d q + ty),
    with a, b, c, d in 16.16 fixed point (row-vector convention, FFmpeg's libavutil/display.h).
    With a = d = 0 the axes swap (a transpose); a negative coefficient runs that axis backwards.
    """
    if len(raw) != 36:
        return None
    m = np.frombuffer(raw, dtype=np.int32).astype(np.float64)
    a, b, c, d = (float(v) / 65536.0 for v in (m[0], m[1], m[3], m[4]))
    units = [_right_angle(v) for v in (a, b, c, d)]
    if any(u is None for u in units):
        return None
    ua, ub, uc, ud = units
    mirrored = (a * d - b * c) < 0
    if ua == 0 and ud == 0 and ub and uc:
        # Display x comes from stored rows, display y from stored columns.
        orientation = Orientation(transpose=True, flip_rows=ub < 0, flip_columns=uc < 0)
    elif ub == 0 and uc == 0 and ua and ud:
        orientation = Orientation(flip_rows=ud < 0, flip_columns=ua < 0)
    else:
        return None
    if orientation.is_identity:
        return UPRIGHT
    return Orientation(
        orientation.transpose,
        orientation.flip_rows,
        orientation.flip_columns,
        # A mirrored layout is told as a turn followed by a left-right mirror (PyAV's reading).
        rotation=_rotation_degrees(-a if mirrored else a, b),
        mirrored=mirrored,
    )


#: EXIF orientation values whose upright image has width and height swapped.
EXIF_TRANSPOSED = (5, 6, 7, 8)
