"""The PyTorch reference backend: ``torch`` (CPU), ``torch-cuda`` and ``torch-mps`` where present."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from matanyone_engine.core import hookimpl
from matanyone_engine.core.engine.errors import is_out_of_memory, out_of_memory
from matanyone_engine.core.engine.protocol import BackendUnavailable, LoadRequest
from matanyone_engine.core.engine.spec import ModuleSpec

PRECISIONS = ("fp32", "bf16")


class TorchModule:
    """Adapts a torch stage to the numpy Module protocol.

    CPU inputs are wrapped without copying (torch.from_numpy); outputs come back as numpy views.
    ``bf16`` is the official demo's CPU mode: the module runs under bfloat16 autocast.
    """

    def __init__(self, stage, device, precision: str):
        import torch

        self._torch = torch
        self.stage = stage
        self.spec: ModuleSpec = stage.spec
        self.device = device
        self.precision = precision

    def _autocast(self):
        if self.precision == "bf16":
            return self._torch.autocast(device_type=self.device.type, dtype=self._torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)) for n in self.spec.input_names]
        if self.device.type != "cpu":
            args = [a.to(self.device, non_blocking=True) for a in args]
        try:
            with torch.inference_mode(), self._autocast():
                outputs = self.stage(*args)
        except (RuntimeError, MemoryError) as exc:
            if is_out_of_memory(exc):
                raise out_of_memory(self.spec.name, tuple(args[0].shape)) from None
            raise
        return {
            name: out.float().cpu().numpy() if out.dtype != torch.float32 or out.device.type != "cpu" else out.numpy()
            for name, out in zip(self.spec.output_names, outputs, strict=False)
        }


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
        """bf16 autocast where the hardware has bfloat16 arithmetic, else fp32."""
        from matanyone_engine.core.engine.precision import cpu_has_native_bf16

        if self.device_type == "cuda":
            return "bf16", "CUDA GPUs run the bfloat16 autocast natively"
        if self.device_type == "cpu" and cpu_has_native_bf16():
            return "bf16", "this CPU has bfloat16 instructions"
        if self.device_type == "cpu":
            return "fp32", "this CPU has no bfloat16 instructions, so the bf16 autocast would be emulated (far slower)"
        return "fp32", "the bf16 autocast is not measured on Metal"

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

        from .modules import build_torch_modules
        from .network import load_network

        if request.threads and self.device_type == "cpu":
            torch.set_num_threads(request.threads)
        device = torch.device(self.device_type)
        net = load_network(request.weights, device=device)
        stages = build_torch_modules(net, optional=True)
        return {name: TorchModule(stage, device, request.precision) for name, stage in stages.items()}


BACKENDS = (
    TorchBackend("torch", "cpu", "PyTorch reference implementation on the CPU"),
    TorchBackend("torch-cuda", "cuda", "PyTorch on an NVIDIA GPU"),
    TorchBackend("torch-mps", "mps", "PyTorch on Apple silicon (Metal)"),
)


@hookimpl
def register_backends(register) -> None:
    for backend in BACKENDS:
        register(backend)
