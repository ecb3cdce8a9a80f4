"""Small torch modules that honour core.spec exactly but are not MatAnyone.

They exist so the exporter, the validation, the artifact cache and the ONNX Runtime backends can
be exercised in seconds, and independently of the real network: same names, shapes and operation
families (strided convolutions, bilinear upsampling, a top-k read over a masked similarity,
sigmoid/softmax), a few thousand parameters instead of 35 million. Never use them for mattes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from matanyone_engine.core.engine.spec import (
    EMBED_DIM,
    KEY_DIM,
    MASKED_SIMILARITY,
    NUM_QUERIES,
    PIXEL_DIM,
    SENSORY_DIM,
    TOP_K,
    VALUE_DIM,
)

#: What an artifact made from stand-ins records as its weights reference.
STANDIN_WEIGHTS = "standin:v1"


class _Encoder(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.s2 = nn.Conv2d(3, 64, 2, 2)
        self.s4 = nn.Conv2d(64, 256, 1)
        self.s8 = nn.Conv2d(256, 512, 1)
        self.s16 = nn.Conv2d(512, PIXEL_DIM, 1)
        self.key = nn.Conv2d(PIXEL_DIM, KEY_DIM, 1)
        self.d = nn.Conv2d(PIXEL_DIM, 1, 1)
        self.e = nn.Conv2d(PIXEL_DIM, KEY_DIM, 1)

    def forward(self, image: torch.Tensor):
        f1 = (image - self.mean) / self.std
        f2 = F.relu(self.s2(f1))
        f4 = F.relu(self.s4(F.avg_pool2d(f2, 2)))
        f8 = F.relu(self.s8(F.avg_pool2d(f4, 2)))
        pix = self.s16(F.avg_pool2d(f8, 2))
        return f8, f4, f2, f1, pix, self.key(pix), self.d(pix) ** 2 + 1, torch.sigmoid(self.e(pix))


class _MaskEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(4, 32, 4, 4)
        self.down2 = nn.Conv2d(32, VALUE_DIM, 4, 4)
        self.fuse = nn.Conv2d(VALUE_DIM + PIXEL_DIM, VALUE_DIM, 1)
        self.gate = nn.Conv2d(VALUE_DIM + SENSORY_DIM, SENSORY_DIM, 1)
        self.q = nn.Linear(VALUE_DIM, NUM_QUERIES)
        self.v = nn.Linear(VALUE_DIM, EMBED_DIM)

    def forward(self, f1, pix_feat, sensory, mask):
        x = F.relu(self.down2(F.relu(self.down(torch.cat([f1, mask], 1)))))
        value = self.fuse(torch.cat([x, pix_feat], 1))
        g = torch.sigmoid(self.gate(torch.cat([value, sensory], 1)))
        new_sensory = g * sensory + (1 - g) * torch.tanh(value)
        tokens = value.flatten(2).transpose(1, 2)  # 1, hw, C
        weights = torch.softmax(self.q(tokens), dim=1)  # 1, hw, Q
        area = weights.sum(1).unsqueeze(-1)  # 1, Q, 1
        sums = weights.transpose(1, 2) @ self.v(tokens)  # 1, Q, E
        return value, new_sensory, torch.cat([sums, area], -1)


class _MaskValue(nn.Module):
    """The shallow variant: the mask encoder's value path only, sharing its weights."""

    def __init__(self, full: _MaskEncoder) -> None:
        super().__init__()
        self.full = full

    def forward(self, f1, pix_feat, mask):
        x = F.relu(self.full.down2(F.relu(self.full.down(torch.cat([f1, mask], 1)))))
        return (self.full.fuse(torch.cat([x, pix_feat], 1)),)


