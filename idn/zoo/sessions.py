"""ONNX Runtime sessions as the zoo measures them, and the signature a session exposes.

The two threading modes are the catalog's (``idn.catalog.THREADING_MODES``):
``single_thread`` pins one intra-op and one inter-op thread (what one core of a busy
node gives a request, and bit-for-bit reproducible); ``default_threads`` leaves ORT's
defaults (one intra-op thread per physical core).
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from idn.catalog import TensorSpec

_ORT_TYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
              "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int8)": "INT8",
              "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL", "tensor(string)": "BYTES"}


def make_session(path: Path | str | bytes, threading: str = "single_thread") -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threading == "single_thread":
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    elif threading != "default_threads":
        raise ValueError(f"unknown threading mode {threading!r}")
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def _spec(arg: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, _ORT_TYPES.get(arg.type, arg.type), shape)


def session_signature(session: ort.InferenceSession) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) as catalog TensorSpecs; symbolic dimensions read as -1 (dynamic)."""
    return (tuple(_spec(a) for a in session.get_inputs()), tuple(_spec(a) for a in session.get_outputs()))
