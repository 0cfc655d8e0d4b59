"""int8 variants made with ONNX Runtime's own quantization tools.

Two flavours, matched to what the graph is made of:

* ``int8-dynamic`` (``quantize_dynamic``): MatMul weights stored as int8, activations
  quantized on the fly per batch. No calibration data; suits the MLPs.
* ``int8-static`` (``quantize_static``, QDQ format, per-channel weights): activation
  ranges calibrated (MinMax) on training-distribution inputs, so convolutions run
  on int8 kernels end to end; the output softmax stays FP32. Calibration never sees
  the held-out split.

Both keep the FP32 ``input``/``probabilities`` tensors, so the signature is the task's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from idn.zoo.specs import INPUT_NAME

CALIBRATION_SAMPLES = 512
CALIBRATION_BATCH = 64


class _ArrayReader(CalibrationDataReader):
    """Feeds calibration inputs in fixed-size batches, in order (deterministic ranges)."""

    def __init__(self, x: np.ndarray):
        self._batches = iter([{INPUT_NAME: x[i:i + CALIBRATION_BATCH]} for i in range(0, len(x), CALIBRATION_BATCH)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _quantize(source: Path, target: Path, method: str, calibration: np.ndarray) -> None:
    if method == "int8-dynamic":
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=False)
    elif method == "int8-static":
        # The final softmax stays FP32: quantized, the probabilities would come out in
        # steps of 1/255 and no longer sum to 1 (clients read them, not just the arg-max).
        softmax = [n.name for n in onnx.load(str(source)).graph.node if n.op_type == "Softmax"]
        quantize_static(source, target, _ArrayReader(np.ascontiguousarray(calibration[:CALIBRATION_SAMPLES])),
                        quant_format=QuantFormat.QDQ, per_channel=True, nodes_to_exclude=softmax,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    else:
        raise ValueError(f"unknown quantization {method!r}")


def quantize_variant(source: Path, target: Path, method: str, calibration: np.ndarray,
                     metadata: dict[str, str]) -> None:
    """Quantize the FP32 model at ``source`` into ``target`` with ``method``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # The quantizer logs a "consider pre-processing" hint on the root logger for every
    # model. That step (symbolic shape inference + fusions) is optional and these
    # exported graphs quantize as they are, so keep the build log readable.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        _quantize(source, target, method, calibration)
    finally:
        root.setLevel(level)
    # Restamp the metadata: the quantizer rewrites the model and does not keep all our props.
    model = onnx.load(str(target))
    del model.metadata_props[:]
    model.doc_string = metadata.get("description", "")
    for k, v in sorted(metadata.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = f"idn.{k}", v
    onnx.save(model, str(target))
