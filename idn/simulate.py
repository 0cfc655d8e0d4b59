"""Trace-driven simulation: placement policies against the per-period optimum, offline.

A trace (:mod:`idn.trace`) is cut into control periods. In every period each policy
holds a placement (which variants live on which node), decided *before* the period with
what that policy may know; the period's true demand is then served and scored. Every
policy is scored the same way, with the live system's own machinery:

* the problem is ``build_problem`` of the period's true demand (cached per demand shape,
  see ``ProblemCache``);
* serving: the best split over the placed variants (the optimum of ``split.best_split``:
  each class to its cheapest placed target, or the routing LP when a compute cap binds;
  see ``route``). When the
  placements cannot carry the demand, the overflow goes to the repository, which loads
  what it needs on demand (counted as moves); when even that fails, each class goes to
  its cheapest placed target regardless of caps, and the evaluator reports the breach;
* scoring: ``evaluate`` (the same evaluator as ``idn solve``), gain against
  repository-only as the paper defines it.

Policies (``POLICIES``):

* ``static``: one ILP on the first period's demand (``--static-on mean``: on the trace's
  mean demand, which peeks at the future), never moves;
* ``periodic-ilp``: re-solves the ILP every period on the previous period's *measured*
  demand (Poisson counts over the period, as the controller measures them; the first
  period uses the first period's demand as the deployment forecast), moves free;
* ``periodic-ilp-moves``: the same with move costs in the ILP (:mod:`idn.placement.moves`):
  ``solve`` gets what the nodes hold as the running plan, keeping a placement is free and
  a new one costs ``move_weight / period_s`` per ms of moving, as ``idn control`` charges;
* ``greedy``: the greedy baseline, re-run like ``periodic-ilp``;
* ``infida``: :mod:`idn.online.infida`, updated after each period from its measured demand,
  with the paper's dependent rounding (``depround``) re-drawn every period;
  ``infida-coupled``: the same with our coupled rounding (fixed draws: far fewer moves);
* ``control``: ``idn control``'s own decision round (:func:`idn.control_round.decide_round`,
  the very function the live controller calls) on the previous period's measured demand:
  the ILP with move costs over one period, the running plan's idle variants kept while they
  fit, and a new plan applied only when the running one breaks or the new one is
  ``min_gain`` cheaper after its moves, not within ``hold_rounds`` of the last change;
  so the simulator predicts what the live controller does;
* ``hindsight``: the ILP on each period's *true* demand: the per-period optimum, the bound.

Reported per period and overall: cost, gain, accuracy, violations (SLO, compute, memory),
reconfigurations (placements added + removed, from the second period on), bytes moved
(size of the variants newly placed) and their move time (``placement.moves.move_time``:
the catalog's load time, or its size-scaled estimate, plus the bytes over the links from
the repository at their bandwidth; what the ILP with moves charges).
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from idn.catalog import Catalog
from idn.control_round import RoundKnobs, decide_round
from idn.demand import Demand, RequestClass
from idn.latency import LatencyModel
from idn.online.infida import Infida, InfidaOptions
from idn.placement import solve as solve_fn
from idn.placement.backends import SolverOptions
from idn.placement.baselines import repository_only
from idn.placement.evaluate import Evaluation, evaluate
from idn.placement.explain import InfeasibleProblem, NoPlan
from idn.placement.moves import Moves as PlacementMoves
from idn.placement.moves import move_time
from idn.placement.problem import PlacementOptions, Problem, build_problem
from idn.placement.solution import from_arrays, to_plan
from idn.plan import Plan, SolverFacts, SolveStatus
from idn.topology import Topology
from idn.trace import Period, Trace

POLICIES = ("static", "periodic-ilp", "periodic-ilp-moves", "greedy", "infida", "infida-coupled", "control",
            "hindsight")
MEASUREMENTS = ("poisson", "exact")

Placement = dict[str, set[str]]


# -- problems per demand shape -------------------------------------------------------------

def shape_key(demand: Demand) -> tuple[Any, ...]:
    """What a built problem depends on besides the rates: the classes and their fields."""
    return tuple((c.id, c.ingress, c.task, c.max_latency_ms, c.min_accuracy, c.payload) for c in demand.classes)


class ProblemCache:
    """``build_problem`` once per demand shape; a new rate vector only rescales.

    Of a built problem only ``rate``, ``classes`` (their rate fields) and ``tri_load``
    (rate x compute time) depend on the rates: which triples exist (paths, memory, budget,
    domination, SLOs) and their costs do not. A cached problem is the shape's problem
    with those three replaced.

    With a ``universe`` (every class the trace can produce, in trace order), a demand
    whose classes are a subset of it in the same order is not built at all: its problem
    is the universe's problem restricted to those classes (``restrict``), since problem
    building treats every (ingress, task) block and every class on its own. So a trace
    where classes come and go (or a Poisson measurement that misses a quiet class) costs
    one build in total. ``tests/test_simulate.py`` checks both against a fresh
    ``build_problem``, array for array.
    """

    def __init__(self, topology: Topology, catalog: Catalog, options: PlacementOptions,
                 universe: Demand | None = None, max_shapes: int = 32):
        self.topology, self.catalog, self.options = topology, catalog, options
        self.max_shapes = max_shapes
        self._shapes: OrderedDict[tuple[Any, ...], tuple[Problem, np.ndarray]] = OrderedDict()
        self.builds = self.restricts = self.hits = 0
        self.build_s = self.restrict_s = self.reuse_s = 0.0
        self._universe: tuple[Problem, np.ndarray, dict[tuple[Any, ...], int]] | None = None
        if universe is not None and universe.classes:
            t0 = time.perf_counter()
            full = build_problem(topology, catalog, universe, options)
            self._universe = (full, _unit_load(full), {_class_key(c): i for i, c in enumerate(universe.classes)})
            self.builds += 1
            self.build_s += time.perf_counter() - t0

    def get(self, demand: Demand) -> Problem:
        key = shape_key(demand)
        t0 = time.perf_counter()
        hit = self._shapes.get(key)
        if hit is None:
            problem = self._restricted(demand)
            if problem is None:
                problem = build_problem(self.topology, self.catalog, demand, self.options)
                self.builds += 1
                self.build_s += time.perf_counter() - t0
            else:
                self.restricts += 1
                self.restrict_s += time.perf_counter() - t0
            self._shapes[key] = (problem, _unit_load(problem))
            if len(self._shapes) > self.max_shapes:
                self._shapes.popitem(last=False)
            return problem
        self._shapes.move_to_end(key)
        base, unit = hit
        rate = np.array([c.rate for c in demand.classes], dtype=float)
        problem = replace(base, classes=list(demand.classes), rate=rate, tri_load=unit * rate[base.tri_class])
        self.hits += 1
        self.reuse_s += time.perf_counter() - t0
        return problem

    def _restricted(self, demand: Demand) -> Problem | None:
        if self._universe is None:
            return None
        full, unit, index = self._universe
        idx = [index.get(_class_key(c), -1) for c in demand.classes]
        if not idx or min(idx) < 0 or any(b <= a for a, b in zip(idx, idx[1:])):
            return None  # not a subset in trace order: build it
        return restrict(full, unit, np.array(idx, dtype=np.int64), list(demand.classes), self.catalog)

    def stats(self) -> dict[str, float]:
        return {"builds": self.builds, "restricted": self.restricts, "rescaled": self.hits,
                "build_s": round(self.build_s, 4), "restrict_s": round(self.restrict_s, 4),
                "rescale_s": round(self.reuse_s, 4)}


def _class_key(c: RequestClass) -> tuple[Any, ...]:
    return (c.id, c.ingress, c.task, c.max_latency_ms, c.min_accuracy, c.payload)


def _unit_load(problem: Problem) -> np.ndarray:
    """Cores per (req/s) of every triple: ``tri_load / rate`` of its class."""
    return problem.tri_load / np.maximum(problem.rate[problem.tri_class], 1e-300)


def restrict(full: Problem, unit: np.ndarray, keep: np.ndarray, classes: list[RequestClass],
             catalog: Catalog) -> Problem:
    """The problem of ``classes`` (= ``full``'s classes ``keep``, increasing, with new rates), as
    ``build_problem`` would build it: only their triples, only the variants of their tasks,
    pairs renumbered by first appearance. ``stats`` keeps the universe's pruning counts."""
    rate = np.array([c.rate for c in classes], dtype=float)
    cmap = np.full(len(full.classes), -1, dtype=np.int64)
    cmap[keep] = np.arange(len(keep))
    tasks = {c.task for c in classes}
    kept_vars = np.array([i for i, v in enumerate(full.variant_names) if catalog.variant(v).task in tasks],
                         dtype=np.int64)
    vmap = np.full(len(full.variant_names), -1, dtype=np.int64)
    vmap[kept_vars] = np.arange(len(kept_vars))
    mask = cmap[full.tri_class] >= 0
    t_class = cmap[full.tri_class[mask]]
    p_full = full.tri_pair[mask]
    uk, first, inv = np.unique(p_full, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    rank = np.empty(len(uk), dtype=np.int64)
    rank[by_first] = np.arange(len(uk))
    pairs = uk[by_first]
    counts = np.bincount(t_class, minlength=len(classes))
    names = [full.variant_names[i] for i in kept_vars]
    return replace(
        full, classes=classes, rate=rate, variant_names=names, size=full.size[kept_vars], acc=full.acc[kept_vars],
        pair_node=full.pair_node[pairs], pair_var=vmap[full.pair_var[pairs]],
        pair_move=full.pair_move[pairs] if len(full.pair_move) else full.pair_move,
        tri_class=t_class, tri_pair=rank[inv].astype(np.int64), tri_cost=full.tri_cost[mask],
        tri_latency=full.tri_latency[mask], tri_load=unit[mask] * rate[t_class],
        class_ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        unservable=np.nonzero(counts == 0)[0].tolist(),
        notes=[n for n in full.notes if any(repr(v) in n for v in names)],
        stats={**full.stats, "triples": int(mask.sum()), "pairs": len(uk)})


# -- scoring -------------------------------------------------------------------------------

@dataclass
class Scored:
    plan: Plan
    evaluation: Evaluation
    held: Placement          # what the nodes hold: the policy's placement + on-demand loads
    routing: str             # best-split | overflow-to-repository | over-caps
    reference_objective: float


class Scorer:
    """Serves a period's true demand on a placement and scores it with ``evaluate``."""

    def __init__(self, topology: Topology, catalog: Catalog, options: PlacementOptions, cache: ProblemCache,
                 solver: SolverOptions = SolverOptions()):
        self.topology, self.catalog, self.options, self.cache, self.solver = topology, catalog, options, cache, solver
        self.model = LatencyModel(topology, catalog)
        # class key -> (cost per request under repository-only, its repository-only route)
        self._refs: dict[tuple[Any, ...], tuple[float, list[tuple[str, str, float]]]] = {}

    def reference(self, demand: Demand, problem: Problem | None = None) -> tuple[np.ndarray, list[Any]]:
        """Per class (in demand order): its cost per request under repository-only and that route.

        repository-only serves every class on its own (its cheapest variant at the end of its
        path), so both are per class and independent of the rates: computed once per class
        (by ``repository_only`` and ``evaluate``) and reused by every period and policy."""
        missing = [c for c in demand.classes if _class_key(c) not in self._refs]
        if missing:
            sub = Demand(tuple(missing), demand.file)
            p = self.cache.get(sub) if len(missing) < len(demand.classes) or problem is None else problem
            sol = repository_only(p, self.topology, self.catalog)
            ev = evaluate(to_plan(p, sol), self.topology, self.catalog, sub, self.options, latency=self.model)
            for r, c in enumerate(missing):
                self._refs[_class_key(c)] = (ev.classes[c.id].cost_ms, sol.routes[r])
        refs = [self._refs[_class_key(c)] for c in demand.classes]
        return np.array([r[0] for r in refs]), [r[1] for r in refs]

    def score(self, placement: Placement, demand: Demand, name: str = "policy") -> Scored:
        problem = self.cache.get(demand)
        ref_cost, ref_routes = self.reference(demand, problem)
        ref_obj = float(np.dot(problem.rate, ref_cost))
        placed = placed_mask(problem, placement)
        shares = route(problem, placed)
        routing = "best-split"
        if shares is None:  # overflow to the repository, which loads what it needs
            wide = placed | problem.repository[problem.pair_node]
            shares = route(problem, wide)
            routing = "overflow-to-repository"
            if shares is None:  # nothing carries it within the caps: cheapest placed target, caps broken
                best = cheapest_per_class(problem, wide)
                shares = np.zeros(problem.n_triples)
                shares[best[best >= 0]] = 1.0
                routing = "over-caps"
        facts = SolverFacts(name, SolveStatus.HEURISTIC, problem.objective_of(shares))
        sol = from_arrays(problem, name, shares, facts)
        for r in range(len(problem.classes)):  # classes no placed target can serve: at the repository
            if r not in sol.routes:
                sol.routes[r] = ref_routes[r]
                for n, v, _ in ref_routes[r]:
                    sol.placements.setdefault(n, set()).add(v)
        held: Placement = {n: set(vs) for n, vs in placement.items()}
        for n, vs in sol.placements.items():
            held.setdefault(n, set()).update(vs)
        plan = replace(to_plan(problem, sol), placements={n: tuple(sorted(vs)) for n, vs in sorted(held.items()) if vs})
        ev = evaluate(plan, self.topology, self.catalog, demand, self.options, reference_objective=ref_obj,
                      latency=self.model)
        return Scored(plan, ev, held, routing, ref_obj)


def cheapest_per_class(problem: Problem, allowed: np.ndarray) -> np.ndarray:
    """Per class, its cheapest allowed triple (-1 when none): ``split.cheapest_placed``, vectorised."""
    cost = np.where(allowed[problem.tri_pair], problem.tri_cost, np.inf)
    best = np.full(len(problem.classes), -1, dtype=np.int64)
    if problem.n_triples == 0:
        return best
    order = np.lexsort((np.arange(problem.n_triples), cost, problem.tri_class))  # by class, cost, position
    first = np.ones(len(order), dtype=bool)
    cls = problem.tri_class[order]
    first[1:] = cls[1:] != cls[:-1]
    heads = order[first]
    ok = np.isfinite(cost[heads])
    best[problem.tri_class[heads[ok]]] = heads[ok]
    return best


def _highs() -> Any:
    """A silent HiGHS instance (its C++ banner, printed on the first one, kept off stdout)."""
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    return h


def route(problem: Problem, placed: np.ndarray) -> np.ndarray | None:
    """The optimal split over the placed pairs, or None when no split exists.

    The same optimum as :func:`idn.placement.split.best_split` (each class to its cheapest
    placed target when no compute cap binds; else the routing LP: min sum rate x cost x
    share, every class fully served, load <= rho x cores per node), with the LP handed to
    HiGHS as arrays rather than through PuLP, because the simulator solves it for every
    policy in every period. ``tests/test_simulate.py`` checks the two optima agree."""
    best = cheapest_per_class(problem, placed)
    if (best < 0).any():
        return None
    shares = np.zeros(problem.n_triples)
    shares[best] = 1.0
    tri_node = problem.pair_node[problem.tri_pair]
    load = np.bincount(tri_node, weights=problem.tri_load * shares, minlength=len(problem.node_ids))
    if np.all(load <= problem.cap * (1 + 1e-9)):
        return shares
    import highspy

    cols = np.nonzero(placed[problem.tri_pair])[0]
    n_cls, n_nodes = len(problem.classes), len(problem.node_ids)
    rows_cls = problem.tri_class[cols]
    rows_node = n_cls + tri_node[cols]
    ld = problem.tri_load[cols]
    h = _highs()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(cols), n_cls + n_nodes
    lp.col_cost_ = problem.rate[rows_cls] * problem.tri_cost[cols]
    lp.col_lower_, lp.col_upper_ = np.zeros(len(cols)), np.ones(len(cols))
    lp.row_lower_ = np.concatenate([np.ones(n_cls), np.full(n_nodes, -highspy.kHighsInf)])
    lp.row_upper_ = np.concatenate([np.ones(n_cls), problem.cap])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, 2 * len(cols) + 1, 2, dtype=np.int32)
    lp.a_matrix_.index_ = np.column_stack([rows_cls, rows_node]).ravel().astype(np.int32)
    lp.a_matrix_.value_ = np.column_stack([np.ones(len(cols)), ld]).ravel()
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    shares = np.zeros(problem.n_triples)
    shares[cols] = np.clip(np.asarray(h.getSolution().col_value), 0.0, 1.0)
    return shares


def placed_mask(problem: Problem, placement: Placement) -> np.ndarray:
    """The problem's candidate pairs that a placement holds."""
    nidx = {n: i for i, n in enumerate(problem.node_ids)}
    vidx = {v: i for i, v in enumerate(problem.variant_names)}
    nv = len(problem.variant_names)
    keys = {nidx[n] * nv + vidx[v] for n, vs in placement.items() if n in nidx for v in vs if v in vidx}
    pair_keys = problem.pair_node * nv + problem.pair_var
    return np.isin(pair_keys, np.fromiter(keys, dtype=np.int64, count=len(keys)))


# -- moves ---------------------------------------------------------------------------------

@dataclass
class Moves:
    """What changed between two periods' placements (not the ILP's ``placement.moves.Moves``)."""
    added: int = 0
    removed: int = 0
    bytes: int = 0
    load_ms: float = 0.0
    transfer_ms: float = 0.0


def moves_between(before: Placement, after: Placement, model: LatencyModel) -> Moves:
    """Placements added and removed, and the added ones' bytes and move time: ``move_time`` of
    :mod:`idn.placement.moves` (the catalog's load time, or its size-scaled estimate, plus the
    bytes over the links from the repository), the same cost the ILP with moves charges."""
    m = Moves()
    for n in set(before) | set(after):
        old, new = before.get(n, set()), after.get(n, set())
        added = new - old
        m.added += len(added)
        m.removed += len(old - new)
        for v in added:
            variant = model.catalog.variant(v)
            mt = move_time(model, n, variant)
            m.bytes += variant.bytes
            m.load_ms += mt.load_ms
            m.transfer_ms += mt.transfer_ms
    return m


# -- policies ------------------------------------------------------------------------------

class Policy:
    """Decides the placement of period k before it starts; may learn from its measurement after."""
    name = "policy"

    def decide(self, k: int, forecast: Demand, truth: Demand, held: Placement) -> Placement:
        """``forecast``: what the policy may know (the previous period's measurement); ``truth``:
        the period's true demand (only hindsight may look); ``held``: what the nodes hold now."""
        raise NotImplementedError

    def observe(self, k: int, measured: Demand) -> None:
        """The demand measured during period k (only INFIDA learns from it directly)."""


class _Solving(Policy):
    def __init__(self, env: Simulator, method: str, move_costs: bool = False):
        self.env, self.method, self.move_costs = env, method, move_costs
        self.placement: Placement = {}
        self.failures = 0

    def _solve(self, demand: Demand, held: Placement) -> Placement:
        opts = self.env.options
        moves = None
        if self.move_costs and held:  # the running plan: keeping is free, a new placement costs its move
            moves = PlacementMoves.from_placements(held, opts.move_weight / self.env.period_s)
        try:
            if moves is None:
                out = solve_fn(self.env.topology, self.env.catalog, demand, opts.placement, method=self.method,
                               solver=opts.solver, problem=self.env.cache.get(demand))
            else:  # the problem depends on the running plan: solve builds it
                out = solve_fn(self.env.topology, self.env.catalog, demand, opts.placement, method=self.method,
                               solver=opts.solver, moves=moves)
        except InfeasibleProblem:
            self.failures += 1  # keep what runs
            return self.placement
        self.placement = {n: set(vs) for n, vs in out.plan.placements.items()}
        return self.placement


class StaticPolicy(_Solving):
    name = "static"

    def __init__(self, env: Simulator, initial: Demand):
        super().__init__(env, env.options.method)
        self.initial = initial
        self.solved = False

    def decide(self, k: int, forecast: Demand, truth: Demand, held: Placement) -> Placement:
        if not self.solved:
            self.solved = True
            return self._solve(self.initial, {})
        return self.placement


class PeriodicPolicy(_Solving):
    def __init__(self, env: Simulator, name: str, method: str, move_costs: bool = False):
        super().__init__(env, method, move_costs)
        self.name = name

    def decide(self, k: int, forecast: Demand, truth: Demand, held: Placement) -> Placement:
        return self._solve(forecast, held)


class HindsightPolicy(_Solving):
    name = "hindsight"

    def __init__(self, env: Simulator):
        super().__init__(env, env.options.method)

    def decide(self, k: int, forecast: Demand, truth: Demand, held: Placement) -> Placement:
        return self._solve(truth, held)  # the bound: no move costs (move_costs=False)


class ControlPolicy(Policy):
    """``idn control`` in the loop: one :func:`~idn.control_round.decide_round` per period on
    the previous period's measurement, with the controller's state (the running plan, rounds
    since the last change) carried over exactly as ``Controller.step`` carries it. A period
    with no measured traffic is no round (the controller skips it too); a demand with no
    plan keeps what runs (the controller logs and waits for the next round)."""
    name = "control"

    def __init__(self, env: Simulator, knobs: RoundKnobs):
        self.env, self.knobs = env, knobs
        self.plan: Plan | None = None
        self.since_change = 1_000_000
        self.applied: list[bool] = []   # per period: a new plan was applied before it
        self.changed: list[int] = []    # per period: placements added + removed by that plan (0: none applied)
        self.reasons: list[str] = []    # per period: the decision's reason
        self.failures = 0

    def placement(self) -> Placement:
        return {n: set(vs) for n, vs in self.plan.placements.items()} if self.plan is not None else {}

    def decide(self, k: int, forecast: Demand, truth: Demand, held: Placement) -> Placement:
        if not forecast.classes:
            self.applied.append(False)
            self.changed.append(0)
            self.reasons.append("no traffic measured")
            return self.placement()
        self.since_change += 1
        try:
            rnd = decide_round(self.env.topology, self.env.catalog, forecast, self.plan, self.since_change,
                               self.knobs)
        except NoPlan as e:
            self.failures += 1
            self.applied.append(False)
            self.changed.append(0)
            self.reasons.append(f"no plan: {e.headline}")
            return self.placement()
        self.applied.append(rnd.decision.apply)
        self.reasons.append(rnd.decision.reason)
        before = self.placement()
        after = {n: set(vs) for n, vs in rnd.plan.placements.items()} if rnd.decision.apply else before
        self.changed.append(sum(len(after.get(n, set()) ^ before.get(n, set())) for n in set(before) | set(after)))
        if rnd.decision.apply:
            self.plan = rnd.plan.with_version(1 if self.plan is None else self.plan.version + 1)
            self.since_change = 0
        return self.placement()


class InfidaPolicy(Policy):
    def __init__(self, env: Simulator, name: str = "infida", options: InfidaOptions | None = None):
        self.env, self.name = env, name
        self.infida = Infida(env.topology, env.catalog, options or env.options.infida, env.options.placement)

    def decide(self, k: int, forecast: Demand, truth: Demand, held: Placement) -> Placement:
        return self.infida.placement()

    def observe(self, k: int, measured: Demand) -> None:
        if not measured.classes:
            return
        problem = self.env.cache.get(measured)
        ref_cost, _ = self.env.scorer.reference(measured, problem)
        self.infida.update(problem, ref_cost)


# -- the run -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimOptions:
    period_s: float | None = None          # None: the trace's period_s
    measurement: str = "poisson"           # how policies see the past period: poisson counts | exact rates
    seed: int = 0
    static_on: str = "first"               # first | mean
    method: str = "highs"                  # the ILP's solver (static, periodic-ilp, hindsight)
    solver: SolverOptions = field(default_factory=SolverOptions)
    placement: PlacementOptions = field(default_factory=PlacementOptions)
    infida: InfidaOptions = field(default_factory=InfidaOptions)
    move_weight: float = 1.0               # periodic-ilp-moves: request-ms one ms of moving is worth (the
                                           # controller's default), amortised over one period
    min_gain: float = 0.05                 # control: idn control's --min-gain
    hold_rounds: int = 1                   # control: idn control's --hold-rounds
    keep_idle: bool = True                 # control: idn control's --keep-idle

    def as_dict(self) -> dict[str, Any]:
        return {"period_s": self.period_s, "measurement": self.measurement, "seed": self.seed,
                "static_on": self.static_on, "method": self.method, "solver": self.solver.as_dict(),
                "placement": self.placement.as_dict(), "infida": self.infida.as_dict(),
                "move_weight": self.move_weight, "min_gain": self.min_gain, "hold_rounds": self.hold_rounds,
                "keep_idle": self.keep_idle}


@dataclass
class PeriodRecord:
    index: int
    start_s: float
    end_s: float
    rate: float
    objective: float
    reference: float
    gain: float | None
    mean_cost_ms: float
    mean_latency_ms: float
    accuracy: float
    violations: int
    slo_violations: int
    compute_violations: int
    memory_violations: int
    routing: str
    added: int
    removed: int
    bytes_moved: int
    load_ms: float
    transfer_ms: float
    decide_s: float
    score_s: float
    held: int
    applied: bool | None = None   # control: whether a new plan was applied before this period
    plan_changes: int | None = None  # control: placements added + removed by that plan (what the live
                                     # controller pushes; ``added``/``removed`` also count on-demand loads)


@dataclass
class PolicyResult:
    name: str
    periods: list[PeriodRecord] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class SimResult:
    trace: str
    topology: str
    options: dict[str, Any]
    policies: dict[str, PolicyResult]
    timing: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"trace": self.trace, "topology": self.topology, "options": self.options, "timing": self.timing,
                "policies": {k: {"summary": p.summary, "periods": [asdict(r) for r in p.periods]}
                             for k, p in self.policies.items()}}


