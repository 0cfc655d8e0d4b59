"""Solve the placement ILP: aggregate, build (:mod:`~idn.placement.model`), run
(:mod:`~idn.placement.backends`), and read the answer back into a Solution.

The model, its exact reductions and why they are exact are in ``model.py``; the solver
back ends in ``backends.py``; the honest reading of the solver's status in ``status.py``.
"""

from __future__ import annotations

import time

import numpy as np

from idn.placement.aggregate import aggregate_classes
from idn.placement.backends import SolverOptions, run_model
from idn.placement.model import build_model, values
from idn.placement.problem import Problem
from idn.placement.solution import Solution, from_arrays
from idn.plan import SolverFacts


def solve_ilp(problem: Problem, opts: SolverOptions = SolverOptions(), aggregate: bool = True,
              presolve: bool = True) -> Solution:
    """Build and solve the ILP; the Solution's facts say how good the answer provably is.

    aggregate: merge equivalent classes first (exact, see ``idn.placement.aggregate``);
    the plan still has one route per original class. presolve: ``build_model``'s exact
    reductions. Both are on by default; off only to check that they are exact.
    """
    t0 = time.perf_counter()
    agg = aggregate_classes(problem) if aggregate else None
    model = build_model(agg.problem if agg else problem, presolve=presolve)
    build_s = time.perf_counter() - t0
    facts, run_s = run_model(model, opts)
    t1 = time.perf_counter()
    shares = None
    if facts.objective is not None:
        shares = np.clip(values(model.y), 0.0, 1.0)
        shares = agg.expand(shares) if agg else shares
    # Handing the model to the solver is model building; reading the solution back is neither.
    readback_s = model.readback_s + time.perf_counter() - t1
    build_s += model.handover_s
    solve_s = run_s - model.handover_s - model.readback_s
    sf = SolverFacts(name=opts.solver, status=facts.status, objective=facts.objective, bound=facts.bound,
                     gap=facts.gap, time_s=round(build_s + solve_s + readback_s, 6),
                     options={**problem.options.as_dict(), **opts.as_dict(), "solver_message": facts.message,
                              "variables": model.stats["x_vars"] + model.stats["y_vars"], "rows": model.stats["rows"],
                              "triples": problem.n_triples,
                              "aggregates": agg.n_aggregates if agg else len(problem.classes)})
    if shares is None:
        sol = Solution(opts.solver, {}, {}, sf)
    else:
        sol = from_arrays(problem, opts.solver, shares, sf)
    sol.readback_s = readback_s
    sol.build_s, sol.solve_s = build_s, solve_s
    return sol
