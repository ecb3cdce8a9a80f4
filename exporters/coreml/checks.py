"""Static checks of an exported ``.mlpackage``, runnable on any OS (no CoreML runtime needed).

Why: this machine class (Linux CI) can convert models but not run them, and the defects that
broke the earlier iOS port are all visible in the saved program without running it:

* interface drift — a renamed or reshaped input silently breaks the state machine;
* tensors of rank > 5 — Core ML's hard limit; such a package fails to compile on the device;
* data-dependent operations (``non_zero``, ``gather_nd``, ``while_loop``/``cond``, scatters at
  computed indices) and dynamic dimensions — they defeat the static planning that GPU/ANE
  execution needs, and the top-k read must be a threshold compare, not a scatter;
* slices of singleton dimensions (``x[:, 0]``, ``x[:, i:i+1]`` on a size-1 axis) — these crashed
  Metal Performance Shaders on iOS ("subRange.start = -1 vs length 1") and forced modules to CPU;
* folded constant tensors — a ``torch.zeros_like`` or a ``full`` that tracing froze into a
  multi-megabyte constant (a zeros-filled constant is always a defect: it means an operation on
  a known-zero tensor was baked in instead of being computed or removed);
* wrong weight precision — an fp16 export whose weights stayed fp32 doubles its size, an fp32
  export with fp16 weights silently loses accuracy.

``check_package`` reads the package's protobuf spec and weight blob directly and walks every
function, block and nested block of the ML Program. Each problem raises a typed subclass of
``CoreMLCheckError`` (an ``ExportError``) that names the module and lists the offending
operations; a clean package yields a ``PackageReport`` for the manifest.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matanyone_engine.core.engine.errors import ExportError
from matanyone_engine.core.engine.spec import ALL_MODULE_SPECS, Dims

from .compat import import_coremltools

# ----------------------------------------------------------------------------------------- errors


class CoreMLExportError(ExportError):
    """A CoreML export problem, tied to one module. ``module`` and ``problem`` are kept for tests."""

    def __init__(self, module: str, problem: str, fix: str = "") -> None:
        self.module = module
        self.problem = problem
        message = f"CoreML export of module {module!r}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


class CoreMLConversionError(CoreMLExportError):
    """torch.jit.trace or coremltools.convert failed."""


class CoreMLCheckError(CoreMLExportError):
    """A converted package failed a static check (base of the specific kinds below)."""


class InterfaceMismatchError(CoreMLCheckError):
    """Input/output names, order, shapes or dtypes differ from core.spec."""


class RankLimitError(CoreMLCheckError):
    """A tensor of rank above Core ML's limit of 5."""


class ForbiddenOpError(CoreMLCheckError):
    """A data-dependent or unsupported operation (non_zero, gather_nd, control flow, computed scatter)."""


class DynamicShapeError(CoreMLCheckError):
    """A tensor whose size is only known at run time."""


class SingletonSliceError(CoreMLCheckError):
    """A slice along a size-1 axis (crashes Metal Performance Shaders on iOS GPUs)."""


class ConstantTensorError(CoreMLCheckError):
    """A giant or folded (all-zeros / uniform) constant that is not a layer weight."""


class PrecisionError(CoreMLCheckError):
    """Weights stored at another precision than the export asked for."""


# ---------------------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class CheckLimits:
    """Thresholds of the checks. The defaults are what the exporter uses."""

    max_rank: int = 5
    #: A non-weight constant larger than this is a defect (a folded intermediate, not a parameter).
    giant_elements: int = 1_000_000
    #: An all-zeros non-weight constant with at least this many elements is a folded zeros tensor.
    zeros_elements: int = 64
    #: A uniform (single repeated value) non-weight constant this large is a folded fill.
    uniform_elements: int = 4096
    #: Float constants with at least this many elements count as weights for the precision check.
    weight_elements: int = 16
    #: Operations never allowed, whatever their inputs.
    forbidden_ops: frozenset[str] = frozenset(
        {"non_zero", "nonzero", "gather_nd", "while_loop", "cond", "argwhere", "unique"}
    )
    #: Operations allowed only when their index input is a compile-time constant.
    scatter_ops: frozenset[str] = frozenset(
        {"scatter", "scatter_nd", "scatter_along_axis", "scatter_nd_add", "index_put"}
    )


