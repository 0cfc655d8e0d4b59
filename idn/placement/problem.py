"""Problem building: topology + catalog + demand -> arrays of useful (class, node, variant) triples.

Pure (no I/O, no solver): the ILP, the baselines and the infeasibility explainer all read
the same arrays, so they optimise exactly the same numbers.

Units: time in ms, memory in MiB (``Node.mem_mb``; variant sizes are ``bytes / 2**20``),
compute load in cores (``rate [req/s] * t [ms] / 1000``), deployment cost in
``price x MiB``.

Per-request cost of serving class r by variant v at node n (the ILP objective term)::

    c[r,n,v] = latency(r, n, v) + alpha * (1 - acc[v])

with latency the p50 prediction of :mod:`idn.latency` (round trip + payload over the
links' bandwidth + compute at n). SLO feasibility uses its p95 prediction
(``latency_p95 <= max_latency_ms``) and ``acc[v] >= min_accuracy``.

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
its SLO with u (no slower at p95, no less accurate; the network and payload terms
depend on (r, n) only, not on the variant); each moved unit of share costs
``c[r,n,u] - c[r,n,v] = (t[u,n]-t[v,n]) + alpha (acc[v]-acc[u]) <= 0``. So the new
solution is feasible and no worse. Domination is a strict partial order once ties are
broken by name, so repeating the exchange terminates with no dominated variant placed
(each step removes one placement of a dominated variant and adds one of a dominating
variant, and chains end at a non-dominated one). Since slowdown scales every variant at
a node by the same factor and the node's per-request overhead adds the same constant,
domination depends only on the node's hardware class and is computed once per
(hardware class, task). QED.

*With move costs* (a running plan and a weight, :mod:`idn.placement.moves`), a new
placement of u costs ``weight x move_ms(u)``. Domination then also requires
``load_ms(u) <= load_ms(v)`` (the transfer part is ``bytes x ms_per_byte``, already no
larger for u), so the exchange does not raise the move cost of a placement that was
new; and a variant the running plan holds at n costs nothing to keep, so it is kept as
a candidate at n whatever dominates it (no other variant can be cheaper to have there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from idn.catalog import Catalog, Variant
from idn.demand import Demand, RequestClass
from idn.latency import LatencyModel, on_node
from idn.placement.moves import Moves, move_time
from idn.topology import Topology

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

    def __post_init__(self) -> None:
        for problem in self.problems():
            raise ValueError(problem)

    def problems(self) -> list[str]:
        """What is wrong with these options, as sentences naming the option (empty: valid).

        alpha >= 0 is what makes the model's exact reductions exact (domination prunes a
        variant that is no faster and no more accurate: with alpha < 0 inaccuracy would be
        a reward and the pruned variant could be the optimum's)."""
        out = []
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            out.append(f"alpha must be a finite number >= 0 (ms per unit of inaccuracy), got {self.alpha}")
        if not (math.isfinite(self.rho) and 0 < self.rho <= 1):
            out.append(f"rho must be within (0, 1] (the utilisation cap), got {self.rho}")
        if self.budget is not None and not (math.isfinite(self.budget) and self.budget >= 0):
            out.append(f"budget must be a finite number >= 0 (price x MiB), got {self.budget}")
        return out

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
    tri_latency: np.ndarray  # ms per request: the p50 prediction (network + transfer + compute)
    tri_load: np.ndarray    # cores used if the whole class went there
    class_ptr: np.ndarray
    # objective cost of each candidate placement when it is not in the running plan
    # (weight x move ms, see idn.placement.moves); zeros when moves are not modelled
    pair_move: np.ndarray = field(default_factory=lambda: np.zeros(0))
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


def non_dominated(variants: list[Variant], times: list[tuple[float, float]],
                  loads: list[float] | None = None) -> list[int]:
    """Indices of variants no other variant dominates (see the module docstring).

    ``loads`` (move times, when moves are modelled) is one more criterion: a variant
    that is quicker to bring in is never dominated by one that is slower to bring in."""
    keep = []
    lt = loads or [0.0] * len(variants)
    for i, (v, (t50, t95)) in enumerate(zip(variants, times)):
        dominated = False
        for j, (u, (u50, u95)) in enumerate(zip(variants, times)):
            if i == j:
                continue
            if u.bytes <= v.bytes and u50 <= t50 and u95 <= t95 and u.accuracy >= v.accuracy and lt[j] <= lt[i]:
                strictly = (u.bytes < v.bytes or u50 < t50 or u95 < t95 or u.accuracy > v.accuracy
                            or lt[j] < lt[i])
                if strictly or u.name < v.name:
                    dominated = True
                    break
        if not dominated:
            keep.append(i)
    return keep


