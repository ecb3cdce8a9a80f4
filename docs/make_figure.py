"""Make docs/demo.png for the README: one frame, its alpha and the green-screen composite, produced by
this project (`matanyone_engine.core.api.matte`) on the generated demo clip (or, with --sample, on
the MatAnyone sample clip, whose licence forbids committing the result).

    python docs/make_figure.py [--weights official|PATH|seeded:v1-pm] [--frame 8]

With seeded:v1-pm (random weights, the default here because no machine of this project reaches the
model hub) the matte shows the pipeline, not the model's quality.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from matanyone_engine.core.api import matte
from matanyone_engine.core.media.writers import composite, parse_background

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default="seeded:v1-pm")
    parser.add_argument("--frame", type=int, default=8)
    parser.add_argument("--max-size", type=int, default=240)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "demo.png")
    parser.add_argument(
        "--sample",
        action="store_true",
        help="use ../shared/data's sample clip (non-commercial licence: do not commit the result)",
    )
    args = parser.parse_args()
    if args.sample:
        data = ROOT.parent / "shared" / "data"
        clip, mask = data / "test-sample1.mp4", data / "test-sample1.png"
    else:  # the generated clip of `matanyone demo`, free to commit
        import tempfile

        from matanyone_engine.core.app.samples import write_generated_clip as synthetic_clip

        clip, mask = synthetic_clip(Path(tempfile.mkdtemp()), frames=args.frame + 1)
    chosen = None
    for frame in matte(
        clip, mask, weights=args.weights, backend="torch", max_size=args.max_size, frames=args.frame + 1
    ):
        chosen = frame
    rgb, alpha = chosen.rgb, chosen.alpha
    panels = [
        rgb,
        np.repeat((np.clip(alpha, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2),
        composite(rgb, alpha, parse_background(None)),
    ]
    h, w = rgb.shape[:2]
    sheet = Image.new("RGB", (3 * w + 20, h + 24), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (panel, label) in enumerate(zip(panels, ("frame", "alpha", "composite"), strict=False)):
        sheet.paste(Image.fromarray(np.asarray(panel, dtype=np.uint8)), (i * (w + 10), 24))
        draw.text((i * (w + 10) + 4, 6), f"{label} (frame {chosen.index}, weights {args.weights})", fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
