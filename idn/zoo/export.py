"""Torch module -> ONNX file with the task's shared signature.

Every variant exports with the same tensor names (``input`` -> ``probabilities``),
FP32, and a dynamic batch dimension, so a client or a node can swap variants of a
task without knowing which one answers. Uses torch's TorchScript-based exporter
(``dynamo=False``): it needs nothing beyond torch and writes one self-contained file.
"""

from __future__ import annotations

import io
from pathlib import Path

import onnx
import torch

from idn.zoo.specs import INPUT_NAME, OPSET, OUTPUT_NAME


def export_module(module: torch.nn.Module, features: int, path: Path, metadata: dict[str, str]) -> None:
    """Write ``module`` to ``path`` as ONNX ([batch, features] -> [batch, classes]).

    ``metadata`` lands in the model's metadata_props (variant, task, labels), so a
    file found on its own still says what it is.
    """
    module.eval()
    dummy = torch.zeros(1, features, dtype=torch.float32)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            module, (dummy,), buf, dynamo=False, opset_version=OPSET, do_constant_folding=True,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    model = onnx.load_from_string(buf.getvalue())
    model.doc_string = metadata.get("description", "")
    for k, v in sorted(metadata.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = f"idn.{k}", v
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
