"""float32 -> float16 conversion of an exported module, keeping float32 graph inputs and outputs.

Why our own pass rather than onnxconverter-common: its ``keep_io_types`` mode mistypes graph
outputs that are also consumed inside the graph (the encoder's ``f1``) and leaves ``Cast(to=FLOAT)``
nodes (bool masks of the object transformer) float32 while retyping their outputs, so ORT refuses
the result. The graphs the torch exporters emit need only a handful of rules, applied here:

* float32 initializers and ``Constant`` tensors become float16 (clipped to ±65504, the fp16
  range; -3e4, the masked-similarity constant, is inside it; non-zero magnitudes below the
  smallest subnormal are kept at that subnormal instead of flushing to 0 so an ``x + eps`` stays
  safe);
* ``Cast(to=FLOAT)`` becomes ``Cast(to=FLOAT16)``, ``ConstantOfShape`` float values become fp16;
* inputs that ONNX requires to be float32 whatever the data type (Resize/Upsample scales) get a
  cast back to float32;
* each float32 graph input is cast to fp16 on entry and each output cast back to float32 on exit,
  so the I/O contract (core.spec: float32 everywhere) is unchanged;
* intermediate ``value_info`` is dropped: it would still say float32, and ORT re-infers types.

ORT's CPU provider runs fp16 nodes that lack an fp16 kernel through its own inserted casts, so
the result runs everywhere; GPU providers run it natively in half precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FP16_MAX = 65504.0
FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)

#: (op_type, input index) slots that must stay float32 in every ONNX opset.
FLOAT32_SLOTS = {("Resize", 2), ("Upsample", 1)}


def to_fp16_array(values: np.ndarray) -> np.ndarray:
    out = np.clip(values.astype(np.float32), -FP16_MAX, FP16_MAX)
    tiny = (out != 0) & (np.abs(out) < FP16_TINY)
    out = np.where(tiny, np.sign(out) * FP16_TINY, out)
    return out.astype(np.float16)


def _tensor_to_fp16(tensor: Any) -> None:
    """Convert a float32 TensorProto to float16 in place (name and dims kept)."""
    from onnx import TensorProto, numpy_helper

    if tensor.data_type != TensorProto.FLOAT:
        return
    converted = numpy_helper.from_array(to_fp16_array(numpy_helper.to_array(tensor)), tensor.name)
    tensor.CopyFrom(converted)


def convert_to_fp16(model: Any) -> Any:
    """A float16 copy of ``model`` with float32 inputs and outputs (see the module docstring)."""
    from onnx import AttributeProto, TensorProto, helper, numpy_helper

    m = type(model)()
    m.CopyFrom(model)
    graph = m.graph
    if any(n.op_type in ("If", "Loop", "Scan") for n in graph.node):
        raise ValueError("graphs with subgraphs (If/Loop/Scan) are not supported by the fp16 pass")
    if {v.name for v in graph.input} & {v.name for v in graph.output}:
        raise ValueError("a graph input passed straight through as an output is not supported by the fp16 pass")

    for init in graph.initializer:
        _tensor_to_fp16(init)

    new_nodes: list[Any] = []
    for node in graph.node:
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
        if node.op_type == "Constant":
            for attr in list(node.attribute):
                if attr.name in ("value_float", "value_floats"):
                    values = np.array(attr.f if attr.name == "value_float" else list(attr.floats), np.float32)
                    node.attribute.remove(attr)
                    node.attribute.append(
                        helper.make_attribute("value", numpy_helper.from_array(to_fp16_array(values)))
                    )
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                _tensor_to_fp16(attr.t)
        for index, name in enumerate(node.input):
            if name and (node.op_type, index) in FLOAT32_SLOTS:
                cast_out = f"{name}__fp32_for_{node.name or node.op_type}_{index}"
                new_nodes.append(
                    helper.make_node("Cast", [name], [cast_out], to=TensorProto.FLOAT, name=f"{cast_out}_cast")
                )
                node.input[index] = cast_out
        new_nodes.append(node)

    # Boundary casts: float32 in, float16 inside, float32 out.
    head: list[Any] = []
    renamed_inputs: dict[str, str] = {}
    for value in graph.input:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            inner = f"{value.name}__fp16"
            renamed_inputs[value.name] = inner
            head.append(
                helper.make_node("Cast", [value.name], [inner], to=TensorProto.FLOAT16, name=f"{value.name}_to_fp16")
            )
    renamed_outputs: dict[str, str] = {}
    tail: list[Any] = []
    for value in graph.output:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            inner = f"{value.name}__fp16"
            renamed_outputs[value.name] = inner
            tail.append(
                helper.make_node("Cast", [inner], [value.name], to=TensorProto.FLOAT, name=f"{value.name}_to_fp32")
            )
    for node in new_nodes:
        for i, name in enumerate(node.input):
            if name in renamed_inputs:
                node.input[i] = renamed_inputs[name]
            elif name in renamed_outputs:
                node.input[i] = renamed_outputs[name]
        for i, name in enumerate(node.output):
            if name in renamed_outputs:
                node.output[i] = renamed_outputs[name]
    del graph.node[:]
    graph.node.extend(head + new_nodes + tail)
    del graph.value_info[:]
    return m
