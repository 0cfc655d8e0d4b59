"""Exact aggregation of equivalent classes: same optimum as the unaggregated ILP, one route per class."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idn.placement import PlacementOptions, build_problem
from idn.placement.aggregate import aggregate_classes
from idn.placement.backends import SolverOptions
from idn.placement.ilp import solve_ilp
from idn.placement.solve import score
from idn.placement.synthetic import tree_instance

# Loose latency SLOs and a low accuracy floor prune nothing, so several SLO levels of one
# (ingress, task) leave identical triple sets: those classes are equivalent.
LOOSE = dict(slo_latency=(None, 60, 120, 400, 1000), slo_accuracy=(None, 0.05))


def instance(seed, regionals=1, edges=2, tasks=1, variants=4, classes=12, rate_hi=60.0):
    return tree_instance(regionals, edges, tasks, variants, classes, seed=seed, rate=(1.0, rate_hi), **LOOSE)


def test_equivalent_classes_merge_and_maps_are_consistent():
    topo, cat, dem = instance(seed=1, classes=20)
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=300.0))
    agg = aggregate_classes(p)
    a = agg.problem
    assert a.n_triples < p.n_triples and len(a.classes) < len(p.classes)  # something merged
    assert a.rate.sum() == pytest.approx(p.rate.sum())
    # each original triple maps to an aggregate triple at the same pair with the same cost,
    # and the aggregate's load is the sum of its members' loads
    assert np.array_equal(a.tri_pair[agg.tri_map], p.tri_pair)
    assert np.array_equal(a.tri_cost[agg.tri_map], p.tri_cost)
    assert np.allclose(np.bincount(agg.tri_map, weights=p.tri_load, minlength=a.n_triples), a.tri_load)
    for r, c in enumerate(p.classes):
        rep = a.classes[agg.group[r]]
        assert (rep.ingress, rep.task) == (c.ingress, c.task)
    # expand then reduce is the identity on aggregate shares
    s = np.random.default_rng(0).random(a.n_triples)
    assert np.allclose(agg.reduce(agg.expand(s)), s)
    # the objective of an expanded split equals the aggregated objective
    assert p.objective_of(agg.expand(s)) == pytest.approx(a.objective_of(s))


def test_plans_still_list_every_class_with_its_aggregates_split():
    topo, cat, dem = instance(seed=1, classes=20)
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=300.0))
    agg = aggregate_classes(p)
    sol = solve_ilp(p)
    assert sol.facts.status == "optimal" and sol.facts.options["aggregates"] == len(agg.problem.classes)
    plan, ev = score(p, sol, topo, cat, dem)
    assert ev.feasible, ev.violations
    assert set(plan.routes) == {c.id for c in dem.classes}
    by_group: dict[int, list] = {}
    for r, c in enumerate(p.classes):
        targets = sorted((t.node, t.variant, round(t.share, 9)) for t in plan.routes[c.id].targets)
        assert targets and abs(sum(t[2] for t in targets) - 1) < 1e-6
        by_group.setdefault(int(agg.group[r]), []).append(targets)
    assert any(len(v) > 1 for v in by_group.values())
    for members in by_group.values():  # members of one aggregate share one split
        assert all(m == members[0] for m in members)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), edges=st.integers(1, 3), tasks=st.integers(1, 2),
       variants=st.integers(1, 5), classes=st.integers(2, 16), rate_hi=st.sampled_from([5.0, 60.0, 150.0]),
       alpha=st.sampled_from([0.0, 300.0]), rho=st.sampled_from([0.3, 0.8]),
       budget=st.sampled_from([None, 150.0, 600.0]))
def test_aggregated_and_plain_ilp_have_the_same_optimum(seed, edges, tasks, variants, classes, rate_hi,
                                                        alpha, rho, budget):
    topo, cat, dem = instance(seed, 1, edges, tasks, variants, classes, rate_hi)
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=alpha, rho=rho, budget=budget))
    if p.unservable:
        return
    plain = solve_ilp(p, SolverOptions("highs"), aggregate=False)
    merged = solve_ilp(p, SolverOptions("highs"), aggregate=True)
    assert merged.facts.status == plain.facts.status
    if plain.facts.status != "optimal":
        return
    assert merged.facts.objective == pytest.approx(plain.facts.objective, rel=1e-6, abs=1e-6)
    _, ev = score(p, merged, topo, cat, dem)  # the expanded plan is feasible for the original classes
    assert ev.feasible, ev.violations
    assert ev.objective == pytest.approx(plain.facts.objective, rel=1e-6, abs=1e-6)
