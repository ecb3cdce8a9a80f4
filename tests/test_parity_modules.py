"""Each module fed the golden inputs reproduces the official outputs (modules_112x192.npz), and the
state machine reproduces the official per-step trace of sensory memory, mask value and readout."""

from __future__ import annotations

import numpy as np
import pytest

from matanyone_engine.core.engine.driver import matte_frames
from matanyone_engine.core.engine.spec import Dims


def close(actual: np.ndarray, reference: np.ndarray, name: str) -> None:
    actual = np.asarray(actual).reshape(reference.shape)
    error = float(np.abs(actual - reference).max())
    bound = 1e-4 * max(1.0, float(np.abs(reference).max()))
    assert error <= bound, f"{name}: max abs error {error:.3e} > {bound:.1e}"


def drop_object_dim(x: np.ndarray) -> np.ndarray:
    """The official (1, 1, C, h, w) object-dimension tensors are (1, C, h, w) here."""
    return x.reshape(x.shape[0], *x.shape[2:]) if x.ndim == 5 else x


def test_encoder(torch_modules, golden_modules):
    g = golden_modules
    out = torch_modules["encoder"](image=g["encoder.image"])
    for name in ("f8", "f4", "f2", "f1", "pix_feat", "key", "shrinkage", "selection"):
        close(out[name], g[f"encoder.{name}"], f"encoder.{name}")


@pytest.mark.parametrize("prefix", ["mask_encoder", "first_frame_mask_encoder"])
def test_mask_encoder(torch_modules, golden_modules, prefix):
    g = golden_modules
    pix_feat = g["encoder.pix_feat"] if prefix == "mask_encoder" else g["first_frame_readout.pix_feat"]
    out = torch_modules["mask_encoder"](
        f1=g["encoder.f1"],
        pix_feat=pix_feat,
        sensory=drop_object_dim(g[f"{prefix}.sensory_in"]),
        mask=g[f"{prefix}.masks"],
    )
    close(out["mask_value"], g[f"{prefix}.mask_value"], "mask_value")
    close(out["new_sensory"], g[f"{prefix}.new_sensory"], "new_sensory")
    close(out["obj_summary"], g[f"{prefix}.obj_summaries"], "obj_summary")


def test_read_first(torch_modules, golden_modules):
    g, p = golden_modules, "first_frame_readout."
    out = torch_modules["read_first"](
        pix_feat=g[p + "pix_feat"],
        last_msk_value=drop_object_dim(g[p + "last_msk_value"]),
        sensory=drop_object_dim(g[p + "sensory"]),
        last_mask=g[p + "last_mask"],
        obj_memory=g[p + "obj_memory"].reshape(1, 16, 257),
    )
    close(out["mem_readout"], g[p + "memory_readout"], "read_first.mem_readout")


@pytest.mark.parametrize("slot", [0, 3])
def test_read_ring_buffer(torch_modules, golden_modules, slot):
    """The golden memory (one frame) placed in any slot of a T=5 ring, the other slots holding
    garbage marked invalid, gives the official readout: invalid slots are really masked."""
    g, p = golden_modules, "memory_read."
    dims = Dims(112, 192, 5)
    hw, n = dims.tokens_per_frame, dims.symbols["N"]
    rng = np.random.default_rng(0)
    mem_key = rng.standard_normal((1, 64, n)).astype(np.float32)
    mem_shrinkage = np.full((1, 1, n), 3.0, np.float32)
    mem_value = rng.standard_normal((1, 256, n)).astype(np.float32) * 10
    mem_valid = np.zeros((1, n), np.float32)
    span = slice(slot * hw, (slot + 1) * hw)
    mem_key[..., span], mem_shrinkage[..., span] = g[p + "mem_key"], g[p + "mem_shrinkage"]
    mem_value[..., span], mem_valid[:, span] = g[p + "mem_value"], 1
    out = torch_modules["read"](
        query_key=g[p + "query_key"],
        query_selection=g[p + "selection"],
        pix_feat=g[p + "pix_feat"],
        last_pix_feat=g[p + "last_pix_feat"],
        last_mask=g[p + "last_mask"],
        last_msk_value=drop_object_dim(g[p + "last_msk_value"]),
        sensory=drop_object_dim(g[p + "sensory"]),
        mem_key=mem_key,
        mem_shrinkage=mem_shrinkage,
        mem_value=mem_value,
        mem_valid=mem_valid,
        obj_memory=g[p + "obj_memory"].reshape(1, 16, 257),
    )
    close(out["mem_readout"], g[p + "memory_readout"], "read.mem_readout")


def test_decoder(torch_modules, golden_modules):
    g, p = golden_modules, "decoder."
    out = torch_modules["decoder"](
        f8=g[p + "f8"],
        f4=g[p + "f4"],
        f2=g[p + "f2"],
        f1=g[p + "f1"],
        mem_readout=drop_object_dim(g["memory_read.memory_readout"]),
        sensory=drop_object_dim(g[p + "sensory_in"]),
    )
    close(out["new_sensory"], g[p + "new_sensory"], "decoder.new_sensory")
    close(out["logits"], g[p + "logits_preclamp"], "decoder.logits")
    close(np.clip(np.asarray(out["logits"]), 0, 1), g[p + "alpha"], "decoder.alpha")


def test_state_machine_trace(torch_modules, golden_modules):
    """Whole 8-frame run at 112x192 with warm-up 1: per-step sensory memory, last mask value and
    memory readout, and the kept alpha/logits, all match the official run."""
    g = golden_modules
    steps: list[dict] = []
    results = list(
        matte_frames(
            torch_modules,
            g["input.frames_u8"],
            g["input.mask_u8"].astype(np.float32),
            warmup=1,
            recorder=lambda kind, t: steps.append({"kind": kind, **{k: v.copy() for k, v in t.items()}}),
        )
    )
    assert [s["kind"] for s in steps] == ["seed", "first_frame_pred", "first_frame_pred"] + ["normal"] * 7
    for i, step in enumerate(steps):
        close(step["sensory"], g["trace.sensory_after_step"][i], f"sensory after step {i}")
        close(step["last_msk_value"], g["trace.last_msk_value_after_step"][i], f"last_msk_value after step {i}")
        if i > 0:
            close(step["mem_readout"], g["trace.memory_readout_per_step"][i - 1], f"readout at step {i}")
    assert len(results) == 8
    for r in results:
        close(r.alpha, g["trace.alpha"][r.index], f"alpha of frame {r.index}")
        close(r.logits, g["trace.logits_preclamp"][r.index], f"logits of frame {r.index}")
