"""Small ONNX models the tests build themselves with onnx.helper (no files in the repo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]

# v2 datatype -> ONNX element type, for every type the node must carry.
ONNX_TYPES = {
    "BOOL": TensorProto.BOOL, "INT8": TensorProto.INT8, "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32, "INT64": TensorProto.INT64, "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16, "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64,
    "FP16": TensorProto.FLOAT16, "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def linear_classifier(path: Path, features: int = 4, classes: int = 3, seed: int = 0) -> Path:
    """input [N, features] FP32 -> logits [N, classes] and label [N] INT64 (argmax)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((features, classes)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "B")
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    g = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", features])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
                           helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])], [w, b])
    return _save(helper.make_model(g, opset_imports=OPSET), path)


def identity(path: Path, datatype: str, shape: list) -> Path:
    """Single-input identity `x` -> `y` of one datatype and shape (None/str = dynamic)."""
    et = ONNX_TYPES[datatype]
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                          [helper.make_tensor_value_info("x", et, shape)],
                          [helper.make_tensor_value_info("y", et, shape)])
    return _save(helper.make_model(g, opset_imports=OPSET), path)


def failing_model(path: Path) -> Path:
    """Reshape to a shape given at run time: wrong element counts fail inside ORT."""
    g = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "reshape",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"]),
                           helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])])
    return _save(helper.make_model(g, opset_imports=OPSET), path)


def slow_model(path: Path, size: int = 384, repeats: int = 12) -> Path:
    """A chain of MatMuls on [N, size]: milliseconds per run, for concurrency tests."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array((rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32), "W")
    nodes, prev = [], "x"
    for i in range(repeats):
        nodes.append(helper.make_node("MatMul", [prev, "W"], [f"h{i}"]))
        prev = f"h{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    g = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", size])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", size])], [w])
    return _save(helper.make_model(g, opset_imports=OPSET), path)
