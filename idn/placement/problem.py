"""Problem building: topology + catalog + demand -> arrays of useful (class, node, variant) triples.

Pure (no I/O, no solver): the ILP, the baselines and the infeasibility explainer all read
the same arrays, so they optimise exactly the same numbers.

Units: time in ms, memory in MiB (``Node.mem_mb``; variant sizes are ``bytes / 2**20``),
compute load in cores (``rate [req/s] * t [ms] / 1000``), deployment cost in
``price x MiB``.

Per-request cost of serving class r by variant v at node n (the ILP objective term)::

    c[r,n,v] = 2 * delay(ingress_r, n) + t[v,n] + alpha * (1 - acc[v])

with t[v,n] the p50 compute time at n (``Topology.compute_ms``: profile of n's hardware
class x n's slowdown, FLOPs-scaled fallback). SLO feasibility uses the p95 compute time:
``2 * delay + t95[v,n] <= max_latency_ms`` and ``acc[v] >= min_accuracy``.

A triple (r, n, v) is created only when it can help:

* n is on r's path (ingress -> nearest repository);
* v implements r's task and fits n's memory on its own (and the budget on its own);
* v meets r's SLO at n;
* v is not *dominated* at n.

**Domination.** At node n, variant u dominates variant v (same task, u != v) when
``size[u] <= size[v]``, ``t[u,n] <= t[v,n]``, ``t95[u,n] <= t95[v,n]`` and
``acc[u] >= acc[v]`` (ties broken by name so that of two identical variants exactly one
survives). *Claim:* some optimal solution uses no dominated variant at n, so dropping
them keeps the optimum. *Proof:* take an optimal solution with x[n,v] = 1. Set
x[n,v] = 0, x[n,u] = 1 and move every share y[r,n,v] onto y[r,n,u]. Memory at n
changes by ``size[u] - size[v] <= 0`` (or by ``-size[v]`` if u was already placed), the
budget by ``price[n]`` times that, the compute load at n by
``sum_r rate_r y[r,n,v] (t[u,n] - t[v,n]) <= 0``; every class served by v still meets
its SLO with u (no slower at p95, no less accurate); each moved unit of share costs
``c[r,n,u] - c[r,n,v] = (t[u,n]-t[v,n]) + alpha (acc[v]-acc[u]) <= 0``. So the new
solution is feasible and no worse. Domination is a strict partial order once ties are
broken by name, so repeating the exchange terminates with no dominated variant placed
(each step removes one placement of a dominated variant and adds one of a dominating
variant, and chains end at a non-dominated one). Since slowdown scales every variant at
a node by the same factor, domination depends only on the node's hardware class and is
computed once per (hardware class, task). QED.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from idn.catalog import Catalog, Variant
from idn.demand import Demand, RequestClass
from idn.topology import Topology, base_compute_ms

MIB = float(1 << 20)


@dataclass(frozen=True)
class PlacementOptions:
    """The knobs of the model (not of the solver).

    alpha: ms charged per unit of inaccuracy (alpha=1000: one accuracy point = 10 ms).
    rho: utilisation cap per node (compute load <= rho * cores) so queues stay short.
    budget: cap on sum of price[n] * MiB placed at n (None: unbounded).
    """
    alpha: float = 1000.0
    rho: float = 0.8
    budget: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"alpha": self.alpha, "rho": self.rho, "budget": self.budget}


@dataclass
class Problem:
    """Dense arrays over nodes, variants, candidate placements (pairs) and useful triples.

    Triples are sorted by class; ``class_ptr[r]:class_ptr[r+1]`` slices class r's triples.
    """
    options: PlacementOptions
    classes: list[RequestClass]
    rate: np.ndarray
    node_ids: list[str]
    mem: np.ndarray        # MiB
    cap: np.ndarray        # rho * cores
    price: np.ndarray
    repository: np.ndarray  # bool per node
    variant_names: list[str]
    size: np.ndarray       # MiB
    acc: np.ndarray
    pair_node: np.ndarray  # candidate placement (n, v): index arrays
    pair_var: np.ndarray
    tri_class: np.ndarray
    tri_pair: np.ndarray
    tri_cost: np.ndarray    # ms per request (objective coefficient / rate)
    tri_latency: np.ndarray  # ms per request, 2*delay + t50
    tri_load: np.ndarray    # cores used if the whole class went there
    class_ptr: np.ndarray
    unservable: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def n_pairs(self) -> int:
        return len(self.pair_node)

    @property
    def n_triples(self) -> int:
        return len(self.tri_class)

    @property
    def pair_size(self) -> np.ndarray:
        return self.size[self.pair_var]

    @property
    def pair_cost(self) -> np.ndarray:
        """Deployment cost of each candidate placement (price x MiB)."""
        return self.price[self.pair_node] * self.size[self.pair_var]

    def objective_of(self, shares: np.ndarray) -> float:
        """ILP objective of a split (share per triple): sum_r rate_r sum c[r,n,v] y[r,n,v]."""
        return float(np.dot(self.rate[self.tri_class] * self.tri_cost, shares))

    def triples_of(self, r: int) -> range:
        return range(int(self.class_ptr[r]), int(self.class_ptr[r + 1]))


class _ComputeTable:
    """Base (slowdown-free) compute times per (hardware class, variant), cached; records fallbacks."""

    def __init__(self, topology: Topology, catalog: Catalog):
        self.topology, self.catalog = topology, catalog
        self.cache: dict[tuple[str | None, str], tuple[float, float]] = {}
        self.fallbacks: dict[tuple[str | None, str], str] = {}

    def base(self, hw: str | None, v: Variant, node_id: str) -> tuple[float, float]:
        key = (hw, v.name)
        if key not in self.cache:
            t50 = base_compute_ms(v, hw, self.catalog, "p50", self.topology.file, node_id)
            t95 = base_compute_ms(v, hw, self.catalog, "p95", self.topology.file, node_id)
            self.cache[key] = (t50.ms, max(t95.ms, t50.ms))
            if t50.source != "profiled":
                self.fallbacks[key] = t50.source
        return self.cache[key]


def non_dominated(variants: list[Variant], times: list[tuple[float, float]]) -> list[int]:
    """Indices of variants no other variant dominates (see the module docstring)."""
    keep = []
    for i, (v, (t50, t95)) in enumerate(zip(variants, times)):
        dominated = False
        for j, (u, (u50, u95)) in enumerate(zip(variants, times)):
            if i == j:
                continue
            if u.bytes <= v.bytes and u50 <= t50 and u95 <= t95 and u.accuracy >= v.accuracy:
                strictly = u.bytes < v.bytes or u50 < t50 or u95 < t95 or u.accuracy > v.accuracy
                if strictly or u.name < v.name:
                    dominated = True
                    break
        if not dominated:
            keep.append(i)
    return keep


def build_problem(topology: Topology, catalog: Catalog, demand: Demand,
                  options: PlacementOptions = PlacementOptions()) -> Problem:
    """Enumerate the useful triples (near-linear in their number) and pack them into arrays."""
    node_ids = list(topology.nodes)
    nidx = {n: i for i, n in enumerate(node_ids)}
    nodes = [topology.nodes[n] for n in node_ids]
    tasks = demand.tasks()
    variants = [v for t in tasks for v in catalog.tasks[t].variants.values()]
    vidx = {v.name: i for i, v in enumerate(variants)}
    size = np.array([v.bytes / MIB for v in variants], dtype=float)
    acc = np.array([v.accuracy for v in variants], dtype=float)
    mem = np.array([n.mem_mb for n in nodes], dtype=float)
    price = np.array([n.price for n in nodes], dtype=float)
    cap = np.array([options.rho * n.cores for n in nodes], dtype=float)
    table = _ComputeTable(topology, catalog)
    alpha, budget = options.alpha, options.budget

    # Non-dominated variants per (hardware class, task), with base compute times.
    cand: dict[tuple[str | None, str], list[tuple[int, float, float]]] = {}
    for n in nodes:
        for t in tasks:
            key = (n.hardware_class, t)
            if key in cand:
                continue
            vs = list(catalog.tasks[t].variants.values())
            times = [table.base(n.hardware_class, v, n.id) for v in vs]
            cand[key] = [(vidx[vs[i].name], times[i][0], times[i][1]) for i in non_dominated(vs, times)]

    stats = {"candidates": 0, "off_path": 0, "dominated": 0, "memory": 0, "budget": 0, "slo": 0}
    pair_of: dict[tuple[int, int], int] = {}
    pair_node: list[int] = []
    pair_var: list[int] = []
    t_class: list[int] = []
    t_pair: list[int] = []
    t_cost: list[float] = []
    t_lat: list[float] = []
    t_load: list[float] = []
    class_ptr = [0]
    unservable: list[int] = []
    path_cache: dict[str, list[tuple[str, float]]] = {}
    n_nodes = len(nodes)
    for r, c in enumerate(demand.classes):
        pd = path_cache.get(c.ingress)
        if pd is None:
            pd = path_cache[c.ingress] = topology.path_delays(c.ingress)
        n_task = len(catalog.tasks[c.task].variants)
        stats["candidates"] += n_nodes * n_task
        stats["off_path"] += (n_nodes - len(pd)) * n_task
        before = len(t_class)
        for node_id, d in pd:
            ni = nidx[node_id]
            node = nodes[ni]
            cands = cand[(node.hardware_class, c.task)]
            stats["dominated"] += n_task - len(cands)
            rtt = 2.0 * d
            for vi, t50, t95 in cands:
                if size[vi] > mem[ni]:
                    stats["memory"] += 1
                    continue
                if budget is not None and price[ni] * size[vi] > budget:
                    stats["budget"] += 1
                    continue
                if (c.min_accuracy is not None and acc[vi] < c.min_accuracy) or (
                        c.max_latency_ms is not None and rtt + t95 * node.slowdown > c.max_latency_ms):
                    stats["slo"] += 1
                    continue
                p = pair_of.get((ni, vi))
                if p is None:
                    p = pair_of[(ni, vi)] = len(pair_node)
                    pair_node.append(ni)
                    pair_var.append(vi)
                tn = t50 * node.slowdown
                t_class.append(r)
                t_pair.append(p)
                t_lat.append(rtt + tn)
                t_cost.append(rtt + tn + alpha * (1.0 - acc[vi]))
                t_load.append(c.rate * tn / 1000.0)
        if len(t_class) == before:
            unservable.append(r)
        class_ptr.append(len(t_class))
    stats["triples"] = len(t_class)
    stats["pairs"] = len(pair_node)
    notes = [f"no latency profile for {v!r} on {hw!r}: {src}" for (hw, v), src in sorted(table.fallbacks.items(), key=str)]
    return Problem(
        options=options, classes=list(demand.classes),
        rate=np.array([c.rate for c in demand.classes], dtype=float),
        node_ids=node_ids, mem=mem, cap=cap, price=price,
        repository=np.array([n.repository for n in nodes], dtype=bool),
        variant_names=[v.name for v in variants], size=size, acc=acc,
        pair_node=np.array(pair_node, dtype=np.int64), pair_var=np.array(pair_var, dtype=np.int64),
        tri_class=np.array(t_class, dtype=np.int64), tri_pair=np.array(t_pair, dtype=np.int64),
        tri_cost=np.array(t_cost, dtype=float), tri_latency=np.array(t_lat, dtype=float),
        tri_load=np.array(t_load, dtype=float), class_ptr=np.array(class_ptr, dtype=np.int64),
        unservable=unservable, notes=notes, stats=stats,
    )
