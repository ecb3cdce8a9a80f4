"""Building blocks of the MatAnyone network, single-object and export-ready.

Parameter names follow the official checkpoint so that ``state_dict()`` matches it key for key.
The object dimension of the official code is gone (one object), which turns its grouped
convolutions into plain ones with identical weights. Every operation here has a direct ONNX and
Core ML equivalent: area interpolation at integer ratios is average pooling, attention is
written out with matmuls and an additive mask, and no shape depends on tensor values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from matanyone_engine.core.engine.spec import MASKED_SIMILARITY


def area_downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Area interpolation by an exact integer factor, which is what the official code does on
    padded inputs; average pooling is the convertible form of it."""
    if factor == 1:
        return x
    return F.avg_pool2d(x, kernel_size=factor, stride=factor)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def resnet_layer(
    block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, blocks: int, stride: int
) -> tuple[nn.Sequential, int]:
    expansion = block.expansion
    downsample = None
    if stride != 1 or inplanes != planes * expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * expansion),
        )
    layers = [block(inplanes, planes, stride, downsample)]
    inplanes = planes * expansion
    layers += [block(inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers), inplanes


# ------------------------------------------------------------------------------ generic blocks


class ChannelAttentionResBlock(nn.Module):
    """Two 3x3 convolutions with an efficient-channel-attention gate and a residual."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)
        t = int((abs(math.log2(out_dim)) + 1) // 2)
        k = t if t % 2 else t + 1
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.downsample = nn.Identity() if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.conv2(F.relu(self.conv1(F.relu(x))))
        b, c = x.shape[:2]
        gate = x.mean(dim=(2, 3)).reshape(b, 1, c)
        gate = torch.sigmoid(self.conv(gate)).reshape(b, c, 1, 1)
        return x * gate + self.downsample(residual)


class ResBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.downsample = nn.Identity() if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, 1)
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)

    def forward(self, g: torch.Tensor, consume: bool = False) -> torch.Tensor:
        """``consume``: ``g`` is the caller's temporary, so its memory may be reused in place (the
        values are the same either way). At full resolution in the decoder that saves a 64-channel
        frame-sized tensor (2 GB at 4K)."""
        if not consume or isinstance(self.downsample, nn.Identity):
            out = self.conv2(F.relu(self.conv1(F.relu(g))))
            return out + self.downsample(g)
        residual = self.downsample(g)  # before g is overwritten by its ReLU
        out = self.conv2(F.relu_(self.conv1(F.relu_(g))))
        return out.add_(residual)


class AddDistributor(nn.Module):
    """Projects the shared features and the object features to one width and adds them."""

    def __init__(self, x_in: int, g_in: int, out_dim: int):
        super().__init__()
        self.x_transform = nn.Conv2d(x_in, out_dim, 1)
        self.g_transform = nn.Conv2d(g_in, out_dim, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.x_transform(x) + self.g_transform(g)


class FeatureFusionBlock(nn.Module):
    def __init__(self, x_in: int, g_in: int, out_dim: int):
        super().__init__()
        self.distributor = AddDistributor(x_in, g_in, out_dim)
        self.block1 = ChannelAttentionResBlock(out_dim, out_dim)
        self.block2 = ChannelAttentionResBlock(out_dim, out_dim)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(self.distributor(x, g)))


def gru_update(h: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The sensory GRU: forget, update and candidate thirds of ``values``."""
    dim = h.shape[1]
    forget = torch.sigmoid(values[:, :dim])
    update = torch.sigmoid(values[:, dim : 2 * dim])
    candidate = torch.tanh(values[:, 2 * dim :])
    return forget * h * (1 - update) + update * candidate


