"""The split for fixed placements: the best share of every class over what is placed.

With x fixed the ILP becomes an LP in y alone (every class fully served, compute caps).
When no compute cap binds the LP separates by class and each class simply takes its
cheapest placed triple, so that case is solved exactly without calling a solver.

``repair`` makes a placement servable: a class with no placed triple gets the placement
of its cheapest triple that still fits memory and budget (used by every heuristic, so
none of them fails just because its rule skipped a class).

``repair_compute`` is the compute-aware repair used when the routing LP says the compute
caps cannot carry the demand with those placements: it fills every class into the
capacity left on its path, cheapest target first, splitting a class where a node's cap
is hit and sending the overflow on to the next target (already placed targets first,
then new placements where memory and budget allow; the repository is just the last,
usually dearest, node of the path and gets only what its own cap allows). When some
demand fits nowhere it says so instead of returning a plan that breaks a cap.

``complete`` is the LP-guided completion used when that fill still leaves demand short:
the routing LP widened to every pair that still fits memory and budget says which pairs
to add; they are placed while the ledger allows and the plan is routed exactly over them.
"""

from __future__ import annotations

import numpy as np

from idn.placement.aggregate import aggregate_classes
from idn.placement.backends import SolverOptions, run_model
from idn.placement.ledger import Ledger
from idn.placement.model import build_model, values
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


def best_split(problem: Problem, placed: np.ndarray,
               opts: SolverOptions = SolverOptions()) -> tuple[np.ndarray | None, str]:
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
    ledger = Ledger(problem, placed)
    best = cheapest_placed(problem, placed)
    for r in np.nonzero(best < 0)[0]:
        lo, hi = int(problem.class_ptr[r]), int(problem.class_ptr[r + 1])
        if any(placed[problem.tri_pair[lo:hi]]):
            continue  # served by an earlier repair in this loop
        for i in sorted(range(lo, hi), key=lambda i: problem.tri_cost[i]):
            p = int(problem.tri_pair[i])
            if ledger.place_if_fits(p):
                placed[p] = True
                break
    return placed