DEFAULT_LIMITS = CheckLimits()

#: (operation, input) pairs through which a constant is a layer parameter, never a folded tensor.
_WEIGHT_ROLES = {
    ("conv", "weight"),
    ("conv", "bias"),
    ("conv_transpose", "weight"),
    ("conv_transpose", "bias"),
    ("linear", "weight"),
    ("linear", "bias"),
    ("matmul", "x"),
    ("matmul", "y"),
    ("batch_norm", "mean"),
    ("batch_norm", "variance"),
    ("batch_norm", "gamma"),
    ("batch_norm", "beta"),
    ("instance_norm", "gamma"),
    ("instance_norm", "beta"),
    ("layer_norm", "gamma"),
    ("layer_norm", "beta"),
    ("gather", "x"),  # an embedding table
}

_SPEC_DTYPES = {"float32": "FLOAT32", "float16": "FLOAT16", "int32": "INT32", "float64": "DOUBLE"}

# ---------------------------------------------------------------------------------------- report


@dataclass
class PackageReport:
    """What the checks measured on one package; stored per module in the manifest."""

    module: str
    file: str
    size_bytes: int
    operations: int
    op_counts: dict[str, int]
    max_rank: int
    weight_dtype: str
    weight_elements: int
    largest_constant: int
    specification_version: int
    functions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------- entry point


def check_package(
    path: str | Path,
    module: str,
    dims: Dims,
    precision: str,
    *,
    limits: CheckLimits = DEFAULT_LIMITS,
) -> PackageReport:
    """Run every static check on the package at ``path``; raise the first kind of problem found.

    ``module`` names the declaration in core.spec the package must match; ``precision`` is
    "fp16" or "fp32" (the weight storage that was requested).
    """
    if precision not in ("fp16", "fp32"):
        raise ValueError(f"precision must be 'fp16' or 'fp32', got {precision!r}")
    path = Path(path)
    if module not in ALL_MODULE_SPECS:
        raise ValueError(f"unknown module {module!r}")
    ct = import_coremltools()
    try:
        spec = ct.utils.load_spec(str(path))
    except Exception as exc:
        raise CoreMLCheckError(
            module, f"cannot read the package {path} ({type(exc).__name__}: {exc})", "export it again"
        ) from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise CoreMLCheckError(
            module,
            f"{path.name} is a {spec.WhichOneof('Type')} model, not an ML Program",
            "convert with convert_to='mlprogram'",
        )

    _check_interface(spec, module, dims)
    program = _Program(spec, path)
    _check_ranks(program, module, limits)
    _check_forbidden(program, module, limits)
    _check_dynamic(program, module)
    _check_singleton_slices(program, module)
    constants = _check_constants(program, module, limits)
    weight_dtype, weight_elements = _check_precision(program, module, precision, limits)

    counts = Counter(op.type for op in program.operations())
    return PackageReport(
        module=module,
        file=path.name,
        size_bytes=directory_size(path),
        operations=sum(n for t, n in counts.items() if t != "const"),
        op_counts=dict(sorted(counts.items())),
        max_rank=program.max_rank(),
        weight_dtype=weight_dtype,
        weight_elements=weight_elements,
        largest_constant=constants,
        specification_version=int(spec.specificationVersion),
        functions=sorted(spec.mlProgram.functions.keys()),
    )


