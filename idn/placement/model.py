"""The placement ILP as a PuLP model (DESIGN.md, "Placement: the ILP"), with its exact reductions.

Variables exist only for what ``build_problem`` kept: x[p] in {0,1} per candidate
placement p = (n, v) and y[i] in [0,1] per useful triple i = (r, n, v)::

    min  sum_i rate[r_i] * c[i] * y[i]
    s.t. sum_{i of r} y[i] = 1                     every class fully served
         y[i] <= x[p_i]                            (disaggregated linking, one row per triple)
         sum_{p at n} size[p] x[p] <= mem[n]       memory
         sum_{i at n} load[i] y[i] <= rho cores[n] compute (load = rate * t / 1000;
                                                   t at batch 1: nodes batch under load,
                                                   the model does not count on it, see
                                                   idn.latency "Batching")
         sum_p price[n_p] size[p] x[p] <= budget   deployment cost (when a budget is given)

*Why disaggregated linking.* The aggregate form ``sum_{r} y[r,n,v] <= R x[n,v]`` admits
LP solutions with x = (served share)/R, so the relaxation pays almost nothing for a
placement; the per-triple rows force x >= every single share, which is the facility-
location strengthening: its LP bound is typically within a few percent of the integer
optimum, which is what lets large instances close to a proven small gap. Rows grow
linearly with the triples, which ``build_problem`` keeps small by pruning.

*Symmetry.* Identical edges with identical demand give symmetric optima; HiGHS' own
symmetry detection handles these orbits, and no artificial tie-breaking is added.

Expressions are built from ``(variable, coefficient)`` lists through
``LpAffineExpression`` (linear time), never with ``sum()`` or ``+=`` over PuLP terms
(quadratic).

Solving it is :mod:`idn.placement.backends`' job; reading the outcome honestly is
:mod:`idn.placement.status`'s.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pulp

from idn.placement.problem import Problem


@dataclass
class Model:
    prob: pulp.LpProblem
    x: list[pulp.LpVariable | None]  # None: pair not modelled (fixed placements, or fixed open by presolve)
    y: list[pulp.LpVariable | None]  # None: triple not modelled (not placed, or dropped by presolve: share 0)
    overflow: dict[int, pulp.LpVariable]
    x_open: np.ndarray | None = None  # bool per pair: x fixed to 1 by presolve (no variable)
    stats: dict[str, int] = field(default_factory=dict)
    handover_s: float = 0.0  # time spent passing the model to the solver (part of building)
    run_s: float = 0.0       # the solver's own run (HiGHS: ``Highs.run``)
    readback_s: float = 0.0  # reading the solution back into PuLP's variables

    def x_values(self) -> np.ndarray:
        """x per pair (1 where presolve fixed the placement open)."""
        v = values(self.x)
        if self.x_open is not None:
            v[self.x_open] = 1.0
        return v


def _class_min(problem: Problem, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the minimum of ``key`` over its triples and the triple attaining it (-1: none finite)."""
    n_classes = len(problem.classes)
    ptr = problem.class_ptr
    best = np.full(n_classes, np.inf)
    arg = np.full(n_classes, -1, dtype=np.int64)
    nonempty = ptr[1:] > ptr[:-1]
    if problem.n_triples and nonempty.any():
        starts = ptr[:-1][nonempty]
        best[nonempty] = np.minimum.reduceat(key, starts)
        # first triple of each class attaining the minimum
        hit = np.nonzero(key == best[problem.tri_class])[0]
        cls = problem.tri_class[hit]
        first = np.unique(cls, return_index=True)[1]
        arg[cls[first]] = hit[first]
        arg[~np.isfinite(best)] = -1
    return best, arg


def _dominated_open(problem: Problem, cand: np.ndarray, tri_node: np.ndarray) -> np.ndarray:
    """Triples among ``cand`` dominated by another of the same (class, node) in (cost, load); see 4."""
    drop = np.zeros(problem.n_triples, dtype=bool)
    idx = np.nonzero(cand)[0]
    if len(idx) < 2:
        return drop
    key = problem.tri_class[idx] * len(problem.node_ids) + tri_node[idx]
    idx = idx[np.argsort(key, kind="stable")]
    key = problem.tri_class[idx] * len(problem.node_ids) + tri_node[idx]
    _, start, size = np.unique(key, return_index=True, return_counts=True)
    # every ordered pair (u, v) within a group: v = each member, u = each member of v's group
    reps = np.repeat(size, size)  # group size, per member
    v = np.repeat(np.arange(len(idx)), reps)
    first = np.repeat(np.repeat(start, size), reps)
    u = first + (np.arange(len(v)) - np.repeat(np.cumsum(reps) - reps, reps))
    iu, iv = idx[u], idx[v]
    cu, cv = problem.tri_cost[iu], problem.tri_cost[iv]
    lu, lv = problem.tri_load[iu], problem.tri_load[iv]
    dominates = (cu <= cv) & (lu <= lv) & ((cu < cv) | (lu < lv) | (iu < iv))
    drop[np.unique(iv[dominates])] = True
    return drop


