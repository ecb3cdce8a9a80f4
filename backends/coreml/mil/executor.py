"""Run one function of an ML Program on numpy arrays: the reference MIL executor.

How it models Core ML's numerics:

* Every op computes in float32 (float16 inputs are widened first), then each output is **stored**
  in a dtype: the one the program declares for it (``activations="declared"``: an fp32 package
  keeps float32 everywhere, an fp16 package float16 wherever the converter put fp16), or float16
  for every floating-point output whatever the program declares (``activations="float16"``: how
  the GPU and the Neural Engine hold activations). The function's outputs are handed back in their
  declared dtype (float32 for the packages here) from the stored values.
* Constants keep the dtype they are stored in (fp16 weights are fp16), widened once per op.

What it checks on load: every op type is in the op table (else ``UnsupportedOpError``: one line
naming the op and the package; control-flow ops with nested blocks are not in it), and the library
kernels the ops need are importable (``MissingKernelError``). On every call: input names and shapes, and that every op's
output has the shape the program declares — a disagreement is either a converter bug or an
executor bug, and either must stop the run (``MilExecutionError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from . import kernels
from .args import OpArgs
from .errors import MilExecutionError, MilProgramError, MissingKernelError, UnsupportedOpError
from .program import Arg, MilFunction, MilProgram, TensorType
from .table import OP_TABLE, OpFunction

Activations = Literal["declared", "float16"]
ACTIVATIONS = ("declared", "float16")


@dataclass
class _Step:
    op_type: str
    fn: OpFunction
    bindings: dict[str, list[Arg]]
    tuple_inputs: frozenset[str]
    constant: frozenset[str]
    outputs: list[tuple[str, TensorType]]
    store: list[Any]  # numpy dtype each output is stored in
    frees: list[str] = field(default_factory=list)  # variables no later step reads
    cache: dict[str, Any] = field(default_factory=dict)


#: Inputs that are tuples of tensors in the MIL op reference (always passed as a list).
_TUPLE_INPUTS = {"concat": {"values"}}


class Executor:
    """A compiled function of one program; ``executor(**inputs)`` -> {output name: array}."""

    def __init__(self, program: MilProgram, *, function: str = "main", activations: Activations = "declared") -> None:
        if activations not in ACTIVATIONS:
            raise ValueError(f"activations must be one of {ACTIVATIONS}, got {activations!r}")
        if function == "main" and function not in program.functions:
            function = program.main.name  # a single function under another name
        if function not in program.functions:
            raise MilProgramError(program.package, f"has no function {function!r} ({', '.join(program.functions)})")
        self.program = program
        self.function: MilFunction = program.functions[function]
        self.activations = activations
        self.package = program.package
        refuse_unsupported(program)
        self._steps = self._compile()
        declared = {name: t.numpy_dtype for name, t in self.function.inputs.items()}
        declared.update({name: t.numpy_dtype for step in self._steps for name, t in step.outputs})
        self._output_dtypes = {name: declared[name] for name in self.function.outputs}

    # ----------------------------------------------------------------------------- compiling

    def _storage(self, ttype: TensorType) -> Any:
        dtype = ttype.numpy_dtype
        if dtype is None:
            raise UnsupportedOpError(self.package, "const", f"values of type {ttype.dtype}")
        if self.activations == "float16" and np.issubdtype(dtype, np.floating):
            return np.float16
        return dtype

    def _compile(self) -> list[_Step]:
        steps: list[_Step] = []
        last_read: dict[str, int] = {}
        for index, op in enumerate(self.function.operations):
            constant = frozenset(k for k, args in op.inputs.items() if all(arg.is_const for arg in args))
            for args in op.inputs.values():
                for arg in args:
                    if arg.name is not None:
                        last_read[arg.name] = index
            steps.append(
                _Step(
                    op_type=op.type,
                    fn=OP_TABLE[op.type],
                    bindings=op.inputs,
                    tuple_inputs=frozenset(_TUPLE_INPUTS.get(op.type, ())),
                    constant=constant,
                    outputs=op.outputs,
                    store=[self._storage(t) for _, t in op.outputs],
                )
            )
        keep = set(self.function.outputs)
        for name, index in last_read.items():
            if name not in keep:
                steps[index].frees.append(name)
        return steps

    # ------------------------------------------------------------------------------- running

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        return self.run(inputs)

    def run(
        self, inputs: Mapping[str, np.ndarray], trace: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Outputs for ``inputs``; with ``trace`` (a dict), every intermediate value is also kept
        there under its program name (for bisecting where two programs or precisions diverge)."""
        env: dict[str, np.ndarray] = {}
        for name, ttype in self.function.inputs.items():
            if name not in inputs:
                raise MilExecutionError(self.package, "input", name, "the input was not given")
            array = np.asarray(inputs[name])
            if ttype.shape is not None and tuple(array.shape) != ttype.shape:
                raise MilExecutionError(
                    self.package, "input", name, f"shape {array.shape}, the program declares {ttype.shape}"
                )
            env[name] = array.astype(ttype.numpy_dtype or np.float32, copy=False)
        with np.errstate(all="ignore"):  # inf / nan propagate as on the device, silently
            for step in self._steps:
                self._run_step(step, env, trace)
        result = {}
        for name in self.function.outputs:
            result[name] = np.ascontiguousarray(env[name].astype(self._output_dtypes[name], copy=False))
        return result

    def _run_step(self, step: _Step, env: dict[str, np.ndarray], trace: dict[str, np.ndarray] | None) -> None:
        values: dict[str, Any] = {}
        for key, args in step.bindings.items():
            resolved = [arg.value if arg.name is None else env[arg.name] for arg in args]
            values[key] = resolved if key in step.tuple_inputs or len(resolved) > 1 else resolved[0]
        output = step.outputs[0][0] if step.outputs else step.op_type
        try:
            raw = step.fn(OpArgs(step.op_type, values, step.constant, step.store, self.function.opset, step.cache))
        except (ValueError, IndexError, TypeError, RuntimeError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MilExecutionError(self.package, step.op_type, output, detail[:300]) from None
        produced = raw if isinstance(raw, tuple) else (raw,)
        if len(produced) != len(step.outputs):
            raise MilExecutionError(
                self.package, step.op_type, output, f"made {len(produced)} outputs, the program has {len(step.outputs)}"
            )
        for (name, ttype), dtype, value in zip(step.outputs, step.store, produced, strict=True):
            array = np.asarray(value)
            if ttype.shape is not None and tuple(array.shape) != ttype.shape:
                raise MilExecutionError(
                    self.package,
                    step.op_type,
                    name,
                    f"computed shape {array.shape}, the program declares {ttype.shape}",
                )
            env[name] = array.astype(dtype, copy=False)
            if trace is not None:
                trace[name] = env[name]
        for name in step.frees:
            env.pop(name, None)


def refuse_unsupported(program: MilProgram) -> None:
    """Raise on the first op the executor cannot run (unknown type — control flow such as cond and
    while_loop included —, or a kernel that is not importable)."""
    for function in program.functions.values():
        for op in function.operations:
            if op.type not in OP_TABLE:
                raise UnsupportedOpError(program.package, op.type)
            if op.type in kernels.TORCH_OPS and not kernels.torch_available():
                kernel, fix = kernels.TORCH_OPS[op.type]
                raise MissingKernelError(program.package, op.type, kernel, fix)


__all__ = ["ACTIVATIONS", "Activations", "Executor", "refuse_unsupported"]
