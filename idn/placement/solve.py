"""One entry point: inputs -> problem -> method -> plan scored by the evaluator.

``solve(...)`` is what the CLI (and a controller) calls. It raises
``InfeasibleProblem`` with the reasons from ``explain.diagnose`` instead of returning a
plan that breaks a constraint, and always scores the result against the repository-only
reference, so every plan carries its gain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from idn.catalog import Catalog
from idn.demand import Demand
from idn.placement.backends import SolverOptions
from idn.placement.baselines import greedy, lp_round, repository_only, smallest
from idn.placement.evaluate import Evaluation, evaluate
from idn.placement.explain import InfeasibleProblem, diagnose
from idn.placement.ilp import solve_ilp
from idn.placement.moves import Moves
from idn.placement.problem import PlacementOptions, Problem, build_problem
from idn.placement.solution import Solution, to_plan
from idn.plan import Plan
from idn.topology import Topology

METHODS = ("highs", "cbc", "greedy", "lp-round", "repository", "smallest")


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
    if method in ("highs", "cbc"):
        return solve_ilp(problem, SolverOptions(method, solver.time_limit, solver.gap, solver.threads, solver.msg))
    lp_solver = SolverOptions(solver.solver if solver.solver in ("highs", "cbc") else "highs",
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
    """Solve and score; raises InfeasibleProblem with reasons when no plan meets every constraint.

    ``moves``: the running plan and the weight of a move (idn.placement.moves); the ILP
    then trades the gain of a new placement against its move cost, and the evaluation
    reports what the change costs."""
    t0 = time.perf_counter()
    if problem is None:
        problem = build_problem(topology, catalog, demand, options, moves)
    problem_s = time.perf_counter() - t0
    if problem.unservable and method != "repository":
        d = diagnose(problem, topology, catalog, demand, solver)
        raise InfeasibleProblem(d.reasons, d.warnings)
    sol = run_method(problem, topology, catalog, method, solver)
    if not sol.feasible:
        d = diagnose(problem, topology, catalog, demand, solver)
        why = d.reasons or [f"{method}: {sol.facts.options.get('solver_message', sol.facts.status)}"]
        raise InfeasibleProblem(why, d.warnings)
    sol.notes.extend(problem.notes)
    ref_plan, ref = score(problem, repository_only(problem, topology, catalog), topology, catalog, demand)
    plan, ev = score(problem, sol, topology, catalog, demand, ref.objective, version, inputs, moves)
    return Outcome(problem, sol, plan, ev, ref, problem_s)