def directory_size(path: str | Path) -> int:
    """Bytes of a file or of every file under a directory (an .mlpackage is a directory)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------ the program view


class _Program:
    """Read-only view of an ML Program proto: every operation (nested blocks included), the type of
    every named value, which operations consume it, and the values of constants."""

    def __init__(self, spec: Any, package: Path) -> None:
        self.spec = spec
        self.package = package
        self._ops: list[Any] = []
        self.types: dict[str, Any] = {}
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.block_inputs: list[tuple[str, Any]] = []
        for function in spec.mlProgram.functions.values():
            for named in function.inputs:
                self.types[named.name] = named.type
                self.block_inputs.append((named.name, named.type))
            for block in function.block_specializations.values():
                self._walk(block)
        self._readers: dict[str, Any] = {}

    def _walk(self, block: Any) -> None:
        for named in block.inputs:
            self.types[named.name] = named.type
            self.block_inputs.append((named.name, named.type))
        for op in block.operations:
            self._ops.append(op)
            for named in op.outputs:
                self.types[named.name] = named.type
                self.producer[named.name] = op
            for param, argument in op.inputs.items():
                for binding in argument.arguments:
                    if binding.WhichOneof("binding") == "name":
                        self.consumers[binding.name].append((op.type, param))
            for nested in op.blocks:
                self._walk(nested)

    def operations(self) -> Iterator[Any]:
        return iter(self._ops)

    def max_rank(self) -> int:
        ranks = [rank for _, t in self._all_types() for rank in _tensor_ranks(t)]
        return max(ranks, default=0)

    def _all_types(self) -> Iterator[tuple[str, Any]]:
        yield from self.block_inputs
        for op in self._ops:
            for named in op.outputs:
                yield named.name, named.type

    def input_binding(self, op: Any, param: str) -> Any | None:
        argument = op.inputs.get(param)
        if argument is None or not argument.arguments:
            return None
        return argument.arguments[0]

    def is_constant(self, binding: Any) -> bool:
        if binding is None:
            return False
        if binding.WhichOneof("binding") == "value":
            return True
        producer = self.producer.get(binding.name)
        return producer is not None and producer.type == "const"

    def value_of(self, binding: Any) -> np.ndarray | None:
        """The numeric value of a constant input (inline or via a const op), else None."""
        if binding is None:
            return None
        if binding.WhichOneof("binding") == "value":
            return self.decode(binding.value)
        producer = self.producer.get(binding.name)
        if producer is None or producer.type != "const":
            return None
        return self.const_value(producer)

    def const_value(self, op: Any) -> np.ndarray | None:
        value = op.attributes.get("val")
        return None if value is None else self.decode(value)

    def decode(self, value: Any) -> np.ndarray | None:
        """A MIL ``Value`` (immediate or blob-backed) as numpy; None for strings and odd types."""
        ttype = value.type.tensorType if value.type.WhichOneof("type") == "tensorType" else None
        if ttype is None:
            return None
        shape = tuple(int(d.constant.size) for d in ttype.dimensions)
        dtype_name = _mil_dtype_name(ttype.dataType)
        kind = value.WhichOneof("value")
        if kind == "immediateValue":
            array = _decode_immediate(value.immediateValue.tensor, dtype_name)
        elif kind == "blobFileValue":
            array = self._read_blob(value.blobFileValue.fileName, int(value.blobFileValue.offset), dtype_name)
        else:
            return None
        if array is None:
            return None
        try:
            return array.reshape(shape)
        except ValueError:
            return array

    def _read_blob(self, file_name: str, offset: int, dtype_name: str) -> np.ndarray | None:
        reader = self._reader(file_name)
        if reader is None:
            return None
        readers = {
            "FLOAT16": ("read_fp16_data", np.float16),
            "FLOAT32": ("read_float_data", np.float32),
            "INT32": ("read_int32_data", np.int32),
            "INT16": ("read_int16_data", np.int16),
            "UINT16": ("read_uint16_data", np.uint16),
            "INT8": ("read_int8_data", np.int8),
            "UINT8": ("read_uint8_data", np.uint8),
        }
        if dtype_name not in readers:
            return None
        method, np_dtype = readers[dtype_name]
        raw = np.asarray(getattr(reader, method)(offset))
        return raw.view(np_dtype) if raw.dtype.itemsize == np.dtype(np_dtype).itemsize else raw.astype(np_dtype)

    def _reader(self, file_name: str) -> Any | None:
        if file_name in self._readers:
            return self._readers[file_name]
        reader = None
        blob = self._model_dir() / file_name.replace("@model_path/", "", 1)
        if blob.is_file():
            try:
                from coremltools.libmilstoragepython import _BlobStorageReader

                reader = _BlobStorageReader(str(blob))
            except Exception:
                reader = None
        self._readers[file_name] = reader
        return reader

    def _model_dir(self) -> Path:
        """The directory ``@model_path`` refers to: where the package's root model file lives."""
        manifest = self.package / "Manifest.json"
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            root = data["itemInfoEntries"][data["rootModelIdentifier"]]["path"]
            return (self.package / "Data" / root).parent
        except (OSError, KeyError, ValueError):
            return self.package / "Data" / "com.apple.CoreML"


