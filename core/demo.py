"""Input for `matanyone demo`: the MatAnyone sample clip when ../shared is beside the checkout,
else a small generated clip (a moving disc over a gradient) with its first-frame mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_CANDIDATES = (Path("../shared/data"), Path("shared/data"))


def find_sample() -> tuple[Path, Path] | None:
    for folder in SAMPLE_CANDIDATES:
        clip, mask = folder / "test-sample1.mp4", folder / "test-sample1.png"
        if clip.exists() and mask.exists():
            return clip, mask
    return None


def synthetic_clip(folder: Path, frames: int = 24, height: int = 240, width: int = 320) -> tuple[Path, Path]:
    """Write demo_input.mp4 and demo_mask.png into ``folder`` and return their paths."""
    import av
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    clip, mask_path = folder / "demo_input.mp4", folder / "demo_mask.png"
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 90)], -1).astype(np.uint8)
    radius = height // 4
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            cx, cy = width // 3 + i * 2, height // 2
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
            frame = background.copy()
            frame[disc] = (230, 200, 170)
            if i == 0:
                Image.fromarray((disc * 255).astype(np.uint8)).save(mask_path)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return clip, mask_path
