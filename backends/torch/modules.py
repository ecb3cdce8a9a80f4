"""The five stateless modules as torch ``nn.Module``s: positional inputs in the order of
core.spec, a tuple of outputs in the order of core.spec. Exporters trace exactly these."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, MODULE_SPECS, ModuleSpec

from .network import MatAnyoneNet


class _Stage(nn.Module):
    spec_name: str = ""

    def __init__(self, net: MatAnyoneNet):
        super().__init__()
        self.net = net

    @property
    def spec(self) -> ModuleSpec:
        return ALL_MODULE_SPECS[self.spec_name]


class EncoderModule(_Stage):
    spec_name = "encoder"

    def forward(self, image):
        return self.net.encode_image(image)


class MaskEncoderModule(_Stage):
    spec_name = "mask_encoder"

    def forward(self, f1, pix_feat, sensory, mask):
        return self.net.encode_mask(f1, pix_feat, sensory, mask)


class MaskValueModule(_Stage):
    """Only the mask value, for non-memory frames (no sensory update, no object summary)."""

    spec_name = "mask_value"

    def forward(self, f1, pix_feat, mask):
        return (self.net.mask_encoder.value(f1, pix_feat, mask),)


class ReadFirstModule(_Stage):
    """First-frame prediction: the previous mask value stands in for the memory readout."""

    spec_name = "read_first"

    def forward(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory):
        return (self.net.fuse_and_transform(pix_feat, last_msk_value, sensory, last_mask, obj_memory),)


class ReadModule(_Stage):
    spec_name = "read"

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
        visual = self.net.read_memory(query_key, query_selection, mem_key, mem_shrinkage, mem_value, mem_valid)
        blended = self.net.blend_with_uncertainty(visual, last_msk_value, last_pix_feat, pix_feat, last_mask)
        return (self.net.fuse_and_transform(pix_feat, blended, sensory, last_mask, obj_memory),)


class DecoderModule(_Stage):
    spec_name = "decoder"

    def forward(self, f8, f4, f2, f1, mem_readout, sensory):
        return self.net.decode(f8, f4, f2, f1, mem_readout, sensory)


MODULE_CLASSES: Mapping[str, type[_Stage]] = {
    cls.spec_name: cls
    for cls in (EncoderModule, MaskEncoderModule, MaskValueModule, ReadFirstModule, ReadModule, DecoderModule)
}


def build_torch_modules(net: MatAnyoneNet, *, optional: bool = False) -> dict[str, nn.Module]:
    """One nn.Module per declared module (plus the optional variants when asked), sharing the
    network's parameters; they work at any padded size."""
    names = ALL_MODULE_SPECS if optional else MODULE_SPECS
    return {name: MODULE_CLASSES[name](net).eval() for name in names}


def run_module(module: _Stage, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Call a stage with named tensors and name its outputs (spec order)."""
    spec = module.spec
    with torch.inference_mode():
        outputs = module(*(inputs[n] for n in spec.input_names))
    return dict(zip(spec.output_names, outputs, strict=False))
