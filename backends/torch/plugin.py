"""The PyTorch reference backend: ``torch`` (CPU), ``torch-cuda`` and ``torch-mps`` where present."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from matanyone_engine.core import hookimpl
from matanyone_engine.core.engine.arrays import ArrayHome
from matanyone_engine.core.engine.errors import is_out_of_memory, out_of_memory
from matanyone_engine.core.engine.protocol import BackendUnavailable, LoadRequest
from matanyone_engine.core.engine.spec import ModuleSpec

PRECISIONS = ("fp32", "bf16", "fp16")


class TorchModule:
    """A torch stage as a device module of the protocol: torch tensors on ``device`` in and out.

    Its ``array_home`` tells the state machine to keep its state as tensors on that device, so
    between frames nothing is copied to the host. numpy inputs (the frame, the seed mask, outputs
    of a numpy backend) are wrapped without a copy on the CPU (torch.from_numpy) and uploaded once
    on a GPU. Outputs are float32 whatever the precision. ``bf16`` is the official demo's CPU mode
    (bfloat16 autocast); ``fp16`` is the float16 autocast (for GPUs).

    ``side_stream`` (CUDA only; the loader gives it to the image encoder): the module runs on its
    own CUDA stream, so the pipelined driver's encoder of frame t+1 overlaps frame t's read and
    decoder on the default stream. The default stream waits on an event for the outputs (no host
    synchronisation), and the outputs are marked as used there, so the caching allocator cannot
    hand their memory back to the encoder's stream while the other modules still read it.
    """

    def __init__(self, stage, device, precision: str, side_stream: bool = False):
        import torch
        from array_api_compat import array_namespace

        self._torch = torch
        self.stage = stage
        self.spec: ModuleSpec = stage.spec
        probe = torch.empty(0, device=device)
        self.device = probe.device  # normalised: "cuda" becomes "cuda:0", as tensors report it
        self.array_home = ArrayHome(array_namespace(probe), self.device)
        self.precision = precision
        self._stream = torch.cuda.Stream(self.device) if side_stream and self.device.type == "cuda" else None

    def _autocast(self):
        dtype = AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return self._torch.autocast(device_type=self.device.type, dtype=getattr(self._torch, dtype))

    def _bring(self, x):
        torch = self._torch
        if isinstance(x, torch.Tensor):
            tensor = x if x.device == self.device else x.to(self.device, non_blocking=True)
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            if self.device.type != "cpu":
                tensor = tensor.to(self.device, non_blocking=True)
        return tensor if tensor.dtype == torch.float32 else tensor.float()

    def _run(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        torch = self._torch
        args = [self._bring(inputs[n]) for n in self.spec.input_names]
        try:
            with torch.inference_mode(), self._autocast():
                outputs = self.stage(*args)
        except (RuntimeError, MemoryError) as exc:
            if is_out_of_memory(exc):
                raise out_of_memory(self.spec.name, tuple(args[0].shape)) from None
            raise
        with torch.inference_mode():
            return {
                name: out if out.dtype == torch.float32 else out.float()
                for name, out in zip(self.spec.output_names, outputs, strict=False)
            }

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        if self._stream is None:
            return self._run(inputs)
        torch = self._torch
        consumer = torch.cuda.default_stream(self.device)
        if any(isinstance(x, torch.Tensor) and x.device == self.device for x in inputs.values()):
            self._stream.wait_stream(consumer)  # device inputs were made on the default stream
        with torch.cuda.stream(self._stream):
            outputs = self._run(inputs)
            done = torch.cuda.Event()
            done.record(self._stream)
        consumer.wait_event(done)
        for out in outputs.values():
            out.record_stream(consumer)
        return outputs


#: Activations in the channels-last layout per device type (``options["channels_last"]`` overrides);
#: see backends/torch/inference.py for why and how it was measured.
CHANNELS_LAST = {"cpu": True, "cuda": True, "mps": False}
#: Largest padded frame (pixels) for which freed memory is kept in the heap by default: at 1080p a
#: frame's activations are already hundreds of MB each, the page faults they save are a small part of
#: seconds per frame, and at 4K what the heap keeps would push a run past its memory budget.
KEEP_FREED_MAX_PIXELS = 1088 * 1920
#: precision -> torch dtype name of its autocast (fp32 runs without autocast).
AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


@dataclass
class TorchBackend:
    name: str
    device_type: str
    description: str

    def available(self) -> tuple[bool, str]:
        try:
            import torch
        except ImportError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return False, (
                f"PyTorch does not import here ({reason}); install the torch extra: "
                "pip install torch==2.13.0 'matanyone-engine[torch]'"
            )
        if self.device_type == "cuda" and not torch.cuda.is_available():
            return False, "no CUDA device visible to PyTorch"
        if self.device_type == "mps" and not (
            getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        ):
            return False, "Metal (MPS) is not available to PyTorch on this machine"
        return True, ""

    def devices(self) -> list[str]:
        ok, _ = self.available()
        if not ok:
            return []
        if self.device_type == "cuda":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return [self.device_type]

    @property
    def accelerated(self) -> bool:
        return self.device_type != "cpu"

    def fast_precision(self) -> tuple[str, str]:
        """The autocast where the hardware computes it natively, else fp32.

        CUDA: float16 (10 mantissa bits against bfloat16's 7, same tensor-core speed) where its
        record is admissible, else bfloat16. CPU: bfloat16 with bfloat16 instructions (float16
        autocast on a CPU is emulated)."""
        from matanyone_engine.core.engine.accuracy import admissible
        from matanyone_engine.core.engine.precision import cpu_has_native_bf16

        if self.device_type == "cuda":
            for precision in ("fp16", "bf16"):
                if admissible(self.name, precision)[0]:
                    return precision, f"CUDA GPUs run the {precision} autocast on tensor cores"
            return "fp32", "no reduced precision is recorded as admissible for CUDA"
        if self.device_type == "cpu" and cpu_has_native_bf16():
            return "bf16", "this CPU has bfloat16 instructions"
        if self.device_type == "cpu":
            return "fp32", "this CPU has no bfloat16 instructions, so the bf16 autocast would be emulated (far slower)"
        return "fp32", "the autocast is not measured on Metal"

    def module_flops(self, dims, weights: str = "seeded:v1-pm") -> dict[str, int]:
        """FLOPs per module at ``dims``, counted once by tracing the torch modules."""
        from .flops import count_module_flops

        return count_module_flops(dims)

    def load(self, request: LoadRequest) -> Mapping[str, TorchModule]:
        ok, reason = self.available()
        if not ok:
            raise BackendUnavailable(f"backend {self.name} cannot run here: {reason}")
        if request.precision not in PRECISIONS:
            raise BackendUnavailable(
                f"backend {self.name} does not offer precision {request.precision!r}; use one "
                f"of {', '.join(PRECISIONS)}"
            )
        import torch

        from .inference import keep_freed_memory, prepare_network
        from .modules import build_torch_modules
        from .network import load_network

        if request.threads and self.device_type == "cpu":
            torch.set_num_threads(request.threads)
        small_frames = request.dims.height * request.dims.width <= KEEP_FREED_MAX_PIXELS
        if request.options.get("keep_freed_memory", small_frames):
            keep_freed_memory()
        device = torch.device(self.device_type)
        net = load_network(request.weights, device=device)
        channels_last = bool(request.options.get("channels_last", CHANNELS_LAST.get(self.device_type, False)))
        prepare_network(net, request.precision, channels_last=channels_last)
        stages = build_torch_modules(net, optional=True)
        return {
            name: TorchModule(stage, device, request.precision, side_stream=name == "encoder")
            for name, stage in stages.items()
        }


BACKENDS = (
    TorchBackend("torch", "cpu", "PyTorch reference implementation on the CPU"),
    TorchBackend("torch-cuda", "cuda", "PyTorch on an NVIDIA GPU"),
    TorchBackend("torch-mps", "mps", "PyTorch on Apple silicon (Metal)"),
)


@hookimpl
def register_backends(register) -> None:
    for backend in BACKENDS:
        register(backend)