def _tensor_types(value_type: Any) -> Iterator[Any]:
    """Every tensor type inside a MIL ValueType (lists, tuples, dicts, states included)."""
    kind = value_type.WhichOneof("type")
    if kind == "tensorType":
        yield value_type.tensorType
    elif kind == "listType":
        yield from _tensor_types(value_type.listType.type)
    elif kind == "tupleType":
        for t in value_type.tupleType.types:
            yield from _tensor_types(t)
    elif kind == "dictionaryType":
        yield from _tensor_types(value_type.dictionaryType.keyType)
        yield from _tensor_types(value_type.dictionaryType.valueType)
    elif kind == "stateType":
        yield from _tensor_types(value_type.stateType.wrappedType)


def _tensor_ranks(value_type: Any) -> Iterator[int]:
    """Ranks of every tensor type inside a MIL ValueType."""
    return (int(tensor.rank) for tensor in _tensor_types(value_type))


def _shape_of(value_type: Any) -> tuple[int | None, ...] | None:
    if value_type is None or value_type.WhichOneof("type") != "tensorType":
        return None
    dims = []
    for d in value_type.tensorType.dimensions:
        dims.append(int(d.constant.size) if d.WhichOneof("dimension") == "constant" else None)
    return tuple(dims)


def _elements(value_type: Any) -> int:
    shape = _shape_of(value_type)
    if shape is None:
        return 0
    sizes = [d for d in shape if d is not None]
    return int(math.prod(sizes)) if len(sizes) == len(shape) else 0


def _mil_dtype_name(code: int) -> str:
    from coremltools.proto import MIL_pb2

    try:
        return MIL_pb2.DataType.Name(code)
    except ValueError:
        return str(code)


def _decode_immediate(tensor: Any, dtype_name: str) -> np.ndarray | None:
    kind = tensor.WhichOneof("value")
    if kind == "floats":
        return np.asarray(tensor.floats.values, dtype=np.float32)
    if kind == "doubles":
        return np.asarray(tensor.doubles.values, dtype=np.float64)
    if kind == "ints":
        return np.asarray(tensor.ints.values, dtype=np.int64)
    if kind == "longInts":
        return np.asarray(tensor.longInts.values, dtype=np.int64)
    if kind == "bools":
        return np.asarray(tensor.bools.values, dtype=bool)
    if kind == "bytes":
        np_dtype = {
            "FLOAT16": np.float16,
            "INT8": np.int8,
            "UINT8": np.uint8,
            "INT16": np.int16,
            "UINT16": np.uint16,
            "BFLOAT16": None,
        }.get(dtype_name)
        if np_dtype is None:
            return None
        return np.frombuffer(tensor.bytes.values, dtype=np_dtype)
    return None


def _listing(items: Iterable[str], limit: int = 6) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items)} in all)" if len(items) > limit else "")


def _op_label(op: Any) -> str:
    name = op.outputs[0].name if op.outputs else "?"
    return f"{op.type} '{name}'"


# ------------------------------------------------------------------------------------- the checks


def _check_interface(spec: Any, module: str, dims: Dims) -> None:
    from coremltools.proto import FeatureTypes_pb2

    declared = ALL_MODULE_SPECS[module]
    problems: list[str] = []
    for side, features, tensors in (
        ("input", spec.description.input, declared.inputs),
        ("output", spec.description.output, declared.outputs),
    ):
        got_names = [f.name for f in features]
        want_names = [t.name for t in tensors]
        if got_names != want_names:
            problems.append(f"{side}s are {got_names}, declared {want_names}")
            continue
        for feature, tensor in zip(features, tensors, strict=False):
            if feature.type.WhichOneof("Type") != "multiArrayType":
                problems.append(f"{side} {feature.name} is a {feature.type.WhichOneof('Type')}, not a multi-array")
                continue
            array = feature.type.multiArrayType
            shape = tuple(int(s) for s in array.shape)
            want = tensor.resolve(dims)
            if shape != want:
                problems.append(f"{side} {feature.name} has shape {shape}, declared {want}")
            if array.WhichOneof("ShapeFlexibility") is not None:
                problems.append(f"{side} {feature.name} has a flexible shape; packages are fixed-size")
            dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
            if dtype != _SPEC_DTYPES.get(tensor.dtype, tensor.dtype.upper()):
                problems.append(f"{side} {feature.name} is {dtype}, declared {tensor.dtype}")
    if problems:
        raise InterfaceMismatchError(
            module,
            "interface differs from core.spec: " + "; ".join(problems),
            "the torch module and core.spec disagree — fix the module, not the package",
        )


