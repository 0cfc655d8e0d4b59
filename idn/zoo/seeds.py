"""The zoo's one seed and the random streams derived from it (numpy only: verify uses it too)."""

from __future__ import annotations

import numpy as np

SEED = 20240501


def rng_for(*names: str) -> np.random.Generator:
    """A generator seeded by SEED and a purpose (e.g. ``("digits", "heldout")``): streams never overlap."""
    key = [SEED] + [int.from_bytes(n.encode(), "little") % (2**32) for n in names]
    return np.random.default_rng(key)
