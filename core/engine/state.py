"""The per-frame memory state machine of MatAnyone, over any backend's five modules and arrays.

This is where all bookkeeping lives, so the modules stay pure functions. It reproduces the
official ``InferenceCore.step`` flow (eval config: mem_every 5, max_mem_frames 5, top_k 30, no
long-term memory, one object):

* seed step: the given mask is encoded into the permanent memory slot, sensory memory starts at
  zero and is deep-updated by the mask encoder; the mask itself is the output;
* first-frame-prediction step (after the seed and for every warm-up step): the frame counter
  resets, the previous mask value is the readout (no attention), the prediction then replaces
  working memory (permanent slot included) and object memory; sensory memory is kept;
* normal step: top-k read over the working memory, decoder (which updates sensory memory on every
  segmented frame), then the mask encoder — deep (memory write, sensory update, object memory) on
  memory frames, only for the next frame's ``last_msk_value`` otherwise.

Working memory is a fixed ring buffer of T slots: slot 0 is permanent, slots 1..T-1 are a FIFO.
Order inside the buffer does not matter (top-k and softmax are permutation invariant; only which
of several exactly tied tokens fills the last top-k places depends on it, a choice the official
code leaves to ``torch.topk``), so a FIFO write is a slot overwrite, never a copy of the memory.

Every piece of state is an array of the backend that produced it (torch tensors on its device,
numpy for numpy backends), and the arithmetic on it (ring-buffer writes, the object-memory sum,
the alpha clamp) is written against the Python array API, so a device backend's state never
leaves its device. Buffers the state machine allocates itself live where their consumer runs
(working memory with ``read``, the first sensory memory with ``mask_encoder``); an array coming
from a backend with another home is converted at that module's boundary (``arrays.py``), and only
there. For numpy backends every operation is the numpy one it always was, so results are
bit-identical to the numpy-only state machine.

The clip loop that feeds it frames lives in ``driver.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from .arrays import HOST, ArrayHome, Crossings, ModuleBoundary, home_of, to_host
from .protocol import Module
from .spec import KEY_DIM, SENSORY_DIM, VALUE_DIM, Dims

#: Receives (event, tensors) after every step; the tensors are host numpy copies.
Recorder = Callable[[str, Mapping[str, np.ndarray]], None]


@dataclass
class MemoryConfig:
    mem_every: int = 5
    stagger_updates: int = 5

    def stagger_steps(self) -> set[int]:
        """Frame offsets since the last memory frame at which the decoder updates sensory memory."""
        if self.stagger_updates >= self.mem_every:
            return set(range(1, self.mem_every + 1))
        return {int(x) for x in np.round(np.linspace(1, self.mem_every, self.stagger_updates))}


@dataclass
class WorkingMemory:
    """Fixed-size ring buffer: keys/values flattened to (1, C, T*h*w) plus a validity row.

    The buffers are arrays of ``home`` (the ``read`` module's), written slot by slot in place."""

    dims: Dims
    home: ArrayHome = HOST
    crossings: Crossings = field(default_factory=Crossings)
    key: Any = field(init=False)
    shrinkage: Any = field(init=False)
    value: Any = field(init=False)
    valid: Any = field(init=False)
    filled_fifo: int = field(init=False, default=0)
    has_permanent: bool = field(init=False, default=False)
    _frames: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        n = self.dims.symbols["N"]
        self.key = self.home.zeros((1, KEY_DIM, n))
        self.shrinkage = self.home.zeros((1, 1, n))
        self.value = self.home.zeros((1, VALUE_DIM, n))
        self.valid = self.home.zeros((1, n))

    def clear(self) -> None:
        self.valid[...] = 0.0
        self.filled_fifo = 0
        self.has_permanent = False
        self._frames = 0

    def _slot_for_next_write(self) -> int | None:
        if not self.has_permanent:
            return 0
        fifo = self.dims.mem_frames - 1
        if fifo == 0:  # T == 1: only the permanent frame is kept
            return None
        slot = 1 + self.filled_fifo % fifo
        self.filled_fifo += 1
        return slot

    def add(self, key: Any, shrinkage: Any, value: Any) -> None:
        """Write one frame into the next slot (arrays of any home: converted here if foreign)."""
        slot = self._slot_for_next_write()
        self.has_permanent = True
        if slot is None:
            return
        xp, hw, home = self.home.namespace, self.dims.tokens_per_frame, self.home
        bring = self.crossings.bring
        span = slice(slot * hw, (slot + 1) * hw)
        self.key[:, :, span] = xp.reshape(bring(key, home), (1, KEY_DIM, hw))
        self.shrinkage[:, :, span] = xp.reshape(bring(shrinkage, home), (1, 1, hw))
        self.value[:, :, span] = xp.reshape(bring(value, home), (1, VALUE_DIM, hw))
        self.valid[:, span] = 1.0
        self._frames = min(self._frames + 1, self.dims.mem_frames)

    @property
    def frames(self) -> int:
        """Filled slots, counted on the host (reading ``valid`` would synchronise a device)."""
        return self._frames


@dataclass
class StepOutput:
    """One step's matte as arrays of the decoder's backend (a device tensor stays on its device)."""

    alpha: Any  # (1, 1, H, W) padded, clamped to [0, 1]
    logits: Any | None  # (1, 1, H, W) padded, before the clamp (None for the seed step)
    kind: str  # "seed", "first_frame_pred" or "normal"
    is_memory_frame: bool


class MattingStateMachine:
    """Drives the five modules frame by frame; holds every piece of state between frames.

    ``modules`` may come from different backends; each is called through a ``ModuleBoundary``,
    so an input produced by a backend with another array home is converted there and only there.
    """

    def __init__(
        self,
        modules: Mapping[str, Module],
        dims: Dims,
        config: MemoryConfig | None = None,
        recorder: Recorder | None = None,
    ):
        missing = [n for n in ("encoder", "mask_encoder", "read_first", "read", "decoder") if n not in modules]
        if missing:
            raise ValueError(f"modules missing: {', '.join(missing)}")
        self.crossings = Crossings()
        self.modules = {name: ModuleBoundary(m, self.crossings) for name, m in modules.items()}
        self.dims = dims
        self.config = config or MemoryConfig()
        self._stagger = self.config.stagger_steps()
        self.recorder = recorder
        self.memory = WorkingMemory(dims, home_of(modules["read"]), self.crossings)
        h, w = dims.symbols["h"], dims.symbols["w"]
        self._mask_home = home_of(modules["mask_encoder"])
        self.sensory: Any = self._mask_home.zeros((1, SENSORY_DIM, h, w))
        self.obj_memory: Any | None = None
        self.last_mask: Any | None = None
        self.last_pix_feat: Any | None = None
        self.last_msk_value: Any | None = None
        self.curr_ti = -1
        self.last_mem_ti = 0

    # -- helpers ------------------------------------------------------------------------------

    def _record(self, event: str, tensors: Mapping[str, Any]) -> None:
        if self.recorder is not None:
            self.recorder(event, {name: np.array(to_host(x), copy=True) for name, x in tensors.items()})

    def _forget_stale_crossings(self, enc: Mapping[str, Any]) -> None:
        """Keep the conversions of what this step can still feed a module: the state and ``enc``."""
        live = [self.sensory, self.obj_memory, self.last_mask, self.last_pix_feat, self.last_msk_value]
        self.crossings.keep([*live, *enc.values()])

    def _encode_and_remember(self, enc: Mapping[str, Any], mask: Any, deep: bool) -> None:
        """Mask encoder; on memory frames also the memory write, object sum and sensory update.

        Non-memory frames need only the mask value; the shallow variant skips the rest when the
        backend offers it."""
        shallow = self.modules.get("mask_value")
        if not deep and shallow is not None:
            self.last_msk_value = shallow(f1=enc["f1"], pix_feat=enc["pix_feat"], mask=mask)["mask_value"]
            return
        out = self.modules["mask_encoder"](f1=enc["f1"], pix_feat=enc["pix_feat"], sensory=self.sensory, mask=mask)
        self.last_msk_value = out["mask_value"]
        if not deep:
            return
        self.memory.add(enc["key"], enc["shrinkage"], out["mask_value"])
        summary = out["obj_summary"]
        if self.obj_memory is None:
            self.obj_memory = array_namespace(summary).asarray(summary, copy=True)
        else:
            self.obj_memory = self.obj_memory + summary
        self.last_mem_ti = self.curr_ti
        self.sensory = out["new_sensory"]

    # -- steps --------------------------------------------------------------------------------

    def encode(self, image: Any) -> Mapping[str, Any]:
        """The image encoder's outputs for ``image``: what ``seed`` and ``step`` take as ``encoded``.

        ``image`` is numpy (or an array of the encoder's backend); the outputs are the encoder
        backend's arrays."""
        return self.modules["encoder"](image=image)

    def seed(self, image: Any, mask: Any, encoded: Mapping[str, Any] | None = None) -> StepOutput:
        """Encode the first-frame mask (padded (1,1,H,W) in [0,1]) as permanent memory.

        The mask is brought to the mask encoder's home once, here."""
        self.curr_ti += 1
        enc = encoded if encoded is not None else self.encode(image)
        self._forget_stale_crossings(enc)
        mask = self.crossings.bring(mask, self._mask_home)
        self.last_mask = mask
        self.last_pix_feat = enc["pix_feat"]
        self._encode_and_remember(enc, mask, deep=True)
        self._record("seed", {"sensory": self.sensory, "last_msk_value": self.last_msk_value})
        return StepOutput(alpha=mask, logits=None, kind="seed", is_memory_frame=True)

    def step(self, image: Any, first_frame_pred: bool = False, encoded: Mapping[str, Any] | None = None) -> StepOutput:
        """One frame. ``encoded`` is ``encode(image)`` when the caller already has it."""
        if self.last_mask is None:
            raise RuntimeError("seed() must be called with the first-frame mask before step()")
        self.curr_ti += 1
        if first_frame_pred:
            self.curr_ti = 0
            self.last_mem_ti = 0
            is_mem_frame = True
            update_sensory = True
        else:
            is_mem_frame = self.curr_ti - self.last_mem_ti >= self.config.mem_every
            update_sensory = (self.curr_ti - self.last_mem_ti) in self._stagger

        enc = encoded if encoded is not None else self.encode(image)
        self._forget_stale_crossings(enc)
        obj_memory = self.obj_memory
        if self.curr_ti == 0:
            readout = self.modules["read_first"](
                pix_feat=enc["pix_feat"],
                last_msk_value=self.last_msk_value,
                sensory=self.sensory,
                last_mask=self.last_mask,
                obj_memory=obj_memory,
            )["mem_readout"]
        else:
            readout = self.modules["read"](
                query_key=enc["key"],
                query_selection=enc["selection"],
                pix_feat=enc["pix_feat"],
                last_pix_feat=self.last_pix_feat,
                last_mask=self.last_mask,
                last_msk_value=self.last_msk_value,
                sensory=self.sensory,
                mem_key=self.memory.key,
                mem_shrinkage=self.memory.shrinkage,
                mem_value=self.memory.value,
                mem_valid=self.memory.valid,
                obj_memory=obj_memory,
            )["mem_readout"]
        dec = self.modules["decoder"](
            f8=enc["f8"], f4=enc["f4"], f2=enc["f2"], f1=enc["f1"], mem_readout=readout, sensory=self.sensory
        )
        if update_sensory:
            self.sensory = dec["new_sensory"]
        logits = dec["logits"]
        alpha = array_namespace(logits).clip(logits, 0.0, 1.0)
        self.last_mask = alpha
        self.last_pix_feat = enc["pix_feat"]
        if is_mem_frame and first_frame_pred:
            self.memory.clear()
            self.obj_memory = None
        self._encode_and_remember(enc, alpha, deep=is_mem_frame)
        kind = "first_frame_pred" if first_frame_pred else "normal"
        self._record(
            kind,
            {"sensory": self.sensory, "last_msk_value": self.last_msk_value, "mem_readout": readout, "logits": logits},
        )
        return StepOutput(alpha=alpha, logits=logits, kind=kind, is_memory_frame=is_mem_frame)
