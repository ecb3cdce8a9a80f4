"""Read an ML Program out of a saved ``.mlpackage``: functions, operations, types and constants.

Why a reader of our own instead of coremltools' MIL builder: the executor must see the program
exactly as Core ML receives it — the serialised protobuf and the weight blob — not coremltools'
in-memory re-interpretation of it (which re-runs its own type inference and could hide the very
mistake the executor exists to catch). coremltools is used only for what it owns: the protobuf
classes (``ct.utils.load_spec``), the package layout (``ModelPackage``) and the weight-blob
reader (``_BlobStorageReader``, the reader of the ``weight.bin`` format Core ML shares).

Constants (``const`` ops and immediate values) are decoded once, here, into numpy arrays of the
dtype the program declares (fp16 weights stay float16). Everything else stays symbolic: an
operation's inputs are ``Arg`` bindings, each either a variable name or a constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matanyone_engine.core.engine.errors import ExportError
from matanyone_engine.exporters.coreml.compat import import_coremltools

from .errors import MilProgramError, UnsupportedOpError

#: MIL data types -> numpy dtypes the executor stores them in.
NUMPY_DTYPES: dict[str, Any] = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT32": np.int32,
    "INT64": np.int64,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "BOOL": np.bool_,
}

#: Blob reader method per MIL data type (the formats a package's weight.bin holds for these types).
_BLOB_READERS = {
    "FLOAT32": "read_float_data",
    "FLOAT16": "read_fp16_data",
    "INT32": "read_int32_data",
    "UINT32": "read_uint32_data",
    "INT16": "read_int16_data",
    "UINT16": "read_uint16_data",
    "INT8": "read_int8_data",
    "UINT8": "read_uint8_data",
}


@dataclass(frozen=True)
class TensorType:
    """A value's declared type: MIL dtype name (FLOAT32, INT32, BOOL, STRING, ...) and static shape."""

    dtype: str
    shape: tuple[int, ...] | None  # None: not a tensor type, or a dimension unknown until run time

    @property
    def numpy_dtype(self) -> Any:
        return NUMPY_DTYPES.get(self.dtype)


@dataclass(frozen=True)
class Arg:
    """One binding of an operation input: a variable (``name``) or a constant (``value``)."""

    name: str | None = None
    value: Any = None

    @property
    def is_const(self) -> bool:
        return self.name is None


@dataclass
class MilOperation:
    """One operation: its type, its inputs (each a list of bindings; more than one for tuples such
    as concat's ``values``), and its outputs with their declared types."""

    type: str
    inputs: dict[str, list[Arg]]
    outputs: list[tuple[str, TensorType]]
    has_blocks: bool = False

    @property
    def name(self) -> str:
        return self.outputs[0][0] if self.outputs else self.type


@dataclass
class MilFunction:
    name: str
    opset: str  # e.g. "CoreML7" (the iOS 17 / macOS 14 operation set)
    inputs: dict[str, TensorType]
    outputs: list[str]
    operations: list[MilOperation]


@dataclass
class MilProgram:
    """The functions of one package, with every constant decoded."""

    path: Path
    functions: dict[str, MilFunction]
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def package(self) -> str:
        return self.path.name

    @property
    def main(self) -> MilFunction:
        if "main" in self.functions:
            return self.functions["main"]
        return next(iter(self.functions.values()))

    def op_types(self) -> set[str]:
        return {op.type for f in self.functions.values() for op in f.operations}


# ------------------------------------------------------------------------------------- loading


def load_program(path: str | Path) -> MilProgram:
    """Read the ML Program of the ``.mlpackage`` (or ``.mlmodel`` with its weights beside it) at ``path``."""
    path = Path(path)
    package = path.name
    if not path.exists():
        raise MilProgramError(package, f"{path} does not exist; export the packages again")
    try:
        import_coremltools()
    except ExportError as exc:
        raise MilProgramError(package, f"reading Core ML packages needs coremltools: {exc}") from exc
    try:
        if path.is_dir():
            from coremltools.libmodelpackage import ModelPackage

            model_file = Path(ModelPackage(str(path)).getRootModel().path())
        else:
            model_file = path
        from coremltools.proto import Model_pb2

        spec = Model_pb2.Model()
        spec.ParseFromString(model_file.read_bytes())
    except Exception as exc:
        raise MilProgramError(
            package, f"cannot read the package ({type(exc).__name__}: {exc}); export it again"
        ) from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise MilProgramError(package, f"is a {spec.WhichOneof('Type')} model, not an ML Program")
    reader = _BlobFiles(model_file.parent, package)
    program = MilProgram(path=path, functions={})
    program.metadata = dict(spec.description.metadata.userDefined)
    for fname, function in spec.mlProgram.functions.items():
        opset = function.opset
        if opset not in function.block_specializations:
            raise MilProgramError(package, f"function {fname} has no block for its opset {opset}")
        block = function.block_specializations[opset]
        inputs = {i.name: _tensor_type(i.type) for i in function.inputs}
        operations = []
        for op in block.operations:
            if op.type == "const":
                name = op.outputs[0].name
                program.constants[name] = _decode_value(op.attributes["val"], reader, package, name)
                continue
            bindings: dict[str, list[Arg]] = {}
            for key, argument in op.inputs.items():
                args = []
                for binding in argument.arguments:
                    if binding.WhichOneof("binding") == "name":
                        if binding.name in program.constants:
                            args.append(Arg(value=program.constants[binding.name]))
                        else:
                            args.append(Arg(name=binding.name))
                    else:
                        args.append(Arg(value=_decode_value(binding.value, reader, package, f"{op.type}.{key}")))
                bindings[key] = args
            outputs = [(o.name, _tensor_type(o.type)) for o in op.outputs]
            operations.append(MilOperation(op.type, bindings, outputs, has_blocks=len(op.blocks) > 0))
        program.functions[fname] = MilFunction(fname, opset, inputs, list(block.outputs), operations)
    return program


