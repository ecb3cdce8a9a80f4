"""`matanyone bench --subjects K`: K = 1..K measured side by side, each against K separate runs."""

from __future__ import annotations

import numpy as np
import pytest

from matanyone_engine.core import bench as B
from matanyone_engine.core.bench.clip import ClipData
from matanyone_engine.core.bench.stats import compute_ratios
from matanyone_engine.core.engine.spec import MODULE_SPECS


def test_plan_adds_each_subject_count_next_to_the_one_subject_run():
    configs = B.plan_configs(["torch"], ["fp32"], None, subjects=3)
    assert [(c.label, c.subjects) for c in configs] == [
        ("torch/fp32", 1),
        ("torch/fp32 x2 subjects", 2),
        ("torch/fp32 x3 subjects", 3),
    ]


def _result(label, subjects, medians):
    return {
        "label": label,
        "backend": "torch",
        "precision": "fp32",
        "placement": None,
        "pipeline": False,
        "subjects": subjects,
        "frame": {"median_ms": float(np.median(medians))},
        "modules": {},
        "rounds": [{"frame_median_ms": m, "modules_median_ms": {}} for m in medians],
    }


def test_ratio_is_k_subjects_over_k_separate_runs_paired_by_round():
    results = [_result("one", 1, [100.0, 200.0, 100.0]), _result("two", 2, [180.0, 300.0, 160.0])]
    ratios = compute_ratios(results)["subjects"]
    # per round 180/200, 300/400, 160/200 -> median 0.8
    assert ratios == {"two": {"subjects": 2, "one_subject": "one", "vs_separate_runs": pytest.approx(0.8)}}


def test_a_timed_pass_with_k_subjects_runs_the_encoder_once_per_frame():
    from matanyone_engine.core.engine.driver import clip_dims

    dims, _ = clip_dims(16, 32, 3)

    class Zero:
        def __init__(self, name):
            self.spec = MODULE_SPECS[name]
            self.shapes = self.spec.output_shapes(dims)

        def __call__(self, **inputs):
            out = {k: np.zeros(s, np.float32) for k, s in self.shapes.items()}
            if "obj_summary" in out:
                out["obj_summary"][..., -1] = 1.0
            return out

    clip = ClipData(np.zeros((5, 16, 32, 3), np.uint8), np.full((16, 32), 255.0, np.float32), "zeros")
    timed = B.time_clip_pass({n: Zero(n) for n in MODULE_SPECS}, clip, state_warmup=0, mem_frames=3, subjects=3)
    assert len(timed["modules"]["encoder"]) == 5
    assert len(timed["modules"]["decoder"]) == 3 * 5  # per subject: one first-frame step, then 4 frames
    assert len(timed["frames"]) == 4
