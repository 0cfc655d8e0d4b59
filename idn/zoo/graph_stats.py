"""Cost of one inference read off an ONNX graph: FLOPs per sample.

FLOPs = 2 x multiply-accumulates of the MAC-bound operators (Conv, Gemm, MatMul and
their int8 forms ConvInteger, MatMulInteger, QLinearConv, QLinearMatMul), with the
batch dimension fixed to 1 and shapes from ONNX shape inference. Element-wise
operators (ReLU, Add, pooling, softmax, (de)quantization) are not counted: they are
O(activations), negligible next to the MACs here, and counting conventions for them
differ between tools. An int8 variant does the same MACs as its FP32 source, in int8.
"""

from __future__ import annotations

from math import prod
from pathlib import Path

import onnx
from onnx import shape_inference

# op type -> (index of the activation input, index of the weight input)
_CONV = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_MATMUL = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}


def _with_batch_one(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for value in list(m.graph.input) + list(m.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    # data_prop: shapes computed in the graph (a Resize to Shape(x)[:2] + [240, 240]) propagate too
    return shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def macs_per_sample(model: onnx.ModelProto) -> int:
    """Multiply-accumulates for one sample (batch 1) of ``model``."""
    inferred = _with_batch_one(model)
    shapes = _shapes(inferred)
    total = 0
    for node in inferred.graph.node:
        if node.op_type in _CONV:
            _, w = _CONV[node.op_type]
            weight, out = shapes[node.input[w]], shapes[node.output[0]]
            total += prod(out) * prod(weight[1:])          # each output: C_in/groups * kernel MACs
        elif node.op_type in _MATMUL:
            a, _ = _MATMUL[node.op_type]
            total += prod(shapes[node.output[0]]) * shapes[node.input[a]][-1]
        elif node.op_type == "Gemm":
            trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
            a_shape = shapes[node.input[0]]
            total += prod(shapes[node.output[0]]) * (a_shape[0] if trans_a else a_shape[1])
    return total


def flops_per_sample(path: Path) -> int:
    """2 x MACs per sample of the ONNX file at ``path``."""
    return 2 * macs_per_sample(onnx.load(str(path)))
