"""What a backend hands the state machine: five callables over named float32 arrays.

Two kinds of module, told apart by the optional ``array_home`` attribute (core.engine.arrays):

* a **numpy module** (no ``array_home``; ONNX Runtime, Core ML, OpenVINO): numpy in, numpy out,
  exactly as before;
* a **device module** (``array_home = ArrayHome(namespace, device)``; the torch backend): its own
  arrays in and out (torch tensors on its device), so the state it hands back can be fed to it
  again without ever leaving the device. It must also accept numpy inputs (the frame, the seed
  mask, or an output of a numpy module) and move them to its device itself.

Outputs are float32 arrays of the module's home, in the shapes of core.engine.spec. The state
machine computes on them with the Python array API and converts only where two modules with
different homes meet (``arrays.ModuleBoundary``), so any placement of modules across backends
still works, paying a transfer only at the seams it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .errors import BackendError
from .spec import Dims, ModuleSpec


@runtime_checkable
class Module(Protocol):
    """A stateless module: ``outputs = module(**inputs)`` with names from its ``spec``.

    Arrays are numpy unless the module declares an ``array_home`` (then they are that home's
    arrays; see the module docstring)."""

    spec: ModuleSpec

    def __call__(self, **inputs: Any) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class LoadRequest:
    """Everything a backend needs to build its five modules."""

    weights: str
    dims: Dims
    precision: str = "fp32"
    threads: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """A registered backend. ``available()`` answers without loading any model.

    Optional, read with ``getattr``: ``accelerated`` (True when the modules run on a GPU or
    Neural Engine, so the CPU is free to overlap work: the driver then pipelines the image
    encoder), ``fast_precision()`` -> (precision, reason) for ``--precision fast``,
    ``precisions`` (what it offers), ``devices()``, ``module_flops(dims)``, ``artifact_format``
    (the ``matanyone export`` format it loads from ``options["artifacts"]``: a backend without it
    cannot run ``--models`` folders), ``fixed_size`` ((H, W): its modules are built for one input
    size; the app loads them at that size for every clip and fits each clip to it,
    core/engine/fixed_size.py).
    """

    name: str
    description: str

    def available(self) -> tuple[bool, str]:
        """(True, "") when it can run here, else (False, one-line reason)."""
        ...

    def load(self, request: LoadRequest) -> Mapping[str, Module]:
        """Build the five modules for ``request`` (names of core.spec.MODULE_NAMES)."""
        ...


class BackendUnavailable(BackendError):
    """Raised when a backend is asked to load on a machine that cannot run it."""
