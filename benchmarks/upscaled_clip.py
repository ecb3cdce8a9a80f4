#!/usr/bin/env python
"""Write a real clip at a large size: the first frames of a MatAnyone sample clip, resized (bicubic)
to HxW, with its first-frame mask resized the same way (nearest). For the 1080p / 4K memory and
speed checks; write into /tmp, never into the repository (the sample clips' licence is
non-commercial).

    python benchmarks/upscaled_clip.py --size 2160x3840 --frames 6 -o /tmp/clip4k
    # -> /tmp/clip4k/clip.mp4 and /tmp/clip4k/clip.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE = REPO.parent / "shared" / "data" / "test-sample2.mp4"


def write_upscaled(sample: Path, size: tuple[int, int], frames: int, out_dir: Path) -> tuple[Path, Path]:
    height, width = size
    out_dir.mkdir(parents=True, exist_ok=True)
    clip, mask_path = out_dir / "clip.mp4", out_dir / "clip.png"
    with av.open(str(sample)) as source, av.open(str(clip), "w") as target:
        stream = target.add_stream("libx264", rate=int(round(float(source.streams.video[0].average_rate or 24))))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "16", "preset": "veryfast"}
        for index, frame in enumerate(source.decode(video=0)):
            if index >= frames:
                break
            rgb = frame.to_ndarray(format="rgb24")
            interpolation = cv2.INTER_CUBIC if height > rgb.shape[0] else cv2.INTER_AREA
            resized = cv2.resize(rgb, (width, height), interpolation=interpolation)
            target.mux(stream.encode(av.VideoFrame.from_ndarray(resized, format="rgb24")))
        target.mux(stream.encode(None))
    mask = np.asarray(Image.open(sample.with_suffix(".png")).convert("L"))
    Image.fromarray(cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)).save(mask_path)
    return clip, mask_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2160x3840", help="HxW")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    clip, mask = write_upscaled(args.sample, (height, width), args.frames, args.output)
    print(clip, mask)


if __name__ == "__main__":
    main()
