"""The placement ILP (DESIGN.md, "Placement: the ILP") built with PuLP and solved by HiGHS or CBC.

Variables exist only for what ``build_problem`` kept: x[p] in {0,1} per candidate
placement p = (n, v) and y[i] in [0,1] per useful triple i = (r, n, v)::

    min  sum_i rate[r_i] * c[i] * y[i]
    s.t. sum_{i of r} y[i] = 1                     every class fully served
         y[i] <= x[p_i]                            (disaggregated linking, one row per triple)
         sum_{p at n} size[p] x[p] <= mem[n]       memory
         sum_{i at n} load[i] y[i] <= rho cores[n] compute (load = rate * t / 1000)
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

Honest status: PuLP maps a HiGHS time limit to "Optimal" in ``prob.status``; this module
reads ``prob.sol_status`` and HiGHS' own model status and info (``mip_dual_bound``,
``mip_gap``), or CBC's log, and reports ``optimal`` only for a proven optimum
(within the solver's default tolerance), ``gap-limit`` when it stopped at a requested
gap, ``time-limit`` when it stopped on time with an incumbent, ``infeasible`` or
``no-solution`` otherwise.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pulp

from idn.placement.aggregate import aggregate_classes
from idn.placement.problem import Problem
from idn.placement.solution import Solution, from_arrays
from idn.plan import SolverFacts

SOLVERS = ("highs", "cbc")
PROVEN_GAP = 1e-4  # HiGHS' and CBC's default relative gap: below it we call a result optimal


class SolverUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class SolverOptions:
    solver: str = "highs"
    time_limit: float | None = None
    gap: float | None = None  # relative MIP gap to stop at (None: the solver's default, 1e-4)
    threads: int | None = None
    msg: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"solver": self.solver, "time_limit": self.time_limit, "gap": self.gap, "threads": self.threads}


@dataclass
class Model:
    prob: pulp.LpProblem
    x: list[pulp.LpVariable]
    y: list[pulp.LpVariable | None]
    overflow: dict[int, pulp.LpVariable]
    handover_s: float = 0.0  # time spent passing the model to the solver (part of building)


def build_model(problem: Problem, relax: bool = False, fixed: np.ndarray | None = None,
                objective: str = "cost", with_budget: bool = True) -> Model:
    """The PuLP model of ``problem``.

    relax: x continuous in [0, 1] (the LP relaxation).
    fixed: bool per pair; x is dropped and only triples of placed pairs remain (routing LP).
    objective: "cost" (the latency/accuracy objective), "deployment" (min price x MiB, used
    to explain a budget below the cheapest feasible plan) or "overflow" (min compute over
    the caps, with elastic cpu rows: explains which nodes lack cores).
    """
    prob = pulp.LpProblem("idn_placement", pulp.LpMinimize)
    cat = pulp.LpContinuous if relax else pulp.LpBinary
    n_pairs, n_tri = problem.n_pairs, problem.n_triples
    use_tri = np.ones(n_tri, dtype=bool) if fixed is None else fixed[problem.tri_pair]
    x: list[pulp.LpVariable] = []
    if fixed is None:
        x = [prob.add_variable(f"x{p}", 0, 1, cat) for p in range(n_pairs)]
    y: list[pulp.LpVariable | None] = [prob.add_variable(f"y{i}", 0, 1) if use_tri[i] else None for i in range(n_tri)]

    w = problem.rate[problem.tri_class] * problem.tri_cost
    overflow: dict[int, pulp.LpVariable] = {}
    if objective == "cost":
        prob.setObjective(pulp.LpAffineExpression([(y[i], float(w[i])) for i in range(n_tri) if y[i] is not None]))
    elif objective == "deployment":
        pc = problem.pair_cost
        prob.setObjective(pulp.LpAffineExpression([(x[p], float(pc[p])) for p in range(n_pairs)]))
    elif objective == "overflow":
        overflow = {n: prob.add_variable(f"o{n}", 0) for n in range(len(problem.node_ids))}
        prob.setObjective(pulp.LpAffineExpression([(o, 1.0) for o in overflow.values()]))
    else:
        raise ValueError(f"unknown objective {objective!r}")

    LE, EQ = pulp.LpConstraintLE, pulp.LpConstraintEQ
    add = prob.addConstraint
    ptr = problem.class_ptr
    for r in range(len(problem.classes)):
        terms = [(y[i], 1.0) for i in range(int(ptr[r]), int(ptr[r + 1])) if y[i] is not None]
        add(pulp.LpConstraint(pulp.LpAffineExpression(terms), EQ, f"serve{r}", 1.0), f"serve{r}")
    if fixed is None:
        tp = problem.tri_pair
        for i in range(n_tri):
            add(pulp.LpConstraint(pulp.LpAffineExpression([(y[i], 1.0), (x[int(tp[i])], -1.0)]), LE, f"l{i}", 0.0),
                f"l{i}")
        by_node: dict[int, list[int]] = {}
        for p, n in enumerate(problem.pair_node.tolist()):
            by_node.setdefault(n, []).append(p)
        psize = problem.pair_size
        for n, ps in by_node.items():
            add(pulp.LpConstraint(pulp.LpAffineExpression([(x[p], float(psize[p])) for p in ps]), LE,
                                  f"mem{n}", float(problem.mem[n])), f"mem{n}")
        if with_budget and problem.options.budget is not None:
            pc = problem.pair_cost
            add(pulp.LpConstraint(pulp.LpAffineExpression([(x[p], float(pc[p])) for p in range(n_pairs)]), LE,
                                  "budget", float(problem.options.budget)), "budget")
    tri_node = problem.pair_node[problem.tri_pair]
    load_by_node: dict[int, list[tuple[pulp.LpVariable, float]]] = {}
    for i, (n, ld) in enumerate(zip(tri_node.tolist(), problem.tri_load.tolist())):
        if y[i] is not None:
            load_by_node.setdefault(n, []).append((y[i], ld))
    for n, terms in load_by_node.items():
        if n in overflow:
            terms = terms + [(overflow[n], -1.0)]
        # A node that can carry every triple routed to it at full share needs no row.
        if n in overflow or sum(ld for _, ld in terms) > problem.cap[n]:
            add(pulp.LpConstraint(pulp.LpAffineExpression(terms), LE, f"cpu{n}", float(problem.cap[n])), f"cpu{n}")
    return Model(prob, x, y, overflow)


@contextlib.contextmanager
def _quiet_stdout(active: bool):
    """Silence fd 1 (HiGHS prints its banner from C++ when a Highs object is created)."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class BulkHiGHS(pulp.HiGHS):
    """``pulp.HiGHS`` that hands the model to highspy in bulk (numpy arrays).

    PuLP 3.3's HiGHS interface adds one column and one row per pybind call; on
    hundreds of thousands of rows that hand-over costs more than the solve of an easy
    instance. This subclass passes the same columns, bounds, costs, integrality and rows
    with ``addVars``/``changeColsCost``/``changeColsIntegrality``/``addRows`` and sets
    the same ``var.index``/``constraint.index`` that PuLP's read-back uses, so status
    mapping and solution values are PuLP's own. ``handover_s`` records its time, which
    the benchmark counts as model building. It also keeps HiGHS' banner off stdout when
    ``msg`` is False.
    """

    handover_s: float = 0.0

    def createAndConfigureSolver(self, lp):  # noqa: N802 (PuLP's name)
        with _quiet_stdout(not self.msg):
            super().createAndConfigureSolver(lp)

    def buildSolverModel(self, lp):  # noqa: N802
        import highspy

        t0 = time.perf_counter()
        inf = highspy.kHighsInf
        variables = lp.variables()
        n = len(variables)
        lb = np.empty(n)
        ub = np.empty(n)
        cost = np.zeros(n)
        integer = []
        obj = lp.objective or {}
        sign = -1.0 if lp.sense == pulp.LpMaximize else 1.0
        for i, var in enumerate(variables):
            var.index = i
            lb[i] = -inf if var.lowBound is None else var.lowBound
            ub[i] = inf if var.upBound is None else var.upBound
            if var.cat == pulp.LpInteger and self.mip:
                integer.append(i)
        for var, c in obj.items():
            cost[var.index] = sign * c
        h = lp.solverModel
        h.addVars(n, lb, ub)
        idx = np.arange(n, dtype=np.int32)
        h.changeColsCost(n, idx, cost)
        if integer:
            h.changeColsIntegrality(len(integer), np.array(integer, dtype=np.int32),
                                    np.full(len(integer), highspy.HighsVarType.kInteger.value, dtype=np.uint8))
        constraints = list(lp._constraints.values())
        m = len(constraints)
        rlo = np.empty(m)
        rhi = np.empty(m)
        starts = np.empty(m, dtype=np.int32)
        cols: list[int] = []
        vals: list[float] = []
        for k, c in enumerate(constraints):
            c.index = k
            starts[k] = len(cols)
            for var, coef in c.items():
                if coef != 0:
                    cols.append(var.index)
                    vals.append(coef)
            lo, hi = c.getLb(), c.getUb()
            rlo[k] = -inf if lo is None else lo
            rhi[k] = inf if hi is None else hi
        if m:
            h.addRows(m, rlo, rhi, len(cols), starts, np.array(cols, dtype=np.int32), np.array(vals, dtype=float))
        self.handover_s = time.perf_counter() - t0


