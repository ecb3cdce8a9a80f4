"""The one check every exporter makes before it needs PyTorch.

Exporting traces the PyTorch network, so it needs torch; running an exported folder does not
(``run --models DIR``). A runtime-only install (``pip install 'matanyone-engine[onnx]'``) therefore
registers the exporters like any other, and an export there stops at once with one line that says
what to install, instead of an ImportError from deep inside a trace.
"""

from __future__ import annotations

from matanyone_engine.core.engine.errors import ExportError

#: The install line a torch-free machine is told to run (the CPU build, pinned like ``make setup``).
TORCH_INSTALL = "pip install torch==2.13.0 'matanyone-engine[torch]'"


def require_torch(what: str = "exporting") -> None:
    """Raise ExportError (one line) unless ``import torch`` works here."""
    try:
        import torch  # noqa: F401 - the import is the check
    except ImportError as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(
            f"{what} needs PyTorch, which does not import here ({reason}); install the torch extra: "
            f"{TORCH_INSTALL} (or export on a machine that has it and run this one with --models DIR)"
        ) from None
