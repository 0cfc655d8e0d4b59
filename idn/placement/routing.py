"""Routing for fixed placements: the best split of every class over what is placed.

With x fixed the ILP becomes an LP in y alone (every class fully served, compute caps).
When no compute cap binds the LP separates by class and each class simply takes its
cheapest placed triple, so that case is solved exactly without calling a solver.

``repair`` makes a placement servable: a class with no placed triple gets the placement
of its cheapest triple that still fits memory and budget (used by every heuristic, so
none of them fails just because its rule skipped a class).
"""

from __future__ import annotations

import numpy as np

from idn.placement.aggregate import aggregate_classes
from idn.placement.ilp import SolverOptions, build_model, run_model, values
from idn.placement.problem import Problem


def cheapest_placed(problem: Problem, placed: np.ndarray) -> np.ndarray:
    """Per class, the index of its cheapest placed triple (-1 when none is placed)."""
    allowed = placed[problem.tri_pair]
    cost = np.where(allowed, problem.tri_cost, np.inf)
    best = np.full(len(problem.classes), -1, dtype=np.int64)
    for r in range(len(problem.classes)):
        lo, hi = int(problem.class_ptr[r]), int(problem.class_ptr[r + 1])
        if hi > lo:
            k = int(np.argmin(cost[lo:hi]))
            if np.isfinite(cost[lo + k]):
                best[r] = lo + k
    return best


def node_loads(problem: Problem, shares: np.ndarray) -> np.ndarray:
    tri_node = problem.pair_node[problem.tri_pair]
    return np.bincount(tri_node, weights=problem.tri_load * shares, minlength=len(problem.node_ids))


def route(problem: Problem, placed: np.ndarray, opts: SolverOptions = SolverOptions()) -> tuple[np.ndarray | None, str]:
    """Optimal shares for a fixed placement, or (None, reason) when no split is feasible."""
    best = cheapest_placed(problem, placed)
    missing = int(np.sum(best < 0))
    if missing:
        return None, f"{missing} class(es) have no placed target that meets their SLO"
    shares = np.zeros(problem.n_triples)
    shares[best] = 1.0
    if np.all(node_loads(problem, shares) <= problem.cap * (1 + 1e-9)):
        return shares, "optimal"
    agg = aggregate_classes(problem)  # exact for fixed placements too (idn.placement.aggregate)
    model = build_model(agg.problem, fixed=placed)
    facts, _ = run_model(model, SolverOptions(opts.solver, threads=opts.threads), mip=False)
    if facts.objective is None:
        return None, "compute caps cannot carry the demand with these placements"
    return agg.expand(np.clip(values(model.y), 0.0, 1.0)), "optimal"


def repair(problem: Problem, placed: np.ndarray) -> np.ndarray:
    """Give every class with no placed triple its cheapest triple that still fits (in place)."""
    used_mem = np.bincount(problem.pair_node[placed], weights=problem.pair_size[placed],
                           minlength=len(problem.node_ids))
    spent = float(problem.pair_cost[placed].sum())
    budget = problem.options.budget
    best = cheapest_placed(problem, placed)
    for r in np.nonzero(best < 0)[0]:
        lo, hi = int(problem.class_ptr[r]), int(problem.class_ptr[r + 1])
        if any(placed[problem.tri_pair[lo:hi]]):
            continue  # served by an earlier repair in this loop
        for i in sorted(range(lo, hi), key=lambda i: problem.tri_cost[i]):
            p = int(problem.tri_pair[i])
            n = int(problem.pair_node[p])
            size, cost = float(problem.pair_size[p]), float(problem.pair_cost[p])
            if used_mem[n] + size <= problem.mem[n] + 1e-9 and (budget is None or spent + cost <= budget + 1e-9):
                placed[p] = True
                used_mem[n] += size
                spent += cost
                break
    return placed
