"""The five-module split of MatAnyone, declared once as data.

Every backend, exporter and the state machine read their tensor names, shapes and dtypes from
here, so a renamed input or a changed shape is a one-line edit that every consumer sees.

The engine is single-object (MatAnyone mattes one target), so the object dimension of the official
code is dropped from every interface tensor: sensory memory is ``(1, 256, h, w)``, not
``(1, 1, 256, h, w)``. That removes the singleton-dimension slicing that broke the seed's CoreML
port on GPU, and keeps every tensor at rank <= 4.

Symbols used in shapes:
    H, W  padded frame size (multiples of 16)
    h, w  feature size, H/16 and W/16
    T     working-memory frames (one permanent slot plus a FIFO of T-1)
    N     memory tokens, T*h*w
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Network widths of the official model (config/model/base.yaml).
KEY_DIM = 64
VALUE_DIM = 256
SENSORY_DIM = 256
PIXEL_DIM = 256
NUM_QUERIES = 16
EMBED_DIM = 256
STRIDE = 16
TOP_K = 30
#: Stand-in for -inf that stays finite in float16 (largest fp16 is 65504).
MASKED_SIMILARITY = -3.0e4

MODULE_NAMES = ("encoder", "mask_encoder", "read_first", "read", "decoder")


@dataclass(frozen=True)
class Dims:
    """Concrete sizes a set of modules is built for."""

    height: int
    width: int
    mem_frames: int = 5

    def __post_init__(self) -> None:
        if self.height % STRIDE or self.width % STRIDE:
            raise ValueError(
                f"module size {self.height}x{self.width} is not a multiple of {STRIDE}; "
                "pass the padded size (see core.padding.padded_size)"
            )
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"module size {self.height}x{self.width} must be positive")
        if self.mem_frames < 1:
            raise ValueError("mem_frames must be at least 1 (the permanent first-frame slot)")

    @property
    def symbols(self) -> dict[str, int]:
        h, w = self.height // STRIDE, self.width // STRIDE
        return {
            "H": self.height,
            "W": self.width,
            "h": h,
            "w": w,
            "T": self.mem_frames,
            "N": self.mem_frames * h * w,
            "H2": self.height // 2,
            "W2": self.width // 2,
            "H4": self.height // 4,
            "W4": self.width // 4,
            "H8": self.height // 8,
            "W8": self.width // 8,
        }

    @property
    def tokens_per_frame(self) -> int:
        return (self.height // STRIDE) * (self.width // STRIDE)


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: shape as symbols or integers, and what it holds."""

    name: str
    shape: tuple[str | int, ...]
    doc: str
    dtype: str = "float32"

    def resolve(self, dims: Dims) -> tuple[int, ...]:
        table = dims.symbols
        return tuple(table[s] if isinstance(s, str) else int(s) for s in self.shape)


@dataclass(frozen=True)
class ModuleSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    doc: str

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def input_shapes(self, dims: Dims) -> dict[str, tuple[int, ...]]:
        return {t.name: t.resolve(dims) for t in self.inputs}

    def output_shapes(self, dims: Dims) -> dict[str, tuple[int, ...]]:
        return {t.name: t.resolve(dims) for t in self.outputs}


def _t(name: str, shape: tuple[str | int, ...], doc: str) -> TensorSpec:
    return TensorSpec(name, shape, doc)


_PIX_FEAT = _t("pix_feat", (1, PIXEL_DIM, "h", "w"), "stride-16 pixel features (pix_feat_proj of f16)")
_SENSORY = _t("sensory", (1, SENSORY_DIM, "h", "w"), "sensory memory (GRU state)")
_LAST_MASK = _t("last_mask", (1, 1, "H", "W"), "previous alpha, clamped to [0, 1]")
_LAST_MSK_VALUE = _t("last_msk_value", (1, VALUE_DIM, "h", "w"), "mask encoding of the previous frame")
_OBJ_MEMORY = _t(
    "obj_memory",
    (1, NUM_QUERIES, EMBED_DIM + 1),
    "object-memory running sum: summary sums and, in the last channel, their area",
)
_MEM_READOUT = _t("mem_readout", (1, EMBED_DIM, "h", "w"), "memory readout after the object transformer")

ENCODER = ModuleSpec(
    name="encoder",
    inputs=(_t("image", (1, 3, "H", "W"), "RGB in [0, 1], zero-padded, not normalised"),),
    outputs=(
        _t("f8", (1, 512, "H8", "W8"), "ResNet-50 layer2 features (stride 8)"),
        _t("f4", (1, 256, "H4", "W4"), "ResNet-50 layer1 features (stride 4)"),
        _t("f2", (1, 64, "H2", "W2"), "stem features after ReLU (stride 2)"),
        _t("f1", (1, 3, "H", "W"), "the normalised image: decoder skip and mask-encoder input"),
        _PIX_FEAT,
        _t("key", (1, KEY_DIM, "h", "w"), "query/memory key"),
        _t("shrinkage", (1, 1, "h", "w"), "key shrinkage (d_proj^2 + 1)"),
        _t("selection", (1, KEY_DIM, "h", "w"), "key selection (sigmoid of e_proj)"),
    ),
    doc="Image encoder (ResNet-50 to stride 16) plus the key projection.",
)

