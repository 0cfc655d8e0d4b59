"""Placement: which variants live on which node and how each request class is split.

Modules: ``problem`` (pure problem building and pruning), ``model`` (the PuLP model
and its exact reductions), ``backends`` (HiGHS and CBC through PuLP), ``status``
(reading a solver's outcome honestly), ``ilp`` (aggregate, build, solve, read back),
``split`` (best split for fixed placements),
``baselines`` (repository-only, smallest, greedy, LP rounding), ``evaluate`` (one
scorer for every plan), ``explain`` (why an input is infeasible), ``solve`` (the entry
point the CLI uses), ``synthetic`` (generated instances for tests and benchmarks).
"""

from idn.placement.backends import SolverOptions
from idn.placement.explain import InfeasibleProblem, NoPlan, NoPlanFound
from idn.placement.problem import PlacementOptions, build_problem
from idn.placement.solve import METHODS, Outcome, solve

__all__ = ["InfeasibleProblem", "METHODS", "NoPlan", "NoPlanFound", "Outcome", "PlacementOptions", "SolverOptions",
           "build_problem", "solve"]
