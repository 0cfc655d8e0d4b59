"""One entry point: inputs -> problem -> method -> plan scored by the evaluator.

``solve(...)`` is what the CLI (and a controller) calls. It returns a plan only when the
evaluator finds it breaks no constraint (memory, compute, budget, every class fully
served, and the SLOs; only the repository-only reference may miss SLOs, which is what it
is for), and always scores it against the repository-only reference, so every plan
carries its gain. Otherwise it raises a :class:`~idn.placement.explain.NoPlan` that says
which of three things happened:

* :class:`InfeasibleProblem` (status ``infeasible``): proven, no plan exists; the
  reasons from ``explain.diagnose`` say why and what to change;
* :class:`NoPlanFound` with status ``no-solution``: the ILP stopped (a time limit)
  before it found any plan; nothing is proven;
* :class:`NoPlanFound` with status ``failed``: a heuristic found no plan (or its plan
  broke a constraint). The ILP is then asked (within the time limit) whether a plan
  exists, and the message says so, or that it proved none does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from idn.catalog import Catalog
from idn.demand import Demand
from idn.placement.backends import SolverOptions
from idn.placement.baselines import greedy, lp_round, repository_only, smallest
from idn.placement.evaluate import Evaluation, evaluate
from idn.placement.explain import InfeasibleProblem, NoPlan, NoPlanFound, diagnose
from idn.placement.ilp import solve_ilp
from idn.placement.moves import Moves
from idn.placement.problem import PlacementOptions, Problem, build_problem
from idn.placement.solution import Solution, to_plan
from idn.plan import Plan, SolveStatus
from idn.topology import Topology

METHODS = ("highs", "cbc", "greedy", "lp-round", "repository", "smallest")
ILP_METHODS = ("highs", "cbc")
DIAGNOSE_TIME_LIMIT_S = 30.0  # per explanatory solve, when the user set no --time-limit

__all__ = ["METHODS", "InfeasibleProblem", "NoPlan", "NoPlanFound", "Outcome", "run_method", "score", "solve"]


@dataclass
class Outcome:
    problem: Problem
    solution: Solution
    plan: Plan
    evaluation: Evaluation
    reference: Evaluation  # repository-only, scored the same way
    problem_s: float


def run_method(problem: Problem, topology: Topology, catalog: Catalog, method: str,
               solver: SolverOptions = SolverOptions()) -> Solution:
    """Run one method on a built problem (no infeasibility handling)."""
    if method in ILP_METHODS:
        return solve_ilp(problem, SolverOptions(method, solver.time_limit, solver.gap, solver.threads, solver.msg))
    lp_solver = SolverOptions(solver.solver if solver.solver in ILP_METHODS else "highs",
                              solver.time_limit, solver.gap, solver.threads)
    if method == "greedy":
        return greedy(problem, lp_solver)
    if method == "lp-round":
        return lp_round(problem, lp_solver)
    if method == "smallest":
        return smallest(problem, lp_solver)
    if method == "repository":
        return repository_only(problem, topology, catalog)
    raise ValueError(f"unknown method {method!r} (use one of {', '.join(METHODS)})")


def score(problem: Problem, solution: Solution, topology: Topology, catalog: Catalog, demand: Demand,
          reference_objective: float | None = None, version: int = 1,
          inputs: dict[str, str] | None = None, moves: Moves | None = None) -> tuple[Plan, Evaluation]:
    """The plan of a solution with the evaluator's per-class and total predictions attached."""
    bare = to_plan(problem, solution, version, inputs)
    ev = evaluate(bare, topology, catalog, demand, problem.options, reference_objective, moves=moves)
    plan = to_plan(problem, solution, version, inputs, {c: s.as_dict() for c, s in ev.classes.items()}, ev.totals())
    return plan, ev