def make_solver(opts: SolverOptions, mip: bool = True) -> pulp.LpSolver:
    """The PuLP solver object. Refuses (does not silently swap) a solver that is not installed."""
    if opts.solver == "highs":
        s = BulkHiGHS(mip=mip, msg=opts.msg, timeLimit=opts.time_limit, gapRel=opts.gap, threads=opts.threads)
    elif opts.solver == "cbc":
        s = pulp.PULP_CBC_CMD(mip=mip, msg=opts.msg, timeLimit=opts.time_limit, gapRel=opts.gap,
                              threads=opts.threads)
    else:
        raise ValueError(f"unknown solver {opts.solver!r} (use one of {', '.join(SOLVERS)})")
    if not s.available():
        other = "cbc" if opts.solver == "highs" else "highs"
        raise SolverUnavailable(f"solver {opts.solver!r} is not available in this environment "
                                f"(install highspy for highs; PuLP <4 bundles cbc); try --solver {other}")
    return s


@dataclass(frozen=True)
class RunFacts:
    status: str
    objective: float | None
    bound: float | None
    gap: float | None
    message: str


def _rel_gap(obj: float | None, bound: float | None) -> float | None:
    if obj is None or bound is None or not (math.isfinite(obj) and math.isfinite(bound)):
        return None
    return max(0.0, obj - bound) / max(abs(obj), 1e-9)