class SensoryDeepUpdater(nn.Module):
    def __init__(self, f_dim: int, sensory_dim: int):
        super().__init__()
        self.transform = nn.Conv2d(f_dim + sensory_dim, sensory_dim * 3, 3, padding=1)

    def forward(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return gru_update(h, self.transform(torch.cat([g, h], dim=1)))


class SensoryUpdaterFullScale(nn.Module):
    """Sensory update from every decoder scale, each area-pooled down to stride 16."""

    def __init__(self, g_dims: list[int], mid_dim: int, sensory_dim: int):
        super().__init__()
        self.g16_conv = nn.Conv2d(g_dims[0], mid_dim, 1)
        self.g8_conv = nn.Conv2d(g_dims[1], mid_dim, 1)
        self.g4_conv = nn.Conv2d(g_dims[2], mid_dim, 1)
        self.g2_conv = nn.Conv2d(g_dims[3], mid_dim, 1)
        self.g1_conv = nn.Conv2d(g_dims[4], mid_dim, 1)
        self.transform = nn.Conv2d(mid_dim + sensory_dim, sensory_dim * 3, 3, padding=1)

    def forward(self, g: list[torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        x = (
            self.g16_conv(g[0])
            + self.g8_conv(area_downsample(g[1], 2))
            + self.g4_conv(area_downsample(g[2], 4))
            + self.g2_conv(area_downsample(g[3], 8))
            + self.g1_conv(area_downsample(g[4], 16))
        )
        return gru_update(h, self.transform(torch.cat([x, h], dim=1)))


class MaskUpsampleBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.out_conv = ResBlock(in_dim, out_dim)

    def forward(self, g: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``skip`` is consumed: the sum is built in its memory (the decoder passes a fresh
        projection), so no third frame-sized tensor is held next to it and the upsampled one."""
        return self.out_conv(skip.add_(upsample2x(g)), consume=True)

    def forward_grouped(self, g: torch.Tensor, source: torch.Tensor, project: nn.Conv2d, groups: int) -> torch.Tensor:
        """``forward(g, project(source))`` with the wide input sum built ``groups`` channel groups
        at a time: the block's first convolution and its 1x1 residual are linear in their input
        channels, so each is the sum over groups of the convolution of one group. The result
        differs from ``forward`` only in rounding; memory is that of one group plus the two
        (narrower) accumulators instead of the whole sum and its upsampled half."""
        block = self.out_conv
        assert isinstance(block.downsample, nn.Conv2d), "grouping needs a projected residual"
        step = project.out_channels // groups
        hidden: torch.Tensor | None = None
        residual: torch.Tensor | None = None
        for start in range(0, project.out_channels, step):
            part = slice(start, start + step)
            x = F.conv2d(source, project.weight[part], project.bias[part] if project.bias is not None else None)
            x = x.add_(upsample2x(g[:, part]))
            r = F.conv2d(x, block.downsample.weight[:, part])
            residual = r if residual is None else residual.add_(r)
            h = F.conv2d(F.relu_(x), block.conv1.weight[:, part], padding=1)
            hidden = h if hidden is None else hidden.add_(h)
            del x, r, h
        assert hidden is not None and residual is not None
        assert block.conv1.bias is not None and block.downsample.bias is not None
        hidden = hidden.add_(block.conv1.bias.view(1, -1, 1, 1))
        residual = residual.add_(block.downsample.bias.view(1, -1, 1, 1))
        return block.conv2(F.relu_(hidden)).add_(residual)


# ------------------------------------------------------------------------------- positional enc


class PositionalEncoding(nn.Module):
    """2-D sine encoding. ``inv_freq`` is a checkpoint buffer (random in seeded weights), so it is
    loaded, never recomputed; the table is rebuilt from it for the traced size."""

    inv_freq: torch.Tensor  # a registered buffer

    def __init__(self, dim: int, scale: float, temperature: float):
        super().__init__()
        half = int(math.ceil(dim / 4) * 2)
        self.half_dim = half  # not ``half``: nn.Module.half() casts the module
        self.scale = scale
        inv_freq = 1.0 / (temperature ** (torch.arange(0, half, 2).float() / half))
        self.register_buffer("inv_freq", inv_freq)

    def _axis(self, n: int) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.float32, device=self.inv_freq.device)
        pos = pos / (pos[-1] + 1e-6) * self.scale
        angles = pos[:, None] * self.inv_freq[None, :]
        return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2, -1)

    def table(self, h: int, w: int) -> torch.Tensor:
        """(h, w, 2*half): x encoding in the first half of the channels, y in the second."""
        emb_x = self._axis(w)[None, :, :].expand(h, w, self.half_dim)
        emb_y = self._axis(h)[:, None, :].expand(h, w, self.half_dim)
        return torch.cat([emb_x, emb_y], dim=-1)


# ------------------------------------------------------------------------------------ attention


class Attention(nn.Module):
    """Multi-head attention with nn.MultiheadAttention's parameter names, written with matmuls
    so every converter sees plain ops, and with an additive mask shared by all heads."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, additive_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, lq, c = q.shape
        lk = k.shape[1]
        d = c // self.heads
        wq, wk, wv = self.in_proj_weight.chunk(3, dim=0)
        bq, bk, bv = self.in_proj_bias.chunk(3, dim=0)
        q = F.linear(q, wq, bq).reshape(b, lq, self.heads, d).transpose(1, 2)
        k = F.linear(k, wk, bk).reshape(b, lk, self.heads, d).transpose(1, 2)
        v = F.linear(v, wv, bv).reshape(b, lk, self.heads, d).transpose(1, 2)
        scores = torch.matmul(q * (1.0 / math.sqrt(d)), k.transpose(-2, -1))
        if additive_mask is not None:
            scores = scores + additive_mask
        scores = scores - scores.amax(dim=-1, keepdim=True)
        weights = torch.exp(scores)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(b, lq, c)
        return self.out_proj(out)


class CrossAttention(nn.Module):
    """Pre-norm cross attention; the residual is the normalised input, as in the official model."""

    def __init__(self, dim: int, heads: int, norm: bool = True):
        super().__init__()
        self.cross_attn = Attention(dim, heads)
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()

    def forward(self, x, mem, x_pe, mem_pe, additive_mask=None):
        x = self.norm(x)
        return x + self.cross_attn(x + x_pe, mem + mem_pe, mem, additive_mask)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        qk = x + pe
        return x + self.self_attn(qk, qk, x)


class FFN(nn.Module):
    def __init__(self, dim: int, ff_dim: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, ff_dim)
        self.linear2 = nn.Linear(ff_dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.linear2(F.relu(self.linear1(self.norm(x))))


class PixelFFN(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv = ChannelAttentionResBlock(dim, dim)

    def forward(self, pixel_flat: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = pixel_flat.shape
        return self.conv(pixel_flat.transpose(1, 2).reshape(b, c, h, w))


class QueryTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int):
        super().__init__()
        self.read_from_pixel = CrossAttention(dim, heads, norm=True)
        self.self_attn = SelfAttention(dim, heads)
        self.ffn = FFN(dim, ff_dim)
        self.read_from_query = CrossAttention(dim, heads, norm=False)
        self.pixel_ffn = PixelFFN(dim)

    def forward(self, query, pixel, query_pe, pixel_pe, additive_mask):
        b, c, h, w = pixel.shape
        pixel_flat = pixel.flatten(2).transpose(1, 2)
        query = self.read_from_pixel(query, pixel_flat, query_pe, pixel_pe, additive_mask)
        query = self.self_attn(query, query_pe)
        query = self.ffn(query)
        pixel_flat = self.read_from_query(pixel_flat, query, pixel_pe, query_pe)
        return query, self.pixel_ffn(pixel_flat, h, w)


def foreground_attention_mask(aux_logits: torch.Tensor, num_queries: int) -> torch.Tensor:
    """Additive mask (B, 1, Q, hw): the first half of the queries may only look at foreground
    pixels, the second half only at background pixels; a half with nothing to look at is
    unmasked. The foreground test is the official one: compare the clamped logits of the
    foreground and background probabilities."""
    prob = torch.sigmoid(aux_logits.flatten(1))  # (B, hw)
    fg = prob.clamp(1e-7, 1 - 1e-7)
    bg = (1 - prob).clamp(1e-7, 1 - 1e-7)
    is_fg = (torch.log(fg / (1 - fg)) >= torch.log(bg / (1 - bg))).to(prob.dtype)
    count = is_fg.sum(dim=1, keepdim=True)
    total = float(is_fg.shape[1])
    block_for_fg_queries = (1 - is_fg) * (count > 0).to(prob.dtype)
    block_for_bg_queries = is_fg * (count < total).to(prob.dtype)
    half = num_queries // 2
    blocked = torch.cat(
        [
            block_for_fg_queries[:, None, :].expand(-1, half, -1),
            block_for_bg_queries[:, None, :].expand(-1, half, -1),
        ],
        dim=1,
    )
    return (blocked * MASKED_SIMILARITY)[:, None]
