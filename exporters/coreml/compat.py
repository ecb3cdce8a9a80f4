"""Importing coremltools quietly, and the one numpy-2.4 workaround the conversion needs.

Why a module of its own: both the exporter and the backend import coremltools, and on Linux its
import logs eight "Failed to load _MLModelProxy ..." warnings (the runtime half of coremltools is
macOS-only) that would drown every export log. And coremltools 9.0 predates numpy 2.4, which
turned a long-deprecated conversion into an error; the fix must be applied only while converting
and undone afterwards, so it cannot leak into anything else the process does.

The numpy 2.4 workaround (``numpy_compat_patch``)
-------------------------------------------------
numpy 2.4 no longer converts a size-1 array of rank >= 1 to a Python scalar
(``int(np.array([5]))`` raises ``TypeError: only 0-dimensional arrays can be converted to Python
scalars``; it was a DeprecationWarning since numpy 1.25). coremltools 9.0's torch frontend does
exactly that in ``coremltools.converters.mil.frontend.torch.ops._cast``, which converts the
TorchScript ``aten::Int`` / ``aten::Bool`` nodes that ``torch.jit.trace`` emits for sizes read
from ``tensor.shape`` (``reshape(b, c, h, w)`` with traced ``h``, ``w``): when the value is a
compile-time constant it runs ``int(x.val)`` where ``x.val`` is a one-element rank-1 array.
The patch swaps ``ops._cast`` for a version that first reduces such a value to a 0-d scalar
(``.reshape(()).item()``) and otherwise calls the original; ``_int`` and ``_bool`` look ``_cast``
up as a module global at call time, so replacing the attribute is enough. It is applied only
inside ``numpy_compat_patch()`` (a context manager held around ``ct.convert``) and removed on
exit. With numpy < 2.4 it changes nothing (the original returns the same constant).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from matanyone_engine.core.engine.errors import ExportError

_PATCH_LOCK = threading.RLock()


#: What a machine without coremltools is told (exporter, backends, the reference executor).
MISSING_COREMLTOOLS = "coremltools is not installed; pip install 'matanyone-engine[coreml]'"


def coremltools_import_problem(exc: ImportError) -> str:
    """One line for a failed ``import coremltools`` (or of one of its modules).

    Only coremltools itself missing means "not installed"; anything else (a dependency of it
    missing, a compiled extension that does not load, a version clash) is an installed copy that
    is broken, and telling that user to install it would send them the wrong way.
    """
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if missing == "coremltools":
        return MISSING_COREMLTOOLS
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (
        f"coremltools is installed but fails to import ({type(exc).__name__}: {reason}); "
        "repair it: pip install --force-reinstall coremltools"
    )


def quiet_import(module: str = "coremltools") -> ModuleType:
    """``importlib.import_module(module)`` with coremltools' Linux-only runtime warnings silenced."""
    with quiet_coremltools():
        return importlib.import_module(module)


def import_coremltools() -> ModuleType:
    """coremltools, imported with its Linux-only runtime warnings silenced.

    Raises ExportError with ``coremltools_import_problem``'s line when it does not import, so
    callers never see a bare ImportError.
    """
    try:
        return quiet_import()
    except ImportError as exc:
        raise ExportError(coremltools_import_problem(exc)) from exc


def coremltools_version() -> str:
    """The installed coremltools version, or "" when it is absent (for manifests and reports)."""
    try:
        from importlib.metadata import version

        return version("coremltools")
    except Exception:
        return ""


@contextlib.contextmanager
def numpy_compat_patch() -> Iterator[None]:
    """Apply the ``_cast`` workaround described in the module docstring for the block's duration."""
    import_coremltools()
    import numpy as np
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch import ops

    with _PATCH_LOCK:
        original = ops._cast

        def _cast(context: Any, node: Any, dtype: type, dtype_name: str) -> None:
            inputs = ops._get_inputs(context, node, expected=1)
            x = inputs[0]
            value = x.val if x.can_be_folded_to_const() else None
            if isinstance(value, np.ndarray) and value.ndim > 0 and value.size == 1:
                context.add(mb.const(val=dtype(value.reshape(()).item()), name=node.name), node.name)
                return
            original(context, node, dtype, dtype_name)

        ops._cast = _cast
        try:
            yield
        finally:
            ops._cast = original


@contextlib.contextmanager
def quiet_coremltools() -> Iterator[None]:
    """Silence coremltools' log warnings during its import (the eight "Failed to load
    _MLModelProxy" lines on Linux) and during a convert (e.g. "Torch version ... has not been tested").

    coremltools 9.0 was tested up to torch 2.7 and says so on every conversion; the checks after
    conversion, not that warning, are what tell whether a package is good. Its tqdm progress bars
    are left alone: they are the only sign of life during a minutes-long conversion.
    """
    logger = logging.getLogger("coremltools")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(previous)