def _check_ranks(program: _Program, module: str, limits: CheckLimits) -> None:
    offenders = [
        f"{name} (rank {rank})"
        for name, value_type in program._all_types()
        for rank in _tensor_ranks(value_type)
        if rank > limits.max_rank
    ]
    if offenders:
        raise RankLimitError(
            module,
            f"tensor rank above Core ML's limit of {limits.max_rank}: {_listing(offenders)}",
            "flatten the extra axes in the torch module (e.g. drop the object axis, flatten memory to rank 3)",
        )


def _check_forbidden(program: _Program, module: str, limits: CheckLimits) -> None:
    offenders: list[str] = []
    for op in program.operations():
        if op.type in limits.forbidden_ops:
            offenders.append(_op_label(op))
        elif op.type in limits.scatter_ops:
            indices = program.input_binding(op, "indices")
            if not program.is_constant(indices):
                offenders.append(_op_label(op) + " at computed indices")
    if offenders:
        raise ForbiddenOpError(
            module,
            f"data-dependent operations in the program: {_listing(offenders)}",
            "rewrite them with static shapes (top-k values + threshold compare instead of scatter, "
            "masks instead of nonzero/gather_nd, no Python control flow on tensor values)",
        )


def _check_dynamic(program: _Program, module: str) -> None:
    offenders = []
    for name, value_type in program._all_types():
        for tensor in _tensor_types(value_type):
            if any(d.WhichOneof("dimension") != "constant" for d in tensor.dimensions):
                offenders.append(name)
                break
    if offenders:
        raise DynamicShapeError(
            module,
            f"tensors whose size is only known at run time: {_listing(offenders)}",
            "every shape must follow from the package size; remove data-dependent shapes",
        )


def _check_singleton_slices(program: _Program, module: str) -> None:
    offenders = []
    for op in program.operations():
        if op.type not in ("slice_by_index", "slice_by_size"):
            continue
        shape = _shape_of(program.types.get(_binding_name(program.input_binding(op, "x"))))
        if not shape:
            continue
        begin = program.value_of(program.input_binding(op, "begin"))
        if begin is None:
            continue
        begin = np.asarray(begin).reshape(-1)
        if op.type == "slice_by_index":
            end = program.value_of(program.input_binding(op, "end"))
            end = np.asarray(end).reshape(-1) if end is not None else None
            begin_mask = _mask_of(program, op, "begin_mask", len(shape))
            end_mask = _mask_of(program, op, "end_mask", len(shape))
            squeeze = _mask_of(program, op, "squeeze_mask", len(shape))
        else:
            size = program.value_of(program.input_binding(op, "size"))
            size = np.asarray(size).reshape(-1) if size is not None else None
            end, begin_mask, end_mask = None, [False] * len(shape), [False] * len(shape)
            squeeze = [False] * len(shape)
        for axis, extent in enumerate(shape):
            if extent != 1 or axis >= len(begin):
                continue
            identity = (begin_mask[axis] or int(begin[axis]) == 0) and not squeeze[axis]
            if op.type == "slice_by_index":
                identity = identity and (end_mask[axis] or (end is not None and int(end[axis]) == 1))
            else:
                identity = identity and size is not None and int(size[axis]) in (1, -1)
            if not identity:
                offenders.append(f"{_op_label(op)} on axis {axis} of {shape}")
                break
    if offenders:
        raise SingletonSliceError(
            module,
            f"slices along size-1 axes: {_listing(offenders)}",
            "squeeze/reshape instead of indexing a singleton axis (x[:, 0] on a size-1 axis crashes "
            "Metal Performance Shaders on iOS GPUs)",
        )


