"""Held-out samples shipped with the zoo (``models/samples/<task>.npz``).

Each file holds ``inputs`` (the task's input datatype and shape: FP32, or uint8 for
the ``imagenet`` photos) and ``labels`` (int64 class indices): what accuracy is
measured on, and what a client can send through the network to measure the accuracy
it actually got.

Written byte-for-byte reproducibly (``numpy.savez`` stamps zip entries with the
current time; here they get a fixed one), so rebuilding the zoo changes no file.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
# The file format: the array names every reader and writer uses.
INPUTS_KEY = "inputs"
LABELS_KEY = "labels"


def _input_dtype(inputs: np.ndarray) -> np.dtype:
    """uint8 inputs (photos) stay uint8; everything else is stored as float32."""
    return np.dtype(np.uint8) if inputs.dtype == np.uint8 else np.dtype(np.float32)


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz of ``arrays`` (no pickles), byte-identical for identical arrays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def write_samples(path: Path, inputs: np.ndarray, labels: np.ndarray) -> None:
    write_arrays(path, {INPUTS_KEY: np.asarray(inputs, dtype=_input_dtype(inputs)),
                        LABELS_KEY: np.asarray(labels, dtype=np.int64)})


def read_samples(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels int64) from a samples file; inputs float32, or uint8 when stored so."""
    with np.load(path, allow_pickle=False) as data:
        inputs = data[INPUTS_KEY]
        return (inputs.astype(_input_dtype(inputs), copy=False),
                data[LABELS_KEY].astype(np.int64, copy=False))
