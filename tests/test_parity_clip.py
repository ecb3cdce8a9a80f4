"""The golden clip (30 real frames at 224x400, warm-up 3) through the state machine and the torch
backend, against the official implementation's mattes."""

from __future__ import annotations

import numpy as np

from matanyone_engine.core.engine.driver import matte_frames

ALPHA_MEAN, ALPHA_P999, LOGITS_MEAN = 2e-5, 2e-3, 1e-4


def clip_errors(modules, golden) -> dict[str, float]:
    results = list(matte_frames(modules, golden["frames"], golden["mask"].astype(np.float32), warmup=3))
    alpha = np.stack([r.alpha for r in results])
    logits = np.stack([r.logits for r in results])
    assert alpha.shape == golden["alpha"].shape
    err = np.abs(alpha - golden["alpha"])
    return {
        "alpha_mean": float(err.mean()),
        "alpha_p999": float(np.percentile(err, 99.9)),
        "alpha_max": float(err.max()),
        "logits_mean": float(np.abs(logits - golden["logits_preclamp"]).mean()),
    }


def test_golden_clip_torch(torch_modules, golden_clip):
    errors = clip_errors(torch_modules, golden_clip)
    print("torch golden-clip errors:", errors)
    assert errors["alpha_mean"] <= ALPHA_MEAN, errors
    assert errors["alpha_p999"] <= ALPHA_P999, errors
    assert errors["logits_mean"] <= LOGITS_MEAN, errors
