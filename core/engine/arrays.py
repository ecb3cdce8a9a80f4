"""Where arrays live, and moving them only where two backends meet.

A backend's modules may keep their arrays on their own device (torch tensors on a GPU); the state
machine then does its bookkeeping on those arrays through the Python array API
(``array_api_compat``), so nothing crosses to the host between frames. A module says where it
wants its inputs with an optional ``array_home`` attribute (an :class:`ArrayHome`); a module
without one is a numpy module (ONNX Runtime, Core ML, OpenVINO), as the protocol always was.

Conversions happen in two places only: at a module's boundary when its input comes from a backend
with another home (``ModuleBoundary``), and when the driver hands the alpha to the caller
(``to_host``). Nothing here imports a framework: a torch tensor is recognised by
``array_api_compat`` without importing torch, and moved with its own methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_cupy_array, is_numpy_array, is_torch_array, to_device
from array_api_compat import device as device_of
from array_api_compat import numpy as numpy_namespace


@dataclass(frozen=True)
class ArrayHome:
    """An array-API namespace and a device in it: where a module's arrays live."""

    namespace: Any
    device: Any

    @property
    def is_host(self) -> bool:
        return self.namespace is numpy_namespace

    def holds(self, x: Any) -> bool:
        """Whether ``x`` already lives here (same library, same device): no conversion needed."""
        if self.is_host:
            return is_numpy_array(x)
        if is_numpy_array(x):
            return False
        try:
            return array_namespace(x) is self.namespace and device_of(x) == self.device
        except TypeError:  # not an array of any library array_api_compat knows
            return False

    def zeros(self, shape: tuple[int, ...]) -> Any:
        """float32 zeros here (state buffers are allocated where their consumer runs)."""
        xp = self.namespace
        return xp.zeros(shape, dtype=xp.float32, device=self.device)

    def bring(self, x: Any) -> Any:
        """``x`` as an array of this home: itself when it lives here, else through the host."""
        if self.holds(x):
            return x
        host = to_host(x)
        if self.is_host:
            return host
        return self.namespace.asarray(np.ascontiguousarray(host), device=self.device)


#: numpy on the CPU: the home of every module that declares none.
HOST = ArrayHome(numpy_namespace, "cpu")


def home_of(module: Any) -> ArrayHome:
    """The module's declared ``array_home``, else the host (a numpy module)."""
    home = getattr(module, "array_home", None)
    return home if isinstance(home, ArrayHome) else HOST


def to_host(x: Any) -> np.ndarray:
    """``x`` as a numpy array on the host: free for numpy and CPU tensors, one copy from a device.

    The standard route (array API ``to_device`` to the library's CPU device, then numpy's buffer
    protocol), with DLPack as the fallback for libraries without a CPU device of their own.
    """
    if isinstance(x, np.ndarray):
        return x
    try:
        xp = array_namespace(x)
    except TypeError:
        return np.asarray(x)  # a Python scalar or sequence
    host = "cpu" if is_torch_array(x) or is_cupy_array(x) else _cpu_device(xp)
    if host is not None:
        return np.asarray(to_device(x, host))
    return np.from_dlpack(x)


def _cpu_device(xp: Any) -> Any | None:
    """The CPU device of an array-API namespace, if it lists one."""
    try:
        devices = xp.__array_namespace_info__().devices()
    except AttributeError:
        return None
    return next((d for d in devices if "cpu" in str(d).lower()), None)


class Crossings:
    """The conversions between homes made for one state machine, so each array crosses to each
    other home once: an encoder output read by two modules of another backend, or a frame's pixel
    features read again as the next frame's ``last_pix_feat``, is converted the first time only.

    ``keep`` drops what the state no longer holds (it holds the originals, so no id is reused while
    remembered). ``count`` is how many conversions were made, for tests and reports.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[int, ArrayHome], tuple[Any, Any]] = {}
        self.count = 0

    def bring(self, x: Any, home: ArrayHome) -> Any:
        """``x`` in ``home`` (see ArrayHome.bring), converted at most once while remembered."""
        if home.holds(x):
            return x
        key = (id(x), home)
        hit = self._seen.get(key)
        if hit is not None and hit[0] is x:
            return hit[1]
        converted = home.bring(x)
        self._seen[key] = (x, converted)
        self.count += 1
        return converted

    def keep(self, live: list[Any]) -> None:
        """Forget every conversion whose original is not one of ``live``."""
        alive = {id(x) for x in live if x is not None}
        self._seen = {k: v for k, v in self._seen.items() if k[0] in alive}


class ModuleBoundary:
    """A module whose inputs are moved to its home when they come from elsewhere, and only then.

    A numpy module gets every foreign array as numpy. A module with its own home gets its own
    arrays untouched and numpy arrays untouched too (it uploads them itself, on its own stream);
    an array of a third library reaches it through the host. The wrapper keeps ``spec`` and
    ``array_home``, so it stands in for the module everywhere.
    """

    def __init__(self, module: Any, crossings: Crossings | None = None):
        self.module = module
        self.spec = module.spec
        self.array_home = home_of(module)
        self.crossings = crossings if crossings is not None else Crossings()

    def _arrive(self, x: Any) -> Any:
        home = self.array_home
        if home.holds(x) or (not home.is_host and is_numpy_array(x)):
            return x
        return self.crossings.bring(x, home if home.is_host else HOST)

    def __call__(self, **inputs: Any) -> Mapping[str, Any]:
        return self.module(**{name: self._arrive(x) for name, x in inputs.items()})
