"""State on the device: the state machine keeps a backend's own arrays and converts only the alpha.

Two kinds of evidence. ``array_api_strict`` gives arrays on a second device ("device1") that refuse
to mix with host arrays and refuse numpy conversion, so any hidden host round trip or device mix in
the state machine raises; scripted modules on that device then run whole clips. And the real torch
backend, with torch's conversion entry points counted, shows what crosses per steady frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from matanyone_engine.core.engine import arrays
from matanyone_engine.core.engine.arrays import HOST, ArrayHome, to_host
from matanyone_engine.core.engine.driver import matte_frames
from matanyone_engine.core.engine.padding import frame_to_input, mask_to_input, pad_amounts
from matanyone_engine.core.engine.spec import MODULE_SPECS, Dims
from matanyone_engine.core.engine.state import MattingStateMachine, MemoryConfig

xps = pytest.importorskip("array_api_strict")
DEVICE = xps.Device("device1")
ON_DEVICE = ArrayHome(xps, DEVICE)
HEIGHT, WIDTH = 30, 45  # padded to 32x48: h, w = 2, 3
DIMS = Dims(32, 48, 3)


class ScriptedNet:
    """Five modules of made-up arithmetic over the inputs, written once against the array API and
    run either on the host (numpy) or on the strict second device, so the two runs must agree."""

    def __init__(self, home: ArrayHome):
        self.home = home
        self.xp = home.namespace

    def _in(self, x: Any) -> Any:
        if self.home.is_host:
            assert isinstance(x, np.ndarray), f"a numpy module was handed {type(x).__name__}"
            return x
        if isinstance(x, np.ndarray):  # the protocol: a device module uploads numpy inputs itself
            return self.xp.asarray(x, device=DEVICE)
        assert x.device == DEVICE, f"input on {x.device}"
        return x

    def _full(self, shape: tuple[int, ...], value: Any) -> Any:
        return self.home.zeros(shape) + value

    def modules(self) -> dict[str, Any]:
        return {name: _Module(self, name) for name in MODULE_SPECS}

    def encoder(self, image):
        xp, out = self.xp, {}
        level = xp.mean(image)
        for name, shape in MODULE_SPECS["encoder"].output_shapes(DIMS).items():
            out[name] = self._full(shape, level)
        out["f1"] = image * 2.0 - 0.5
        return out

    def mask_encoder(self, f1, pix_feat, sensory, mask):
        xp = self.xp
        shapes = MODULE_SPECS["mask_encoder"].output_shapes(DIMS)
        return {
            "mask_value": self._full(shapes["mask_value"], xp.mean(pix_feat) + xp.mean(mask) + xp.mean(f1)),
            "new_sensory": sensory * 0.5 + xp.mean(mask),
            "obj_summary": self._full(shapes["obj_summary"], xp.mean(mask) + 1.0),
        }

    def read_first(self, pix_feat, last_msk_value, sensory, last_mask, obj_memory):
        xp = self.xp
        value = xp.mean(last_msk_value) + 0.1 * xp.mean(sensory) + 0.01 * xp.mean(obj_memory)
        return {"mem_readout": self._full((1, 256, 2, 3), value + xp.mean(last_mask))}

    def read(self, **t):
        xp = self.xp
        filled = xp.sum(t["mem_valid"])
        memory = xp.sum(t["mem_value"] * t["mem_valid"][:, None, :]) / (filled * 256.0)
        value = memory + xp.mean(t["query_key"]) - xp.mean(t["last_pix_feat"]) + 0.1 * xp.mean(t["sensory"])
        value = value + xp.mean(t["last_mask"]) + 0.01 * xp.mean(t["obj_memory"]) + xp.mean(t["mem_key"])
        return {"mem_readout": self._full((1, 256, 2, 3), value)}

    def decoder(self, f8, f4, f2, f1, mem_readout, sensory):
        xp = self.xp
        logits = f1[:, :1, ...] * 0.3 + 0.05 * xp.mean(mem_readout) + 0.01 * xp.mean(f8 + 0.0) - 0.02 * xp.mean(f2)
        return {"new_sensory": sensory + xp.mean(f4), "logits": logits}


class _Module:
    def __init__(self, net: ScriptedNet, name: str):
        self.net, self.spec = net, MODULE_SPECS[name]
        if not net.home.is_host:
            self.array_home = net.home

    def __call__(self, **inputs):
        assert set(inputs) == set(self.spec.input_names)
        return getattr(self.net, self.spec.name)(**{k: self.net._in(v) for k, v in inputs.items()})


def clip(frames: int = 12) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(frames)]
    mask = np.zeros((HEIGHT, WIDTH), np.float32)
    mask[5:20, 5:30] = 255
    return images, mask


def count_device_downloads(monkeypatch) -> list[tuple[int, ...]]:
    """Shapes of every array moved off the strict device (arrays.to_host's only exit for it)."""
    moved: list[tuple[int, ...]] = []
    real = arrays.to_device

    def counting(x, device, /, **kwargs):
        if getattr(x, "device", None) == DEVICE:
            moved.append(tuple(x.shape))
        return real(x, device, **kwargs)

    monkeypatch.setattr(arrays, "to_device", counting)
    return moved


def test_strict_device_arrays_refuse_host_conversion():
    """The premise of these tests: a hidden np.asarray or a device mix would raise, not pass."""
    x = ON_DEVICE.zeros((2, 2))
    with pytest.raises(RuntimeError):
        np.asarray(x)
    with pytest.raises(ValueError):
        _ = x + xps.ones((2, 2))
    np.testing.assert_array_equal(to_host(x), np.zeros((2, 2), np.float32))


def test_state_stays_on_the_device_and_matches_the_host_run():
    images, mask = clip(14)
    host = list(matte_frames(ScriptedNet(HOST).modules(), images, mask, warmup=2, mem_frames=3))
    device = list(matte_frames(ScriptedNet(ON_DEVICE).modules(), images, mask, warmup=2, mem_frames=3))
    assert len(device) == len(host) == 14
    for a, b in zip(host, device, strict=True):
        assert isinstance(b.alpha, np.ndarray) and b.alpha.shape == (HEIGHT, WIDTH)
        np.testing.assert_array_equal(a.alpha, b.alpha)
        np.testing.assert_array_equal(a.logits, b.logits)

    machine = MattingStateMachine(ScriptedNet(ON_DEVICE).modules(), DIMS, MemoryConfig(mem_every=2))
    pads = pad_amounts(HEIGHT, WIDTH)
    machine.seed(frame_to_input(images[0], pads), mask_to_input(mask, pads))
    machine.step(frame_to_input(images[0], pads), first_frame_pred=True)
    for image in images[1:8]:
        out = machine.step(frame_to_input(image, pads))
    state = {
        "sensory": machine.sensory,
        "obj_memory": machine.obj_memory,
        "last_mask": machine.last_mask,
        "last_pix_feat": machine.last_pix_feat,
        "last_msk_value": machine.last_msk_value,
        "memory.key": machine.memory.key,
        "memory.value": machine.memory.value,
        "memory.valid": machine.memory.valid,
        "alpha": out.alpha,
    }
    for name, x in state.items():
        assert not isinstance(x, np.ndarray) and x.device == DEVICE, f"{name} left the device"
    assert machine.memory.frames == 3
    assert machine.crossings.count == 1  # the seed mask, uploaded once; nothing between modules


def test_only_the_alpha_leaves_the_device_per_steady_frame(monkeypatch):
    images, mask = clip(10)
    moved = count_device_downloads(monkeypatch)
    per_frame = []
    results = []
    for result in matte_frames(ScriptedNet(ON_DEVICE).modules(), images, mask, warmup=2, mem_frames=3):
        per_frame.append(list(moved))
        moved.clear()
        results.append(result)
    for index, crossed in enumerate(per_frame):
        assert crossed == [(HEIGHT, WIDTH)], f"frame {index} moved {crossed} to the host"
    # the logits are moved only when read
    assert results[-1].logits.shape == (HEIGHT, WIDTH)
    assert moved == [(HEIGHT, WIDTH)]


def test_mixed_placement_converts_each_array_once_at_the_seam(monkeypatch):
    """Encoder on the device, the rest numpy: each encoder output a numpy module reads crosses once
    per frame (pix_feat feeds read and mask_encoder, and is read again as last_pix_feat next frame),
    and the results equal an all-host run."""
    images, mask = clip(12)
    mixed = ScriptedNet(HOST).modules()
    mixed["encoder"] = ScriptedNet(ON_DEVICE).modules()["encoder"]
    want = list(matte_frames(ScriptedNet(HOST).modules(), images, mask, warmup=1, mem_frames=3))
    got = list(matte_frames(mixed, images, mask, warmup=1, mem_frames=3))
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a.alpha, b.alpha)

    pads = pad_amounts(HEIGHT, WIDTH)
    machine = MattingStateMachine(mixed, DIMS, MemoryConfig(mem_every=3))
    machine.seed(frame_to_input(images[0], pads), mask_to_input(mask, pads))
    machine.step(frame_to_input(images[0], pads), first_frame_pred=True)
    counts = []
    for image in images[1:10]:
        before = machine.crossings.count
        out = machine.step(frame_to_input(image, pads))
        counts.append((machine.crossings.count - before, out.is_memory_frame))
    # f8 f4 f2 f1 pix_feat key selection; and shrinkage on memory frames (key is already across)
    assert counts == [(8 if memory else 7, memory) for _, memory in counts]
    assert any(memory for _, memory in counts) and not all(memory for _, memory in counts)
    assert isinstance(machine.sensory, np.ndarray) and isinstance(machine.memory.key, np.ndarray)


