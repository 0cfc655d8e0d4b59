"""Property tests on random instances: every ILP plan is feasible, fully serves every class,
agrees with the evaluator, and no heuristic ever beats the proven optimum."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idn.placement import PlacementOptions, build_problem
from idn.placement.baselines import greedy, lp_round, smallest
from idn.placement.ilp import solve_ilp
from idn.placement.solve import score
from idn.placement.synthetic import tree_instance

instances = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "regionals": st.integers(1, 2),
    "edges": st.integers(1, 3),
    "tasks": st.integers(1, 2),
    "variants": st.integers(1, 5),
    "classes": st.integers(1, 12),
    "alpha": st.sampled_from([0.0, 100.0, 1000.0]),
    "rho": st.sampled_from([0.3, 0.8]),
    "budget": st.sampled_from([None, 100.0, 300.0, 1000.0]),
    "rate_hi": st.sampled_from([5.0, 60.0]),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances)
def test_ilp_plans_are_feasible_complete_and_scored_consistently(case):
    topo, cat, dem = tree_instance(case["regionals"], case["edges"], case["tasks"], case["variants"],
                                   case["classes"], seed=case["seed"], rate=(1.0, case["rate_hi"]),
                                   slo_latency=(None, 60, 120))
    opts = PlacementOptions(alpha=case["alpha"], rho=case["rho"], budget=case["budget"])
    p = build_problem(topo, cat, dem, opts)
    if p.unservable:
        return  # explained elsewhere; nothing to place
    sol = solve_ilp(p)
    if sol.facts.status == "infeasible":
        for h in (greedy, lp_round, smallest):
            assert h(p).facts.status == "failed"  # nothing to find; and a heuristic never claims a proof
        return
    assert sol.facts.status == "optimal"
    plan, ev = score(p, sol, topo, cat, dem)
    # no constraint broken: memory, compute (rho), budget, SLOs; every class fully served
    assert ev.feasible, ev.violations
    assert set(plan.routes) == {c.id for c in dem.classes}
    for r in plan.routes.values():
        assert r.targets and abs(sum(t.share for t in r.targets) - 1.0) < 1e-9
    # the evaluator, computing from the files' numbers, agrees with the ILP's own objective
    assert ev.objective == pytest.approx(sol.facts.objective, rel=1e-6, abs=1e-6)
    # heuristics never beat the proven optimum, and when they return a plan it is feasible
    for h in (greedy, lp_round, smallest):
        hs = h(p)
        if hs.facts.status == "failed":
            continue
        _, hev = score(p, hs, topo, cat, dem)
        assert hev.feasible, (h.__name__, hev.violations)
        assert hev.objective >= sol.facts.bound * (1 - 1e-6) - 1e-6
        if hs.facts.bound is not None:  # the LP relaxation bounds the optimum from below
            assert hs.facts.bound <= sol.facts.objective * (1 + 1e-6) + 1e-6


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([None, 200.0]))
def test_cbc_and_highs_agree(seed, budget):
    topo, cat, dem = tree_instance(1, 3, 2, 4, 8, seed=seed, rate=(1.0, 40.0))
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=300.0, budget=budget))
    if p.unservable:
        return
    from idn.placement.backends import SolverOptions
    a, b = solve_ilp(p, SolverOptions("highs")), solve_ilp(p, SolverOptions("cbc"))
    assert a.facts.status == b.facts.status
    if a.facts.status == "optimal":
        assert a.facts.objective == pytest.approx(b.facts.objective, rel=2e-4)
        assert np.isfinite(a.facts.bound) and np.isfinite(b.facts.bound)
