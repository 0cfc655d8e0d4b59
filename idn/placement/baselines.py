"""Baselines the ILP is compared against, all scored later by the same evaluator.

* ``repository_only``: every class is served at the repository at the end of its path
  by the variant that is cheapest for it there (SLO-meeting if any does; otherwise the
  evaluator reports the violation). The paper's reference point: the *gain* of a plan is
  its cost reduction against this one.
* ``smallest``: on every node, the smallest variant of each task routed through it,
  tasks by descending rate through the node, while memory and budget last; then the
  optimal routing over those placements.
* ``greedy``: start from nothing; repeatedly place the (node, variant) with the largest
  marginal cost reduction per MiB (lazy evaluation with a heap; a move only takes the
  classes whose load still fits the node's compute cap); then the optimal routing.
* ``lp_round``: solve the LP relaxation, place (node, variant) pairs by decreasing
  fractional x while memory and budget allow, then re-solve the routing LP. The LP
  value is a valid lower bound and is reported as this heuristic's bound.

Every heuristic repairs classes its rule left without a placed target (cheapest triple
that still fits) before routing. When the compute caps cannot carry the demand on those
placements, the compute-aware repair (``routing.repair_compute``) spreads the overflow
over the capacity left along each path, placing variants where memory and budget allow.
When that fill leaves demand short, the LP-guided completion (``routing.complete``)
widens the routing LP to every pair that still fits, places the pairs it uses and routes
exactly over them (retrying once from the method's placements that the unconstrained
routing LP uses, when the method's placements spent the memory or budget a plan needs);
only when that fails too does the heuristic report ``failed``, with both reasons. A
heuristic failing says nothing about whether a plan exists (``solve`` then asks the ILP).
Every split a heuristic returns is checked against memory, compute, budget and full
service from the arrays (``solution.share_violations``) first: one that breaks any of
them is a failure, never a plan.

The completion is an LP method, not part of greedy's or smallest's own rule: with
``lp_completion=False`` (methods ``greedy-alone``, ``smallest-alone``) it is skipped, so
what the rule achieves by itself — its placements, the repairs and the optimal routing
over them — is reported separately (``failed`` where the rule alone finds no plan).
"""

from __future__ import annotations

import heapq
import time

import numpy as np

from idn.catalog import Catalog
from idn.latency import LatencyModel, meets_latency
from idn.placement.aggregate import aggregate_classes
from idn.placement.backends import SolverOptions, run_model
from idn.placement.ledger import Ledger
from idn.placement.model import build_model, values
from idn.placement.problem import Problem
from idn.placement.solution import Solution, from_arrays, share_violations
from idn.placement.split import best_split, complete, repair, repair_compute
from idn.plan import SolverFacts, SolveStatus
from idn.topology import Topology

HEURISTICS = ("repository", "smallest", "greedy", "lp-round")


def _finish(problem: Problem, name: str, placed: np.ndarray, t0: float, opts: SolverOptions,
            bound: float | None = None, lp_completion: bool = True) -> Solution:
    own = placed.copy()
    placed = repair(problem, placed)
    shares, why = best_split(problem, placed, opts)
    if shares is None:
        # the caps cannot carry the demand on these placements: repair with compute in mind,
        # starting again from the method's own placements
        filled, fill, why = repair_compute(problem, own)
        if fill is not None:
            placed = filled
            shares, why = best_split(problem, placed, opts)
            if shares is None:  # numerically refused by the LP: the fill itself is feasible
                shares, why = fill, "compute-aware fill"
        elif lp_completion:
            # the fill leaves demand short: let the routing LP, widened to every pair that
            # still fits, say which placements to add (routing.complete)
            start = placed
            placed, shares, why_lp = complete(problem, start, opts)
            if shares is None:
                # the method's placements use up memory or budget that a feasible plan needs:
                # keep only those the routing LP over every pair (placed or not) uses, and
                # complete again from there
                keep = start & _used_by_unconstrained_routing(problem, opts)
                if (keep != start).any():
                    placed, shares, why_lp = complete(problem, keep, opts)
            if shares is None:
                why = f"{why}; LP-guided completion: {why_lp}"
    elapsed = time.perf_counter() - t0
    base_opts = {**problem.options.as_dict(), "solver": name}
    if shares is not None:
        broken = share_violations(problem, shares)
        if broken:  # never hand out a plan that breaks a constraint
            shares, why = None, f"its plan breaks {len(broken)} constraint(s): {'; '.join(broken[:3])}"
    if shares is None:
        facts = SolverFacts(name, SolveStatus.FAILED, None, bound, None, round(elapsed, 6),
                            {**base_opts, "solver_message": why})
        sol = Solution(name, {}, {}, facts)
    else:
        obj = problem.objective_of(shares)
        gap = None if bound is None else max(0.0, obj - bound) / max(abs(obj), 1e-9)
        facts = SolverFacts(name, SolveStatus.HEURISTIC, obj, bound, gap, round(elapsed, 6), base_opts)
        sol = from_arrays(problem, name, shares, facts)
    sol.solve_s = elapsed
    return sol


