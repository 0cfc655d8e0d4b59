"""A solution of the placement problem, whichever method produced it, and its Plan form.

The ILP and the heuristics all return a ``Solution``: placements per node, the split of
every class over (node, variant) targets, and honest solver facts. ``to_plan`` turns it
into the versioned ``Plan`` nodes apply, with the evaluator's predictions attached, so a
plan always carries numbers computed the same way whatever made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from idn.placement.problem import Problem
from idn.plan import Plan, Route, SolverFacts, SolveStatus, Target, now_iso

SHARE_EPS = 1e-7  # shares below this are solver noise


@dataclass
class Solution:
    method: str
    placements: dict[str, set[str]]
    routes: dict[int, list[tuple[str, str, float]]]  # class index -> [(node, variant, share)]
    facts: SolverFacts
    build_s: float = 0.0
    solve_s: float = 0.0
    readback_s: float = 0.0  # reading the solver's answer back (ILP only; counted in neither build nor solve)
    notes: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return SolveStatus(self.facts.status).has_plan


def from_arrays(problem: Problem, method: str, shares: np.ndarray, facts: SolverFacts,
                placed: np.ndarray | None = None) -> Solution:
    """Build a Solution from a share per triple; only placements that carry traffic are kept.

    Dropping an unused placement never breaks a constraint (it frees memory and budget)
    and never changes the objective, so plans stay minimal for the nodes that load them.
    Shares are cleaned of solver noise and renormalised to sum to exactly 1 per class.
    """
    routes: dict[int, list[tuple[str, str, float]]] = {}
    placements: dict[str, set[str]] = {}
    for r in range(len(problem.classes)):
        lo, hi = int(problem.class_ptr[r]), int(problem.class_ptr[r + 1])
        s = shares[lo:hi]
        keep = np.nonzero(s > SHARE_EPS)[0]
        if len(keep) == 0:
            continue
        total = float(s[keep].sum())
        targets = []
        for k in keep:
            p = int(problem.tri_pair[lo + k])
            node = problem.node_ids[int(problem.pair_node[p])]
            var = problem.variant_names[int(problem.pair_var[p])]
            targets.append((node, var, float(s[k]) / total))
            placements.setdefault(node, set()).add(var)
        routes[r] = targets
    del placed  # placements follow traffic (see docstring)
    return Solution(method, placements, routes, facts)


def share_violations(problem: Problem, shares: np.ndarray, tol: float = 1e-6) -> list[str]:
    """Constraints a split (share per triple) breaks, checked from the arrays alone.

    What ``from_arrays`` would place — every pair carrying a share above ``SHARE_EPS`` —
    must fit each node's memory and, together, the budget; each class's shares must sum
    to 1; each node's compute load must stay within ``rho x cores``. Every heuristic's
    split passes through this before it becomes a Solution, so a plan that breaks a
    constraint is reported as a failure, never returned as a plan.
    """
    out: list[str] = []
    shares = np.asarray(shares, dtype=float)
    n_nodes, n_classes = len(problem.node_ids), len(problem.classes)
    if len(shares) != problem.n_triples or not np.all(np.isfinite(shares)):
        return [f"split has {len(shares)} finite-or-not shares for {problem.n_triples} triples"]
    served = np.bincount(problem.tri_class, weights=shares, minlength=n_classes)
    for r in np.nonzero(np.abs(served - 1.0) > tol)[0][:3].tolist():
        out.append(f"class {problem.classes[r].id!r} is {served[r]:.1%} served, not 100%")
    used = np.zeros(problem.n_pairs, dtype=bool)
    used[problem.tri_pair[shares > SHARE_EPS]] = True
    mem = np.bincount(problem.pair_node[used], weights=problem.pair_size[used], minlength=n_nodes)
    for n in np.nonzero(mem > problem.mem * (1 + tol))[0].tolist():
        out.append(f"memory: node {problem.node_ids[n]!r} holds {mem[n]:.3f} MiB > {problem.mem[n]:g} MiB")
    load = np.bincount(problem.pair_node[problem.tri_pair], weights=problem.tri_load * shares, minlength=n_nodes)
    for n in np.nonzero(load > problem.cap * (1 + tol) + 1e-9)[0].tolist():
        out.append(f"compute: node {problem.node_ids[n]!r} busy {load[n]:.3f} cores > rho x cores = "
                   f"{problem.cap[n]:.3f}")
    budget = problem.options.budget
    cost = float(problem.pair_cost[used].sum())
    if budget is not None and cost > budget * (1 + tol) + 1e-12:
        out.append(f"budget: deployment cost {cost:.3f} > {budget:g}")
    return out


def to_plan(problem: Problem, solution: Solution, version: int = 1, inputs: dict[str, str] | None = None,
            class_metrics: dict[str, dict[str, float]] | None = None,
            totals: dict[str, float] | None = None) -> Plan:
    """The Plan form of a solution. Metrics come from ``evaluate`` (same numbers for every method)."""
    routes = {}
    for r, c in enumerate(problem.classes):
        targets = tuple(Target(n, v, s) for n, v, s in solution.routes.get(r, []))
        routes[c.id] = Route(c.id, c.ingress, c.task, c.rate, targets, c.max_latency_ms, c.min_accuracy,
                             dict((class_metrics or {}).get(c.id, {})))
    placements = {n: tuple(sorted(vs)) for n, vs in sorted(solution.placements.items())}
    return Plan(version=version, placements=placements, routes=routes, solver=solution.facts,
                inputs=dict(inputs or {}), predicted=dict(totals or {}), created=now_iso())
