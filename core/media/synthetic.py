"""The one generated clip of the project: benchmarks, export validation and drift checks use it
when no real clip is given, so they all see the same kind of content."""

from __future__ import annotations

import numpy as np


def moving_shapes(height: int, width: int, frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Moving shapes over a textured gradient, and the first frame's mask (uint8 0/255).

    A disc (the foreground, the mask's object) drifts right and bobs, a square crosses it in the
    background. Texture keeps the features non-trivial; timing does not depend on it, but a flat
    clip would make the memory read's top-k all ties, which is not what real clips look like.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.3 * np.sin(xx / width * 6.0)], -1)
    texture = rng.standard_normal((height, width, 3)).astype(np.float32) * 0.05
    out = np.empty((frames, height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    radius = 0.25 * min(height, width)
    side = 0.2 * min(height, width)
    for i in range(frames):
        img = base + texture
        sx, sy = width * (0.8 - 0.04 * i), height * 0.3
        square = (np.abs(xx - sx) <= side) & (np.abs(yy - sy) <= side)
        img[square] = (0.2, 0.3, 0.9)
        cx, cy = width * (0.35 + 0.02 * i), height * (0.55 + 0.03 * np.sin(i * 0.8))
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
        img[disc] = np.array((0.9, 0.75, 0.6), np.float32) + texture[disc]
        out[i] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if i == 0:
            mask[disc] = 255
    return out, mask
