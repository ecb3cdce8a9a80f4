"""The memory read in tiles of query pixels: tiles chosen from the shapes within the budget, and the
tiled read equal to the untiled one (bit for bit in torch float32, within the export tolerance in
ONNX Runtime) on the golden module inputs, with budgets forced small so several tiles run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from matanyone_engine.core.engine.spec import TOP_K, Dims
from matanyone_engine.core.engine.tiling import (
    MIN_TILE_ROWS,
    READ_TILE_BYTES,
    read_tile_rows,
    read_tiles,
    tile_similarity_bytes,
)

#: A budget so small that every tile has the minimum rows: the golden 7x12 query (84 pixels) then
#: goes through in three tiles of 28.
TINY_BUDGET = 1
UNTILED_BUDGET = 1 << 50


def drop_object_dim(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], *x.shape[2:]) if x.ndim == 5 else x


@contextlib.contextmanager
def tile_budget(net, budget: int) -> Iterator[None]:
    saved = net.read_tile_bytes
    net.read_tile_bytes = budget
    try:
        yield
    finally:
        net.read_tile_bytes = saved


# ------------------------------------------------------------------------------- the tile plan


@pytest.mark.parametrize(
    "size",
    [(112, 192), (432, 768), (1088, 1920), (2160, 3840), (4320, 7680), (16, 16)],
)
@pytest.mark.parametrize("budget", [READ_TILE_BYTES, 64 * 2**20, TINY_BUDGET])
def test_tiles_cover_the_query_within_the_budget(size: tuple[int, int], budget: int) -> None:
    dims = Dims(*size, 5)
    hw, n = dims.tokens_per_frame, dims.symbols["N"]
    tiles = read_tiles(hw, n, budget)
    assert tiles[0][0] == 0 and tiles[-1][1] == hw
    assert all(a[1] == b[0] for a, b in zip(tiles, tiles[1:], strict=False)), "tiles leave no gap and do not overlap"
    sizes = [stop - start for start, stop in tiles]
    assert max(sizes) - min(sizes) <= 1, "balanced: no small remainder tile"
    assert max(sizes) <= read_tile_rows(hw, n, budget)
    if len(tiles) > 1:
        assert min(sizes) >= MIN_TILE_ROWS // 2
        if budget // (4 * n) >= MIN_TILE_ROWS:  # the budget, not the minimum, sets the rows
            assert tile_similarity_bytes(hw, n, budget) <= budget


def test_tile_sizes_at_the_sizes_that_matter() -> None:
    """The benchmark size reads untiled (the graph is the one before tiling); 4K needs ~80 tiles,
    each tile's similarity within 256 MB where the whole matrix would be 21 GB."""
    assert len(read_tiles(27 * 48, 5 * 27 * 48)) == 1
    hw, n = 135 * 240, 5 * 135 * 240
    assert hw * n * 4 > 20e9
    tiles = read_tiles(hw, n)
    assert 70 <= len(tiles) <= 90
    assert tile_similarity_bytes(hw, n) <= 256 * 2**20
    with pytest.raises(ValueError):
        read_tiles(0, 10)


# --------------------------------------------------------------------------- torch, bit for bit


def _ring_inputs(golden, slot: int, mem_frames: int = 5) -> dict[str, np.ndarray]:
    """The golden read inputs with the golden memory frame in ``slot`` of a T-slot ring whose other
    slots hold garbage marked invalid (as in test_parity_modules)."""
    p = "memory_read."
    dims = Dims(112, 192, mem_frames)
    hw, n = dims.tokens_per_frame, dims.symbols["N"]
    rng = np.random.default_rng(0)
    mem_key = rng.standard_normal((1, 64, n)).astype(np.float32)
    mem_shrinkage = np.full((1, 1, n), 3.0, np.float32)
    mem_value = rng.standard_normal((1, 256, n)).astype(np.float32) * 10
    mem_valid = np.zeros((1, n), np.float32)
    span = slice(slot * hw, (slot + 1) * hw)
    mem_key[..., span], mem_shrinkage[..., span] = golden[p + "mem_key"], golden[p + "mem_shrinkage"]
    mem_value[..., span], mem_valid[:, span] = golden[p + "mem_value"], 1
    return {
        "query_key": golden[p + "query_key"],
        "query_selection": golden[p + "selection"],
        "pix_feat": golden[p + "pix_feat"],
        "last_pix_feat": golden[p + "last_pix_feat"],
        "last_mask": golden[p + "last_mask"],
        "last_msk_value": drop_object_dim(golden[p + "last_msk_value"]),
        "sensory": drop_object_dim(golden[p + "sensory"]),
        "mem_key": mem_key,
        "mem_shrinkage": mem_shrinkage,
        "mem_value": mem_value,
        "mem_valid": mem_valid,
        "obj_memory": golden[p + "obj_memory"].reshape(1, 16, 257),
    }


