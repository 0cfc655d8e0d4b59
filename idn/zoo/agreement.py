"""How often an int8 variant names the same class as its FP32 parent, on photos calibration never saw.

The ``imagenet`` task's int8 variants cannot be measured against ImageNet's labels (no
validation set may be downloaded); their top-1 is estimated as the parent's published
top-1 x this agreement. The held-out set is the task's check photos
(``models/samples/imagenet.npz``) and ``AGREEMENT_VIEWS`` augmented views of each
(:func:`idn.zoo.photos.views`, numpy and a fixed seed), so ``idn models verify
--agreement`` re-measures it with nothing but numpy and ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idn.zoo.photos import views
from idn.zoo.seeds import rng_for
from idn.zoo.sessions import make_session

AGREEMENT_VIEWS = 40   # augmented views per check photo, besides the photo itself
RUN_BATCH = 16


def agreement_inputs(check_photos: np.ndarray, per_photo: int = AGREEMENT_VIEWS) -> np.ndarray:
    """The check photos, then ``per_photo`` augmented views of each (seeded: always the same)."""
    return np.concatenate([check_photos, views(check_photos, per_photo, rng_for("imagenet", "agreement"))])


def run(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Probabilities from the ONNX file at ``path`` (ONNX Runtime, one thread, fixed batches)."""
    session = make_session(path, "single_thread")
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: inputs[i:i + RUN_BATCH]})[0]
                           for i in range(0, len(inputs), RUN_BATCH)])


@dataclass(frozen=True)
class Agreement:
    same: int       # inputs on which both name the same class
    inputs: int

    @property
    def rate(self) -> float:
        return self.same / self.inputs if self.inputs else 0.0


def agreement(parent: Path, child: Path, check_photos: np.ndarray) -> Agreement:
    """Top-1 agreement of ``child`` with ``parent`` on the held-out photos and views."""
    x = agreement_inputs(check_photos)
    same = np.argmax(run(parent, x), axis=1) == np.argmax(run(child, x), axis=1)
    return Agreement(int(np.count_nonzero(same)), len(x))
