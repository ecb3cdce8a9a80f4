"""Preparing a loaded network for the backend's inference: the load-time rewrites that cost nothing
at run time and change no result beyond float rounding.

* **Batch norm folded into the preceding convolution** (fp32): at inference a BatchNorm is an
  affine map per channel, so ``bn(conv(x))`` is one convolution with scaled weights and a bias.
  The parity tests run the folded network.
* **Weights pre-cast for the autocast** (bf16, fp16): the autocast casts every convolution and
  linear weight to the low precision on every call (a copy per weight per frame, 6 % of a frame
  on the benchmark CPU); casting them once at load gives bit-identical results, because the
  autocast's own cast is the same round-to-nearest. The autocast modes keep their batch norms, so
  they stay the official demo's CPU mode operation for operation.
* **channels_last** (``memory_format``): oneDNN computes convolutions, pooling and bilinear
  upsampling in a channels-last layout; an NCHW tensor is reordered into it and back around every
  convolution. Keeping activations channels-last removes those copies. Whether it pays is a
  property of the machine, measured by ``benchmarks/profile_torch.py`` and ``matanyone bench``.
* **Freed memory kept in the heap** (``keep_freed_memory``, Linux/glibc): a frame allocates and
  frees tens of full-resolution activations of up to ~85 MB at 432x768; glibc serves each from a
  fresh ``mmap`` and unmaps it on free, so every frame page-faults hundreds of MB in again. Raising
  glibc's mmap and trim thresholds keeps those blocks in the heap for the next frame (what a
  caching allocator does on a GPU). Measured on the 2-core benchmark CPU with channels_last: the
  fp32 modules of a steady frame 537 -> 429 ms, bf16 318 -> 253 ms. The cost: memory freed by the
  process is returned to the OS later (at most 1 GiB is kept at the top of the heap), so the
  backend does it only for frames up to 1080p (``KEEP_FREED_MAX_PIXELS`` in plugin.py), where the
  memory budget of a 4K run is not at stake.

Exports never see any of this: exporters trace ``load_network``'s network, unchanged.
"""

from __future__ import annotations

import ctypes
import platform
from functools import lru_cache

import torch
from torch import nn

from .layers import Attention


def fold_batch_norms(net: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into that convolution.

    The pairs are found by name: ``convN``/``bnN`` siblings and ``Sequential(conv, bn)``
    downsample branches, which is how every batch norm of this network is laid out. The batch
    norm is replaced by an identity. Returns how many were folded."""
    folded = 0
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            items = list(module)
            for i in range(len(items) - 1):
                conv, bn = items[i], items[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    _fold(conv, bn)
                    module[i + 1] = nn.Identity()
                    folded += 1
            continue
        for name, child in list(module.named_children()):
            if not (isinstance(child, nn.BatchNorm2d) and name.startswith("bn")):
                continue
            before = _conv_before(module, name)
            if before is None:
                continue
            _fold(before, child)
            setattr(module, name, nn.Identity())
            folded += 1
    return folded


def _conv_before(parent: nn.Module, bn_name: str) -> nn.Conv2d | None:
    """The convolution a ``bnN`` follows: ``convN``, or ``conv1x1_v2``/``conv3x3`` for ``bn1``/``bn2``
    in the uncertainty predictor (its convolutions are named by shape)."""
    suffix = bn_name[2:]
    candidates = {"1": ("conv1", "conv1x1_v2"), "2": ("conv2", "conv3x3"), "3": ("conv3",)}.get(suffix, ())
    for name in candidates:
        conv = getattr(parent, name, None)
        if isinstance(conv, nn.Conv2d):
            return conv
    return None


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    if bn.training or bn.running_mean is None or bn.running_var is None:
        raise ValueError("only eval-mode batch norms with running statistics fold")
    scale = (bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)) / torch.sqrt(
        bn.running_var + bn.eps
    )
    shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + shift, requires_grad=False)


@torch.no_grad()
def cast_autocast_weights(net: nn.Module, dtype: torch.dtype) -> int:
    """Cast the parameters the autocast would cast on every call (convolutions, linear layers and
    the attention projections) to ``dtype`` once. Returns how many tensors were cast."""
    cast = 0
    for module in net.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear, Attention)):
            for name, param in list(module.named_parameters(recurse=False)):
                if param.dtype != dtype:
                    setattr(module, name, nn.Parameter(param.to(dtype), requires_grad=False))
                    cast += 1
    return cast


#: glibc mallopt parameters (malloc.h) and the threshold set for both.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEPT_BYTES = 1 << 30


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Keep freed blocks in glibc's heap instead of unmapping them (process-wide, once).

    Returns whether it applied: only on Linux with glibc, where ``mallopt`` exists."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, KEPT_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, KEPT_BYTES))


def prepare_network(net: nn.Module, precision: str, channels_last: bool = False) -> nn.Module:
    """The backend's rewrites of ``net`` (in place) for ``precision``; see the module docstring."""
    if precision == "fp32":
        fold_batch_norms(net)
    elif precision == "bf16":
        cast_autocast_weights(net, torch.bfloat16)
    elif precision == "fp16":
        cast_autocast_weights(net, torch.float16)
    if channels_last:
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # Module.to takes it; the stubs omit it
    return net