def test_golden_read_runs_in_several_tiles() -> None:
    """The forced budget really splits the golden query (otherwise the tests below prove nothing)."""
    assert len(read_tiles(84, 84, TINY_BUDGET)) == 3
    assert len(read_tiles(84, 5 * 84, TINY_BUDGET)) == 3
    assert len(read_tiles(84, 5 * 84, UNTILED_BUDGET)) == 1


def test_tiled_memory_read_equals_untiled_bit_for_bit(torch_net, golden_modules) -> None:
    """The visual readout of the golden memory (one frame) in several tiles equals the untiled one."""
    import torch

    g, p = golden_modules, "memory_read."
    args = [torch.from_numpy(g[p + n]) for n in ("query_key", "selection", "mem_key", "mem_shrinkage", "mem_value")]
    valid = torch.ones(1, g[p + "mem_key"].shape[-1])
    with torch.inference_mode():
        with tile_budget(torch_net, UNTILED_BUDGET):
            untiled = torch_net.read_memory(*args, valid)
        with tile_budget(torch_net, TINY_BUDGET):
            tiled = torch_net.read_memory(*args, valid)
    assert torch.equal(tiled, untiled)
    reference = drop_object_dim(g[p + "visual_readout"])
    assert np.abs(tiled.numpy() - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())


@pytest.mark.parametrize("slot", [0, 3])
def test_tiled_read_module_equals_untiled_bit_for_bit(torch_net, torch_modules, golden_modules, slot) -> None:
    """The whole read module over a 5-slot ring (invalid garbage slots masked), tiled and untiled."""
    inputs = _ring_inputs(golden_modules, slot)
    with tile_budget(torch_net, UNTILED_BUDGET):
        untiled = torch_modules["read"](**inputs)["mem_readout"]
    with tile_budget(torch_net, TINY_BUDGET):
        tiled = torch_modules["read"](**inputs)["mem_readout"]
    np.testing.assert_array_equal(tiled, untiled)
    reference = drop_object_dim(golden_modules["memory_read.memory_readout"])
    assert np.abs(tiled - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())


