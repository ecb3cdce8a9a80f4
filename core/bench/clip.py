"""The clip every configuration is fed: the MatAnyone sample resized to the benchmark size, a
given clip, or a generated one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..app.samples import find_sample_clip
from ..engine.errors import InputError
from ..media import masks, video
from ..media.synthetic import moving_shapes as synthetic_clip


@dataclass
class ClipData:
    """What every configuration is fed: the same frames and the same prepared first-frame mask."""

    frames: np.ndarray  # (n, H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) float32 in 0..255, prepared like the demo (dilate then erode)
    source: str

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])


def load_clip(
    size: tuple[int, int],
    frames: int,
    clip: Path | None = None,
    mask: Path | None = None,
    synthetic: bool = False,
) -> ClipData:
    """The benchmark clip at ``size`` (H, W): ``clip`` if given, else the sample, else generated.

    The mask is prepared the way ``matanyone run`` does (demo dilate/erode 10 at the source size,
    then nearest-neighbour resize), so the state machine sees what it sees in real use. A clip
    shorter than ``frames`` is played forward then backward until long enough (timing depends on
    shapes, not on content, and a benchmark should not fail on a short clip).
    """
    if frames < 2:
        raise InputError(f"--frames must be at least 2 (frame 0 is the seed, the rest are timed), got {frames}")
    height, width = size
    if clip is None and not synthetic:
        found = find_sample_clip()
        if found is not None:
            clip, mask = found
    if clip is None:
        rgb, raw = synthetic_clip(height, width, frames)
        return ClipData(rgb, masks.prepare_mask(raw).astype(np.float32), f"synthetic moving shapes {height}x{width}")

    clip = Path(clip)
    mask = Path(mask) if mask is not None else clip.with_suffix(".png")
    if not mask.is_file():
        raise InputError(f"no mask for {clip}: expected {mask}; pass --mask")
    info = video.probe(clip)
    decoded = list(video.iter_frames(clip, count=frames))
    if not decoded:
        raise InputError(f"{clip} has no frames")
    while len(decoded) < frames:
        decoded += decoded[::-1][1:] or decoded
    rgb = np.stack([_resize(f, height, width, cv2.INTER_AREA) for f in decoded[:frames]])
    raw, _ = masks.fit_mask_to_frame(masks.load_mask(mask), info.height, info.width)
    prepared = masks.prepare_mask(raw)
    return ClipData(rgb, _resize(prepared, height, width, cv2.INTER_NEAREST).astype(np.float32), str(clip))


def _resize(image: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=interpolation)