class _BlobFiles:
    """The weight files a program refers to (``@model_path/weights/weight.bin``), opened on first use."""

    def __init__(self, model_dir: Path, package: str) -> None:
        self.model_dir = model_dir
        self.package = package
        self._readers: dict[str, Any] = {}

    def read(self, file_name: str, offset: int, dtype: str, shape: tuple[int, ...], what: str) -> np.ndarray:
        method = _BLOB_READERS.get(dtype)
        if method is None:
            raise UnsupportedOpError(
                self.package, "const", f"{what} is stored as {dtype}, which the executor does not read"
            )
        if file_name not in self._readers:
            path = self.model_dir / file_name.replace("@model_path/", "", 1)
            if not path.is_file():
                raise MilProgramError(self.package, f"weight file {path} is missing; export the package again")
            from coremltools.libmilstoragepython import _BlobStorageReader

            self._readers[file_name] = _BlobStorageReader(str(path))
        try:
            raw = getattr(self._readers[file_name], method)(offset)
        except Exception as exc:
            raise MilProgramError(self.package, f"cannot read {what} at offset {offset} ({exc})") from None
        values = np.frombuffer(np.asarray(raw).tobytes(), dtype=NUMPY_DTYPES[dtype])
        if values.size != int(np.prod(shape)):
            raise MilProgramError(self.package, f"{what} holds {values.size} values, its type says {shape}")
        return values.reshape(shape).copy()


def _tensor_type(value_type: Any) -> TensorType:
    from coremltools.proto import MIL_pb2

    kind = value_type.WhichOneof("type")
    if kind != "tensorType":
        return TensorType(kind or "UNKNOWN", None)
    tensor = value_type.tensorType
    dims: list[int] = []
    for dim in tensor.dimensions:
        if dim.WhichOneof("dimension") != "constant":
            return TensorType(MIL_pb2.DataType.Name(tensor.dataType), None)
        dims.append(int(dim.constant.size))
    return TensorType(MIL_pb2.DataType.Name(tensor.dataType), tuple(dims))


def _decode_value(value: Any, reader: _BlobFiles, package: str, what: str) -> np.ndarray:
    """A MIL Value (immediate tensor or blob reference) as a numpy array of its declared type."""
    ttype = _tensor_type(value.type)
    if ttype.shape is None:
        raise MilProgramError(package, f"{what} is a {ttype.dtype} value the executor cannot decode")
    kind = value.WhichOneof("value")
    if kind == "blobFileValue":
        return reader.read(value.blobFileValue.fileName, value.blobFileValue.offset, ttype.dtype, ttype.shape, what)
    if kind != "immediateValue" or value.immediateValue.WhichOneof("value") != "tensor":
        raise MilProgramError(package, f"{what} is a {kind} value the executor cannot decode")
    tensor = value.immediateValue.tensor
    field_name = tensor.WhichOneof("value")
    if ttype.dtype == "STRING":
        strings = list(tensor.strings.values) if field_name == "strings" else []
        return np.array(strings if ttype.shape else (strings[0] if strings else ""), dtype=object).reshape(ttype.shape)
    dtype = ttype.numpy_dtype
    if dtype is None:
        raise UnsupportedOpError(package, "const", f"{what} has data type {ttype.dtype}")
    if field_name == "bytes":
        array = np.frombuffer(tensor.bytes.values, dtype=dtype)
    elif field_name is None:
        array = np.zeros(0, dtype=dtype)
    else:
        array = np.asarray(list(getattr(tensor, field_name).values)).astype(dtype)
    count = int(np.prod(ttype.shape))
    if array.size != count:
        raise MilProgramError(package, f"{what} holds {array.size} values, its type says {ttype.shape}")
    return array.reshape(ttype.shape).copy()


__all__ = ["NUMPY_DTYPES", "Arg", "MilFunction", "MilOperation", "MilProgram", "TensorType", "load_program"]