# ------------------------------------------------------------------------------ the torch backend


def test_torch_backend_moves_the_frame_in_and_the_alpha_out_and_nothing_else(monkeypatch, torch_net):
    """Per steady frame of the real torch backend: one host->torch wrap (the frame) and one
    torch->host conversion (the alpha); every piece of state is a torch tensor."""
    import torch

    from matanyone_engine.backends.torch.modules import build_torch_modules
    from matanyone_engine.backends.torch.plugin import TorchModule

    stages = build_torch_modules(torch_net, optional=True)
    modules = {name: TorchModule(stage, torch.device("cpu"), "fp32") for name, stage in stages.items()}
    counts = {"to_torch": 0, "to_numpy": 0}
    shapes: list[tuple[int, ...]] = []
    real_from_numpy, real_numpy = torch.from_numpy, torch.Tensor.numpy

    def from_numpy(x):
        counts["to_torch"] += 1
        return real_from_numpy(x)

    def to_numpy(self, *args, **kwargs):
        counts["to_numpy"] += 1
        shapes.append(tuple(self.shape))
        return real_numpy(self, *args, **kwargs)

    for name in ("as_tensor", "asarray", "tensor", "from_dlpack"):
        real = getattr(torch, name)

        def counted(*args, _real=real, **kwargs):
            counts["to_torch"] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(torch, name, counted)
    monkeypatch.setattr(torch, "from_numpy", from_numpy)
    monkeypatch.setattr(torch.Tensor, "numpy", to_numpy)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (60, 90, 3), dtype=np.uint8) for _ in range(8)]
    mask = np.zeros((60, 90), np.float32)
    mask[10:50, 20:70] = 255
    per_frame = []
    for result in matte_frames(modules, frames, mask, warmup=1, mem_frames=3):
        per_frame.append((result.index, dict(counts), list(shapes)))
        counts.update(to_torch=0, to_numpy=0)
        shapes.clear()
        assert result.alpha.shape == (60, 90) and result.alpha.dtype == np.float32
    for index, seen, moved in per_frame[1:]:
        assert seen == {"to_torch": 1, "to_numpy": 1}, f"frame {index}: {seen}"
        assert moved == [(60, 90)], f"frame {index} converted {moved}"

    machine = MattingStateMachine(modules, Dims(64, 96, 3))
    pads = pad_amounts(60, 90)
    machine.seed(frame_to_input(frames[0], pads), mask_to_input(mask, pads))
    out = machine.step(frame_to_input(frames[1], pads), first_frame_pred=True)
    for x in (machine.sensory, machine.obj_memory, machine.memory.key, machine.last_msk_value, out.alpha):
        assert isinstance(x, torch.Tensor)