def measure(demand: Demand, length_s: float, rng: np.random.Generator | None) -> Demand:
    """What a controller measures over a period: Poisson counts / length (exact when rng is None)."""
    if rng is None:
        return demand
    classes = []
    for c in demand.classes:
        n = int(rng.poisson(c.rate * length_s))
        if n > 0:
            classes.append(replace(c, rate=n / length_s))
    return Demand(tuple(classes), file=demand.file)


def _violation_counts(ev: Evaluation) -> tuple[int, int, int]:
    slo = sum(v.startswith("SLO") for v in ev.violations)
    compute = sum(v.startswith("compute") for v in ev.violations)
    memory = sum(v.startswith("memory") for v in ev.violations)
    return slo, compute, memory


class Simulator:
    def __init__(self, topology: Topology, catalog: Catalog, trace: Trace, options: SimOptions = SimOptions()):
        if options.measurement not in MEASUREMENTS:
            raise ValueError(f"unknown measurement {options.measurement!r} (use one of {', '.join(MEASUREMENTS)})")
        if options.static_on not in ("first", "mean"):
            raise ValueError("static_on must be 'first' or 'mean'")
        self.topology, self.catalog, self.trace, self.options = topology, catalog, trace, options
        self.period_s = options.period_s or trace.period_s
        self.universe = Demand(tuple(tc.cls for tc in trace.classes if tc.cls.rate > 0), "<every class of the trace>")
        self.cache = ProblemCache(topology, catalog, options.placement, universe=self.universe)
        self.scorer = Scorer(topology, catalog, options.placement, self.cache, options.solver)

    def make(self, name: str, periods: list[Period]) -> Policy:
        if name == "static":
            initial = periods[0].demand if self.options.static_on == "first" else self.universe  # at mean rates
            return StaticPolicy(self, initial)
        if name == "periodic-ilp":
            return PeriodicPolicy(self, name, self.options.method)
        if name == "periodic-ilp-moves":
            return PeriodicPolicy(self, name, self.options.method, move_costs=True)
        if name == "greedy":
            return PeriodicPolicy(self, name, "greedy")
        if name in ("infida", "infida-coupled"):
            if self.options.placement.budget is not None:
                raise ValueError("infida has no global deployment budget (see idn.online.infida): drop --budget")
            if name == "infida":
                return InfidaPolicy(self)
            return InfidaPolicy(self, name, replace(self.options.infida, rounding="coupled"))
        if name == "hindsight":
            return HindsightPolicy(self)
        if name == "control":
            return ControlPolicy(self, self.knobs())
        raise ValueError(f"unknown policy {name!r} (use one of {', '.join(POLICIES)})")

    def knobs(self) -> RoundKnobs:
        """``idn control``'s options for the control policy: its interval is the period."""
        o = self.options
        return RoundKnobs(o.placement, o.method, o.solver, min_gain=o.min_gain, interval_s=self.period_s,
                          move_weight=o.move_weight, hold_rounds=o.hold_rounds, keep_idle=o.keep_idle)

    def run(self, policies: list[str] | tuple[str, ...] = POLICIES, bound: bool = True) -> SimResult:
        """Every policy over every period; ``bound``: compute hindsight even when not asked for
        (the "% of hindsight" figures need it)."""
        t_start = time.perf_counter()
        names = list(dict.fromkeys([*policies, "hindsight"] if bound else policies))
        periods = self.trace.periods(self.options.period_s)
        rng = np.random.default_rng(self.options.seed) if self.options.measurement == "poisson" else None
        measured = [measure(p.demand, p.length_s, rng) for p in periods]
        pols = [self.make(n, periods) for n in names]
        results = {p.name: PolicyResult(p.name) for p in pols}
        held: dict[str, Placement] = {p.name: {} for p in pols}
        for k, period in enumerate(periods):
            truth = period.demand
            forecast = periods[0].demand if k == 0 else measured[k - 1]
            for pol in pols:
                t0 = time.perf_counter()
                placement = pol.decide(k, forecast, truth, held[pol.name])
                t1 = time.perf_counter()
                if not truth.classes:
                    rec = PeriodRecord(k, period.start_s, period.end_s, 0.0, 0.0, 0.0, None, 0.0, 0.0, 0.0, 0, 0, 0, 0,
                                       "idle", 0, 0, 0, 0.0, 0.0, t1 - t0, 0.0, 0,
                                       pol.applied[-1] if isinstance(pol, ControlPolicy) else None,
                                       pol.changed[-1] if isinstance(pol, ControlPolicy) else None)
                    results[pol.name].periods.append(rec)
                    continue
                sc = self.scorer.score(placement, truth, pol.name)
                t2 = time.perf_counter()
                mv = moves_between(held[pol.name], sc.held, self.scorer.model)
                held[pol.name] = sc.held
                ev = sc.evaluation
                slo, compute, memory = _violation_counts(ev)
                results[pol.name].periods.append(PeriodRecord(
                    k, period.start_s, period.end_s, truth.total_rate, ev.objective, sc.reference_objective,
                    ev.gain_vs_repository, ev.mean_cost_ms, ev.mean_latency_ms, ev.accuracy, len(ev.violations), slo,
                    compute, memory, sc.routing, mv.added, mv.removed, mv.bytes, mv.load_ms, mv.transfer_ms,
                    t1 - t0, t2 - t1, sum(len(v) for v in sc.held.values()),
                    pol.applied[-1] if isinstance(pol, ControlPolicy) else None,
                    pol.changed[-1] if isinstance(pol, ControlPolicy) else None))
                pol.observe(k, measured[k])
        wall = time.perf_counter() - t_start
        best = summarise(results["hindsight"], None) if "hindsight" in results else None
        for name, res in results.items():
            res.summary = summarise(res, best if name != "hindsight" else None)
        if "hindsight" in results and "hindsight" not in policies:
            results["hindsight"].summary["implicit"] = True
        timing = {"wall_s": round(wall, 3), "periods": len(periods), "periods_per_s": round(len(periods) / wall, 3),
                  "problem_cache": self.cache.stats(),
                  "per_policy_s": {n: round(sum(r.decide_s + r.score_s for r in res.periods), 3)
                                   for n, res in results.items()}}
        return SimResult(self.trace.name, self.topology.file or "<topology>", self.options.as_dict(), results, timing)


