"""The state machine's bookkeeping, checked with scripted numpy modules (no network needed)."""

from __future__ import annotations

import numpy as np
import pytest

from matanyone_engine.core.engine.driver import matte_frames
from matanyone_engine.core.engine.padding import frame_to_input, mask_to_input, pad_amounts, padded_size, unpad
from matanyone_engine.core.engine.spec import MODULE_SPECS, Dims
from matanyone_engine.core.engine.state import MattingStateMachine, MemoryConfig

DIMS = Dims(32, 48, 3)  # h, w = 2, 3: 6 tokens per frame, 18 memory tokens


class Scripted:
    """Modules whose outputs encode which frame produced them, and which log every call."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.frame_id = 0.0
        self.mask_calls = 0

    def modules(self):
        return {name: self._make(name) for name in MODULE_SPECS}

    def _make(self, name):
        owner = self

        class M:
            spec = MODULE_SPECS[name]

            def __call__(self, **inputs):
                owner.calls.append((name, {k: np.array(v, copy=True) for k, v in inputs.items()}))
                return getattr(owner, name)(**inputs)

        return M()

    def encoder(self, image):
        fid = float(image.mean())
        shapes = MODULE_SPECS["encoder"].output_shapes(DIMS)
        out = {k: np.full(s, fid, np.float32) for k, s in shapes.items()}
        out["f1"] = image.copy()
        return out

    def mask_encoder(self, f1, pix_feat, sensory, mask):
        self.mask_calls += 1
        shapes = MODULE_SPECS["mask_encoder"].output_shapes(DIMS)
        return {
            "mask_value": np.full(shapes["mask_value"], 100 + float(pix_feat.mean()), np.float32),
            "new_sensory": sensory + 1.0,
            "obj_summary": np.full(shapes["obj_summary"], 1.0, np.float32),
        }

    def read_first(self, **inputs):
        return {"mem_readout": np.zeros(MODULE_SPECS["read_first"].output_shapes(DIMS)["mem_readout"], np.float32)}

    def read(self, **inputs):
        return {"mem_readout": np.zeros(MODULE_SPECS["read"].output_shapes(DIMS)["mem_readout"], np.float32)}

    def decoder(self, sensory, **inputs):
        return {"new_sensory": sensory + 10.0, "logits": np.full((1, 1, 32, 48), 1.5, np.float32)}


def image(fid: float) -> np.ndarray:
    return np.full((1, 3, 32, 48), fid, np.float32)


def calls_of(script, name):
    return [c for n, c in script.calls if n == name]


def test_seed_then_first_frame_prediction_resets_memory_but_keeps_sensory():
    s = Scripted()
    sm = MattingStateMachine(s.modules(), DIMS)
    sm.seed(image(0.1), np.ones((1, 1, 32, 48), np.float32))
    assert sm.memory.frames == 1 and sm.memory.has_permanent
    np.testing.assert_array_equal(sm.sensory, 1.0)  # zeros deep-updated once by the mask encoder
    out = sm.step(image(0.1), first_frame_pred=True)
    assert out.kind == "first_frame_pred" and out.is_memory_frame
    assert calls_of(s, "read_first") and not calls_of(s, "read")
    # decoder (+10) then mask encoder (+1) on the kept sensory memory
    np.testing.assert_array_equal(sm.sensory, 12.0)
    # memory was cleared and refilled with this prediction as the new permanent frame
    assert sm.memory.frames == 1
    np.testing.assert_array_equal(sm.obj_memory, 1.0)
    np.testing.assert_array_equal(out.alpha, 1.0)  # logits 1.5 clamped


def test_memory_every_5_frames_fifo_of_t_minus_1_and_permanent_slot():
    s = Scripted()
    sm = MattingStateMachine(s.modules(), DIMS, MemoryConfig(mem_every=5))
    sm.seed(image(0.0), np.ones((1, 1, 32, 48), np.float32))
    sm.step(image(0.0), first_frame_pred=True)
    permanent = sm.memory.value[..., :6].copy()
    mem_flags = [sm.step(image(0.01 * i)).is_memory_frame for i in range(1, 21)]
    assert mem_flags == [(i % 5 == 0) for i in range(1, 21)]
    # 4 memory frames written, T=3 keeps the permanent slot plus the last 2
    assert sm.memory.frames == 3
    np.testing.assert_array_equal(sm.memory.value[..., :6], permanent)
    slots = sorted(float(sm.memory.value[0, 0, k * 6]) for k in (1, 2))
    assert slots == pytest.approx([100 + 0.15, 100 + 0.20])
    # object memory is a running sum since the last first-frame prediction: 1 + 4 memory frames
    np.testing.assert_array_equal(sm.obj_memory, 5.0)
    # every normal step reads with the full ring and its validity mask
    last_read = calls_of(s, "read")[-1]
    assert last_read["mem_valid"].sum() == 18


def test_non_memory_frames_refresh_mask_value_without_touching_sensory_or_memory():
    s = Scripted()
    sm = MattingStateMachine(s.modules(), DIMS)
    sm.seed(image(0.0), np.ones((1, 1, 32, 48), np.float32))
    sm.step(image(0.0), first_frame_pred=True)
    before = sm.sensory.copy()
    sm.step(image(0.3))
    np.testing.assert_array_equal(sm.sensory, before + 10.0)  # decoder only
    assert sm.memory.frames == 1
    np.testing.assert_allclose(sm.last_msk_value, 100.3, rtol=1e-6)  # from this frame's encoding
    read = calls_of(s, "read")[-1]
    np.testing.assert_array_equal(read["last_msk_value"], 100.0)  # the previous frame's value


def test_matte_frames_runs_official_warmup_count_and_unpads():
    s = Scripted()
    frames = [np.full((30, 45, 3), 10 * i, np.uint8) for i in range(4)]
    mask = np.zeros((30, 45), np.float32)
    mask[5:20, 5:30] = 255
    results = list(matte_frames(s.modules(), frames, mask, warmup=2, mem_frames=3))
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert all(r.alpha.shape == (30, 45) for r in results)
    # frame 0 is encoded once for the seed, the first-frame prediction and 2 warm-up steps
    # (all see the same image); then one encoder call per later frame
    assert len(calls_of(s, "encoder")) == 1 + 3
    assert len(calls_of(s, "read_first")) == 3 and len(calls_of(s, "read")) == 3
    assert len(calls_of(s, "decoder")) == 3 + 3


def test_pipelined_encoder_gives_identical_results_and_runs_on_a_worker():
    import threading

    frames = [np.full((30, 45, 3), 10 * i + 3, np.uint8) for i in range(9)]
    mask = np.zeros((30, 45), np.float32)
    mask[5:20, 5:30] = 255
    plain, piped = Scripted(), Scripted()
    threads: list[str] = []
    modules = piped.modules()
    encoder = modules["encoder"]

    class Spy:
        spec = encoder.spec

        def __call__(self, **inputs):
            threads.append(threading.current_thread().name)
            return encoder(**inputs)

    modules["encoder"] = Spy()
    want = list(matte_frames(plain.modules(), frames, mask, warmup=2, mem_frames=3))
    got = list(matte_frames(modules, frames, mask, warmup=2, mem_frames=3, pipeline=True))
    assert [r.index for r in got] == list(range(9))
    for a, b in zip(want, got, strict=False):
        np.testing.assert_array_equal(a.alpha, b.alpha)
        np.testing.assert_array_equal(a.logits, b.logits)

    # every module saw the same inputs in the same order (encoder calls aside, which moved)
    def strip(calls):
        return [(n, sorted(k)) for n, k in calls if n != "encoder"]

    assert strip(plain.calls) == strip(piped.calls)
    for (na, ia), (_nb, ib) in zip(
        [c for c in plain.calls if c[0] != "encoder"], [c for c in piped.calls if c[0] != "encoder"], strict=False
    ):
        for key in ia:
            np.testing.assert_array_equal(ia[key], ib[key], err_msg=f"{na}.{key}")
    # frame 0 on the caller's thread, frames 1..8 on the encoder worker
    assert threads[0] == threading.current_thread().name
    assert len(threads) == 9 and all(t.startswith("matanyone-encoder") for t in threads[1:])


def test_pipelined_driver_stops_cleanly_when_the_consumer_stops_early():
    frames = [np.full((30, 45, 3), 10 * i, np.uint8) for i in range(6)]
    mask = np.full((30, 45), 255, np.float32)
    s = Scripted()
    stream = matte_frames(s.modules(), frames, mask, warmup=0, mem_frames=3, pipeline=True)
    first_two = [next(stream).index, next(stream).index]
    stream.close()  # the worker is shut down; no frame beyond the one already submitted is encoded
    assert first_two == [0, 1]
    assert len(calls_of(s, "encoder")) <= 3


def test_padding_matches_official_split():
    assert padded_size(224, 400) == (224, 400)
    assert pad_amounts(225, 401) == (7, 8, 7, 8)  # odd row/column at the bottom/right
    frame = np.full((225, 401, 3), 255, np.uint8)
    x = frame_to_input(frame, pad_amounts(225, 401))
    assert x.shape == (1, 3, 240, 416)
    assert x[0, 0, 0, 0] == 0.0 and x[0, 0, 7, 7] == 1.0 and x[0, 0, 232, 408] == 0.0
    m = mask_to_input(np.full((225, 401), 255, np.float32), pad_amounts(225, 401))
    np.testing.assert_array_equal(unpad(m, pad_amounts(225, 401)), 1.0)


def test_missing_module_is_refused():
    mods = Scripted().modules()
    del mods["read"]
    with pytest.raises(ValueError, match="read"):
        MattingStateMachine(mods, DIMS)
