"""Solver back ends: PuLP's HiGHS (bulk hand-over and read-back) and CBC.

Everything that relies on PuLP's internals lives here, so a PuLP upgrade touches one
file: :class:`BulkHiGHS` reads ``lp._variables`` / ``lp._constraints`` and reproduces
PuLP 3.3's HiGHS status table. ``run_model`` solves a built
:class:`~idn.placement.model.Model` and returns the honest facts that
:mod:`idn.placement.status` reads from the solver.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pulp

from idn.placement.model import Model
from idn.placement.status import RunFacts, cbc_facts, highs_facts

SOLVERS = ("highs", "cbc")


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
    """``pulp.HiGHS`` that hands the model to highspy in bulk and reads the solution back in bulk.

    PuLP 3.3's HiGHS interface adds one column and one row per pybind call, and walks
    and name-sorts every row's variables three times (``lp.variables()`` in the
    hand-over, in the read-back and after it); on hundreds of thousands of rows that
    costs more than the solve of an easy instance. This subclass:

    * passes the same columns, bounds, costs, integrality and rows with
      ``addVars``/``changeColsCost``/``changeColsIntegrality``/``addRows``, taking the
      variable list once (the variables ``lp.variables()`` returns, in registration
      order rather than sorted by name) and setting the same ``var.index`` /
      ``constraint.index`` PuLP uses;
    * reads back the same values (``varValue``, ``dj``, constraint ``slack``/``pi``) and
      maps HiGHS' model status to PuLP's ``(status, sol_status)`` with PuLP 3.3's own
      table (``_STATUS``; a time or iteration limit without an incumbent is "no solution
      found"), from arrays instead of per-element lists;
    * records its phases: ``handover_s`` (model building), ``run_s`` (``Highs.run``: the
      solve) and ``readback_s``; and keeps HiGHS' banner off stdout when ``msg`` is False.
    """

    handover_s: float = 0.0
    run_s: float = 0.0
    readback_s: float = 0.0

    def createAndConfigureSolver(self, lp):  # noqa: N802 (PuLP's name)
        with _quiet_stdout(not self.msg):
            super().createAndConfigureSolver(lp)

    def buildSolverModel(self, lp):  # noqa: N802
        import highspy

        t0 = time.perf_counter()
        inf = highspy.kHighsInf
        # PuLP registers every variable of a constraint when it is added; adding the
        # objective's gives the set ``lp.variables()`` returns, without its name sort.
        if lp.objective:
            lp._add_variables(lp.objective.keys())
        variables = self._variables = list(lp._variables)
        n = len(variables)
        lb = np.empty(n)
        ub = np.empty(n)
        integer = []
        obj = lp.objective or {}
        sign = -1.0 if lp.sense == pulp.LpMaximize else 1.0
        mip, LpInteger = self.mip, pulp.LpInteger
        for i, var in enumerate(variables):
            var.index = i
            lo, hi = var.lowBound, var.upBound
            lb[i] = -inf if lo is None else lo
            ub[i] = inf if hi is None else hi
            if mip and var.cat == LpInteger:
                integer.append(i)
        cost = np.zeros(n)
        if obj:
            cost[np.fromiter((v.index for v in obj.keys()), dtype=np.int64, count=len(obj))] = \
                sign * np.fromiter(obj.values(), dtype=float, count=len(obj))
        h = lp.solverModel
        h.addVars(n, lb, ub)
        h.changeColsCost(n, np.arange(n, dtype=np.int32), cost)
        if integer:
            h.changeColsIntegrality(len(integer), np.array(integer, dtype=np.int32),
                                    np.full(len(integer), highspy.HighsVarType.kInteger.value, dtype=np.uint8))
        constraints = self._constraints = list(lp._constraints.values())
        m = len(constraints)
        rlo = np.empty(m)
        rhi = np.empty(m)
        lens = np.empty(m, dtype=np.int64)
        cols: list[int] = []
        vals: list[float] = []
        for k, c in enumerate(constraints):
            c.index = k
            e = c.expr
            lens[k] = len(e)
            cols.extend([v.index for v in e])
            vals.extend(e.values())
            lo, hi = c.getLb(), c.getUb()
            rlo[k] = -inf if lo is None else lo
            rhi[k] = inf if hi is None else hi
        if m:
            starts = np.zeros(m, dtype=np.int32)
            np.cumsum(lens[:-1], out=starts[1:])
            col = np.array(cols, dtype=np.int32)
            val = np.array(vals, dtype=float)
            if not val.all():  # PuLP drops explicit zeros: rebuild the starts without them
                nz = val != 0
                row = np.repeat(np.arange(m), lens)[nz]
                starts = np.searchsorted(row, np.arange(m)).astype(np.int32)
                col, val = col[nz], val[nz]
            h.addRows(m, rlo, rhi, len(col), starts, col, val)
        self.handover_s = time.perf_counter() - t0

    def callSolver(self, lp):  # noqa: N802
        t0 = time.perf_counter()
        super().callSolver(lp)
        self.run_s = time.perf_counter() - t0

    def findSolutionValues(self, lp):  # noqa: N802
        import highspy

        t0 = time.perf_counter()
        h = lp.solverModel
        status = h.getModelStatus()
        solution = h.getSolution()
        variables, constraints = self._variables, self._constraints
        col_value, col_dual = np.asarray(solution.col_value), np.asarray(solution.col_dual)
        if len(col_value) == len(variables):
            for var, v, d in zip(variables, col_value.tolist(), col_dual.tolist()):
                var.varValue = v
                var.dj = d
        row_value, row_dual = np.asarray(solution.row_value), np.asarray(solution.row_dual)
        if len(row_value) == len(constraints):
            for c, v, d in zip(constraints, row_value.tolist(), row_dual.tolist()):
                slack = c.constant + v  # PuLP's sign convention (constant on the left)
                c.slack = -slack if c.sense == pulp.LpConstraintLE else slack
                c.pi = d
        S = highspy.HighsModelStatus
        if h.getObjectiveValue() == float(highspy.kHighsInf) and status in (S.kTimeLimit, S.kIterationLimit):
            out = (pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound)
        else:
            out = _STATUS.get(status, (pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound))
        self.readback_s = time.perf_counter() - t0
        return out

    def actualSolve(self, lp):  # noqa: N802
        self.createAndConfigureSolver(lp)
        self.buildSolverModel(lp)
        self.callSolver(lp)
        status, sol_status = self.findSolutionValues(lp)
        t0 = time.perf_counter()
        for var in self._variables:
            var.modified = False
        lp.assignStatus(status, sol_status)
        self.readback_s += time.perf_counter() - t0
        return status


def _status_table() -> dict:
    """PuLP 3.3's HiGHS status table (``pulp.HiGHS.findSolutionValues``), for the bulk read-back."""
    try:
        import highspy
    except ImportError:
        return {}
    S = highspy.HighsModelStatus
    none = (pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound)
    incumbent = (pulp.LpStatusOptimal, pulp.LpSolutionIntegerFeasible)
    table = {s: none for s in (S.kNotset, S.kLoadError, S.kModelError, S.kPresolveError, S.kSolveError,
                               S.kPostsolveError, S.kModelEmpty, S.kUnknown)}
    table.update({S.kOptimal: (pulp.LpStatusOptimal, pulp.LpSolutionOptimal),
                  S.kInfeasible: (pulp.LpStatusInfeasible, pulp.LpSolutionInfeasible),
                  S.kUnboundedOrInfeasible: (pulp.LpStatusInfeasible, pulp.LpSolutionInfeasible),
                  S.kUnbounded: (pulp.LpStatusUnbounded, pulp.LpSolutionUnbounded)})
    table.update({s: incumbent for s in (S.kObjectiveBound, S.kObjectiveTarget, S.kInterrupt, S.kTimeLimit,
                                         S.kIterationLimit)})
    return table


_STATUS = _status_table()


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
    model.run_s = getattr(solver, "run_s", dt - model.handover_s)
    model.readback_s = getattr(solver, "readback_s", 0.0)
    if opts.solver == "highs":
        facts = highs_facts(model.prob, mip)
    else:
        log = Path(log_path).read_text(errors="replace") if log_path else ""
        if log_path:
            os.unlink(log_path)
        facts = cbc_facts(model.prob, log)
    return facts, dt