def _binding_name(binding: Any) -> str:
    if binding is None or binding.WhichOneof("binding") != "name":
        return ""
    return binding.name


def _mask_of(program: _Program, op: Any, param: str, rank: int) -> list[bool]:
    value = program.value_of(program.input_binding(op, param))
    if value is None:
        return [False] * rank
    flat = [bool(v) for v in np.asarray(value).reshape(-1)]
    return (flat + [False] * rank)[:rank]


def _is_weight(program: _Program, name: str) -> bool:
    uses = program.consumers.get(name, [])
    if not uses:
        return False
    return all(use in _WEIGHT_ROLES or use[0].startswith("constexpr_") for use in uses)


def _check_constants(program: _Program, module: str, limits: CheckLimits) -> int:
    """Reject giant or folded constants; return the size of the largest constant."""
    giant, zeros, uniform = [], [], []
    largest = 0
    for op in program.operations():
        if op.type != "const" or not op.outputs:
            continue
        out = op.outputs[0]
        count = _elements(out.type)
        largest = max(largest, count)
        if count < limits.zeros_elements or _is_weight(program, out.name):
            continue
        if count > limits.giant_elements:
            giant.append(f"{out.name} ({count:,} elements)")
            continue
        value = program.const_value(op)
        if value is None or value.dtype.kind not in "fiub":
            continue
        if not np.any(value):
            zeros.append(f"{out.name} ({count:,} zeros)")
        elif count >= limits.uniform_elements and np.all(value == value.reshape(-1)[0]):
            uniform.append(f"{out.name} ({count:,} × {value.reshape(-1)[0]!r})")
    if giant:
        raise ConstantTensorError(
            module,
            f"constants above {limits.giant_elements:,} elements that are not layer weights: {_listing(giant)}",
            "an intermediate tensor was folded at trace time; compute it from the inputs instead",
        )
    if zeros:
        raise ConstantTensorError(
            module,
            f"folded all-zeros constant tensors: {_listing(zeros)}",
            "a zeros tensor was baked into the program (e.g. torch.zeros_like feeding a scatter or "
            "an add); remove the operation or build the value from the inputs",
        )
    if uniform:
        raise ConstantTensorError(
            module,
            f"folded uniform constant tensors: {_listing(uniform)}",
            "use a scalar that broadcasts instead of a full-size filled tensor",
        )
    return largest


def _check_precision(program: _Program, module: str, precision: str, limits: CheckLimits) -> tuple[str, int]:
    """Weights must be stored at the requested precision; return (weight dtype, weight elements)."""
    seen: Counter[str] = Counter()
    wrong: list[str] = []
    want = "FLOAT16" if precision == "fp16" else "FLOAT32"
    for op in program.operations():
        if op.type != "const" or not op.outputs:
            continue
        out = op.outputs[0]
        if out.type.WhichOneof("type") != "tensorType":
            continue
        dtype = _mil_dtype_name(out.type.tensorType.dataType)
        if dtype not in ("FLOAT16", "FLOAT32", "BFLOAT16", "DOUBLE"):
            continue
        count = _elements(out.type)
        if count < limits.weight_elements:
            continue
        seen[dtype] += count
        if dtype != want:
            wrong.append(f"{out.name} ({dtype}, {count:,} elements)")
    if wrong:
        raise PrecisionError(
            module,
            f"{precision} export stores weights as another type: {_listing(wrong)}",
            "convert with compute_precision FLOAT16 for fp16 and FLOAT32 for fp32",
        )
    total = sum(seen.values())
    if not seen:
        return "none", 0
    if len(seen) == 1:
        return {"FLOAT16": "float16", "FLOAT32": "float32"}.get(next(iter(seen)), next(iter(seen)).lower()), total
    return "mixed", total


__all__ = [
    "CheckLimits",
    "ConstantTensorError",
    "CoreMLCheckError",
    "CoreMLConversionError",
    "CoreMLExportError",
    "DEFAULT_LIMITS",
    "DynamicShapeError",
    "ForbiddenOpError",
    "InterfaceMismatchError",
    "PackageReport",
    "PrecisionError",
    "RankLimitError",
    "SingletonSliceError",
    "check_package",
    "directory_size",
]
