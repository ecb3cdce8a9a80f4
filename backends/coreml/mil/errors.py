"""Typed errors of the reference MIL executor, each one line that names the package.

They subclass ``BackendError`` (exit code 4 in the CLI): a program the executor cannot read or run
is a backend that cannot run here, whether it is used by the ``coreml-sim`` backend or by the
Core ML exporter's validation.
"""

from __future__ import annotations

from matanyone_engine.core.engine.errors import BackendError


class MilError(BackendError):
    """Base of every error of backends/coreml/mil; ``package`` is the .mlpackage's file name."""

    def __init__(self, package: str, message: str) -> None:
        self.package = package
        super().__init__(f"{package}: {message}")


class MilProgramError(MilError):
    """A package that is not a readable ML Program (no mlProgram, unreadable weights, bad value)."""


class UnsupportedOpError(MilError):
    """An operation type (or a variant of one, e.g. nested blocks) the executor does not implement."""

    def __init__(self, package: str, op_type: str, detail: str = "") -> None:
        self.op_type = op_type
        what = f"op {op_type!r} is not implemented by the reference MIL executor (backends/coreml/mil)"
        if detail:
            what += f": {detail}"
        super().__init__(package, what)


class MissingKernelError(MilError):
    """An op whose arithmetic needs a library kernel (torch's convolution) that is not importable."""

    def __init__(self, package: str, op_type: str, kernel: str, fix: str) -> None:
        self.op_type = op_type
        super().__init__(package, f"op {op_type!r} needs {kernel}, which is not importable here; {fix}")


class MilExecutionError(MilError):
    """An operation that failed while running (bad shapes, out-of-range indices, mismatched output)."""

    def __init__(self, package: str, op_type: str, output: str, detail: str) -> None:
        self.op_type = op_type
        self.output = output
        super().__init__(package, f"op {op_type!r} (output {output!r}) failed: {detail}")


__all__ = ["MilError", "MilExecutionError", "MilProgramError", "MissingKernelError", "UnsupportedOpError"]
