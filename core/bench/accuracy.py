"""Measuring a configuration's alpha error on the golden clip, the evidence behind ``fast``.

The golden clip (``golden_sample1_224x400.npz`` in ``../shared/golden``) holds 30 real frames, the
prepared first-frame mask and the official implementation's float32 mattes with the seeded:v1-pm
weights and warm-up 3. A configuration is run on exactly those inputs; the mean says how far the
whole clip drifts, the 99.9th percentile catches local failures (a wrong top-k, a flipped attention
mask) that a mean hides. ``core/engine/accuracy.py`` records the results that ``--precision fast``
relies on; ``benchmarks/accuracy_table.py`` writes it and the tests check it.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..app.loading import load_modules
from ..app.samples import sample_folders
from ..engine.driver import clip_dims, matte_frames

GOLDEN_NAME = "golden_sample1_224x400.npz"
#: The golden clip was made with these weights and this warm-up; any other would not compare.
GOLDEN_WEIGHTS = "seeded:v1-pm"
GOLDEN_WARMUP = 3


def find_golden() -> Path | None:
    """The golden clip beside the checkout (``../shared/golden``), or None."""
    for data in sample_folders():
        candidate = data.parent / "golden" / GOLDEN_NAME
        if candidate.exists():
            return candidate
    return None


def golden_alpha_error(
    backend: str,
    precision: str,
    golden: Path,
    *,
    placement: Mapping[str, str] | None = None,
    threads: int | None = None,
    pipeline: bool = False,
) -> dict[str, Any]:
    """Alpha error of ``backend`` at ``precision`` against the official float32 mattes."""
    data = np.load(golden)
    frames, mask, want = data["frames"], data["mask"], data["alpha"]
    dims, _ = clip_dims(frames.shape[1], frames.shape[2])
    modules = load_modules(
        backend, GOLDEN_WEIGHTS, dims, precision=precision, placement=dict(placement or {}), threads=threads
    )
    results = matte_frames(modules, frames, mask.astype(np.float32), warmup=GOLDEN_WARMUP, pipeline=pipeline)
    got = np.stack([r.alpha for r in results])
    del modules
    gc.collect()
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return {
        "mean_abs": float(err.mean()),
        "p999_abs": float(np.percentile(err, 99.9)),
        "max_abs": float(err.max()),
        "frames": int(frames.shape[0]),
        "size": [int(frames.shape[1]), int(frames.shape[2])],
    }
