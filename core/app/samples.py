"""Where the sample input comes from: the MatAnyone sample clip when ``../shared/data`` is beside
the checkout (or the working folder), else the project's generated clip written as a video.

``matanyone demo`` and ``matanyone bench`` both find the sample here, so they agree on it.
"""

from __future__ import annotations

from pathlib import Path

from ..media.synthetic import moving_shapes

SAMPLE_CLIP, SAMPLE_MASK = "test-sample1.mp4", "test-sample1.png"


def checkout_root() -> Path:
    """The folder that holds core/ (a checkout, or site-packages/matanyone_engine when installed)."""
    return Path(__file__).resolve().parents[2]


def sample_folders() -> list[Path]:
    """Candidate ``shared/data`` folders: beside the working folder, inside it, beside the checkout."""
    cwd = Path.cwd()
    found = [cwd.parent / "shared" / "data", cwd / "shared" / "data", checkout_root().parent / "shared" / "data"]
    return list(dict.fromkeys(p.resolve() for p in found))


def find_sample_clip() -> tuple[Path, Path] | None:
    """(clip, first-frame mask) of the MatAnyone sample, or None when no shared data is found."""
    for folder in sample_folders():
        clip, mask = folder / SAMPLE_CLIP, folder / SAMPLE_MASK
        if clip.is_file() and mask.is_file():
            return clip, mask
    return None


def write_generated_clip(
    folder: Path, frames: int = 24, height: int = 240, width: int = 320, fps: int = 24
) -> tuple[Path, Path]:
    """The generated clip (core.media.synthetic) as ``demo_input.mp4`` plus ``demo_mask.png``."""
    import av
    from PIL import Image

    rgb, mask = moving_shapes(height, width, frames)
    folder.mkdir(parents=True, exist_ok=True)
    clip, mask_path = folder / "demo_input.mp4", folder / "demo_mask.png"
    Image.fromarray(mask).save(mask_path)
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in rgb:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return clip, mask_path
