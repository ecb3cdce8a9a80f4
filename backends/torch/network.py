"""The MatAnyone network (single object, inference only), with the official parameter names.

The network is a bag of stages; ``modules.py`` composes them into the five stateless modules.
Stages take and return plain 4-D tensors (batch first, no object dimension).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from matanyone_engine.core.artifacts.weights import parse_weights, seeded_state_dict, weights_digest
from matanyone_engine.core.engine import spec as S
from matanyone_engine.core.engine.errors import WeightsError
from matanyone_engine.core.engine.tiling import READ_TILE_BYTES, decoder_channel_groups, read_tiles

from .layers import (
    BasicBlock,
    Bottleneck,
    FeatureFusionBlock,
    MaskUpsampleBlock,
    PositionalEncoding,
    QueryTransformerBlock,
    SensoryDeepUpdater,
    SensoryUpdaterFullScale,
    area_downsample,
    foreground_attention_mask,
    resnet_layer,
)

PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
PE_SCALE = 32.0
PE_TEMPERATURE = 128.0
NUM_HEADS = 8
FF_DIM = 2048
NUM_BLOCKS = 3
UP_DIMS = (256, 128, 128, 64, 16)


class PixelEncoder(nn.Module):
    """ResNet-50 to stride 16 (layer4 is not part of the model)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.res2, c = resnet_layer(Bottleneck, 64, 64, 3, 1)
        self.layer2, c = resnet_layer(Bottleneck, c, 128, 4, 2)
        self.layer3, _ = resnet_layer(Bottleneck, c, 256, 6, 2)

    def forward(self, x: torch.Tensor):
        f2 = F.relu(self.bn1(self.conv1(x)))
        f4 = self.res2(self.maxpool(f2))
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return f16, f8, f4, f2


class KeyProjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.pix_feat_proj = nn.Conv2d(1024, S.PIXEL_DIM, 1)
        self.key_proj = nn.Conv2d(S.PIXEL_DIM, S.KEY_DIM, 3, padding=1)
        self.d_proj = nn.Conv2d(S.PIXEL_DIM, 1, 3, padding=1)
        self.e_proj = nn.Conv2d(S.PIXEL_DIM, S.KEY_DIM, 3, padding=1)

    def forward(self, f16: torch.Tensor):
        x = self.pix_feat_proj(f16)
        shrinkage = self.d_proj(x) ** 2 + 1
        selection = torch.sigmoid(self.e_proj(x))
        return self.key_proj(x), shrinkage, selection