def test_tiled_read_with_tied_keys_equals_untiled(torch_net) -> None:
    """Exactly tied memory keys (a flat image area, a letterbox bar) cross tile borders: the
    lowest-index rule is per row, so tiles change nothing, and it picks the lowest indices."""
    import torch

    from matanyone_engine.backends.torch.network import top_k_first_index

    rng = np.random.default_rng(3)
    h, w, n = 8, 12, 3 * 96
    query_key = torch.from_numpy(rng.standard_normal((1, 64, h, w)).astype(np.float32))
    query_key[..., :4, :] = 0.25  # flat rows of the query
    selection = torch.from_numpy(rng.uniform(0.1, 0.9, (1, 64, h, w)).astype(np.float32))
    mem_key = torch.from_numpy(rng.standard_normal((1, 64, n)).astype(np.float32))
    mem_key[..., : 2 * 96] = 0.25  # two whole memory frames of identical keys
    shrinkage = torch.full((1, 1, n), 2.0)
    mem_value = torch.from_numpy(rng.standard_normal((1, 256, n)).astype(np.float32))
    valid = torch.ones(1, n)
    with torch.inference_mode():
        with tile_budget(torch_net, UNTILED_BUDGET):
            untiled = torch_net.read_memory(query_key, selection, mem_key, shrinkage, mem_value, valid)
        with tile_budget(torch_net, TINY_BUDGET):
            tiled = torch_net.read_memory(query_key, selection, mem_key, shrinkage, mem_value, valid)
    assert len(read_tiles(h * w, n, TINY_BUDGET)) == 3
    assert torch.equal(tiled, untiled)

    scores = torch.tensor([[1.0, 5.0, 3.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])
    values, indices = top_k_first_index(scores, 3)
    assert indices.tolist() == [[1, 2, 3], [0, 1, 2]]
    assert values.tolist() == [[5.0, 3.0, 3.0], [2.0, 2.0, 2.0]]
    assert TOP_K == 30


def test_bf16_autocast_read_tiles_too(torch_net, golden_modules) -> None:
    """The term-by-term similarity of the bf16 autocast mode is tiled the same way."""
    import torch

    g, p = golden_modules, "memory_read."
    args = [torch.from_numpy(g[p + n]) for n in ("query_key", "selection", "mem_key", "mem_shrinkage", "mem_value")]
    valid = torch.ones(1, g[p + "mem_key"].shape[-1])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        with tile_budget(torch_net, UNTILED_BUDGET):
            untiled = torch_net.read_memory(*args, valid).float()
        with tile_budget(torch_net, TINY_BUDGET):
            tiled = torch_net.read_memory(*args, valid).float()
    assert torch.equal(tiled, untiled)


# ------------------------------------------------------------------------------- ONNX Runtime


def test_tiled_read_export_matches_in_onnx_runtime(tmp_path: Path, golden_modules) -> None:
    """The read module exported with the forced budget unrolls three tiles (three TopK nodes) and
    agrees in ONNX Runtime with the untiled torch read within the export's fp32 tolerance."""
    pytest.importorskip("onnxruntime")
    import onnx
    import torch

    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.backends.torch.network import load_network
    from matanyone_engine.core.artifacts.manifest import check_module_outputs
    from matanyone_engine.core.engine.spec import MODULE_SPECS
    from matanyone_engine.exporters.onnx.exporter import export_module
    from matanyone_engine.exporters.onnx.validate import cpu_session, run_session, tolerances_for

    net = load_network("seeded:v1-pm")
    read = build_torch_modules(net)["read"]
    dims = Dims(112, 192, 5)
    inputs = _ring_inputs(golden_modules, 3)
    args = tuple(torch.from_numpy(inputs[n]) for n in MODULE_SPECS["read"].input_names)
    net.read_tile_bytes = TINY_BUDGET
    export_module(read, "read", args, tmp_path / "read.onnx", dims)
    graph = onnx.load(str(tmp_path / "read.onnx")).graph
    assert sum(node.op_type == "TopK" for node in graph.node) == 3
    got = run_session(cpu_session(tmp_path / "read.onnx"), "read", inputs)
    net.read_tile_bytes = UNTILED_BUDGET
    with torch.inference_mode():
        want = {"mem_readout": read(*args)[0].numpy()}
    check_module_outputs("read", got, want, tolerances_for("read", "fp32"))  # raises on a mismatch


# ------------------------------------------------------------------- decoder in channel groups


def test_decoder_channel_groups_from_the_shapes() -> None:
    from matanyone_engine.core.engine.tiling import decoder_channel_groups

    assert decoder_channel_groups(64, 1088, 1920) == 1  # 1080p and below: the plain graph
    assert decoder_channel_groups(128, 544, 960) == 1
    assert decoder_channel_groups(64, 2160, 3840) == 4  # 4K: 16 channels (530 MB) at a time
    assert decoder_channel_groups(128, 1080, 1920) == 2
    assert decoder_channel_groups(64, 16, 16, budget=1) == 64


@pytest.mark.parametrize("groups", [2, 4, 16])
def test_grouped_decoder_matches_the_plain_one(torch_net, golden_modules, monkeypatch, groups) -> None:
    """Forcing the channel groups at the golden size (where the plain graph runs) gives the golden
    decoder outputs within the module parity bound, and the plain outputs up to rounding."""
    import torch

    from matanyone_engine.backends.torch import network

    g, p = golden_modules, "decoder."
    names = ("f8", "f4", "f2", "f1")
    args = [torch.from_numpy(g[p + n]) for n in names]
    args += [torch.from_numpy(drop_object_dim(g["memory_read.memory_readout"]))]
    args += [torch.from_numpy(drop_object_dim(g[p + "sensory_in"]))]
    with torch.inference_mode():
        plain = torch_net.decode(*args)
        monkeypatch.setattr(network, "decoder_channel_groups", lambda *a, **k: groups)
        grouped = torch_net.decode(*args)
    for a, b in zip(plain, grouped, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    for out, ref in ((grouped[0], g[p + "new_sensory"]), (grouped[1], g[p + "logits_preclamp"])):
        ref = np.asarray(ref).reshape(out.shape)
        assert np.abs(out.numpy() - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_grouped_decoder_export_matches_in_onnx_runtime(tmp_path: Path, golden_modules, monkeypatch) -> None:
    """The decoder traced with forced channel groups (as at 4K) exports and agrees in ONNX Runtime
    with the plain torch decoder within the export's fp32 tolerance."""
    pytest.importorskip("onnxruntime")
    import torch

    from matanyone_engine.backends.torch import network
    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.core.artifacts.manifest import check_module_outputs
    from matanyone_engine.core.engine.spec import MODULE_SPECS
    from matanyone_engine.exporters.onnx.exporter import export_module
    from matanyone_engine.exporters.onnx.validate import cpu_session, run_session, tolerances_for

    net = network.load_network("seeded:v1-pm")
    decoder = build_torch_modules(net)["decoder"]
    g, p = golden_modules, "decoder."
    inputs = {n: g[p + n] for n in ("f8", "f4", "f2", "f1")}
    inputs["mem_readout"] = drop_object_dim(g["memory_read.memory_readout"])
    inputs["sensory"] = drop_object_dim(g[p + "sensory_in"])
    args = tuple(torch.from_numpy(inputs[n]) for n in MODULE_SPECS["decoder"].input_names)
    with torch.inference_mode():
        want = dict(zip(MODULE_SPECS["decoder"].output_names, (o.numpy() for o in decoder(*args)), strict=True))
    monkeypatch.setattr(network, "decoder_channel_groups", lambda *a, **k: 4)
    export_module(decoder, "decoder", args, tmp_path / "decoder.onnx", Dims(112, 192, 5))
    got = run_session(cpu_session(tmp_path / "decoder.onnx"), "decoder", inputs)
    check_module_outputs("decoder", got, want, tolerances_for("decoder", "fp32"))  # raises on a mismatch
