"""Accuracy of a variant on held-out samples, measured with ONNX Runtime.

Always single-threaded and in fixed batches, so the same file on the same machine
gives the same predictions bit for bit; the catalog stores the count of correct
answers next to top-1 so a re-measurement can be compared exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idn.zoo.sessions import make_session

EVAL_BATCH = 128


@dataclass(frozen=True)
class Accuracy:
    correct: int
    samples: int

    @property
    def top1(self) -> float:
        return self.correct / self.samples if self.samples else 0.0


def top1_correct(probabilities: np.ndarray, labels: np.ndarray) -> int:
    """How many rows have their arg-max on the label (ties go to the lower index, as numpy's argmax)."""
    return int(np.count_nonzero(np.argmax(probabilities, axis=1) == labels))


def predict(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Class probabilities for ``inputs`` from the ONNX file at ``path``."""
    session = make_session(path, "single_thread")
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: inputs[i:i + EVAL_BATCH]})[0] for i in range(0, len(inputs), EVAL_BATCH)]
    return np.concatenate(out, axis=0)


def measure_accuracy(path: Path, inputs: np.ndarray, labels: np.ndarray) -> Accuracy:
    return Accuracy(top1_correct(predict(path, inputs), labels), len(labels))
