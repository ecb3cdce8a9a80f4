"""Backend-agnostic core: module declarations, the per-frame state machine, I/O, plugins, CLI.

Nothing here imports torch.
"""

from .hookspecs import hookimpl
from .spec import MODULE_NAMES, MODULE_SPECS, Dims

__version__ = "0.1.0"
__all__ = ["hookimpl", "MODULE_NAMES", "MODULE_SPECS", "Dims", "__version__"]