def build_model(problem: Problem, relax: bool = False, fixed: np.ndarray | None = None,
                objective: str = "cost", with_budget: bool = True, presolve: bool = True) -> Model:
    """The PuLP model of ``problem``.

    relax: x continuous in [0, 1] (the LP relaxation).
    fixed: bool per pair; x is dropped and only triples of placed pairs remain (routing LP).
    objective: "cost" (the latency/accuracy objective), "deployment" (min price x MiB, used
    to explain a budget below the cheapest feasible plan) or "overflow" (min compute over
    the caps, with elastic cpu rows: explains which nodes lack cores).
    presolve: the exact reductions below (off only to test that they are exact).

    **Exact reductions.** Rows and columns are left out only where they cannot change the
    optimum (nor the LP relaxation's: no argument uses integrality of x):

    1. *Redundant rows.* A memory row whose node can hold all its candidate pairs at once
       (``sum_p size[p] <= mem[n]``) holds for every x in [0, 1]. A compute row whose node
       can carry every class at its heaviest triple there (``sum_r max_v load[r,n,v] <=
       cap[n]``) holds for every split (a class's shares at n sum to at most 1). A budget
       row that all pairs together meet holds for every x.
    2. *Open placements.* At a node whose memory row is redundant, when no budget row is
       kept and x has no objective cost ("cost", "overflow"), x[n,v] = 1 is optimal:
       raising x only relaxes linking rows ``y <= x``. So those x are fixed to 1 and
       neither x nor their linking rows are built. A pair with a move cost (not in the
       running plan, ``Problem.pair_move > 0``) has an objective cost and is never opened.
    3. *Free targets* ("cost" only). Call a node free when 1. removes both its memory and
       compute rows and 2. opens its pairs. If class r has a triple f at a free node, then
       moving any share of r from a triple of cost >= c[f] onto f keeps every row (f is
       open and its node uncapped; loads elsewhere only fall) and costs no more. So only
       r's triples cheaper than its cheapest free triple, plus that one, are built; a
       class left with a single triple gets y fixed to 1 (bounds) and no serve row.
    4. *Dominated open targets* ("cost" only). At a node whose pairs 2. opens, triple
       (r,n,u) dominates (r,n,v) when ``c[u] <= c[v]`` and ``t[u,n] <= t[v,n]`` (ties
       broken by index): moving r's share from v to u keeps the serve row, needs no
       linking row (both open), does not raise n's load and costs no more. Only the
       non-dominated triples of each (class, open node) are built.
    5. *Unused placements.* A pair that no built triple uses gets no x (x = 0): x has
       nonnegative coefficients in the memory and budget rows and in the "deployment"
       objective, and appears nowhere else.
    """
    prob = pulp.LpProblem("idn_placement", pulp.LpMinimize)
    cat = pulp.LpContinuous if relax else pulp.LpBinary
    n_pairs, n_tri, n_nodes = problem.n_pairs, problem.n_triples, len(problem.node_ids)
    n_classes = len(problem.classes)
    use_tri = np.ones(n_tri, dtype=bool) if fixed is None else fixed[problem.tri_pair].copy()
    tri_node = problem.pair_node[problem.tri_pair]
    budget = problem.options.budget
    budget_row = fixed is None and with_budget and budget is not None
    mem_row = np.ones(n_nodes, dtype=bool)
    cpu_row = np.ones(n_nodes, dtype=bool)
    x_open = np.zeros(n_pairs, dtype=bool)
    stats = {"dropped_triples": 0, "fixed_classes": 0}
    if presolve:
        all_mem = np.bincount(problem.pair_node, weights=problem.pair_size, minlength=n_nodes)
        mem_row = all_mem > problem.mem
        if budget_row and budget is not None and float(problem.pair_cost.sum()) <= budget:
            budget_row = False
        # heaviest load per (class, node) over the modelled triples, summed per node
        k = problem.tri_class[use_tri] * n_nodes + tri_node[use_tri]
        if len(k):
            uk, inv = np.unique(k, return_inverse=True)
            heavy = np.zeros(len(uk))
            np.maximum.at(heavy, inv, problem.tri_load[use_tri])
            worst: np.ndarray = np.bincount(uk % n_nodes, weights=heavy, minlength=n_nodes)
        else:
            worst = np.zeros(n_nodes)
        cpu_row = worst > problem.cap
        if fixed is None and objective in ("cost", "overflow") and not budget_row:
            x_open = ~mem_row[problem.pair_node]
            if objective == "cost" and len(problem.pair_move):
                x_open &= problem.pair_move <= 0  # a new placement costs its move: x is not free
        if objective == "cost" and fixed is None:
            free_tri = use_tri & x_open[problem.tri_pair] & ~cpu_row[tri_node]
            c_free, f_tri = _class_min(problem, np.where(free_tri, problem.tri_cost, np.inf))
            drop = use_tri & (problem.tri_cost >= c_free[problem.tri_class])
            drop[f_tri[f_tri >= 0]] = False
            use_tri &= ~drop
            drop_dom = _dominated_open(problem, use_tri & x_open[problem.tri_pair], tri_node)
            use_tri &= ~drop_dom
            stats["dropped_triples"] = int(drop.sum() + drop_dom.sum())
    if objective == "overflow":
        cpu_row[:] = True

    x: list[pulp.LpVariable | None] = [None] * n_pairs
    addv = prob.add_variable
    if fixed is None:
        # 5. a pair no modelled triple uses gets x = 0 (no variable): x has nonnegative
        # coefficients in memory, budget and the deployment objective, and no other role.
        used = np.zeros(n_pairs, dtype=bool) if presolve else np.ones(n_pairs, dtype=bool)
        used[problem.tri_pair[use_tri]] = True
        for p in np.nonzero(used & ~x_open)[0].tolist():
            x[p] = addv(f"x{p}", 0, 1, cat)
    n_use = np.bincount(problem.tri_class[use_tri], minlength=n_classes)
    single = n_use == 1  # y = 1 by bounds, no serve row
    stats["fixed_classes"] = int(single.sum())
    y: list[pulp.LpVariable | None] = [None] * n_tri
    tri_used = np.nonzero(use_tri)[0]
    for i, lo in zip(tri_used.tolist(), single[problem.tri_class[tri_used]].tolist()):
        y[i] = addv(f"y{i}", 1 if lo else 0, 1)

    w = problem.rate[problem.tri_class] * problem.tri_cost
    overflow: dict[int, pulp.LpVariable] = {}
    A = pulp.LpAffineExpression
    if objective == "cost":
        terms = [(y[i], wi) for i, wi in zip(np.nonzero(use_tri)[0].tolist(), w[use_tri].tolist())]
        if fixed is None and len(problem.pair_move):  # moving a model in costs weight x move ms, once
            terms += [(x[p], float(c)) for p, c in enumerate(problem.pair_move.tolist()) if c > 0 and x[p] is not None]
        prob.setObjective(A(terms))
    elif objective == "deployment":
        pc = problem.pair_cost.tolist()
        prob.setObjective(A([(x[p], pc[p]) for p in range(n_pairs) if x[p] is not None]))
    elif objective == "overflow":
        overflow = {n: addv(f"o{n}", 0) for n in range(n_nodes)}
        prob.setObjective(A([(o, 1.0) for o in overflow.values()]))
    else:
        raise ValueError(f"unknown objective {objective!r}")

    LE, EQ = pulp.LpConstraintLE, pulp.LpConstraintEQ
    C = pulp.LpConstraint
    add = prob.addConstraint
    # serve rows: the used triples are sorted by class, so each class's y are one slice
    y_used = [y[i] for i in tri_used.tolist()]
    used_ptr = np.concatenate([[0], np.cumsum(n_use)]).tolist()
    ones = itertools.repeat(1.0)
    for r in np.nonzero(~single)[0].tolist():
        add(C(A(zip(y_used[used_ptr[r]:used_ptr[r + 1]], ones)), EQ, None, 1.0), f"serve{r}")
    if fixed is None:
        tp = problem.tri_pair
        link = np.nonzero(use_tri & ~x_open[tp])[0]
        for i, yi, xp in zip(link.tolist(), [y[i] for i in link.tolist()], [x[p] for p in tp[link].tolist()]):
            add(C(A(((yi, 1.0), (xp, -1.0))), LE, None, 0.0), f"l{i}")
        by_node: dict[int, list[tuple[pulp.LpVariable, float]]] = {}
        for p, n, sz in zip(range(n_pairs), problem.pair_node.tolist(), problem.pair_size.tolist()):
            if mem_row[n] and x[p] is not None:
                by_node.setdefault(n, []).append((x[p], sz))
        for n, terms in by_node.items():
            add(C(A(terms), LE, None, float(problem.mem[n])), f"mem{n}")
        if budget_row and budget is not None:
            pc = problem.pair_cost.tolist()
            add(C(A([(x[p], pc[p]) for p in range(n_pairs) if x[p] is not None]), LE, None, float(budget)), "budget")
    # compute rows: the used triples at capped nodes, grouped by node
    at = np.nonzero(use_tri & cpu_row[tri_node])[0]
    at = at[np.argsort(tri_node[at], kind="stable")]
    nodes_at = tri_node[at]
    y_at = [y[i] for i in at.tolist()]
    load_at = problem.tri_load[at].tolist()
    bounds = np.searchsorted(nodes_at, np.arange(n_nodes + 1)).tolist()
    for n in range(n_nodes):
        a, b = bounds[n], bounds[n + 1]
        if a == b and not overflow:
            continue
        terms = list(zip(y_at[a:b], load_at[a:b]))
        if overflow:
            terms.append((overflow[n], -1.0))
        add(C(A(terms), LE, None, float(problem.cap[n])), f"cpu{n}")
    stats.update(rows=len(prob._constraints), x_vars=sum(v is not None for v in x),
                 y_vars=int(use_tri.sum()), open_pairs=int(x_open.sum()))
    return Model(prob, x, y, overflow, x_open if x_open.any() else None, stats)


def values(vars_: list[pulp.LpVariable | None]) -> np.ndarray:
    return np.array([(v.varValue or 0.0) if v is not None else 0.0 for v in vars_], dtype=float)