MASK_ENCODER = ModuleSpec(
    name="mask_encoder",
    inputs=(
        _t("f1", (1, 3, "H", "W"), "the normalised image"),
        _PIX_FEAT,
        _SENSORY,
        _t("mask", (1, 1, "H", "W"), "alpha to encode, in [0, 1]"),
    ),
    outputs=(
        _t("mask_value", (1, VALUE_DIM, "h", "w"), "mask value for working memory / last_msk_value"),
        _t("new_sensory", (1, SENSORY_DIM, "h", "w"), "deep-updated sensory memory"),
        _t("obj_summary", (1, NUM_QUERIES, EMBED_DIM + 1), "object summary: sums and area of this frame"),
    ),
    doc="Mask encoder (ResNet-18 on RGB+mask), deep sensory update and object summarizer.",
)

READ_FIRST = ModuleSpec(
    name="read_first",
    inputs=(_PIX_FEAT, _LAST_MSK_VALUE, _SENSORY, _LAST_MASK, _OBJ_MEMORY),
    outputs=(_MEM_READOUT,),
    doc="First-frame-prediction readout: the previous mask value is the pixel readout, no attention.",
)

READ = ModuleSpec(
    name="read",
    inputs=(
        _t("query_key", (1, KEY_DIM, "h", "w"), "key of the current frame"),
        _t("query_selection", (1, KEY_DIM, "h", "w"), "selection of the current frame"),
        _PIX_FEAT,
        _t("last_pix_feat", (1, PIXEL_DIM, "h", "w"), "pixel features of the previous frame"),
        _LAST_MASK,
        _LAST_MSK_VALUE,
        _SENSORY,
        _t("mem_key", (1, KEY_DIM, "N"), "working-memory keys, T slots of h*w tokens"),
        _t("mem_shrinkage", (1, 1, "N"), "working-memory shrinkage"),
        _t("mem_value", (1, VALUE_DIM, "N"), "working-memory mask values"),
        _t("mem_valid", (1, "N"), "1 for tokens of filled slots, 0 for empty ones"),
        _OBJ_MEMORY,
    ),
    outputs=(_MEM_READOUT,),
    doc="Memory read: top-k attention over the ring buffer, uncertainty blend, fusion, object transformer.",
)

DECODER = ModuleSpec(
    name="decoder",
    inputs=(
        _t("f8", (1, 512, "H8", "W8"), "encoder skip, stride 8"),
        _t("f4", (1, 256, "H4", "W4"), "encoder skip, stride 4"),
        _t("f2", (1, 64, "H2", "W2"), "encoder skip, stride 2"),
        _t("f1", (1, 3, "H", "W"), "encoder skip, stride 1 (normalised image)"),
        _MEM_READOUT,
        _SENSORY,
    ),
    outputs=(
        _t("new_sensory", (1, SENSORY_DIM, "h", "w"), "sensory memory updated from all scales"),
        _t("logits", (1, 1, "H", "W"), "matting output before the [0, 1] clamp"),
    ),
    doc="Mask decoder to full resolution, with the full-scale sensory update.",
)

MODULE_SPECS: Mapping[str, ModuleSpec] = {s.name: s for s in (ENCODER, MASK_ENCODER, READ_FIRST, READ, DECODER)}

MASK_VALUE = ModuleSpec(
    name="mask_value",
    inputs=(MASK_ENCODER.inputs[0], _PIX_FEAT, MASK_ENCODER.inputs[3]),
    outputs=(MASK_ENCODER.outputs[0],),
    doc=(
        "Shallow mask encoding for non-memory frames: only the mask value the next frame's "
        "uncertainty blend needs, without the sensory update and object summary nobody reads."
    ),
)

#: Optional fast variants. A backend may provide them next to the five modules; the state machine
#: uses one when present and falls back to the full module (``VARIANT_OF``) otherwise.
OPTIONAL_MODULE_SPECS: Mapping[str, ModuleSpec] = {MASK_VALUE.name: MASK_VALUE}
VARIANT_OF: Mapping[str, str] = {"mask_value": "mask_encoder"}
ALL_MODULE_SPECS: Mapping[str, ModuleSpec] = {**MODULE_SPECS, **OPTIONAL_MODULE_SPECS}


def describe(dims: Dims) -> dict:
    """The declaration resolved for ``dims``, as JSON-ready data (manifests, `matanyone modules`)."""
    out: dict = {"height": dims.height, "width": dims.width, "mem_frames": dims.mem_frames, "modules": {}}
    for spec in ALL_MODULE_SPECS.values():
        out["modules"][spec.name] = {
            "inputs": [{"name": t.name, "shape": list(t.resolve(dims)), "dtype": t.dtype} for t in spec.inputs],
            "outputs": [{"name": t.name, "shape": list(t.resolve(dims)), "dtype": t.dtype} for t in spec.outputs],
        }
    return out