def summarise(res: PolicyResult, bound: dict[str, Any] | None) -> dict[str, Any]:
    ps = [r for r in res.periods if r.rate > 0]
    w = np.array([r.end_s - r.start_s for r in ps])
    obj = np.array([r.objective for r in ps])
    ref = np.array([r.reference for r in ps])
    rate = np.array([r.rate for r in ps])
    total_ref = float(np.dot(ref, w))
    gain = 1.0 - float(np.dot(obj, w)) / total_ref if total_ref > 0 else None
    reqs = rate * w
    later = [r for r in res.periods if r.index > 0]
    out: dict[str, Any] = {
        "gain": gain,
        "mean_cost_ms": float(np.dot(obj, w) / reqs.sum()) if reqs.sum() > 0 else None,
        "accuracy": float(np.dot([r.accuracy for r in ps], reqs) / reqs.sum()) if reqs.sum() > 0 else None,
        "periods": len(res.periods),
        "periods_with_violations": sum(r.violations > 0 for r in ps),
        "slo_violations": sum(r.slo_violations for r in ps),
        "compute_violations": sum(r.compute_violations for r in ps),
        "memory_violations": sum(r.memory_violations for r in ps),
        "periods_overflowing": sum(r.routing != "best-split" for r in ps),
        "reconfigurations": sum(r.added + r.removed for r in later),
        "added": sum(r.added for r in later),
        "removed": sum(r.removed for r in later),
        "bytes_moved": sum(r.bytes_moved for r in later),
        "move_load_ms": round(sum(r.load_ms for r in later), 3),
        "move_transfer_ms": round(sum(r.transfer_ms for r in later), 3),
        "initial_bytes": res.periods[0].bytes_moved if res.periods else 0,
        "decide_s": round(sum(r.decide_s for r in res.periods), 4),
        "plans_applied": sum(bool(r.applied) for r in res.periods) if any(r.applied is not None
                                                                          for r in res.periods) else None,
        "score_s": round(sum(r.score_s for r in res.periods), 4),
    }
    if bound is not None and bound.get("gain"):
        out["gain_of_hindsight"] = gain / bound["gain"] if gain is not None else None
    return out


# -- output --------------------------------------------------------------------------------

def plot(result: SimResult, path: str | Path) -> Path:
    """Time series: offered load, gain per period per policy (hindsight = the bound), moves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    first = next(iter(result.policies.values()))
    mid = [(r.start_s + r.end_s) / 2 for r in first.periods]
    axes[0].plot(mid, [r.rate for r in first.periods], color="black")
    axes[0].set_ylabel("offered load (req/s)")
    axes[0].set_title(f"{result.trace}: {len(mid)} periods on {Path(result.topology).name}")
    for name, res in result.policies.items():
        style = {"color": "black", "linestyle": "--", "linewidth": 2} if name == "hindsight" else {}
        axes[1].plot(mid, [100 * (r.gain or 0.0) for r in res.periods], label=name, **style)
        axes[2].plot(mid, np.cumsum([r.added + r.removed if r.index > 0 else 0 for r in res.periods]), label=name,
                     **style)
    axes[1].set_ylabel("gain vs repository-only (%)")
    axes[1].legend(loc="lower right", fontsize=8)
    axes[2].set_ylabel("reconfigurations (cumulative)")
    axes[2].set_xlabel("trace time (s)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
