"""The ILP against exhaustive enumeration, pruning, solver reporting and infeasibility explanations."""

import itertools

import numpy as np
import pytest

from idn.catalog import parse_catalog
from idn.demand import parse_demand
from idn.placement import InfeasibleProblem, PlacementOptions, SolverOptions, build_problem, solve
from idn.placement.baselines import greedy, lp_round, repository_only, smallest
from idn.placement.ilp import solve_ilp
from idn.placement.problem import non_dominated
from idn.placement.solve import score
from idn.placement.split import best_split
from idn.placement.synthetic import catalog_doc, tree_instance, variant_doc
from idn.topology import parse_topology


def brute_force(problem):
    """Optimum by enumerating every placement subset that fits memory and budget, each routed optimally."""
    best = np.inf
    n = problem.n_pairs
    assert n <= 14, "instance too large to enumerate"
    for bits in itertools.product((False, True), repeat=n):
        placed = np.array(bits, dtype=bool)
        used = np.bincount(problem.pair_node[placed], weights=problem.pair_size[placed],
                           minlength=len(problem.node_ids))
        if np.any(used > problem.mem + 1e-9):
            continue
        if problem.options.budget is not None and problem.pair_cost[placed].sum() > problem.options.budget + 1e-9:
            continue
        shares, _ = best_split(problem, placed)
        if shares is not None:
            best = min(best, problem.objective_of(shares))
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("solver", ["highs", "cbc"])
def test_ilp_matches_exhaustive_enumeration(seed, solver):
    budget = [None, 150.0, 400.0][seed % 3]
    rate = [(1.0, 20.0), (30.0, 120.0)][seed % 2]  # the second makes compute caps bind
    topo, cat, dem = tree_instance(1, 2, 1, 3, 4, seed=seed, rate=rate)
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=500.0, rho=0.8, budget=budget))
    exact = brute_force(p)
    sol = solve_ilp(p, SolverOptions(solver))
    if not np.isfinite(exact):
        assert sol.facts.status == "infeasible"
        return
    assert sol.facts.status == "optimal"
    assert sol.facts.objective == pytest.approx(exact, rel=1e-6)
    assert sol.facts.bound == pytest.approx(exact, rel=1e-4) and sol.facts.gap <= 1e-4


def test_domination_keeps_pareto_variants_and_breaks_ties():
    cat = parse_catalog(catalog_doc({"t": [
        variant_doc("a", 100, 0.9, 5.0), variant_doc("b", 200, 0.8, 6.0),  # b dominated by a
        variant_doc("c", 300, 0.95, 9.0), variant_doc("d", 100, 0.9, 5.0),  # d is a's twin: one survives
        variant_doc("e", 50, 0.5, 1.0)]}), verify_hashes=False)
    vs = list(cat.tasks["t"].variants.values())
    times = [(v.latency_ms("cpu-x86_64-2c"), v.latency_ms("cpu-x86_64-2c", quantile="p95")) for v in vs]
    keep = [vs[i].name for i in non_dominated(vs, times)]
    assert keep == ["a", "c", "e"]


def three_node(edge_mem=64, slo=None, budget=None, rate=10.0, cloud_cores=8):
    topo = parse_topology({"hardware_class": "cpu-x86_64-2c", "nodes": [
        {"id": "cloud", "tier": "cloud", "address": "h:1", "mem_mb": 1024, "cores": cloud_cores, "repository": True},
        {"id": "reg", "tier": "regional", "address": "h:2", "mem_mb": 256, "cores": 2, "parent": "cloud"},
        {"id": "edge", "tier": "edge", "address": "h:3", "mem_mb": edge_mem, "cores": 1, "parent": "reg",
         "slowdown": 2}],
        "links": [{"a": "reg", "b": "cloud", "delay_ms": 20}, {"a": "edge", "b": "reg", "delay_ms": 5}]})
    cat = parse_catalog(catalog_doc({"t": [variant_doc("small", 10 << 20, 0.80, 2.0),
                                           variant_doc("big", 100 << 20, 0.95, 10.0)]}), verify_hashes=False)
    row = {"ingress": "edge", "task": "t", "rate": rate, **(slo or {})}
    dem = parse_demand({"classes": [row]}, "d.yaml", topo, cat)
    return topo, cat, dem


