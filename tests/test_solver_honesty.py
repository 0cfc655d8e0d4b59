"""The solver tells the truth, checked against an enumeration of our own on random small instances.

Independent of the solver's code: latency is written out by hand (link delays, slowdown,
per-node overhead, p95 raised to at least p50), placements are enumerated exhaustively,
and the routing for each placement is scipy's LP built here (not PuLP, not the model
builder). On every instance:

* the ILP is optimal with the enumeration's objective, or the instance is infeasible and
  the ILP says so with an explanation (``InfeasibleProblem``, exit 2 from the CLI);
* every heuristic either returns a plan that this file's own checker finds within
  memory, compute, budget and SLOs (the repository-only reference may miss SLOs, nothing
  else) and that is no better than the optimum, or raises: ``InfeasibleProblem`` only
  when the enumeration finds no plan, ``NoPlanFound`` (failed: "does not mean none
  exists") otherwise;
* infeasible instances of every kind (budget, memory, compute, SLO, and every
  combination) are explained and never crash, for every method (and from the CLI:
  ``test_cli_errors``);
* a time limit that ends with no plan is ``no-solution``, not infeasibility; alpha must
  be a finite number >= 0.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from idn.catalog import parse_catalog
from idn.demand import parse_demand
from idn.placement import (
    InfeasibleProblem,
    NoPlan,
    NoPlanFound,
    PlacementOptions,
    SolverOptions,
    build_problem,
    solve,
)
from idn.placement.synthetic import catalog_doc, tree_instance, variant_doc
from idn.plan import SolveStatus
from idn.topology import parse_topology

HW = "cpu-x86_64-2c"
MIB = 2 ** 20
HEURISTICS = ("greedy", "lp-round", "smallest", "repository")

# Sizes of the instances below: 3-4 nodes (a line repo <- mid <- edge, and optionally a
# second edge under mid), 1-2 tasks with 1-2 variants each (<= 3 variants in all),
# 1-4 request classes; so at most 4 x 3 = 12 candidate (node, variant) placements.


# -- the instance, as the users' files -------------------------------------------------------

def _instance(d: dict[str, Any]):
    nodes = [
        {"id": "repo", "tier": "cloud", "address": "h:1", "mem_mb": d["mem"][0], "cores": d["cores"][0],
         "price": d["price"][0], "repository": True, "overhead_ms": d["overhead"]},
        {"id": "mid", "tier": "regional", "address": "h:2", "mem_mb": d["mem"][1], "cores": d["cores"][1],
         "price": d["price"][1], "parent": "repo", "slowdown": d["slow"][1]},
        {"id": "edge", "tier": "edge", "address": "h:3", "mem_mb": d["mem"][2], "cores": d["cores"][2],
         "price": d["price"][2], "parent": "mid", "slowdown": d["slow"][2]},
    ]
    links = [{"a": "mid", "b": "repo", "delay_ms": d["delay"][0]}, {"a": "edge", "b": "mid", "delay_ms": d["delay"][1]}]
    if d["edge2"]:
        nodes.append({"id": "edge2", "tier": "edge", "address": "h:4", "mem_mb": d["mem"][3], "cores": d["cores"][2],
                      "price": d["price"][2], "parent": "mid", "slowdown": d["slow"][2]})
        links.append({"a": "edge2", "b": "mid", "delay_ms": d["delay"][2]})
    topo = parse_topology({"hardware_class": HW, "nodes": nodes, "links": links}, "<t>")
    tasks = {}
    for t, vs in d["tasks"].items():
        tasks[t] = [variant_doc(f"{t}{k}", int(size * MIB), acc, p50, p95)
                    for k, (size, acc, p50, p95) in enumerate(vs)]
    cat = parse_catalog(catalog_doc(tasks), "<c>", verify_hashes=False)
    seen, classes = set(), []
    for ingress, task, rate, lat, acc in d["classes"]:
        if ingress == "edge2" and not d["edge2"]:
            ingress = "edge"
        if task not in tasks or (ingress, task, lat, acc) in seen:
            continue
        seen.add((ingress, task, lat, acc))
        c: dict[str, Any] = {"ingress": ingress, "task": task, "rate": rate}
        if lat is not None:
            c["max_latency_ms"] = lat
        if acc is not None:
            c["min_accuracy"] = acc
        classes.append(c)
    if not classes:  # every drawn class named a task the catalog lacks: keep one for the first task
        classes.append({"ingress": "edge", "task": next(iter(tasks)), "rate": 10.0})
    dem = parse_demand({"classes": classes}, "<d>", topo, cat)
    return topo, cat, dem


variant = st.tuples(st.sampled_from([0.5, 1.0, 1.9, 3.0]), st.sampled_from([0.7, 0.85, 0.93]),
                    st.sampled_from([1.0, 4.0, 12.0]), st.sampled_from([None, 1.5]))
instances = st.fixed_dictionaries({
    "mem": st.tuples(st.sampled_from([2.0, 4.0, 64.0]), st.sampled_from([1.0, 3.0, 6.0]),
                     st.sampled_from([1.0, 2.0, 4.0]), st.sampled_from([1.0, 3.0])),
    "cores": st.tuples(st.sampled_from([0.5, 1.0, 4.0]), st.sampled_from([0.25, 1.0]), st.sampled_from([0.2, 1.0])),
    "price": st.tuples(st.sampled_from([1.0, 0.5]), st.sampled_from([1.0, 2.0]), st.sampled_from([2.0, 4.0])),
    "slow": st.tuples(st.just(1.0), st.sampled_from([1.0, 1.5]), st.sampled_from([2.0, 3.0])),
    "delay": st.tuples(st.sampled_from([10.0, 25.0]), st.sampled_from([2.0, 8.0]), st.sampled_from([3.0, 6.0])),
    "overhead": st.sampled_from([0.0, 0.5]),
    "edge2": st.booleans(),
    "tasks": st.sampled_from([("a",), ("a", "b")]).flatmap(
        lambda ts: st.fixed_dictionaries({t: st.lists(variant, min_size=1, max_size=3 - len(ts)) for t in ts})),
    "classes": st.lists(st.tuples(st.sampled_from(["edge", "mid", "edge2"]), st.sampled_from(["a", "b"]),
                                  st.sampled_from([5.0, 40.0, 150.0]), st.sampled_from([None, None, 30.0, 60.0]),
                                  st.sampled_from([None, None, 0.8, 0.9])), min_size=1, max_size=4),
    "alpha": st.sampled_from([0.0, 10.0, 300.0, 2000.0]),
    "rho": st.sampled_from([0.5, 1.0]),
    "budget": st.sampled_from([None, None, 1.0, 3.0, 8.0]),
})


# -- our own model: latency by hand, enumeration of placements, scipy's LP for the split -----

PATHS = {"edge": ["edge", "mid", "repo"], "edge2": ["edge2", "mid", "repo"], "mid": ["mid", "repo"], "repo": ["repo"]}


def _times(topo, v, node):
    n = topo.nodes[node]
    p50 = v.latency_ms(HW, quantile="p50")
    p95 = max(v.latency_ms(HW, quantile="p95"), p50)
    return p50 * n.slowdown + n.overhead_ms, p95 * n.slowdown + n.overhead_ms


def _rtt(topo, ingress, node):
    hops = PATHS[ingress][:PATHS[ingress].index(node) + 1]
    return 2 * sum(topo.link_delay_ms(a, b) for a, b in zip(hops, hops[1:]))


def _options(topo, cat, c, opts):
    """(node, variant, cost per request, compute ms) the class may use: on its path, meeting its SLO."""
    out = []
    for node in PATHS[c.ingress]:
        for v in cat.tasks[c.task].variants.values():
            t50, t95 = _times(topo, v, node)
            rtt = _rtt(topo, c.ingress, node)
            if c.max_latency_ms is not None and rtt + t95 > c.max_latency_ms:
                continue
            if c.min_accuracy is not None and v.accuracy < c.min_accuracy:
                continue
            out.append((node, v.name, rtt + t50 + opts.alpha * (1 - v.accuracy), t50))
    return out


def enumerate_optimum(topo, cat, dem, opts) -> float:
    """min objective over every placement (memory, budget) and split (scipy LP: serve, compute caps)."""
    variants = {v.name: v for t in dem.tasks() for v in cat.tasks[t].variants.values()}
    pairs = [(n, v) for n in topo.nodes for v in variants if variants[v].bytes / MIB <= topo.nodes[n].mem_mb]
    usable = [_options(topo, cat, c, opts) for c in dem.classes]
    best = math.inf
    for bits in itertools.product((0, 1), repeat=len(pairs)):
        placed = {p for p, b in zip(pairs, bits) if b}
        mem: dict[str, float] = {}
        for n, v in placed:
            mem[n] = mem.get(n, 0.0) + variants[v].bytes / MIB
        if any(mem[n] > topo.nodes[n].mem_mb + 1e-9 for n in mem):
            continue
        cost = sum(topo.nodes[n].price * variants[v].bytes / MIB for n, v in placed)
        if opts.budget is not None and cost > opts.budget + 1e-9:
            continue
        cols = [(r, o) for r, os_ in enumerate(usable) for o in os_ if (o[0], o[1]) in placed]
        if {r for r, _ in cols} != set(range(len(dem.classes))):
            continue
        rates = [c.rate for c in dem.classes]
        obj = [rates[r] * o[2] for r, o in cols]
        a_eq = [[1.0 if r == k else 0.0 for r, _ in cols] for k in range(len(dem.classes))]
        nodes = list(topo.nodes)
        a_ub = [[rates[r] * o[3] / 1000 if o[0] == n else 0.0 for r, o in cols] for n in nodes]
        b_ub = [opts.rho * topo.nodes[n].cores for n in nodes]
        res = linprog(obj, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0] * len(dem.classes), bounds=(0, 1),
                      method="highs")
        if res.status == 0:
            best = min(best, float(res.fun))
    return best


def own_check(plan, topo, cat, dem, opts, allow_slo: bool = False) -> tuple[list[str], float]:
    """Our own reading of a plan: what it breaks, and its objective."""
    broken, load, objective = [], dict.fromkeys(topo.nodes, 0.0), 0.0
    for c in dem.classes:
        r = plan.routes.get(c.id)
        if r is None or abs(sum(t.share for t in r.targets) - 1) > 1e-6:
            broken.append(f"{c.id} not fully served")
            continue
        for t in r.targets:
            v = cat.variant(t.variant)
            if v.task != c.task or t.variant not in plan.placements.get(t.node, ()) or t.node not in PATHS[c.ingress]:
                broken.append(f"{c.id}: bad target {t}")
                continue
            t50, t95 = _times(topo, v, t.node)
            rtt = _rtt(topo, c.ingress, t.node)
            if not allow_slo and c.max_latency_ms is not None and rtt + t95 > c.max_latency_ms * (1 + 1e-9):
                broken.append(f"{c.id}: latency SLO")
            if not allow_slo and c.min_accuracy is not None and v.accuracy < c.min_accuracy:
                broken.append(f"{c.id}: accuracy SLO")
            load[t.node] += c.rate * t.share * t50 / 1000
            objective += c.rate * t.share * (rtt + t50 + opts.alpha * (1 - v.accuracy))
    cost = 0.0
    for n, vs in plan.placements.items():
        mem = sum(cat.variant(v).bytes / MIB for v in vs)
        cost += topo.nodes[n].price * mem
        if mem > topo.nodes[n].mem_mb * (1 + 1e-9):
            broken.append(f"memory at {n}")
    for n, ld in load.items():
        if ld > opts.rho * topo.nodes[n].cores * (1 + 1e-6) + 1e-9:
            broken.append(f"compute at {n}: {ld} > {opts.rho * topo.nodes[n].cores}")
    if opts.budget is not None and cost > opts.budget * (1 + 1e-9):
        broken.append(f"budget {cost} > {opts.budget}")
    return broken, objective


# -- the properties ---------------------------------------------------------------------------

@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(instances)
def test_every_method_tells_the_truth_against_enumeration(d):
    topo, cat, dem = _instance(d)
    opts = PlacementOptions(alpha=d["alpha"], rho=d["rho"], budget=d["budget"])
    exact = enumerate_optimum(topo, cat, dem, opts)
    try:
        out = solve(topo, cat, dem, opts, "highs")
    except InfeasibleProblem as e:
        assert exact == math.inf, f"ILP said infeasible, enumeration found {exact}: {e}"
        assert e.reasons and all(r.strip() for r in e.reasons)
    else:
        assert exact < math.inf, "ILP returned a plan where the enumeration found none"
        assert out.solution.facts.status == SolveStatus.OPTIMAL
        broken, obj = own_check(out.plan, topo, cat, dem, opts)
        assert not broken, broken
        assert obj == pytest.approx(exact, rel=1e-6, abs=1e-6)
        assert out.solution.facts.objective == pytest.approx(exact, rel=1e-6, abs=1e-6)
    for method in HEURISTICS:
        try:
            h = solve(topo, cat, dem, opts, method)
        except InfeasibleProblem as e:  # a claim of proof: must be true
            assert exact == math.inf, f"{method} claimed infeasibility, enumeration found {exact}: {e}"
            continue
        except NoPlanFound as e:  # honest failure: never claims that no plan exists
            assert e.status == SolveStatus.FAILED and "does not mean none exists" in str(e)
            continue
        broken, obj = own_check(h.plan, topo, cat, dem, opts, allow_slo=method == "repository")
        assert not broken, (method, broken)
        if method != "repository":
            assert exact < math.inf and obj >= exact * (1 - 1e-6) - 1e-6, (method, obj, exact)


# -- infeasible on purpose: every kind, every combination ---------------------------------------

KINDS = ("budget", "memory", "compute", "slo")


def _broken(kinds: frozenset[str], seed: int):
    """A small feasible instance, then each kind in ``kinds`` applied: each alone makes it infeasible."""
    mem = [64.0, 4.0, 4.0]
    cores = [4.0, 1.0, 1.0]
    rate = 20.0
    budget = None
    slo: dict[str, float] = {}
    two_tasks = "memory" in kinds
    if "memory" in kinds:  # every node holds one 1.9 MiB variant, two tasks need one each at the edge
        mem = [1.95, 1.95, 1.95] if seed % 2 else [2.5, 2.0, 1.95]
    if "compute" in kinds:  # more work than all cores together can do
        cores = [0.25, 0.1, 0.1]
        rate = 400.0 + 100 * (seed % 3)
    if "budget" in kinds:
        budget = 0.5 + 0.25 * (seed % 2)
    if "slo" in kinds:
        slo = {"max_latency_ms": 2.0} if seed % 2 else {"min_accuracy": 0.99}
    d = {"mem": (*mem, 1.0), "cores": tuple(cores), "price": (1.0, 1.0, 1.0), "slow": (1.0, 1.0, 1.0),
         "delay": (10.0, 5.0, 5.0), "overhead": 0.0, "edge2": False,
         "tasks": {t: [(1.9, 0.9, 4.0, 5.0)] for t in (("a", "b") if two_tasks else ("a",))},
         "classes": [("edge", t, rate, slo.get("max_latency_ms"), slo.get("min_accuracy"))
                     for t in (("a", "b") if two_tasks else ("a",))]}
    # memory: the second task may live no higher than the edge (latency pins it there)
    if "memory" in kinds:
        lat = slo.get("max_latency_ms", 9.0)
        d["classes"] = [("edge", "a", rate, lat, slo.get("min_accuracy")),
                        ("edge", "b", rate, lat, slo.get("min_accuracy"))]
    return _instance(d), PlacementOptions(alpha=100.0, rho=1.0, budget=budget)


@settings(max_examples=30, deadline=None)
@given(st.sets(st.sampled_from(KINDS), min_size=1).map(frozenset), st.integers(0, 5))
def test_infeasible_instances_of_every_kind_are_explained(kinds, seed):
    (topo, cat, dem), opts = _broken(kinds, seed)
    assert enumerate_optimum(topo, cat, dem, opts) == math.inf  # the generator does break it
    for method in ("highs", "cbc", "greedy", "lp-round", "smallest"):
        with pytest.raises(InfeasibleProblem) as e:
            solve(topo, cat, dem, opts, method)
        assert e.value.reasons and all(isinstance(r, str) and r for r in e.value.reasons), (method, kinds)
    if kinds != {"slo"}:  # the repository reference may miss SLOs, but not memory, compute or budget
        with pytest.raises(NoPlan):
            solve(topo, cat, dem, opts, "repository")


def _write(tmp_path, topo, cat, dem) -> list[str]:
    """The instance as the three files `idn solve` reads."""
    t = {"hardware_class": HW, "nodes": [{k: v for k, v in vars(n).items() if v is not None} for n in
                                         topo.nodes.values()],
         "links": [{"a": ln.a, "b": ln.b, "delay_ms": ln.delay_ms} for ln in topo.links]}
    c = catalog_doc({name: [variant_doc(v.name, v.bytes, v.accuracy, v.latency_ms(HW), v.latency_ms(HW, quantile="p95"))
                            for v in task.variants.values()] for name, task in cat.tasks.items()})
    d = {"classes": [{k: v for k, v in (("ingress", x.ingress), ("task", x.task), ("rate", x.rate),
                                        ("max_latency_ms", x.max_latency_ms), ("min_accuracy", x.min_accuracy))
                      if v is not None} for x in dem.classes]}
    paths = []
    for name, doc in (("topology", t), ("catalog", c), ("demand", d)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
        paths += [f"--{name}", str(tmp_path / f"{name}.yaml")]
    return paths


# -- the issue's reproductions -----------------------------------------------------------------

def _repro():
    """repo (64 MiB) <- 20 ms -> mid (3 MiB) <- 20 ms -> edge (3 MiB), 1 core each; tasks a and b with one
    1.9 MiB, 10 ms variant each; a class of each at edge, 120 req/s (the issue's greedy memory case)."""
    d = {"mem": (64.0, 3.0, 3.0, 1.0), "cores": (1.0, 1.0, 1.0), "price": (1.0, 1.0, 1.0), "slow": (1.0, 1.0, 1.0),
         "delay": (20.0, 20.0, 1.0), "overhead": 0.0, "edge2": False,
         "tasks": {"a": [(1.9, 0.9, 10.0, 10.0)], "b": [(1.9, 0.9, 10.0, 10.0)]},
         "classes": [("edge", "a", 120.0, None, None), ("edge", "b", 120.0, None, None)]}
    return _instance(d), PlacementOptions(alpha=1000.0, rho=1.0)


def test_issue_repro_every_method_within_memory_or_says_it_failed():
    (topo, cat, dem), opts = _repro()
    exact = enumerate_optimum(topo, cat, dem, opts)
    assert exact < math.inf
    for method in ("highs", "greedy", "lp-round", "smallest", "repository"):
        try:
            out = solve(topo, cat, dem, opts, method)
        except NoPlanFound as e:
            assert method in ("smallest", "repository") and "does not mean none exists" in str(e)
            if method != "repository":
                assert "a plan does exist" in str(e)
            continue
        broken, obj = own_check(out.plan, topo, cat, dem, opts)
        assert not broken and obj >= exact * (1 - 1e-9), (method, broken)


def test_time_limit_without_a_plan_is_no_solution_not_infeasible():
    topo, cat, dem = tree_instance(3, 10, 2, 6, 200, seed=1, rate=(1, 60))
    with pytest.raises(NoPlanFound) as e:
        solve(topo, cat, dem, PlacementOptions(alpha=200.0), "highs", SolverOptions(time_limit=1e-4))
    assert e.value.status == SolveStatus.NO_SOLUTION and "does not mean none exists" in str(e.value)
    assert "raise --time-limit" in str(e.value) and "no feasible plan" not in str(e.value)
    assert solve(topo, cat, dem, PlacementOptions(alpha=200.0), "highs").solution.facts.status == "optimal"


@pytest.mark.parametrize("alpha", [-1000.0, -1e-9, math.nan, math.inf])
def test_alpha_must_be_finite_and_non_negative(alpha):
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        PlacementOptions(alpha=alpha)


def test_heuristic_split_is_checked_before_it_becomes_a_plan():
    """share_violations refuses a split that breaks memory, compute, budget or full service."""
    from idn.placement.solution import share_violations
    (topo, cat, dem), opts = _repro()
    p = build_problem(topo, cat, dem, opts)
    both_mid = np.zeros(p.n_triples)
    for i in range(p.n_triples):  # both classes entirely on mid: 3.8 MiB > 3 MiB, 2.4 cores > 1
        if p.node_ids[int(p.pair_node[p.tri_pair[i]])] == "mid":
            both_mid[i] = 1.0
    broken = share_violations(p, both_mid)
    assert any(b.startswith("memory: node 'mid'") for b in broken)
    assert any(b.startswith("compute: node 'mid'") for b in broken)
    assert share_violations(p, np.zeros(p.n_triples))[0].endswith("served, not 100%")


def test_explainer_survives_a_budget_at_the_boundary_without_latency_slo():
    """The issue's explainer crash: a class with no latency SLO that the budget rules out (at the edge of
    floating point) went down the latency branch. Now every class gets a sentence."""
    for budget in (1.4129, 1.9 * 0.9999999, 1.9):
        d = {"mem": (64.0, 3.0, 3.0, 1.0), "cores": (1.0, 1.0, 1.0), "price": (1.0, 1.0, 1.0),
             "slow": (1.0, 1.0, 1.0), "delay": (20.0, 20.0, 1.0), "overhead": 0.0, "edge2": False,
             "tasks": {"a": [(1.9, 0.9, 10.0, 10.0), (3.0, 0.95, 10.0, 10.0)]},
             "classes": [("edge", "a", 10.0, None, 0.92)]}
        topo, cat, dem = _instance(d)
        try:
            solve(topo, cat, dem, PlacementOptions(alpha=10.0, rho=1.0, budget=budget))
        except InfeasibleProblem as e:
            assert "budget" in str(e) and "max_latency_ms=None" not in str(e)


def test_explainer_uses_the_solvers_p95_raised_to_p50():
    """A noisy profile with p95 < p50: solver and explainer both check p50 (10 ms), not the raw p95 (5 ms)."""
    d = {"mem": (64.0, 3.0, 3.0, 1.0), "cores": (4.0, 4.0, 4.0), "price": (1.0, 1.0, 1.0),
         "slow": (1.0, 1.0, 1.0), "delay": (20.0, 20.0, 1.0), "overhead": 0.0, "edge2": False,
         "tasks": {"a": [(1.0, 0.9, 10.0, 5.0)]}, "classes": [("edge", "a", 10.0, 8.0, None)]}
    topo, cat, dem = _instance(d)
    assert enumerate_optimum(topo, cat, dem, PlacementOptions(alpha=10.0)) == math.inf
    with pytest.raises(InfeasibleProblem) as e:
        solve(topo, cat, dem, PlacementOptions(alpha=10.0))
    assert "a0 at edge with 10.0 ms (p95 compute 10.0 ms" in str(e.value) and "> max_latency_ms=8" in str(e.value)