def _used_by_unconstrained_routing(problem: Problem, opts: SolverOptions) -> np.ndarray:
    """Pairs the routing LP uses when every candidate pair is placed (memory and budget ignored)."""
    shares, _ = best_split(problem, np.ones(problem.n_pairs, dtype=bool), opts)
    if shares is None:
        return np.zeros(problem.n_pairs, dtype=bool)
    flow = np.bincount(problem.tri_pair, weights=shares, minlength=problem.n_pairs)
    return flow > 1e-9


def repository_only(problem: Problem, topology: Topology, catalog: Catalog) -> Solution:
    """Everything at the repository (outside the pruned triples: SLOs may be violated)."""
    t0 = time.perf_counter()
    alpha = problem.options.alpha
    placements: dict[str, set[str]] = {}
    routes: dict[int, list[tuple[str, str, float]]] = {}
    model = LatencyModel(topology, catalog)
    for r, c in enumerate(problem.classes):
        repo = model.path(c.ingress)[-1].node
        options = []
        for v in catalog.tasks[c.task].variants.values():
            p = model.predict(c.ingress, repo, v, c.payload)
            meets = meets_latency(p, c.max_latency_ms) and (c.min_accuracy is None or v.accuracy >= c.min_accuracy)
            options.append((not meets, p.latency_ms + alpha * (1 - v.accuracy), v.name))
        _, cost, name = min(options)
        routes[r] = [(repo, name, 1.0)]
        placements.setdefault(repo, set()).add(name)
    elapsed = time.perf_counter() - t0
    facts = SolverFacts("repository", SolveStatus.HEURISTIC, None, None, None, round(elapsed, 6),
                        {**problem.options.as_dict(), "solver": "repository"})
    sol = Solution("repository", placements, routes, facts)
    sol.solve_s = elapsed
    return sol


def smallest(problem: Problem, opts: SolverOptions = SolverOptions(), lp_completion: bool = True) -> Solution:
    """The smallest variant of each task on every node where it fits (``lp_completion=False``:
    the method's own rule, repairs and routing only, without the LP-guided completion)."""
    t0 = time.perf_counter()
    placed = np.zeros(problem.n_pairs, dtype=bool)
    ledger = Ledger(problem)
    # Pairs per (node, task) and the rate of each task through each node.
    tri_node = problem.pair_node[problem.tri_pair]
    rate_through: dict[tuple[int, str], float] = {}
    pairs_at: dict[tuple[int, str], list[int]] = {}
    seen: set[tuple[int, int]] = set()
    for i in range(problem.n_triples):
        r, n, p = int(problem.tri_class[i]), int(tri_node[i]), int(problem.tri_pair[i])
        key = (n, problem.classes[r].task)
        if (r, n) not in seen:
            seen.add((r, n))
            rate_through[key] = rate_through.get(key, 0.0) + float(problem.rate[r])
        pairs_at.setdefault(key, [])
        if p not in pairs_at[key]:
            pairs_at[key].append(p)
    for (n, task), _ in sorted(rate_through.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1])):
        p = min(pairs_at[(n, task)], key=lambda p: (problem.pair_size[p], p))
        if ledger.place_if_fits(p):
            placed[p] = True
    return _finish(problem, "smallest" if lp_completion else "smallest-alone", placed, t0, opts,
                   lp_completion=lp_completion)