def test_hand_checked_instance_and_plan_predictions():
    topo, cat, dem = three_node()
    out = solve(topo, cat, dem, PlacementOptions(alpha=100.0))
    # small at edge: 0 + 4 + 100*0.2 = 24; big at reg: 10 + 10 + 5 = 25; big at cloud 50+10+5 = 65
    assert out.plan.placements == {"edge": ("small",)}
    assert out.evaluation.objective == pytest.approx(10 * 24.0)
    assert out.plan.routes["edge/t"].predicted["latency_ms"] == pytest.approx(4.0)
    assert out.reference.objective == pytest.approx(10 * 65.0)
    assert out.evaluation.gain_vs_repository == pytest.approx(1 - 24 / 65)
    # with a 95% accuracy floor only big qualifies: regional is closest
    out = solve(*three_node(slo={"min_accuracy": 0.9}), PlacementOptions(alpha=100.0))
    assert out.plan.placements == {"reg": ("big",)}


def test_infeasible_slo_is_explained():
    topo, cat, dem = three_node(slo={"max_latency_ms": 3.0})
    with pytest.raises(InfeasibleProblem) as e:
        solve(topo, cat, dem)
    msg = str(e.value)
    assert "edge/t/lat3" in msg and "fastest option is small at edge" in msg and "max_latency_ms=3" in msg


def test_budget_below_cheapest_plan_is_explained():
    topo, cat, dem = three_node(budget=None)
    with pytest.raises(InfeasibleProblem, match=r"budget 5 is below the cheapest feasible plan.* 10\.0"):
        solve(topo, cat, dem, PlacementOptions(budget=5.0))


def test_compute_shortage_is_explained():
    topo, cat, dem = three_node(rate=5000.0, cloud_cores=1)
    with pytest.raises(InfeasibleProblem, match="compute: node"):
        solve(topo, cat, dem)


def test_memory_warning_for_node_too_small():
    from idn.placement.explain import memory_warnings
    topo, cat, dem = three_node(edge_mem=1)
    p = build_problem(topo, cat, dem)
    assert any("'edge'" in w and "cannot hold even the smallest" in w for w in memory_warnings(p, topo, cat, dem))
    assert solve(topo, cat, dem).plan.placements  # still served further up


def test_time_limit_is_not_reported_as_optimal():
    topo, cat, dem = tree_instance(6, 10, 4, 10, 600, seed=3)
    p = build_problem(topo, cat, dem, PlacementOptions(budget=20000.0))
    sol = solve_ilp(p, SolverOptions("highs", time_limit=0.05))
    assert sol.facts.status in ("time-limit", "no-solution", "optimal")
    if sol.facts.status == "time-limit":
        assert sol.facts.bound is not None and sol.facts.gap is not None and sol.facts.gap > 0


def test_baselines_are_scored_by_the_same_evaluator():
    topo, cat, dem = tree_instance(2, 4, 2, 5, 30, seed=4)
    o = PlacementOptions(alpha=300.0)
    p = build_problem(topo, cat, dem, o)
    opt = solve_ilp(p)
    for sol in (greedy(p), lp_round(p), smallest(p)):
        plan, ev = score(p, sol, topo, cat, dem)
        assert ev.feasible, ev.violations
        assert ev.objective == pytest.approx(sol.facts.objective, rel=1e-9)
        assert ev.objective >= opt.facts.bound * (1 - 1e-6)
    ref = repository_only(p, topo, cat)
    _, ev = score(p, ref, topo, cat, dem)
    assert all(t[0] == "cloud" for ts in ref.routes.values() for t in ts)
    assert ev.objective >= opt.facts.objective * (1 - 1e-6) or not ev.feasible


