"""Deterministic perturbations of small grey-scale images (the digits task).

The bundled digits are clean and centred: a linear model already scores ~96% on them,
which leaves no room for a bigger model to matter. Held-out images are therefore
perturbed (small rotation/scale/shift, blur, contrast loss, noise, an occluding
patch), the kind of degradation a real camera pipeline adds. Training uses the same
distribution of perturbations, drawn from a different random stream, so the test is
fair: unseen images, same kind of noise.

Pure functions of (images, numpy Generator): same seed, same output, on any machine.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _affine(image: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """Rotate/scale about the centre, then shift; bilinear, zero outside the frame."""
    theta = np.deg2rad(angle_deg)
    c, s = np.cos(theta), np.sin(theta)
    # affine_transform maps output coords to input coords: invert rotation and scale.
    matrix = np.array([[c, s], [-s, c]]) / scale
    centre = (np.array(image.shape, dtype=float) - 1.0) / 2.0
    offset = centre - matrix @ (centre + np.asarray(shift))
    return ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="constant", cval=0.0)


def perturb_images(images: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Return perturbed copies of ``images`` ([n, h, w] in [0, 1]); ``strength`` scales every knob.

    Each image draws its own parameters from ``rng`` in a fixed order, so the result
    depends only on the generator's seed and the input.
    """
    n, h, w = images.shape
    out = np.empty_like(images, dtype=np.float32)
    for i in range(n):
        angle = rng.uniform(-15.0, 15.0) * strength
        scale = 1.0 + rng.uniform(-0.12, 0.12) * strength
        shift = (rng.uniform(-1.0, 1.0) * strength, rng.uniform(-1.0, 1.0) * strength)
        sigma = rng.uniform(0.0, 0.8) * strength
        contrast = 1.0 - rng.uniform(0.0, 0.4) * strength
        noise_sd = rng.uniform(0.05, 0.25) * strength
        occlude = rng.uniform() < 0.35 * strength
        oy, ox = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        noise = rng.normal(0.0, 1.0, size=(h, w))

        img = _affine(images[i].astype(np.float64), angle, scale, shift)
        if sigma > 0.05:
            img = ndimage.gaussian_filter(img, sigma=sigma, mode="constant")
        img = img * contrast + noise * noise_sd
        if occlude:
            img[oy:oy + 3, ox:ox + 3] = 0.0
        out[i] = np.clip(img, 0.0, 1.0)
    return out
