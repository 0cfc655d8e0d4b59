"""The cost of moving models: what a new placement costs compared with the running plan.

Keeping a variant where the running plan already has it is free. Placing it anywhere
else costs, once, the time to bring it there and load it::

    move_ms(n, v) = load_ms(v, hw(n))                            file read + session creation
                  + bytes(v) x 8 / bandwidth, per link crossed   from the nearest repository

``load_ms`` is the catalog's measured load time for the node's hardware class (``idn
models profile``); a variant never timed on that class is scaled by size from the closest
variant that was (``load-scaled:<ref>``), and a class with no timing at all counts 0 and
says so. The repository is where variants come from (DESIGN.md); a link without
bandwidth moves bytes for free, as in :mod:`idn.latency`.

The ILP charges ``weight x move_ms`` per new placement in its objective, whose unit is ms
of request latency per second of traffic: ``weight`` (req/s) says how many requests'
worth of latency one ms of moving is worth. ``weight = 0`` ignores moves; a larger weight
makes the solver keep what is placed unless moving buys at least that much. The
controller amortises a move over its re-planning interval (weight = horizon in s x
traffic share the move disturbs, see :mod:`idn.controller`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from idn.catalog import Catalog, Variant
from idn.latency import LatencyModel


@dataclass(frozen=True)
class Moves:
    """The running plan's placements and how much a new one costs in the objective."""
    current: Mapping[str, frozenset[str]] = field(default_factory=dict)  # node -> variants placed now
    weight: float = 1.0  # objective units (ms x req/s) per ms of move time

    @classmethod
    def from_placements(cls, placements: Mapping[str, Iterable[str]], weight: float = 1.0) -> Moves:
        return cls({n: frozenset(vs) for n, vs in placements.items()}, weight)

    def placed(self, node: str, variant: str) -> bool:
        return variant in self.current.get(node, ())


@dataclass(frozen=True)
class MoveTime:
    load_ms: float
    transfer_ms: float
    source: str  # "profiled", "load-scaled:<ref>" or "none-profiled"

    @property
    def ms(self) -> float:
        return self.load_ms + self.transfer_ms


def load_time_ms(variant: Variant, hardware_class: str | None, catalog: Catalog) -> tuple[float, str]:
    """The variant's load time on a class, or its size-scaled estimate from the closest timed variant."""
    if hardware_class is None:
        return 0.0, "none-profiled"
    own = variant.load_ms(hardware_class)
    if own is not None:
        return own, "profiled"
    refs = [(u, ms) for u in catalog.variants.values() if (ms := u.load_ms(hardware_class)) is not None]
    if not refs:
        return 0.0, "none-profiled"
    ref, ms = min(refs, key=lambda r: (r[0].task != variant.task, abs(r[0].bytes - variant.bytes), r[0].name))
    return ms * variant.bytes / ref.bytes, f"load-scaled:{ref.name}"


def move_time(latency: LatencyModel, node: str, variant: Variant) -> MoveTime:
    """Time to bring ``variant`` to ``node`` from its nearest repository and load it there."""
    topo = latency.topology
    load, source = load_time_ms(variant, topo.node(node).hardware_class, latency.catalog)
    repo = latency.path(node)[-1].node
    transfer = 0.0 if repo == node else variant.bytes * latency.hop(repo, node).ms_per_byte
    return MoveTime(load, transfer, source)


def move_cost(latency: LatencyModel, moves: Moves, placements: Mapping[str, Iterable[str]]) -> tuple[float, float]:
    """(weighted cost, total move ms) of going from ``moves.current`` to ``placements``."""
    total_ms = 0.0
    for node, variants in placements.items():
        for v in variants:
            if not moves.placed(node, v):
                total_ms += move_time(latency, node, latency.catalog.variant(v)).ms
    return moves.weight * total_ms, total_ms
