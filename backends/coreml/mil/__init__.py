"""A reference executor for Core ML ML Programs (MIL), on any OS, without Apple's runtime.

Core ML runs only on macOS, and no public interpreter of ML Programs exists; this one runs the op
types the MatAnyone packages contain (``IMPLEMENTED_OPS``), with the semantics of the MIL op
reference, in float32 or with float16 activation storage. It proves that an exported program
computes the network; it cannot say what Apple's kernels, compute-unit placement or the Neural
Engine's own numerics do (docs/coreml-sim.md).

    from matanyone_engine.backends.coreml.mil import Executor, load_program
    run = Executor(load_program("encoder.mlpackage"), activations="float16")
    outputs = run(image=image)

numpy does the arithmetic; torch's CPU convolution does conv (kernels.py). Importing this
package imports neither torch nor coremltools.
"""

from .errors import MilError, MilExecutionError, MilProgramError, MissingKernelError, UnsupportedOpError
from .executor import ACTIVATIONS, Executor, refuse_unsupported
from .program import MilProgram, load_program
from .table import IMPLEMENTED_OPS, OP_TABLE

__all__ = [
    "ACTIVATIONS",
    "IMPLEMENTED_OPS",
    "OP_TABLE",
    "Executor",
    "MilError",
    "MilExecutionError",
    "MilProgram",
    "MilProgramError",
    "MissingKernelError",
    "UnsupportedOpError",
    "load_program",
    "refuse_unsupported",
]
