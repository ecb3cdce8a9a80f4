"""The torch backend's load-time rewrites change nothing but rounding, and its top-k keeps its rule.

Speed is measured by benchmarks (``matanyone bench``, benchmarks/official_side_by_side.py), never
here; these check that each rewrite is what it claims to be.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from matanyone_engine.backends.torch.inference import (  # noqa: E402
    cast_autocast_weights,
    fold_batch_norms,
    prepare_network,
)
from matanyone_engine.backends.torch.network import top_k_first_index  # noqa: E402


def _batch_norms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_every_batch_norm_folds_and_the_outputs_stay_within_rounding(torch_net):
    folded = copy.deepcopy(torch_net)
    before = _batch_norms(folded)
    assert fold_batch_norms(folded) == before > 0
    assert _batch_norms(folded) == 0
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 64, 96, generator=generator)
    mask = torch.rand(1, 1, 64, 96, generator=generator)
    sensory = torch.randn(1, 256, 4, 6, generator=generator)
    with torch.inference_mode():
        want, got = torch_net.encode_image(image), folded.encode_image(image)
        want_mask = torch_net.encode_mask(want[3], want[4], sensory, mask)
        got_mask = folded.encode_mask(got[3], got[4], sensory, mask)
        last = torch.randn(1, 256, 4, 6, generator=generator)
        want_blend = torch_net.blend_with_uncertainty(want_mask[0], last, want[4], want[4], mask)
        got_blend = folded.blend_with_uncertainty(got_mask[0], last, got[4], got[4], mask)
    for a, b in zip([*want, *want_mask, want_blend], [*got, *got_mask, got_blend], strict=True):
        scale = max(1.0, float(a.abs().max()))
        assert float((a - b).abs().max()) <= 1e-5 * scale


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_pre_cast_weights_give_the_autocast_bit_for_bit(torch_net, dtype):
    """The autocast rounds each weight on every call; rounding it once at load is the same number."""
    cast = copy.deepcopy(torch_net)
    assert cast_autocast_weights(cast, dtype) > 0
    assert cast.pixel_encoder.conv1.weight.dtype == dtype
    assert cast.object_transformer.query_init.weight.dtype == torch.float32  # not an autocast operand
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
        for a, b in zip(torch_net.encode_image(image), cast.encode_image(image), strict=True):
            assert torch.equal(a, b)


def test_prepare_network_keeps_the_autocast_modes_operation_for_operation(torch_net):
    """bf16 is the official demo's CPU mode: its batch norms stay; fp32 folds them."""
    assert _batch_norms(prepare_network(copy.deepcopy(torch_net), "bf16")) == _batch_norms(torch_net)
    assert _batch_norms(prepare_network(copy.deepcopy(torch_net), "fp32")) == 0


def test_top_k_takes_the_lowest_indices_among_ties_and_plain_topk_without_them():
    x = torch.tensor([[[5.0, 1.0, 3.0, 3.0, 3.0, 0.0], [0.0, 2.0, 9.0, 7.0, 1.0, 8.0]]])
    values, indices = top_k_first_index(x, 3)
    chosen = [sorted(row.tolist()) for row in indices[0]]
    assert chosen == [[0, 2, 3], [2, 3, 5]]  # row 0: three 3.0s tie for two places -> 2 and 3
    assert torch.equal(values, x.gather(-1, indices))
    rng = torch.Generator().manual_seed(2)
    distinct = torch.randn(2, 40, 300, generator=rng)
    values, indices = top_k_first_index(distinct, 30)
    reference = torch.topk(distinct, 30, dim=-1)
    assert torch.equal(indices.sort(dim=-1).values, reference.indices.sort(dim=-1).values)
    repeated = torch.cat([distinct, distinct], dim=-1)  # every value tied with its copy
    _, indices = top_k_first_index(repeated, 31)  # the 16th pair ties for the last place
    order = torch.sort(-repeated, dim=-1, stable=True).indices[..., :31]  # by value, then index
    assert torch.equal(indices.sort(dim=-1).values, order.sort(dim=-1).values)


def test_torch_module_speaks_torch_on_its_device_and_float32_under_the_autocast(torch_net):
    import numpy as np

    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.backends.torch.plugin import TorchModule

    net = prepare_network(copy.deepcopy(torch_net), "bf16")
    encoder = TorchModule(build_torch_modules(net)["encoder"], torch.device("cpu"), "bf16")
    assert encoder.array_home.device == torch.device("cpu")
    out = encoder(image=np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32))
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in out.values())
    again = encoder(image=out["f1"])  # its own tensors go in untouched (no numpy round trip)
    assert again["f8"].shape == out["f8"].shape


@pytest.mark.parametrize(("size", "kept"), [((432, 768), True), ((1088, 1920), True), ((2160, 3840), False)])
def test_freed_memory_is_kept_in_the_heap_only_up_to_1080p(monkeypatch, size, kept):
    """At 4K what glibc would keep pushes a run past its memory budget (docs/memory.md)."""
    from matanyone_engine.backends.torch import inference
    from matanyone_engine.core import plugins
    from matanyone_engine.core.engine.protocol import LoadRequest
    from matanyone_engine.core.engine.spec import Dims

    calls = []
    monkeypatch.setattr(inference, "keep_freed_memory", lambda: calls.append(True) or True)
    plugins.get_backend("torch").load(LoadRequest(weights="seeded:v1-pm", dims=Dims(*size, 5), precision="fp32"))
    assert bool(calls) is kept
