"""Synthetic 1-D signals for the ``waveforms`` task, generated from a seed.

Eight classes of waveform, each drawn with random frequency, phase, amplitude, DC
offset and additive Gaussian noise. Phase and frequency jitter make the raw samples
useless to a linear model (a sine and a triangle of random phase overlap almost
perfectly sample by sample); translation-invariant models (1-D CNNs) recover the
shape. That gap is what makes the task a useful accuracy/cost trade-off.

Pure numpy: same seed, same signals, on any machine.
"""

from __future__ import annotations

import numpy as np

SIGNAL_LENGTH = 128
CLASSES = ("sine", "square", "triangle", "sawtooth", "chirp", "burst", "am", "damped")


def _shape(kind: int, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One clean waveform of class ``kind`` on times ``t`` in [0, 1); parameters from ``rng``."""
    cycles = rng.uniform(2.0, 10.0)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    arg = 2.0 * np.pi * cycles * t + phase
    name = CLASSES[kind]
    if name == "sine":
        return np.sin(arg)
    if name == "square":
        return np.sign(np.sin(arg))
    if name == "triangle":
        return (2.0 / np.pi) * np.arcsin(np.sin(arg))
    if name == "sawtooth":
        frac = (cycles * t + phase / (2.0 * np.pi)) % 1.0
        return 2.0 * frac - 1.0 if rng.uniform() < 0.5 else 1.0 - 2.0 * frac
    if name == "chirp":
        f0, f1 = rng.uniform(1.0, 4.0), rng.uniform(8.0, 16.0)
        if rng.uniform() < 0.5:
            f0, f1 = f1, f0
        return np.sin(2.0 * np.pi * (f0 * t + 0.5 * (f1 - f0) * t * t) + phase)
    if name == "burst":
        centre, width = rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.15)
        return np.exp(-0.5 * ((t - centre) / width) ** 2) * np.sin(2.0 * np.pi * rng.uniform(6.0, 16.0) * t + phase)
    if name == "am":
        depth, fm = rng.uniform(0.5, 1.0), rng.uniform(1.0, 3.0)
        envelope = (1.0 + depth * np.sin(2.0 * np.pi * fm * t + rng.uniform(0.0, 2.0 * np.pi))) / (1.0 + depth)
        return envelope * np.sin(2.0 * np.pi * rng.uniform(8.0, 16.0) * t + phase)
    if name == "damped":
        onset, tau = rng.uniform(0.0, 0.4), rng.uniform(0.08, 0.25)
        after = np.clip(t - onset, 0.0, None)
        return np.where(t >= onset, np.exp(-after / tau) * np.sin(2.0 * np.pi * cycles * after), 0.0)
    raise ValueError(kind)


def make_waveforms(n: int, rng: np.random.Generator, noise: tuple[float, float] = (0.1, 0.6)
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled signals ([n, SIGNAL_LENGTH] float32, [n] int64), classes balanced.

    Labels cycle through the classes and are then shuffled, so every class has n/8
    (+-1) samples. ``noise`` bounds the per-signal noise standard deviation relative
    to its amplitude.
    """
    t = np.arange(SIGNAL_LENGTH, dtype=np.float64) / SIGNAL_LENGTH
    labels = rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    x = np.empty((n, SIGNAL_LENGTH), dtype=np.float32)
    for i, kind in enumerate(labels):
        amplitude = rng.uniform(0.5, 1.5)
        offset = rng.uniform(-0.3, 0.3)
        sd = rng.uniform(*noise) * amplitude
        clean = _shape(int(kind), t, rng)
        x[i] = amplitude * clean + offset + rng.normal(0.0, sd, size=SIGNAL_LENGTH)
    return x, labels