def greedy(problem: Problem, opts: SolverOptions = SolverOptions(), lp_completion: bool = True) -> Solution:
    """Lazy greedy on marginal cost reduction per MiB, compute-aware (``lp_completion=False``:
    greedy's own rule, repairs and routing only, without the LP-guided completion)."""
    t0 = time.perf_counter()
    n_pairs = problem.n_pairs
    order = np.argsort(problem.tri_pair, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(problem.tri_pair, minlength=n_pairs))])
    tri_class, tri_cost, tri_load = problem.tri_class, problem.tri_cost, problem.tri_load
    tri_node = problem.pair_node[problem.tri_pair]
    rate = problem.rate
    big = float(tri_cost.max() if problem.n_triples else 0.0) * 10.0 + 1.0  # cost of an unserved class
    cur_cost = np.full(len(problem.classes), big)
    cur_tri = np.full(len(problem.classes), -1, dtype=np.int64)
    load = np.zeros(len(problem.node_ids))
    ledger = Ledger(problem)
    placed = np.zeros(n_pairs, dtype=bool)
    psize = problem.pair_size

    def gain(p: int) -> tuple[float, list[int]]:
        n = int(problem.pair_node[p])
        idx = order[ptr[p]:ptr[p + 1]]
        r = tri_class[idx]
        imp = rate[r] * (cur_cost[r] - tri_cost[idx])
        good = imp > 1e-12
        if not good.any():
            return 0.0, []
        idx, imp, r = idx[good], imp[good], r[good]
        # load freed at n by classes that move from another variant at the same node
        freed = np.where((cur_tri[r] >= 0) & (tri_node[np.maximum(cur_tri[r], 0)] == n),
                         tri_load[np.maximum(cur_tri[r], 0)], 0.0)
        need = tri_load[idx] - freed
        free = problem.cap[n] - load[n]
        total, taken = 0.0, []
        for k in np.argsort(-imp / np.maximum(need, 1e-12), kind="stable"):
            if need[k] <= free + 1e-12:
                free -= need[k]
                total += float(imp[k])
                taken.append(int(idx[k]))
        return total, taken

    heap = []
    for p in range(n_pairs):
        g, _ = gain(p)
        if g > 0:
            heap.append((-g / psize[p], p))
    heapq.heapify(heap)
    while heap:
        _, p = heapq.heappop(heap)
        n = int(problem.pair_node[p])
        if not ledger.fits(p):
            continue  # memory and budget only shrink: this pair never fits again
        g, taken = gain(p)
        if g <= 0:
            continue
        ratio = g / psize[p]
        if heap and ratio < -heap[0][0] - 1e-12:
            heapq.heappush(heap, (-ratio, p))
            continue
        placed[p] = True
        ledger.add(p)
        for i in taken:
            r = int(tri_class[i])
            old = int(cur_tri[r])
            if old >= 0:
                load[tri_node[old]] -= tri_load[old]
            cur_tri[r], cur_cost[r] = i, tri_cost[i]
            load[n] += tri_load[i]
    return _finish(problem, "greedy" if lp_completion else "greedy-alone", placed, t0, opts,
                   lp_completion=lp_completion)


def lp_round(problem: Problem, opts: SolverOptions = SolverOptions()) -> Solution:
    """LP relaxation, then placements by decreasing fractional x, then the routing LP."""
    t0 = time.perf_counter()
    agg = aggregate_classes(problem)  # exact for the LP relaxation too (idn.placement.aggregate)
    model = build_model(agg.problem, relax=True)
    facts, _ = run_model(model, SolverOptions(opts.solver, threads=opts.threads, time_limit=opts.time_limit), mip=False)
    placed = np.zeros(problem.n_pairs, dtype=bool)
    if facts.objective is None:
        return _finish(problem, "lp-round", placed, t0, opts)
    x = model.x_values()
    y = agg.expand(values(model.y))
    flow = np.bincount(problem.tri_pair, weights=y * problem.rate[problem.tri_class], minlength=problem.n_pairs)
    ledger = Ledger(problem)
    for p in sorted(range(problem.n_pairs), key=lambda p: (-round(float(x[p]), 9), -flow[p], p)):
        if x[p] <= 1e-6:
            break
        if ledger.place_if_fits(p):
            placed[p] = True
    return _finish(problem, "lp-round", placed, t0, opts, bound=facts.objective)
