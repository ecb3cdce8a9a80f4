"""Backend-agnostic core of matanyone-engine; nothing here imports torch.

One sub-package per layer, dependencies pointing down (tests/test_layers.py checks them):

* ``engine``    the module declaration, Module/Backend protocol, state machine, driver, padding
* ``media``     video and frame folders in, masks, writers out, decode/encode threads
* ``artifacts`` weights, the official checkpoint, export manifests, the artifact cache
* ``plugins``   hook specifications, the plugin manager, the plugin listing
* ``app``       the Python API, backend choice and loading, the CLI, the demo
* ``bench``     the benchmark: runner, report, placement search, its command

``matanyone_engine.core.api`` (``matte``, ``convert_video``) and ``matanyone_engine.core.hookimpl``
are the stable entry points.
"""

from .engine.spec import MODULE_NAMES, MODULE_SPECS, Dims
from .plugins.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "MODULE_NAMES", "MODULE_SPECS", "Dims", "__version__"]