def build_problem(topology: Topology, catalog: Catalog, demand: Demand,
                  options: PlacementOptions = PlacementOptions(), moves: Moves | None = None) -> Problem:
    """Enumerate the useful triples (near-linear in their number) and pack them into arrays.

    ``moves``: the running plan and the weight of a move; new placements then cost
    ``weight x move_ms`` in the objective (``Problem.pair_move``). Domination then also
    compares load times, and a variant the running plan holds at a node is never
    dropped there (keeping it is free, which no other variant can beat)."""
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
    model = LatencyModel(topology, catalog)
    alpha, budget = options.alpha, options.budget

    # Non-dominated variants per (hardware class, task), with base compute times.
    cand: dict[tuple[str | None, str], list[tuple[int, float, float]]] = {}
    for n in nodes:
        for t in tasks:
            key = (n.hardware_class, t)
            if key in cand:
                continue
            vs = list(catalog.tasks[t].variants.values())
            times = [model.base_times(n.hardware_class, v, n.id) for v in vs]
            loads = [move_time(model, n.id, v).load_ms for v in vs] if moves is not None else None
            cand[key] = [(vidx[vs[i].name], times[i][0], times[i][1]) for i in non_dominated(vs, times, loads)]

    stats = {"candidates": 0, "off_path": 0, "dominated": 0, "memory": 0, "budget": 0, "slo": 0}
    # Classes sharing (ingress, task) share a block: the (path node, candidate variant)
    # combinations that pass memory and budget. Each class keeps the block entries that
    # meet its SLO, computed for all the block's classes at once.
    groups: dict[tuple[str, str], list[int]] = {}
    for r, c in enumerate(demand.classes):
        groups.setdefault((c.ingress, c.task), []).append(r)
    rate = np.array([c.rate for c in demand.classes], dtype=float)
    n_nodes = len(nodes)
    parts: list[tuple[np.ndarray, ...]] = []
    # Per (node, task): the candidates that fit the node's memory and the budget on their
    # own, with the node's p50/p95 compute times; shared by every block whose path crosses it.
    at_node: dict[tuple[int, str], tuple[list[int], list[float], list[float], int, int, int]] = {}
    size_l, mem_l, price_l = size.tolist(), mem.tolist(), price.tolist()  # Python floats: fast scalar tests

    def candidates_at(ni: int, task: str) -> tuple[list[int], list[float], list[float], int, int, int]:
        key = (ni, task)
        if key not in at_node:
            node = nodes[ni]
            cands = cand[(node.hardware_class, task)]
            if moves is not None:  # what the running plan holds here stays a candidate
                held = [v for v in catalog.tasks[task].variants.values() if moves.placed(node.id, v.name)
                        and all(c[0] != vidx[v.name] for c in cands)]
                cands = cands + [(vidx[v.name], *model.base_times(node.hardware_class, v, node.id)) for v in held]
            keep = [c for c in cands if size_l[c[0]] <= mem_l[ni]]
            n_mem = len(cands) - len(keep)
            n_budget = 0
            if budget is not None:
                within = [c for c in keep if price_l[ni] * size_l[c[0]] <= budget]
                n_budget, keep = len(keep) - len(within), within
            at_node[key] = ([c[0] for c in keep], [on_node(node, c[1]) for c in keep],
                            [on_node(node, c[2]) for c in keep], len(catalog.tasks[task].variants) - len(cands),
                            n_mem, n_budget)
        return at_node[key]

    for (ingress, task), rs in groups.items():
        pd = model.path(ingress)
        n_task = len(catalog.tasks[task].variants)
        b_node: list[int] = []
        b_var: list[int] = []
        b_rtt: list[float] = []
        b_mspb: list[float] = []
        b_t50: list[float] = []
        b_t95: list[float] = []
        n_mem = n_budget = n_dom = 0
        for hop in pd:
            ni = nidx[hop.node]
            vis, t50s, t95s, dom, nm, nb = candidates_at(ni, task)
            n_dom, n_mem, n_budget = n_dom + dom, n_mem + nm, n_budget + nb
            k = len(vis)
            b_node.extend([ni] * k)
            b_var.extend(vis)
            b_rtt.extend([2.0 * hop.delay_ms] * k)
            b_mspb.extend([hop.ms_per_byte] * k)
            b_t50.extend(t50s)
            b_t95.extend(t95s)
        k = len(rs)
        stats["candidates"] += k * n_nodes * n_task
        stats["off_path"] += k * (n_nodes - len(pd)) * n_task
        stats["dominated"] += k * n_dom
        stats["memory"] += k * n_mem
        stats["budget"] += k * n_budget
        bv = np.array(b_var, dtype=np.int64)
        cls = [demand.classes[r] for r in rs]
        rtt, t95 = np.array(b_rtt), np.array(b_t95)
        if any(b_mspb):  # payload over bandwidth: per class, as classes may override their bytes
            nbytes = np.array([model.payload(task, c.payload).total_bytes for c in cls], dtype=float)
            net = rtt[None, :] + nbytes[:, None] * np.array(b_mspb)[None, :]
            lat95 = net + t95[None, :]
        else:
            net = None
            lat95 = (rtt + t95)[None, :]
        min_acc = np.array([-np.inf if c.min_accuracy is None else c.min_accuracy for c in cls])
        max_lat = np.array([np.inf if c.max_latency_ms is None else c.max_latency_ms for c in cls])
        ok = (acc[bv][None, :] >= min_acc[:, None]) & (lat95 <= max_lat[:, None])
        stats["slo"] += int(ok.size - np.count_nonzero(ok))
        ci, j = np.nonzero(ok)  # row-major: by class, then block order (path, then candidates)
        parts.append((np.array(rs, dtype=np.int64)[ci], np.array(b_node, dtype=np.int64)[j], bv[j],
                      rtt[j] if net is None else net[ci, j],
                      np.array(b_t50)[j]))
    if parts:
        t_class, t_node, t_var, t_rtt, t_tn = (np.concatenate(a) for a in zip(*parts))
    else:
        t_class = t_node = t_var = np.zeros(0, dtype=np.int64)
        t_rtt = t_tn = np.zeros(0)
    order = np.argsort(t_class, kind="stable")  # triples sorted by class, each class in block order
    t_class, t_node, t_var, t_rtt, t_tn = t_class[order], t_node[order], t_var[order], t_rtt[order], t_tn[order]
    # pairs numbered by first appearance
    key = t_node * len(variants) + t_var
    uk, first, inv = np.unique(key, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    rank = np.empty(len(uk), dtype=np.int64)
    rank[by_first] = np.arange(len(uk))
    pair_keys = uk[by_first]
    counts = np.bincount(t_class, minlength=len(demand.classes))
    class_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    unservable = np.nonzero(counts == 0)[0].tolist()
    t_lat = t_rtt + t_tn
    stats["triples"] = len(t_class)
    stats["pairs"] = len(uk)
    notes = [f"no latency profile for {v!r} on {hw!r}: {src}"
             for (hw, v), src in sorted(model.fallbacks.items(), key=str)]
    pair_node = pair_keys // max(len(variants), 1)
    pair_var = pair_keys % max(len(variants), 1)
    pair_move = np.zeros(len(pair_keys))
    if moves is not None and moves.weight > 0:
        sources: set[str] = set()
        for p, (ni, vi) in enumerate(zip(pair_node.tolist(), pair_var.tolist())):
            if not moves.placed(node_ids[ni], variants[vi].name):
                mt = move_time(model, node_ids[ni], variants[vi])
                pair_move[p] = moves.weight * mt.ms
                if mt.source != "profiled":
                    sources.add(f"{variants[vi].name} on {nodes[ni].hardware_class}: {mt.source}")
        notes += [f"no load time for {s}" for s in sorted(sources)]
    return Problem(
        options=options, classes=list(demand.classes), rate=rate,
        node_ids=node_ids, mem=mem, cap=cap, price=price,
        repository=np.array([n.repository for n in nodes], dtype=bool),
        variant_names=[v.name for v in variants], size=size, acc=acc,
        pair_node=pair_node, pair_var=pair_var, pair_move=pair_move,
        tri_class=t_class, tri_pair=rank[inv].astype(np.int64),
        tri_cost=t_lat + alpha * (1.0 - acc[t_var]), tri_latency=t_lat,
        tri_load=rate[t_class] * t_tn / 1000.0, class_ptr=class_ptr,
        unservable=unservable, notes=notes, stats=stats,
    )