def solve(topology: Topology, catalog: Catalog, demand: Demand, options: PlacementOptions = PlacementOptions(),
          method: str = "highs", solver: SolverOptions = SolverOptions(), version: int = 1,
          inputs: dict[str, str] | None = None, problem: Problem | None = None,
          moves: Moves | None = None) -> Outcome:
    """Solve and score; raises a NoPlan (see the module docstring) instead of returning a plan that breaks a
    constraint.

    ``moves``: the running plan and the weight of a move (idn.placement.moves); the ILP
    then trades the gain of a new placement against its move cost, and the evaluation
    reports what the change costs."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (use one of {', '.join(METHODS)})")
    t0 = time.perf_counter()
    if problem is None:
        problem = build_problem(topology, catalog, demand, options, moves)
    problem_s = time.perf_counter() - t0
    limit = solver.time_limit if solver.time_limit is not None else DIAGNOSE_TIME_LIMIT_S
    if problem.unservable and method != "repository":
        d = diagnose(problem, topology, catalog, demand, solver, limit, proven=True)
        raise InfeasibleProblem(d.reasons, d.warnings)
    sol = run_method(problem, topology, catalog, method, solver)
    why = str(sol.facts.options.get("solver_message", sol.facts.status))
    if sol.feasible:
        sol.notes.extend(problem.notes)
        ref_plan, ref = score(problem, repository_only(problem, topology, catalog), topology, catalog, demand)
        plan, ev = score(problem, sol, topology, catalog, demand, ref.objective, version, inputs, moves)
        broken = ev.violations if method != "repository" else ev.hard_violations
        if not broken:
            return Outcome(problem, sol, plan, ev, ref, problem_s)
        why = f"its plan breaks {len(broken)} constraint(s): {'; '.join(broken[:3])}" + (
            f" (and {len(broken) - 3} more)" if len(broken) > 3 else "")
        if method == "repository":
            raise NoPlanFound(SolveStatus.FAILED, [
                f"repository-only: {why}; it is not written",
                "serving everything at the repository does not fit its limits: use --solver highs"])
        if method in ILP_METHODS:  # the solver's own answer fails the evaluator: numerical trouble
            raise NoPlanFound(SolveStatus.FAILED, [f"{method}: {why}; it is not written",
                                                   f"try --solver {'cbc' if method == 'highs' else 'highs'}"])
    status = SolveStatus(sol.facts.status) if sol.feasible is False else SolveStatus.FAILED
    raise _no_plan(problem, topology, catalog, demand, method, status, why, solver, limit)


def _no_plan(problem: Problem, topology: Topology, catalog: Catalog, demand: Demand, method: str,
             status: SolveStatus, why: str, solver: SolverOptions, limit: float) -> NoPlan:
    """The honest exception for a run that produced no plan (see the module docstring)."""
    if status == SolveStatus.INFEASIBLE:  # the ILP proved it
        d = diagnose(problem, topology, catalog, demand, solver, limit, proven=True)
        return InfeasibleProblem(d.reasons, d.warnings)
    d = diagnose(problem, topology, catalog, demand, solver, limit, proven=False)
    if d.reasons:  # a cause that alone proves infeasibility
        return InfeasibleProblem(d.reasons, d.warnings)
    if method in ILP_METHODS:
        limit_s = f" (--time-limit {solver.time_limit:g} s)" if solver.time_limit is not None else ""
        return NoPlanFound(SolveStatus.NO_SOLUTION, [
            f"{method} stopped before it found any plan: {why}{limit_s}; this does not mean none exists",
            "raise --time-limit, or try --solver greedy for a quick plan"], d.warnings)
    # a heuristic failed: ask the ILP whether a plan exists (any plan will do: gap 1)
    check = solve_ilp(problem, SolverOptions("highs", limit, 1.0, solver.threads))
    head = f"{method} found no plan: {why}"
    if check.facts.status == SolveStatus.INFEASIBLE:
        proof = diagnose(problem, topology, catalog, demand, solver, limit, proven=True)
        return InfeasibleProblem(proof.reasons, proof.warnings)
    if SolveStatus(check.facts.status).has_plan:
        return NoPlanFound(SolveStatus.FAILED, [head, "a plan does exist: the ILP finds one (use --solver highs)"],
                           d.warnings)
    return NoPlanFound(SolveStatus.FAILED, [
        head, f"whether a plan exists is unknown: the ILP found none within {limit:g} s either "
              f"(try --solver highs with a longer --time-limit)"], d.warnings)