class MaskEncoder(nn.Module):
    """ResNet-18 over normalised RGB + mask, fused with the pixel features."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1, c = resnet_layer(BasicBlock, 64, 64, 2, 1)
        self.layer2, c = resnet_layer(BasicBlock, c, 128, 2, 2)
        self.layer3, _ = resnet_layer(BasicBlock, c, 256, 2, 2)
        self.fuser = FeatureFusionBlock(S.PIXEL_DIM, 256, S.VALUE_DIM)
        self.sensory_update = SensoryDeepUpdater(S.VALUE_DIM, S.SENSORY_DIM)

    def value(self, image_norm: torch.Tensor, pix_feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        g = torch.cat([image_norm, mask], dim=1)
        # the official order is conv, bn, maxpool, relu (ReLU after pooling)
        g = F.relu(self.maxpool(self.bn1(self.conv1(g))))
        g = self.layer3(self.layer2(self.layer1(g)))
        return self.fuser(pix_feat, g)


class PixelFeatureFuser(nn.Module):
    def __init__(self):
        super().__init__()
        self.fuser = FeatureFusionBlock(S.PIXEL_DIM, S.VALUE_DIM, S.EMBED_DIM)
        self.sensory_compress = nn.Conv2d(S.SENSORY_DIM + 1, S.VALUE_DIM, 1)

    def forward(self, pix_feat, pixel_readout, sensory, last_mask_small):
        sensory_readout = self.sensory_compress(torch.cat([sensory, last_mask_small], dim=1))
        return self.fuser(pix_feat, pixel_readout + sensory_readout)


class UncertaintyPredictor(nn.Module):
    """Predicts where the memory readout can be trusted over the previous frame's mask value."""

    def __init__(self):
        super().__init__()
        self.conv1x1_v2 = nn.Conv2d(S.PIXEL_DIM * 2 + 1 + S.VALUE_DIM, 64, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv3x3 = nn.Conv2d(64, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3x3_out = nn.Conv2d(32, 1, 3, padding=1, bias=False)

    def forward(self, last_pix_feat, pix_feat, last_mask_small, value_diff):
        x = torch.cat([last_pix_feat, pix_feat, last_mask_small, value_diff], dim=1)
        x = F.relu(self.bn1(self.conv1x1_v2(x)))
        x = F.relu(self.bn2(self.conv3x3(x)))
        return self.conv3x3_out(x)


class ObjectSummarizer(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos_enc = PositionalEncoding(S.EMBED_DIM, PE_SCALE, PE_TEMPERATURE)
        self.input_proj = nn.Linear(S.VALUE_DIM, S.EMBED_DIM)
        self.feature_pred = nn.Sequential(
            nn.Linear(S.EMBED_DIM, S.EMBED_DIM), nn.ReLU(), nn.Linear(S.EMBED_DIM, S.EMBED_DIM)
        )
        self.weights_pred = nn.Sequential(
            nn.Linear(S.EMBED_DIM, S.EMBED_DIM), nn.ReLU(), nn.Linear(S.EMBED_DIM, S.NUM_QUERIES)
        )

    def forward(self, mask: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        b, _, h, w = value.shape
        m = area_downsample(mask, mask.shape[-1] // w).flatten(2).transpose(1, 2)  # (B, hw, 1)
        half = S.NUM_QUERIES // 2
        allowed = torch.cat([m.expand(-1, -1, half), (1 - m).expand(-1, -1, half)], dim=-1)
        tokens = self.input_proj(value.flatten(2).transpose(1, 2))
        tokens = tokens + self.pos_enc.table(h, w).reshape(1, h * w, S.EMBED_DIM)
        feature = self.feature_pred(tokens)  # (B, hw, C)
        weights = torch.sigmoid(self.weights_pred(tokens)) * allowed  # (B, hw, Q)
        sums = torch.matmul(weights.transpose(1, 2), feature)  # (B, Q, C)
        area = weights.sum(dim=1).unsqueeze(-1)  # (B, Q, 1)
        return torch.cat([sums, area], dim=-1)


class QueryTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        d = S.EMBED_DIM
        self.query_init = nn.Embedding(S.NUM_QUERIES, d)
        self.query_emb = nn.Embedding(S.NUM_QUERIES, d)
        self.summary_to_query_init = nn.Linear(d, d)
        self.summary_to_query_emb = nn.Linear(d, d)
        self.pixel_init_proj = nn.Conv2d(d, d, 1)
        self.pixel_emb_proj = nn.Conv2d(d, d, 1)
        self.spatial_pe = PositionalEncoding(d, PE_SCALE, PE_TEMPERATURE)
        self.blocks = nn.ModuleList(QueryTransformerBlock(d, NUM_HEADS, FF_DIM) for _ in range(NUM_BLOCKS))
        self.mask_pred = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Conv2d(d, 1, 1)) for _ in range(NUM_BLOCKS + 1))

    def forward(self, pixel: torch.Tensor, obj_memory: torch.Tensor, aux: list | None = None) -> torch.Tensor:
        b, c, h, w = pixel.shape
        obj_values = obj_memory[:, :, :-1] / (obj_memory[:, :, -1:] + 1e-4)
        query = self.query_init.weight.unsqueeze(0) + self.summary_to_query_init(obj_values)
        query_pe = self.query_emb.weight.unsqueeze(0) + self.summary_to_query_emb(obj_values)
        pixel_emb = self.pixel_emb_proj(pixel).flatten(2).transpose(1, 2)
        pixel_pe = self.spatial_pe.table(h, w).reshape(1, h * w, c) + pixel_emb
        pixel = self.pixel_init_proj(pixel)
        logits = self.mask_pred[0](pixel)
        if aux is not None:
            aux.append(logits)
        for i, block in enumerate(self.blocks):
            mask = foreground_attention_mask(logits, S.NUM_QUERIES)
            query, pixel = block(query, pixel, query_pe, pixel_pe, mask)
            # the last block's mask prediction feeds nothing at inference; skip it unless asked
            if i + 1 < len(self.blocks) or aux is not None:
                logits = self.mask_pred[i + 1](pixel)
                if aux is not None:
                    aux.append(logits)
        return pixel


class MaskDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        u = UP_DIMS
        self.sensory_update = SensoryUpdaterFullScale([u[0], u[1], u[2], u[3], u[4] + 1], S.SENSORY_DIM, S.SENSORY_DIM)
        self.decoder_feat_proc = nn.Module()
        self.decoder_feat_proc.transforms = nn.ModuleList(
            nn.Conv2d(i, o, 1) for i, o in zip((512, 256, 64, 3), u[:-1], strict=False)
        )
        self.up_16_8 = MaskUpsampleBlock(u[0], u[1])
        self.up_8_4 = MaskUpsampleBlock(u[1], u[2])
        self.up_4_2 = MaskUpsampleBlock(u[2], u[3])
        self.up_2_1 = MaskUpsampleBlock(u[3], u[4])
        self.pred_seg = nn.Conv2d(u[-1], 1, 3, padding=1)  # segmentation head: trained, unused for matting
        self.pred_mat = nn.Conv2d(u[-1], 1, 3, padding=1)

    def forward(self, f8, f4, f2, f1, readout, sensory):
        t = cast(nn.ModuleList, self.decoder_feat_proc.transforms)
        p8 = self.up_16_8(readout, t[0](f8))
        p4 = self.up_8_4(p8, t[1](f4))
        p2 = self._upsample(self.up_4_2, p4, f2, cast(nn.Conv2d, t[2]))
        p1 = self._upsample(self.up_2_1, p2, f1, cast(nn.Conv2d, t[3]))
        logits = self.pred_mat(F.relu(p1))
        new_sensory = self.sensory_update([readout, p8, p4, p2, torch.cat([p1, logits], dim=1)], sensory)
        return new_sensory, logits

    @staticmethod
    def _upsample(block: MaskUpsampleBlock, g: torch.Tensor, skip_source: torch.Tensor, project: nn.Conv2d):
        """One upsampling step; above 1080p its frame-sized input sum is built in channel groups
        (core/engine/tiling.py, decided from the static shapes, so exports unroll it)."""
        h, w = skip_source.shape[-2:]
        groups = decoder_channel_groups(project.out_channels, int(h), int(w))
        if groups == 1:
            return block(g, project(skip_source))
        return block.forward_grouped(g, skip_source, project, groups)


class SensoryAux(nn.Module):
    """Training-time auxiliary head; kept only so the checkpoint loads strictly."""

    def __init__(self):
        super().__init__()
        self.sensory_aux = nn.Module()
        self.sensory_aux.projection = nn.Conv2d(S.SENSORY_DIM, S.EMBED_DIM + 1, 1)


class MatAnyoneNet(nn.Module):
    pixel_mean: torch.Tensor  # registered buffers
    pixel_std: torch.Tensor

    def __init__(self):
        super().__init__()
        self.pixel_encoder = PixelEncoder()
        self.pix_feat_proj = nn.Conv2d(1024, S.PIXEL_DIM, 1)
        self.key_proj = KeyProjection()
        self.mask_encoder = MaskEncoder()
        self.mask_decoder = MaskDecoder()
        self.pixel_fuser = PixelFeatureFuser()
        self.object_transformer = QueryTransformer()
        self.object_summarizer = ObjectSummarizer()
        self.aux_computer = SensoryAux()
        self.temp_sparity = UncertaintyPredictor()
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.weights_digest: str = ""
        self.weights_ref: str = ""
        #: Budget of one memory-read tile's similarity (core/engine/tiling.py); smaller = more tiles.
        self.read_tile_bytes: int = READ_TILE_BYTES

    # -- stages used by the five modules ------------------------------------------------------

    def encode_image(self, image: torch.Tensor):
        f1 = (image - self.pixel_mean) / self.pixel_std
        f16, f8, f4, f2 = self.pixel_encoder(f1)
        key, shrinkage, selection = self.key_proj(f16)
        return f8, f4, f2, f1, self.pix_feat_proj(f16), key, shrinkage, selection

    def encode_mask(self, f1, pix_feat, sensory, mask):
        value = self.mask_encoder.value(f1, pix_feat, mask)
        new_sensory = self.mask_encoder.sensory_update(value, sensory)
        return value, new_sensory, self.object_summarizer(mask, value)

    def fuse_and_transform(self, pix_feat, pixel_readout, sensory, last_mask, obj_memory, aux=None):
        small = area_downsample(last_mask, last_mask.shape[-1] // pix_feat.shape[-1])
        fused = self.pixel_fuser(pix_feat, pixel_readout, sensory, small)
        if aux is not None:
            aux.append(fused)
        return self.object_transformer(fused, obj_memory, None if aux is None else aux)

    def read_memory(self, query_key, query_selection, mem_key, mem_shrinkage, mem_value, mem_valid):
        """Top-k attention of every query pixel over the valid memory tokens.

        The official similarity, ``(2ab - a^2 - b^2) * shrinkage / sqrt(CK)`` plus the mask of empty
        slots, is a sum of per-channel products, so it is computed as ONE matmul of a memory-side
        factor (2k, -k^2, -1, each row scaled by its shrinkage; then the empty-slot mask) with a
        query-side factor (k*e, e, sum(e*k^2), 1): no elementwise pass over the (hw x N) matrix.
        Only the top-k values and indices of each row are used after that: their softmax weights
        the k gathered memory values, where the official scatters them into a dense affinity and
        multiplies by every memory value (k / N of that work is non-zero).

        The query pixels go through in tiles (core/engine/tiling.py: from the shapes and
        ``read_tile_bytes``), each tile's similarity, top-k, softmax and gather done before the
        next, so the (hw x N) similarity is never held whole. Every step is per query row, so the
        result does not depend on the tiling; a trace unrolls the tiles statically.
        """
        b, ck, h, w = query_key.shape
        n = mem_key.shape[-1]
        qk = query_key.flatten(2)  # (B, CK, hw)
        qe = query_selection.flatten(2)
        b_sq = (qe * qk.pow(2)).sum(dim=1, keepdim=True)  # (B, 1, hw)
        scale = mem_shrinkage / math.sqrt(ck)  # (B, 1, N)
        empty = (1 - mem_valid).unsqueeze(1) * S.MASKED_SIMILARITY  # (B, 1, N)
        if torch.is_autocast_enabled(query_key.device.type):
            # The official term by term: under the bf16 autocast (the official CPU demo) only the
            # two matmuls round to bfloat16, while b^2 and the sum stay float32. The fused matmul
            # would round b^2 too, and the reference of that mode would then be wrong.
            key_sq = mem_key.pow(2)
            qke = qk * qe

            def similarity_of(tile: slice) -> torch.Tensor:
                a_sq = torch.matmul(_columns(qe, tile).transpose(1, 2), key_sq)
                two_ab = 2 * torch.matmul(_columns(qke, tile).transpose(1, 2), mem_key)
                return (-a_sq + two_ab - _columns(b_sq, tile).transpose(1, 2)) * scale + empty

        else:
            query_side = torch.cat([qk * qe, qe, b_sq, torch.ones_like(b_sq)], dim=1)  # (B, 2CK+2, hw)
            memory_side = torch.cat(
                [2 * mem_key * scale, -mem_key.pow(2) * scale, -scale, empty], dim=1
            )  # (B, 2CK+2, N)

            def similarity_of(tile: slice) -> torch.Tensor:
                return torch.matmul(_columns(query_side, tile).transpose(1, 2), memory_side)  # (B, rows, N)

        k = min(S.TOP_K, n)
        value_rows = mem_value.transpose(1, 2).reshape(b * n, -1)  # (B*N, CV): one row per memory token
        offsets = torch.arange(b, device=query_key.device).view(b, 1, 1) * n
        # int(): under torch.jit.trace (Core ML) sizes are tensors; exports are static, so they are ints here
        tiles = read_tiles(int(h) * int(w), int(n), self.read_tile_bytes)
        readouts = []
        for start, stop in tiles:
            rows = stop - start
            similarity = similarity_of(slice(start, stop) if len(tiles) > 1 else slice(None))
            top_values, top_indices = top_k_first_index(similarity, k)  # (B, rows, k)
            del similarity  # the tile's largest tensor: gone before the next tile's
            weights = torch.softmax(top_values, dim=-1)
            values = value_rows.index_select(0, (top_indices + offsets).reshape(-1)).reshape(b * rows, k, -1)
            readouts.append(torch.bmm(weights.reshape(b * rows, 1, k), values).reshape(b, rows, -1))  # (B, rows, CV)
        readout = readouts[0] if len(readouts) == 1 else torch.cat(readouts, dim=1)  # (B, hw, CV)
        return readout.transpose(1, 2).reshape(b, mem_value.shape[1], h, w)

    def blend_with_uncertainty(self, visual_readout, last_msk_value, last_pix_feat, pix_feat, last_mask):
        small = area_downsample(last_mask, last_mask.shape[-1] // pix_feat.shape[-1])
        logits = self.temp_sparity(last_pix_feat, pix_feat, small, visual_readout - last_msk_value)
        prob = torch.sigmoid(logits)
        return visual_readout * prob + last_msk_value * (1 - prob)

    def decode(self, f8, f4, f2, f1, readout, sensory):
        return self.mask_decoder(f8, f4, f2, f1, readout, sensory)


def _columns(x: torch.Tensor, tile: slice) -> torch.Tensor:
    """The query columns of one tile; the whole tensor itself (no slice op in a trace) for one tile."""
    return x if tile == slice(None) else x[:, :, tile]


def top_k_first_index(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k along the last axis, choosing the lowest indices among values tied at the k-th place.

    That is the ONNX TopK rule, which exported graphs follow; eager ``torch.topk`` picks tied
    elements in no defined order. Identical memory keys (flat image areas, letterbox bars, repeated
    frames) tie exactly, and their values differ, so without one rule the runtimes disagree there.
    Traced for export, this is plain TopK. The order of the k results is not part of the contract
    (the caller sums over them).
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return torch.topk(x, k=k, dim=-1)
    values, indices = torch.topk(x, k=k, dim=-1)
    kth = values[..., k - 1 :]
    # Only a row with more than k entries >= its k-th value has a choice to make; in every other
    # row the k entries are fixed and torch.topk found them. The rule below needs several (rows x N)
    # masks, so it runs on those rows alone, a few at a time: the memory stays that of the tile.
    straddling = ((x >= kth).sum(dim=-1) > k).reshape(-1)
    if bool(straddling.any()):
        flat_x, flat_kth = x.reshape(-1, x.shape[-1]), kth.reshape(-1, 1)
        indices = indices.reshape(-1, k).clone()
        chunk = max(1, flat_x.shape[0] // 4)
        for rows in straddling.nonzero()[:, 0].split(chunk):
            indices[rows] = _lowest_tied_indices(flat_x[rows], flat_kth[rows], k)
        indices = indices.reshape(*x.shape[:-1], k)
    indices = indices.sort(dim=-1).values  # ascending, the order the tie rule gives
    return x.gather(-1, indices), indices


def _lowest_tied_indices(x: torch.Tensor, kth: torch.Tensor, k: int) -> torch.Tensor:
    """(rows, k) indices: every entry above ``kth``, then the lowest-indexed entries equal to it."""
    above = x > kth
    tied = x == kth
    room = k - above.sum(dim=-1, keepdim=True)  # how many tied entries still fit
    chosen = above | (tied & (tied.cumsum(dim=-1, dtype=torch.int32) <= room))
    return chosen.nonzero()[:, -1].reshape(x.shape[0], k)  # row-major: k per row, ascending


# ------------------------------------------------------------------------------------ weights


def state_dict_entries(net: MatAnyoneNet | None = None) -> list[tuple[str, tuple[int, ...]]]:
    net = net or MatAnyoneNet()
    return [(k, tuple(v.shape)) for k, v in net.state_dict().items()]


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"cannot read checkpoint {path.name} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            "re-download the official matanyone.pth or model.safetensors"
        ) from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsError(f"checkpoint {path.name} holds no state dict; pass the official matanyone.pth")
    return dict(state)


def check_state_dict(net: nn.Module, state: Mapping[str, Any], source: str) -> None:
    """Strict key and shape check with one message listing every problem."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {expected[k]}"
        for k in expected
        if k in state and tuple(getattr(state[k], "shape", ())) != expected[k]
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                shown = ", ".join(items[:6]) + (f", … ({len(items)} in all)" if len(items) > 6 else "")
                parts.append(f"{label}: {shown}")
        raise WeightsError(
            f"{source} does not match the MatAnyone single-object model ({'; '.join(parts)}); "
            "pass the official matanyone.pth or model.safetensors"
        )


def load_network(weights: str = "seeded:v1-pm", device: str | torch.device = "cpu") -> MatAnyoneNet:
    """Build the network and load ``weights`` strictly; float32, eval mode."""
    ref = parse_weights(weights)
    net = MatAnyoneNet()
    if ref.kind == "seeded":
        arrays = seeded_state_dict(state_dict_entries(net), ref.variant, ref.prefix)
        state = {k: torch.from_numpy(v) for k, v in arrays.items()}
        source = str(ref)
    else:
        state = _read_checkpoint(ref.path)
        source = ref.path.name
    check_state_dict(net, state, source)
    net.load_state_dict(state, strict=True)
    net.weights_digest = weights_digest({k: v.detach().cpu().numpy() for k, v in net.state_dict().items()})
    net.weights_ref = str(ref)
    return net.float().eval().to(device)


def state_dict_numpy(net: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