def repair_compute(problem: Problem, placed: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Compute-aware repair: (placements, a feasible split, "ok") or (placements, None, reason).

    A fill over the capacity left on each path (``_fill``), first cheapest-target-first
    (a class that does not fit that way retries path-order lightest-first), then, if some
    demand is still left over, path-order lightest-first for every class: the least shared
    nodes first, each serving as much as its cap allows with its lightest variant. The split
    found satisfies every row of the routing LP, so that LP, solved afterwards, is feasible
    and picks the cheapest split over the same placements.
    """
    best = None
    for light in (False, True):
        placed_, shares, why, short = _fill(problem, placed, light)
        if shares is not None:
            return placed_, shares, why
        if best is None or short < best[3]:
            best = (placed_, shares, why, short)
    assert best is not None
    return best[0], None, best[2]  # the attempt that left the fewest classes short


def _fill(problem: Problem, placed: np.ndarray, light: bool) -> tuple[np.ndarray, np.ndarray | None, str, int]:
    """Classes with the fewest usable nodes first (then by decreasing rate); pass 1 uses
    placed pairs only, pass 2 may place a pair where memory and budget allow. Each class
    takes its triples in order (cheapest first, or, when ``light``, node by node from
    the ingress towards the repository, lightest variant first), each up to the compute
    its node has left, so what a node cannot carry overflows to the next one."""
    placed = placed.copy()
    n_nodes = len(problem.node_ids)
    ledger = Ledger(problem, placed)
    load = np.zeros(n_nodes)
    shares = np.zeros(problem.n_triples)
    remaining = np.ones(len(problem.classes))
    ptr = problem.class_ptr
    tri_pair, pair_node, tri_load = problem.tri_pair, problem.pair_node, problem.tri_load
    cap = problem.cap
    eps = 1e-12
    tri_node = pair_node[tri_pair]
    # a class's triples are in path order (ingress first): hop = position of the node on the path
    new_node = np.ones(problem.n_triples, dtype=bool)
    new_node[1:] = (tri_node[1:] != tri_node[:-1]) | (problem.tri_class[1:] != problem.tri_class[:-1])
    hop = np.cumsum(new_node) - 1
    hop = hop - hop[ptr[problem.tri_class]]
    n_hops = np.zeros(len(problem.classes), dtype=np.int64)
    np.maximum.at(n_hops, problem.tri_class, hop + 1)
    # most constrained first: classes with fewer usable nodes, then the heavier ones
    classes = sorted(range(len(problem.classes)), key=lambda r: (n_hops[r], -problem.rate[r], r))

    def ordered(r: int, lightest: bool) -> list[int]:
        tris = range(int(ptr[r]), int(ptr[r + 1]))
        if lightest:  # nodes nearest the ingress first (least shared), lightest variant there first
            return sorted(tris, key=lambda i: (hop[i], tri_load[i], problem.tri_cost[i], i))
        return sorted(tris, key=lambda i: (problem.tri_cost[i], i))

    def take(r: int, tris: list[int], may_place: bool) -> list[tuple[int, float, bool]]:
        log = []
        for i in tris:
            if remaining[r] <= eps:
                break
            p = int(tri_pair[i])
            n = int(pair_node[p])
            if not placed[p] and not (may_place and ledger.fits(p)):
                continue
            ld = float(tri_load[i])
            f = remaining[r] if ld <= 0 else min(remaining[r], max(0.0, cap[n] - load[n]) / ld)
            if f <= eps:
                continue
            new = not placed[p]
            if new:
                placed[p] = True
                ledger.add(p)
            shares[i] += f
            load[n] += f * ld
            remaining[r] -= f
            log.append((i, f, new))
        return log

    def undo(r: int, log: list[tuple[int, float, bool]]) -> None:
        for i, f, new in reversed(log):
            p = int(tri_pair[i])
            n = int(pair_node[p])
            shares[i] -= f
            load[n] -= f * float(tri_load[i])
            remaining[r] += f
            if new:
                placed[p] = False
                ledger.remove(p)

    for may_place in (False, True):
        for r in classes:
            if remaining[r] <= eps:
                continue
            log = take(r, ordered(r, light), may_place)
            if remaining[r] > eps and not light:  # does not fit cheapest-first: try lightest-first
                left = remaining[r]
                undo(r, log)
                log = take(r, ordered(r, True), may_place)
                if remaining[r] >= left:
                    undo(r, log)
                    take(r, ordered(r, False), may_place)
    short = np.nonzero(remaining > 1e-9)[0]
    if len(short):
        c = problem.classes[int(short[0])]
        return placed, None, (f"compute caps cannot carry the demand: {len(short)} class(es) (e.g. {c.id!r}, "
                              f"{remaining[short[0]]:.1%} of it) find no compute left on any usable target"), len(short)
    return placed, shares, "ok", 0


def complete(problem: Problem, placed: np.ndarray, opts: SolverOptions = SolverOptions(),
             rounds: int = 4) -> tuple[np.ndarray, np.ndarray | None, str]:
    """LP-guided completion: (placements, optimal shares over them, "ok") or (placements, None, reason).

    Used when the compute caps cannot carry the demand on a heuristic's placements. Each
    round widens the routing LP to the placed pairs plus every unplaced pair that still
    fits memory and budget on its own (the "widened" LP: exact routing as if all of them
    were placed), then places the unplaced pairs that LP uses, by decreasing request
    flow, while memory and budget allow, and routes exactly over what is placed. When
    the widened pairs do not all fit together, the next round widens again from the new
    placements (at most ``rounds`` rounds; each one that goes on places at least one pair).

    Nothing is claimed that is not checked: the shares returned are the routing LP's over
    placed pairs that the ``Ledger`` admitted, so every cap, memory and budget row holds.
    When even the widened LP is infeasible, no plan that keeps these placements exists
    (placing more only removes memory): the reason says so.
    """
    placed = placed.copy()
    why = "compute caps cannot carry the demand with these placements"
    for _ in range(max(1, rounds)):
        ledger = Ledger(problem, placed)
        node, size = problem.pair_node, problem.pair_size
        fits = ledger.used[node] + size <= problem.mem[node] + 1e-9
        if ledger.budget is not None:
            fits &= ledger.spent + problem.pair_cost <= ledger.budget + 1e-9
        wide = placed | fits
        if not (wide & ~placed).any():
            return placed, None, why
        shares, why_wide = best_split(problem, wide, opts)
        if shares is None:
            return placed, None, (why_wide + " (even with every pair that still fits memory and budget placed)")
        flow = np.bincount(problem.tri_pair, weights=shares * problem.rate[problem.tri_class],
                           minlength=problem.n_pairs)
        new = np.nonzero(~placed & (flow > 1e-9))[0]
        added = 0
        for p in new[np.argsort(-flow[new], kind="stable")].tolist():
            if ledger.place_if_fits(p):
                placed[p] = True
                added += 1
        if added == len(new):  # the widened LP's split uses placed pairs only: optimal over them
            return placed, shares, "ok"
        shares, why = best_split(problem, placed, opts)
        if shares is not None:
            return placed, shares, "ok"
        if added == 0:
            break
    return placed, None, why
