"""Weight references, the seeded test recipe, and the weights digest — all numpy, no torch.

A weights reference is what users type after ``--weights``:
    seeded:v1-pm            random weights from the recipe in ../shared/golden/GOLDEN.md
    seeded:v1               the same without the pred_mat tweak
    seeded:v1-pm:PREFIX     a different seed family (PREFIX is prepended to every key name)
    official                the official MatAnyone checkpoint from the local cache, downloaded on first use
    official2 (matanyone2)  the same for MatAnyone 2 (same network and parameter names, new weights)
    path/to/matanyone.pth   the official checkpoint
    path/to/model.safetensors  the Hugging Face checkpoint
Seeded weights are random: they exist for tests and benchmarks, never for real mattes.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.errors import WeightsError

SEEDED_VARIANTS = ("v1", "v1-pm")


@dataclass(frozen=True)
class WeightsRef:
    kind: str  # "seeded" or "file"
    variant: str = ""
    prefix: str = ""
    path: Path | None = None

    def __str__(self) -> str:
        if self.kind == "seeded":
            return f"seeded:{self.variant}" + (f":{self.prefix}" if self.prefix else "")
        return str(self.path)


def parse_weights(ref: str) -> WeightsRef:
    from .checkpoints import OFFICIAL_REFS, official_checkpoint

    if ref in OFFICIAL_REFS:
        return WeightsRef("file", path=official_checkpoint(model=OFFICIAL_REFS[ref]))
    if ref.startswith("seeded:"):
        parts = ref.split(":", 2)
        variant = parts[1] if len(parts) > 1 else ""
        if variant not in SEEDED_VARIANTS:
            raise WeightsError(f"unknown seeded weights {ref!r}; use seeded:v1-pm or seeded:v1 (optionally :PREFIX)")
        return WeightsRef("seeded", variant=variant, prefix=parts[2] if len(parts) > 2 else "")
    path = Path(ref).expanduser()
    if not path.exists():
        raise WeightsError(
            f"weights file not found: {path}; pass the official matanyone.pth or model.safetensors, "
            "or seeded:v1-pm for random test weights"
        )
    if path.suffix not in (".pth", ".pt", ".safetensors"):
        raise WeightsError(f"unsupported weights file {path.name}; expected a .pth or .safetensors checkpoint")
    return WeightsRef("file", path=path)


def seeded_tensor(name: str, shape: Sequence[int], variant: str, prefix: str = "") -> np.ndarray:
    """One entry of the recipe; each entry has its own generator so entries are independent. The
    recipe fixes the dtype by the name (int64 batch counters, float32 otherwise)."""
    if name.endswith("num_batches_tracked"):
        return np.zeros(tuple(shape), dtype=np.int64)
    if name.endswith("running_mean"):
        return np.zeros(tuple(shape), dtype=np.float32)
    if name.endswith("running_var"):
        return np.ones(tuple(shape), dtype=np.float32)
    rng = np.random.default_rng(zlib.crc32((prefix + name).encode("utf-8")))
    x = rng.standard_normal(tuple(shape))
    if len(shape) >= 2:
        value = x * 1.0 / math.sqrt(math.prod(shape[1:]))
    elif name.endswith("weight"):
        value = 1.0 + 0.1 * x
    else:
        value = 0.02 * x
    if variant == "v1-pm":
        if name == "mask_decoder.pred_mat.weight":
            value = value * 0.1
        elif name == "mask_decoder.pred_mat.bias":
            value = value + 0.5
    return value.astype(np.float32)


def seeded_state_dict(
    entries: Iterable[tuple[str, Sequence[int]]], variant: str = "v1-pm", prefix: str = ""
) -> dict[str, np.ndarray]:
    """The recipe for every (name, shape) entry, in the given order."""
    if variant not in SEEDED_VARIANTS:
        raise WeightsError(f"unknown seeded variant {variant!r}; use one of {SEEDED_VARIANTS}")
    return {name: seeded_tensor(name, shape, variant, prefix) for name, shape in entries}


def tensor_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()).hexdigest()


def weights_digest(state: Mapping[str, np.ndarray]) -> str:
    """sha256 over name + little-endian bytes of every entry, in order (GOLDEN.md's all_entries_sha256)."""
    h = hashlib.sha256()
    for name, array in state.items():
        h.update(name.encode("utf-8"))
        h.update(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()
