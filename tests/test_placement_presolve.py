"""build_model's exact reductions: same optimum (and LP bound) with and without them."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idn.demand import parse_demand
from idn.placement import PlacementOptions, build_problem
from idn.placement.backends import SolverOptions, run_model
from idn.placement.ilp import solve_ilp
from idn.placement.model import build_model
from idn.placement.solve import score
from idn.placement.synthetic import random_catalog, random_demand_doc, tree_instance, tree_topology_doc
from idn.topology import parse_topology


def instance(seed, edges, tasks, variants, classes, rate_hi, tight):
    """A small tree; ``tight`` shrinks the upper tiers so memory and compute rows bind there too."""
    kw = dict(cloud_mem=40.0, regional_mem=30.0, cloud_cores=2.0, regional_cores=1.0) if tight else {}
    topo = parse_topology(tree_topology_doc(1, edges, seed, **kw), "<t>")
    cat = random_catalog(tasks, variants, seed)
    dem = parse_demand(random_demand_doc(topo, list(cat.tasks), classes, seed, rate=(1.0, rate_hi),
                                         slo_latency=(None, 60, 120)), "<d>", topo, cat)
    return topo, cat, dem


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), edges=st.integers(1, 3), tasks=st.integers(1, 2),
       variants=st.integers(1, 5), classes=st.integers(1, 12), rate_hi=st.sampled_from([5.0, 60.0, 150.0]),
       alpha=st.sampled_from([0.0, 300.0]), rho=st.sampled_from([0.3, 0.8]),
       budget=st.sampled_from([None, 150.0, 600.0, 1e9]), tight=st.booleans())
def test_reductions_keep_the_optimum_and_the_lp_bound(seed, edges, tasks, variants, classes, rate_hi, alpha, rho,
                                                       budget, tight):
    topo, cat, dem = instance(seed, edges, tasks, variants, classes, rate_hi, tight)
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=alpha, rho=rho, budget=budget))
    if p.unservable:
        return
    full = solve_ilp(p, SolverOptions("highs"), aggregate=False, presolve=False)
    reduced = solve_ilp(p, SolverOptions("highs"))
    assert reduced.facts.status == full.facts.status
    if full.facts.status != "optimal":
        return
    assert reduced.facts.objective == pytest.approx(full.facts.objective, rel=1e-6, abs=1e-6)
    plan, ev = score(p, reduced, topo, cat, dem)
    assert ev.feasible, ev.violations
    assert set(plan.routes) == {c.id for c in dem.classes}
    # the LP relaxation's bound is unchanged too (no reduction relies on integrality)
    lp = [run_model(build_model(p, relax=True, presolve=pre), SolverOptions("highs"), mip=False)[0].objective
          for pre in (False, True)]
    assert lp[1] == pytest.approx(lp[0], rel=1e-6, abs=1e-6)


def test_reductions_shrink_the_model_and_cbc_solves_what_is_left():
    topo, cat, dem = tree_instance(2, 3, 1, 5, 30, seed=3, rate=(1.0, 20.0))
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=300.0))
    full, reduced = build_model(p, presolve=False), build_model(p)
    assert len(reduced.prob.variables()) < len(full.prob.variables())
    assert len(reduced.prob.constraints()) < len(full.prob.constraints())
    assert reduced.stats["open_pairs"] > 0 and reduced.stats["dropped_triples"] > 0
    assert np.all(reduced.x_values()[reduced.x_open] == 1.0)
    a, b = solve_ilp(p, SolverOptions("highs")), solve_ilp(p, SolverOptions("cbc"))
    assert a.facts.status == b.facts.status == "optimal"
    assert a.facts.objective == pytest.approx(b.facts.objective, rel=2e-4)