def _highs_facts(prob: pulp.LpProblem, mip: bool, opts: SolverOptions) -> RunFacts:
    import highspy
    h = prob.solverModel
    ms = h.getModelStatus()
    info = h.getInfo()
    S = highspy.HighsModelStatus
    name = h.modelStatusToString(ms)
    has_sol = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    obj = float(info.objective_function_value) if has_sol else None
    bound = None
    if mip and int(info.mip_node_count) >= 0 and math.isfinite(info.mip_dual_bound):
        bound = float(info.mip_dual_bound)
    elif not mip and ms == S.kOptimal:
        bound = obj
    gap = _rel_gap(obj, bound)
    if ms in (S.kInfeasible, S.kUnboundedOrInfeasible):
        return RunFacts("infeasible", None, None, None, name)
    if not has_sol:
        return RunFacts("no-solution", None, bound, None, name)
    if ms == S.kOptimal:
        status = "optimal" if (gap is None or gap <= PROVEN_GAP * 1.0001) else "gap-limit"
        if bound is None and mip:
            bound, gap = obj, 0.0
        return RunFacts(status, obj, bound, gap, name)
    if ms == S.kTimeLimit:
        return RunFacts("time-limit", obj, bound, gap, name)
    return RunFacts("feasible", obj, bound, gap, name)