class _ReadFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(PIXEL_DIM + VALUE_DIM + SENSORY_DIM + 1, EMBED_DIM, 1)
        self.obj = nn.Linear(EMBED_DIM, EMBED_DIM)

    def forward(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory):
        small = F.adaptive_avg_pool2d(last_mask, pix_feat.shape[-2:])
        x = self.mix(torch.cat([pix_feat, last_msk_value, sensory, small], 1))
        obj = obj_memory[..., :-1] / (obj_memory[..., -1:] + 1e-4)
        return (x + self.obj(obj.mean(1)).view(1, -1, 1, 1),)


class _Read(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = _ReadFirst()
        self.unc = nn.Conv2d(2 * PIXEL_DIM + 1, 1, 1)

    def forward(
        self,
        query_key,
        query_selection,
        pix_feat,
        last_pix_feat,
        last_mask,
        last_msk_value,
        sensory,
        mem_key,
        mem_shrinkage,
        mem_value,
        mem_valid,
        obj_memory,
    ):
        b, c, h, w = query_key.shape
        qk = query_key.flatten(2)  # 1, Ck, hw
        qe = query_selection.flatten(2)
        a_sq = mem_key.pow(2).transpose(1, 2) @ qe  # 1, N, hw
        two_ab = 2 * (mem_key.transpose(1, 2) @ (qk * qe))
        b_sq = (qe * qk.pow(2)).sum(1, keepdim=True)
        sim = (-a_sq + two_ab - b_sq) * mem_shrinkage.transpose(1, 2) / (c**0.5)
        valid = mem_valid.unsqueeze(-1)
        sim = sim * valid + (1 - valid) * MASKED_SIMILARITY
        k = min(TOP_K, sim.shape[1])
        top, idx = torch.topk(sim, k, dim=1)
        top = torch.softmax(top, dim=1)
        affinity = torch.zeros_like(sim).scatter(1, idx, top)
        readout = (mem_value @ affinity).view(b, VALUE_DIM, h, w)
        p = torch.sigmoid(self.unc(torch.cat([pix_feat, last_pix_feat, F.adaptive_avg_pool2d(last_mask, (h, w))], 1)))
        blended = readout * p + last_msk_value * (1 - p)
        return self.first(pix_feat, blended, sensory, last_mask, obj_memory)


class _Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c16 = nn.Conv2d(EMBED_DIM + SENSORY_DIM, 128, 3, 1, 1)
        self.c8 = nn.Conv2d(128 + 512, 64, 1)
        self.c4 = nn.Conv2d(64 + 256, 32, 1)
        self.c2 = nn.Conv2d(32 + 64, 16, 1)
        self.c1 = nn.Conv2d(16 + 3, 1, 3, 1, 1)
        self.sens = nn.Conv2d(128 + SENSORY_DIM, SENSORY_DIM, 1)

    def forward(self, f8, f4, f2, f1, mem_readout, sensory):
        x = F.relu(self.c16(torch.cat([mem_readout, sensory], 1)))
        new_sensory = torch.tanh(self.sens(torch.cat([x, sensory], 1)))
        up = lambda t: F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)  # noqa: E731
        x = F.relu(self.c8(torch.cat([up(x), f8], 1)))
        x = F.relu(self.c4(torch.cat([up(x), f4], 1)))
        x = F.relu(self.c2(torch.cat([up(x), f2], 1)))
        logits = self.c1(torch.cat([up(x), f1], 1)) + 0.5
        return new_sensory, logits


def build_standin_modules(seed: int = 0) -> dict[str, nn.Module]:
    """The five stand-in modules and ``mask_value`` (float32, eval mode, deterministic for ``seed``);
    like the real ones they work at any padded size."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        mask_encoder = _MaskEncoder()
        modules = {
            "encoder": _Encoder(),
            "mask_encoder": mask_encoder,
            "mask_value": _MaskValue(mask_encoder),
            "read_first": _ReadFirst(),
            "read": _Read(),
            "decoder": _Decoder(),
        }
    finally:
        torch.random.set_rng_state(gen_state)
    return {name: m.float().eval() for name, m in modules.items()}
