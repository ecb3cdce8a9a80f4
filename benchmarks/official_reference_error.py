#!/usr/bin/env python
"""The official implementation's own CPU mode, measured on the golden clip: the reference error.

    python benchmarks/official_reference_error.py --official DIR [--bf16] [--mask-scale 255]

Run with a Python that can run the official code (see benchmarks/official_side_by_side.py); DIR
is a checkout of pq-yang/MatAnyone. It feeds the official ``InferenceCore`` the golden clip's own
frames and prepared mask (``../shared/golden/golden_sample1_224x400.npz``, warm-up 3, seeded:v1-pm
weights from ../shared/official/make_weights.py) and prints one JSON line with the alpha error
against the golden float32 mattes. In fp32 that error is the check that the feeding is the
golden's (it must be ~0); with ``--bf16`` (the official demo's CPU autocast) it is the error every
reduced precision of the project is held to (core/engine/accuracy.py). Nothing of the official
code is copied: it is imported from DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mask-scale", type=float, default=1.0, help="divide the 0/255 mask by this before feeding")
    args = parser.parse_args()
    shared = Path(args.shared)
    sys.path.insert(0, args.official)
    sys.path.insert(0, str(shared / "official"))
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))  # only its video reader needs it
    import torch
    from hydra import compose, initialize_config_dir
    from make_weights import load_spec, make_weights
    from matanyone.inference.inference_core import InferenceCore
    from matanyone.model.matanyone import MatAnyone
    from omegaconf import open_dict

    torch.set_num_threads(args.threads)
    with initialize_config_dir(version_base="1.3.2", config_dir=os.path.join(args.official, "matanyone", "config")):
        cfg = compose(config_name="eval_matanyone_config")
    with open_dict(cfg):
        cfg.model.pretrained_resnet = False  # the seeded weights replace the ImageNet ones
    net = MatAnyone(cfg, single_object=True).eval()
    net.load_weights(make_weights(load_spec(str(shared / "golden" / "state_dict_spec.json")), pred_mat_amend=True))
    core = InferenceCore(net, cfg=net.cfg)
    golden = np.load(shared / "golden" / "golden_sample1_224x400.npz")
    mask = torch.from_numpy(golden["mask"].astype(np.float32) / args.mask_scale)
    alphas = []
    with torch.inference_mode(), torch.amp.autocast(device_type="cpu", enabled=args.bf16):
        for index, frame in enumerate(golden["frames"]):
            image = torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0
            if index == 0:
                core.step(image, mask, objects=[1])
                prob = core.step(image, first_frame_pred=True)
                for _ in range(args.warmup):
                    prob = core.step(image, first_frame_pred=True)
            else:
                prob = core.step(image)
            alphas.append(core.output_prob_to_mask(prob).float().numpy())
    err = np.abs(np.stack(alphas).astype(np.float64) - golden["alpha"])
    print(
        json.dumps(
            {
                "impl": "official",
                "precision": "bf16" if args.bf16 else "fp32",
                "mean_abs": float(err.mean()),
                "p999_abs": float(np.percentile(err, 99.9)),
                "max_abs": float(err.max()),
                "frames": len(alphas),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
