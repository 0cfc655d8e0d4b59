"""int8 variants made with ONNX Runtime's own quantization tools.

Two flavours, matched to what the graph is made of:

* ``int8-dynamic`` (``quantize_dynamic``): MatMul weights stored as int8, activations
  quantized on the fly per batch. No calibration data; suits the MLPs.
* ``int8-static`` (``quantize_static``, QDQ format, per-channel weights): activation
  ranges calibrated (MinMax) on training-distribution inputs, so convolutions run
  on int8 kernels end to end; the output softmax stays FP32. Calibration never sees
  the held-out split.

Both keep the task's ``input``/``probabilities`` tensors, so the signature is the task's.

The ``imagenet`` task's int8 variants (:func:`quantize_variant` with ``fp32_nodes``)
also keep their in-graph preprocessing (cast, transpose, resize, normalisation) in
FP32 and calibrate in small batches (a batch of 224-260 px photos through the
calibration graph costs hundreds of MB).
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

    def __init__(self, x: np.ndarray, batch: int = CALIBRATION_BATCH):
        self._batches = iter([{INPUT_NAME: x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _quantize(source: Path, target: Path, method: str, calibration: np.ndarray,
              fp32_nodes: tuple[str, ...] | None = None, batch: int = CALIBRATION_BATCH) -> None:
    if method == "int8-static" and fp32_nodes is not None:
        # Big CNNs: calibration in small batches (the MinMax calibrator keeps only each
        # tensor's per-batch min and max), the listed nodes FP32.
        softmax = [n.name for n in onnx.load(str(source)).graph.node if n.op_type == "Softmax"]
        quantize_static(source, target, _ArrayReader(np.ascontiguousarray(calibration), batch),
                        quant_format=QuantFormat.QDQ, per_channel=True, nodes_to_exclude=[*fp32_nodes, *softmax],
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    elif method == "int8-dynamic":
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
                     metadata: dict[str, str], fp32_nodes: tuple[str, ...] | None = None,
                     batch: int = CALIBRATION_BATCH) -> None:
    """Quantize the FP32 model at ``source`` into ``target`` with ``method``.

    ``fp32_nodes`` (static only): nodes kept in FP32 besides the softmax, with calibration
    in batches of ``batch`` (all of ``calibration`` is used); None keeps the original
    recipe of the small tasks (their files stay byte-identical).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    # The quantizer logs a "consider pre-processing" hint on the root logger for every
    # model. That step (symbolic shape inference + fusions) is optional and these
    # exported graphs quantize as they are, so keep the build log readable.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        _quantize(source, target, method, calibration, fp32_nodes, batch)
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
