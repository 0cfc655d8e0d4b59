"""Held-out samples shipped with the zoo (``models/samples/<task>.npz``).

Each file holds ``inputs`` (FP32, the task's input shape) and ``labels`` (int64 class
indices): what accuracy is measured on, and what a client can send through the
network to measure the accuracy it actually got.

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


def write_samples(path: Path, inputs: np.ndarray, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in ((INPUTS_KEY, np.ascontiguousarray(inputs, dtype=np.float32)),
                            (LABELS_KEY, np.ascontiguousarray(labels, dtype=np.int64))):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def read_samples(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(inputs float32, labels int64) from a samples file."""
    with np.load(path, allow_pickle=False) as data:
        return (data[INPUTS_KEY].astype(np.float32, copy=False),
                data[LABELS_KEY].astype(np.int64, copy=False))