_CBC_NUM = r"([-+0-9.eE]+|-?inf(?:inity)?)"


def _cbc_facts(prob: pulp.LpProblem, log: str) -> RunFacts:
    result = re.search(r"Result - (.*)", log)
    msg = result.group(1).strip() if result else pulp.LpStatus[prob.status]
    has_sol = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    if prob.status == pulp.LpStatusInfeasible or "infeasible" in msg.lower():
        return RunFacts("infeasible", None, None, None, msg)
    obj = float(pulp.value(prob.objective) or 0.0) if has_sol else None
    m = re.search(r"Lower bound:\s*" + _CBC_NUM, log)
    bound = float(m.group(1)) if m else None
    if bound is None and "Optimal solution found" in msg and obj is not None:
        bound = obj
    gap = _rel_gap(obj, bound)
    if not has_sol:
        return RunFacts("no-solution", None, bound, None, msg)
    if "Optimal solution found" in msg:
        return RunFacts("optimal" if gap is None or gap <= PROVEN_GAP * 1.0001 else "gap-limit", obj, bound, gap, msg)
    if "time" in msg.lower():
        return RunFacts("time-limit", obj, bound, gap, msg)
    return RunFacts("feasible", obj, bound, gap, msg)


def run_model(model: Model, opts: SolverOptions, mip: bool = True) -> tuple[RunFacts, float]:
    """Solve a built model; returns the honest facts and the solve wall time."""
    solver = make_solver(opts, mip=mip)
    log_path = None
    if opts.solver == "cbc":
        fd, log_path = tempfile.mkstemp(prefix="idn-cbc-", suffix=".log")
        os.close(fd)
        solver.optionsDict["logPath"] = log_path
    t0 = time.perf_counter()
    model.prob.solve(solver)
    dt = time.perf_counter() - t0
    model.handover_s = getattr(solver, "handover_s", 0.0)
    if opts.solver == "highs":
        facts = _highs_facts(model.prob, mip, opts)
    else:
        log = Path(log_path).read_text(errors="replace") if log_path else ""  # type: ignore[arg-type]
        if log_path:
            os.unlink(log_path)
        facts = _cbc_facts(model.prob, log)
    return facts, dt


def values(vars_: list[pulp.LpVariable | None]) -> np.ndarray:
    return np.array([(v.varValue or 0.0) if v is not None else 0.0 for v in vars_], dtype=float)


def solve_ilp(problem: Problem, opts: SolverOptions = SolverOptions(), aggregate: bool = True) -> Solution:
    """Build and solve the ILP; the Solution's facts say how good the answer provably is.

    aggregate: merge equivalent classes first (exact, see ``idn.placement.aggregate``);
    the plan still has one route per original class.
    """
    t0 = time.perf_counter()
    agg = aggregate_classes(problem) if aggregate else None
    model = build_model(agg.problem if agg else problem)
    build_s = time.perf_counter() - t0
    facts, run_s = run_model(model, opts)
    # Handing the model to the solver is model building, not solving.
    build_s += model.handover_s
    solve_s = run_s - model.handover_s
    sf = SolverFacts(name=opts.solver, status=facts.status, objective=facts.objective, bound=facts.bound,
                     gap=facts.gap, time_s=round(build_s + solve_s, 6),
                     options={**problem.options.as_dict(), **opts.as_dict(), "solver_message": facts.message,
                              "variables": sum(v is not None for v in model.x) + sum(v is not None for v in model.y), "triples": problem.n_triples,
                              "aggregates": agg.n_aggregates if agg else len(problem.classes)})
    if facts.objective is None:
        sol = Solution(opts.solver, {}, {}, sf)
    else:
        shares = np.clip(values(model.y), 0.0, 1.0)
        sol = from_arrays(problem, opts.solver, agg.expand(shares) if agg else shares, sf)
    sol.build_s, sol.solve_s = build_s, solve_s
    return sol