def test_greedy_repair_respects_compute_caps():
    """No single node can carry the class (edge 0.2, regional 0.8, cloud 0.4 of it): greedy's rule
    never takes it and the old memory-only repair put it all on one node, so routing failed.
    The compute-aware repair splits it along the path and stays within every cap."""
    topo, cat, dem = three_node(rate=1000.0, cloud_cores=1)
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=100.0))
    opt = solve_ilp(p)
    assert opt.facts.status == "optimal"
    for h in (greedy, smallest, lp_round):
        sol = h(p)
        assert sol.facts.status == "heuristic", (h.__name__, sol.facts)
        _, ev = score(p, sol, topo, cat, dem)
        assert ev.feasible, (h.__name__, ev.violations)
        assert ev.objective >= opt.facts.bound * (1 - 1e-6)
        assert len(sol.routes[0]) >= 2  # split over several nodes


def test_greedy_reports_failure_not_infeasibility_when_no_split_fits():
    topo, cat, dem = three_node(rate=5000.0, cloud_cores=1)
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=100.0))
    assert solve_ilp(p).facts.status == "infeasible"
    sol = greedy(p)  # a heuristic proves nothing: it failed
    assert sol.facts.status == "failed" and "compute caps cannot carry" in sol.facts.options["solver_message"]


@pytest.mark.parametrize("seed, shape, rate, acc", [
    (0, (2, 3, 1, 5, 12), (60.0, 200.0), (None, 0.7, 0.8)),
    (2, (1, 3, 1, 4, 8), (40.0, 120.0), (None,)),
])
def test_lp_guided_completion_finds_plans_the_fill_misses(monkeypatch, seed, shape, rate, acc):
    """Compute-tight instances where the heuristics' own placements cannot carry the demand and
    the compute-aware fill (class by class, path order) leaves some demand short, although
    feasible plans exist: the routing LP widened to every pair that still fits says which
    pairs to add, and the plan routed over them is feasible and never below the ILP bound."""
    from idn.placement import baselines
    from idn.placement.split import complete, repair, repair_compute

    topo, cat, dem = tree_instance(*shape, seed=seed, rate=rate, slo_accuracy=acc)
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=500.0, rho=0.8))
    opt = solve_ilp(p)
    assert opt.facts.status == "optimal"
    own: dict[str, np.ndarray] = {}
    finish = baselines._finish
    monkeypatch.setattr(baselines, "_finish", lambda problem, name, placed, *a, **k: (
        own.setdefault(name, placed.copy()), finish(problem, name, placed, *a, **k))[1])
    old_failed = 0
    for h in (greedy, smallest):
        sol = h(p)
        assert sol.facts.status == "heuristic", (h.__name__, sol.facts)
        _, ev = score(p, sol, topo, cat, dem)
        assert ev.feasible, (h.__name__, ev.violations)
        assert ev.objective >= opt.facts.bound * (1 - 1e-6)
        placed = repair(p, own[h.__name__].copy())
        if best_split(p, placed)[0] is None and repair_compute(p, own[h.__name__])[1] is None:
            old_failed += 1  # what these methods reported before: infeasible
            placed2, shares, why = complete(p, placed)
            assert shares is not None and why == "ok"
            assert np.all(placed2 >= placed)  # completion only adds placements
            used = np.bincount(p.pair_node[placed2], weights=p.pair_size[placed2], minlength=len(p.node_ids))
            assert np.all(used <= p.mem + 1e-9)
    assert old_failed >= 1


def test_completion_says_when_even_every_fitting_pair_is_not_enough():
    topo, cat, dem = three_node(rate=5000.0, cloud_cores=1)
    p = build_problem(topo, cat, dem, PlacementOptions(alpha=100.0))
    from idn.placement.split import complete
    placed, shares, why = complete(p, np.zeros(p.n_pairs, dtype=bool))
    assert shares is None and "even with every pair" in why
