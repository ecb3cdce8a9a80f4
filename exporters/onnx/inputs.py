"""Realistic inputs for export validation.

Comparing an exported module with its PyTorch original only means something on inputs that look
like the ones it will see: random normal tensors as "features", or a memory whose slots are all
valid, would leave the masked top-k read and the sigmoid gates untested or saturated. So the
inputs here come from running the torch modules themselves on the project's generated clip
(core/synthetic.py: moving shapes over a textured gradient), through the engine's own state machine,
so they are the calls a run makes. The memory is taken both partly filled (empty slots masked by
``mem_valid``) and full.

numpy at import time; torch only inside the functions that run torch modules.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from matanyone_engine.core.engine.driver import matte_frames
from matanyone_engine.core.engine.errors import ExportError
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, MODULE_NAMES, Dims, ModuleSpec
from matanyone_engine.core.media.synthetic import moving_shapes as synthetic_clip

InputSet = dict[str, np.ndarray]


def synthetic_inputs(dims: Dims, seed: int = 0) -> dict[str, InputSet]:
    """Independent realistic-range random inputs for each module, from the declaration alone.

    Used where no torch module can be run to produce chained inputs: features are rectified
    noise, shrinkage >= 1, selection in (0, 1), masks in [0, 1] and smooth, memory partly valid.
    """
    rng = np.random.default_rng(seed)
    sym = dims.symbols
    hw = sym["h"] * sym["w"]

    def value_for(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name == "image":
            return rng.uniform(0.0, 1.0, shape).astype(np.float32)
        if name in ("mask", "last_mask"):
            yy, xx = np.mgrid[0 : shape[-2], 0 : shape[-1]]
            blob = np.exp(
                -(((yy - shape[-2] / 2) / (shape[-2] / 4)) ** 2 + ((xx - shape[-1] / 2) / (shape[-1] / 4)) ** 2)
            )
            return np.clip(blob * 1.5 - 0.2, 0.0, 1.0).reshape(shape).astype(np.float32)
        if name in ("shrinkage", "mem_shrinkage"):
            return (1.0 + rng.uniform(0.0, 3.0, shape) ** 2).astype(np.float32)
        if name in ("selection", "query_selection"):
            return rng.uniform(0.05, 0.95, shape).astype(np.float32)
        if name == "mem_valid":
            valid = np.zeros(shape, dtype=np.float32)
            filled = max(1, dims.mem_frames - 1)
            valid[..., : filled * hw] = 1.0
            return valid
        if name in ("obj_memory", "obj_summary"):
            sums = rng.standard_normal(shape).astype(np.float32)
            sums[..., -1] = rng.uniform(1.0, 10.0, shape[:-1])
            return sums
        if name in ("f8", "f4", "f2"):
            return np.maximum(rng.standard_normal(shape), 0).astype(np.float32)
        if name in ("sensory",):
            return np.tanh(rng.standard_normal(shape)).astype(np.float32)
        return rng.standard_normal(shape).astype(np.float32)

    return {
        spec.name: {t.name: value_for(t.name, t.resolve(dims)) for t in spec.inputs}
        for spec in ALL_MODULE_SPECS.values()
    }


class TorchNumpyModule:
    """A torch module behind the core.protocol.Module boundary (numpy in, numpy out).

    Validation and input capture both need the torch modules to speak the same language as the
    state machine and the exported modules.
    """

    def __init__(self, spec: ModuleSpec, module: Any):
        self.spec = spec
        self._module = module

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)) for n in self.spec.input_names]
        with torch.inference_mode():
            outs = self._module(*args)
        if not isinstance(outs, (tuple, list)):
            outs = (outs,)
        return {n: o.detach().float().cpu().numpy() for n, o in zip(self.spec.output_names, outs, strict=False)}


#: Above this many padded pixels (1080p has 2.1 M) the capture is cut down: a shorter clip (the
#: full-memory read is validated at the smaller sizes; the graph does not change with the size,
#: only the number of unrolled read tiles does), one input set per module, and the recorded inputs
#: kept in files rather than in memory, so that exporting at 4K stays within the memory a 4K run
#: needs (the decoder's inputs alone are 1.5 GB there).
LARGE_PIXELS = 1_500_000
LARGE_CAPTURE_FRAMES = 8


def is_large(dims: Dims) -> bool:
    return dims.height * dims.width > LARGE_PIXELS


class _Recorder:
    """Wraps a Module and keeps a copy of the inputs of its first and of its latest call (only the
    latest with ``keep_first=False``); with ``spill``, each copy goes to a file in that folder and
    is held as a copy-on-write memory map.

    Only those calls are used (``_pick``); keeping every call would hold the decoder's full-size
    skips of every frame of the clip (gigabytes at 1080p)."""

    def __init__(self, inner: Any, keep_first: bool = True, spill: Path | None = None):
        self.spec = inner.spec
        self._inner = inner
        self._keep = 2 if keep_first else 1
        self._spill = spill
        self._count = 0
        self.calls: list[InputSet] = []

    def _copy(self, inputs: Mapping[str, np.ndarray]) -> InputSet:
        if self._spill is None:
            return {k: np.array(v, dtype=np.float32, copy=True) for k, v in inputs.items()}
        self._count += 1
        copy: InputSet = {}
        for k, v in inputs.items():
            path = self._spill / f"{self.spec.name}-{self._count}-{k}.npy"
            np.save(path, np.asarray(v, dtype=np.float32))
            copy[k] = np.load(path, mmap_mode="c")
            path.unlink()  # the map keeps the data until it is dropped; nothing is left behind
        return copy

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        copy = self._copy(inputs)
        if len(self.calls) == self._keep:
            self.calls[-1] = copy
        else:
            self.calls.append(copy)
        return self._inner(**inputs)


def capture_inputs(
    torch_modules: Mapping[str, Any], dims: Dims, seed: int = 0, frames: int | None = None
) -> tuple[dict[str, list[InputSet]], str]:
    """Inputs for every module taken from a short run of ``torch_modules`` on a synthetic clip.

    Returns ({module: [input sets]}, how), ``how`` saying where they came from (recorded in the
    manifest). A module the run never called (``frames`` below 2: no read) is an ExportError.
    """
    names = [n for n in ALL_MODULE_SPECS if n in torch_modules]
    wrapped = {n: TorchNumpyModule(ALL_MODULE_SPECS[n], torch_modules[n]) for n in names}
    sets = _capture_with_state_machine(wrapped, dims, seed, frames)
    missing = [n for n in MODULE_NAMES if not sets.get(n)]
    if missing:
        raise ExportError(
            f"the input capture ({frames} frames) never called {', '.join(missing)}; capture at least 2 frames "
            "(frame 0 seeds the memory, the next ones read it)"
        )
    for variant in names:
        if not sets.get(variant):  # an optional variant the run did not call takes its full module's inputs
            spec = ALL_MODULE_SPECS[variant]
            source = next(n for n in MODULE_NAMES if set(spec.input_names) <= set(ALL_MODULE_SPECS[n].input_names))
            sets[variant] = [{k: s[k] for k in spec.input_names} for s in sets[source]]
    return sets, "state machine (core.engine.driver.matte_frames, warm-up 1) on a synthetic clip"


def _pick(calls: list[InputSet], count: int = 2) -> list[InputSet]:
    """The first and the last call: the first sees fresh state, the last a filled memory."""
    if len(calls) <= count:
        return list(calls)
    return [calls[0], calls[-1]]


def _capture_with_state_machine(
    wrapped: Mapping[str, Any], dims: Dims, seed: int, frames: int | None
) -> dict[str, list[InputSet]]:
    """Record every module call of a short clip; keep each module's first and last inputs.

    The clip is long enough to fill the FIFO (memory frames every 5 steps), so the first read
    sees a partly valid memory and the last one a full memory.
    """
    large = is_large(dims)
    n = frames or (LARGE_CAPTURE_FRAMES if large else max(dims.mem_frames - 1, 1) * 5 + 3)
    clip, mask = synthetic_clip(dims.height, dims.width, n, seed)
    with tempfile.TemporaryDirectory(prefix="matanyone-capture-") as spill:
        recorders = {
            name: _Recorder(m, keep_first=not large, spill=Path(spill) if large else None)
            for name, m in wrapped.items()
        }
        for _ in matte_frames(recorders, iter(clip), mask.astype(np.float32), warmup=1, mem_frames=dims.mem_frames):
            pass
    return {name: _pick(r.calls) for name, r in recorders.items()}
