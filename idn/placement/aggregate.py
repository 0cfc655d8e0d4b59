"""Exact aggregation of equivalent request classes before the model is built.

Two classes r, s are *equivalent* when they have the same ingress, task and payload and, after
``build_problem``'s pruning (path, memory, budget, SLO, domination), the same sequence
of usable (node, variant) pairs. Their triples then have identical per-request
coefficients: the cost ``c = latency(ingress, payload, n, v) + alpha (1 - acc[v])`` and
the latency depend only on (ingress, payload, n, v), and the compute load is
``rate x t[v,n] / 1000``, i.e. proportional to the rate with the same factor. An
equivalence class G of classes becomes one *aggregate* with rate ``R_G = sum_{r in G}
rate_r``, the representative's triples (same pairs, same costs) and loads
``R_G t / 1000`` (the sum of the members' loads).

**Claim.** The ILP of the aggregated problem has the same optimal value as the ILP of
the original problem; every solution of the aggregated ILP gives, by copying each
aggregate's shares to all its members, a feasible solution of the original with the
same objective; and every original solution gives an aggregated one of the same
objective. The same holds for the LP relaxation (x continuous) and for the routing LP
(x fixed), so bounds and gaps carry over unchanged.

**Proof.** Write k for a position in G's common pair sequence (pair p_k, cost c_k,
per-unit-rate compute time t_k / 1000 at node n_k). In the original model the
members' y enter

* the objective only through ``sum_{r in G} rate_r c_k y[r,k] = c_k sum_r rate_r y[r,k]``;
* the compute row of n only through ``sum_{r in G} rate_r (t_k / 1000) y[r,k]``;
* their own serve rows ``sum_k y[r,k] = 1`` and linking rows ``y[r,k] <= x[p_k]``;
* memory and budget rows not at all (they contain x only).

(=>, aggregated to original) Given a feasible aggregated (x, Y), set
``y[r,k] = Y[G,k]`` for every member r. Each member's serve row is G's serve row,
each linking row is G's linking row, and the rate-weighted sums above equal
``R_G c_k Y[G,k]`` and ``R_G (t_k/1000) Y[G,k]``, exactly the aggregated objective
term and compute contribution. x is unchanged, so memory and budget hold. Feasible,
same objective.

(<=, original to aggregated) Given a feasible original (x, y), set
``Y[G,k] = sum_{r in G} rate_r y[r,k] / R_G`` (any member's y when R_G = 0). Then
``sum_k Y[G,k] = sum_r rate_r (sum_k y[r,k]) / R_G = 1``; Y[G,k] is a convex
combination of values <= x[p_k], so ``Y[G,k] <= x[p_k]``; and the rate-weighted sums
are by construction unchanged, so objective and compute rows are identical. Feasible,
same objective.

Both maps preserve the objective, so the optimal values coincide and an optimal
aggregated solution maps to an optimal original one. Nothing in the argument uses
integrality of x, so it holds verbatim for the LP relaxation and for fixed x. QED.

Plans keep one route per original class: ``expand`` copies each aggregate's shares to
every member (the first map), so every member is served exactly as its aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from idn.placement.problem import Problem


@dataclass
class Aggregation:
    """An aggregated problem and the maps between its triples and the original's."""
    original: Problem
    problem: Problem        # classes = one representative per aggregate, rate = the sum
    group: np.ndarray       # original class -> aggregate
    tri_map: np.ndarray     # original triple -> aggregate triple at the same pair

    @property
    def n_aggregates(self) -> int:
        return len(self.problem.classes)

    def expand(self, shares: np.ndarray) -> np.ndarray:
        """Shares per original triple: every member gets its aggregate's split."""
        return np.asarray(shares, dtype=float)[self.tri_map]

    def reduce(self, shares: np.ndarray) -> np.ndarray:
        """Shares per aggregate triple: the rate-weighted mean of the members' splits."""
        p, o = self.problem, self.original
        w = o.rate[o.tri_class]
        num = np.bincount(self.tri_map, weights=w * shares, minlength=p.n_triples)
        den = np.bincount(self.tri_map, weights=w, minlength=p.n_triples)
        first = np.zeros(p.n_triples)
        first[self.tri_map[::-1]] = np.asarray(shares, dtype=float)[::-1]  # some member's share
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), first)


def aggregate_classes(problem: Problem) -> Aggregation:
    """Merge equivalent classes (same ingress, task, payload and pruned pair sequence); exact (module docstring)."""
    n_classes = len(problem.classes)
    ptr = problem.class_ptr
    pairs = problem.tri_pair
    key_of: dict[tuple[object, ...], int] = {}
    group = np.empty(n_classes, dtype=np.int64)
    reps: list[int] = []
    for r, c in enumerate(problem.classes):
        key = (c.ingress, c.task, c.payload, pairs[int(ptr[r]):int(ptr[r + 1])].tobytes())
        g = key_of.get(key)
        if g is None:
            g = key_of[key] = len(reps)
            reps.append(r)
        group[r] = g
    rep = np.array(reps, dtype=np.int64)
    counts = (ptr[1:] - ptr[:-1])[rep]
    agg_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    # original triple i of class r -> agg_ptr[group[r]] + (i - ptr[r])
    tc = problem.tri_class
    tri_map = agg_ptr[group[tc]] + (np.arange(problem.n_triples, dtype=np.int64) - ptr[tc])
    is_rep = np.zeros(n_classes, dtype=bool)
    is_rep[rep] = True
    keep = is_rep[tc]  # the representatives' triples, in aggregate order (reps ascend)
    rate = np.bincount(group, weights=problem.rate, minlength=len(reps))
    agg_tri_class = group[tc[keep]]
    agg = replace(
        problem,
        classes=[problem.classes[r] for r in reps],
        rate=rate,
        tri_class=agg_tri_class,
        tri_pair=pairs[keep],
        tri_cost=problem.tri_cost[keep],
        tri_latency=problem.tri_latency[keep],
        tri_load=np.bincount(tri_map, weights=problem.tri_load, minlength=int(agg_ptr[-1])),
        class_ptr=agg_ptr,
        unservable=sorted({int(group[r]) for r in problem.unservable}),
        stats={**problem.stats, "aggregates": len(reps)},
    )
    return Aggregation(problem, agg, group, tri_map)
