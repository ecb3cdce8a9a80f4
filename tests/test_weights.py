"""Seeded weights bit for bit, weights references, strict checkpoint loading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matanyone_engine.core.artifacts.weights import parse_weights, seeded_state_dict, tensor_sha256, weights_digest
from matanyone_engine.core.engine.errors import WeightsError


def test_state_dict_matches_official_spec(golden_dir, torch_net):
    spec = json.loads((golden_dir / "state_dict_spec.json").read_text())["entries"]
    mine = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in torch_net.state_dict().items()]
    assert mine == [(e["name"], e["shape"], e["dtype"]) for e in spec]


def test_seeded_recipe_is_bit_exact(golden_dir):
    spec = json.loads((golden_dir / "state_dict_spec.json").read_text())["entries"]
    hashes = json.loads((golden_dir / "weights_seeded-v1-pm.sha256.json").read_text())
    state = seeded_state_dict([(e["name"], e["shape"]) for e in spec], "v1-pm")
    assert [str(v.dtype) for v in state.values()] == [e["dtype"] for e in spec]  # the recipe's own dtypes
    wrong = [k for k, v in state.items() if tensor_sha256(v) != hashes["per_tensor_sha256"][k]]
    assert wrong == []
    assert weights_digest(state) == hashes["all_entries_sha256"]


def test_variants_and_prefix_differ_only_where_documented():
    entries = [
        ("mask_decoder.pred_mat.weight", (1, 16, 3, 3)),
        ("mask_decoder.pred_mat.bias", (1,)),
        ("a.weight", (4, 3)),
        ("b.running_var", (3,)),
    ]
    pm, plain = seeded_state_dict(entries, "v1-pm"), seeded_state_dict(entries, "v1")
    np.testing.assert_array_equal(pm["a.weight"], plain["a.weight"])
    np.testing.assert_allclose(
        pm["mask_decoder.pred_mat.weight"], plain["mask_decoder.pred_mat.weight"] * 0.1, rtol=1e-6
    )
    np.testing.assert_allclose(pm["mask_decoder.pred_mat.bias"], plain["mask_decoder.pred_mat.bias"] + 0.5, rtol=1e-6)
    np.testing.assert_array_equal(pm["b.running_var"], np.ones(3, np.float32))
    other = seeded_state_dict(entries, "v1-pm", prefix="x")
    assert not np.array_equal(other["a.weight"], pm["a.weight"])


@pytest.mark.parametrize("ref", ["seeded:v2", "nope.pth", "weights.bin"])
def test_bad_weights_references(ref, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if ref == "weights.bin":
        (tmp_path / ref).write_bytes(b"x")
    with pytest.raises(WeightsError) as info:
        parse_weights(ref)
    assert "\n" not in str(info.value)


def _save_official_like(torch_net, path):
    import torch

    state = {k: v.clone() for k, v in torch_net.state_dict().items()}
    state["object_transformer.spatial_pe.inv_freq"] = torch.arange(64, dtype=torch.float32) / 7.0
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_round_trip_and_inv_freq_from_file(torch_net, tmp_path, suffix):
    import torch

    from matanyone_engine.backends.torch.network import load_network

    path = tmp_path / f"matanyone{suffix}"
    state = _save_official_like(torch_net, path)
    net = load_network(str(path))
    # inv_freq is a checkpoint buffer: the loaded value wins over anything recomputed
    torch.testing.assert_close(
        net.object_transformer.spatial_pe.inv_freq, state["object_transformer.spatial_pe.inv_freq"]
    )
    torch.testing.assert_close(net.pixel_encoder.conv1.weight, torch_net.pixel_encoder.conv1.weight)
    assert net.weights_digest != torch_net.weights_digest


def test_strict_loading_lists_every_problem(torch_net, tmp_path):
    import torch

    from matanyone_engine.backends.torch.network import load_network

    state = dict(torch_net.state_dict())
    del state["pix_feat_proj.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["key_proj.d_proj.weight"] = torch.zeros(2, 256, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, str(path))
    with pytest.raises(WeightsError) as info:
        load_network(str(path))
    message = str(info.value)
    assert "missing: pix_feat_proj.bias" in message
    assert "unexpected: extra.weight" in message
    assert "wrong shape: key_proj.d_proj.weight (2, 256, 3, 3) != (1, 256, 3, 3)" in message
    assert "\n" not in message


def test_corrupt_checkpoint_is_one_clear_error(tmp_path):
    from matanyone_engine.backends.torch.network import load_network

    path = tmp_path / "matanyone.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="cannot read checkpoint matanyone.pth"):
        load_network(str(path))


def test_official_weights_offline_is_one_helpful_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MATANYONE_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        parse_weights("official")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "weights") in message and "matanyone.pth" in message and "--weights" in message


def test_official_weights_found_in_cache_and_checksum_guarded(tmp_path, monkeypatch):
    monkeypatch.setenv("MATANYONE_CACHE", str(tmp_path))
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "matanyone.pth").write_bytes(b"abc")
    assert parse_weights("official").path == folder / "matanyone.pth"
    (folder / "matanyone.pth.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(WeightsError, match="checksum"):
        parse_weights("official")
