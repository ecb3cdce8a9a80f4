"""What a backend hands the state machine: five callables over named numpy arrays.

The state machine never sees a framework tensor. A backend may keep data on its device between
calls; the protocol only fixes the boundary (float32 numpy in, float32 numpy out), which is what
makes per-module placement across backends possible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import BackendError
from .spec import Dims, ModuleSpec


@runtime_checkable
class Module(Protocol):
    """A stateless module: ``outputs = module(**inputs)`` with names from its ``spec``."""

    spec: ModuleSpec

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]: ...


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
