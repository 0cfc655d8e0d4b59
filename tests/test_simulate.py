"""The trace simulator: cached problems are exact, routing is best_split's optimum, hindsight bounds
every policy, moves are counted, and the ILP with move costs gets what the nodes hold."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import idn.simulate as sim
from idn.catalog import load_catalog
from idn.demand import Demand
from idn.placement.moves import move_time
from idn.placement.problem import PlacementOptions, build_problem
from idn.placement.split import best_split, cheapest_placed
from idn.placement.synthetic import tree_instance
from idn.simulate import (
    ProblemCache,
    SimOptions,
    Simulator,
    cheapest_per_class,
    moves_between,
    route,
)
from idn.topology import load_topology
from idn.trace import parse_trace

ROOT = Path(__file__).resolve().parent.parent
CAT = load_catalog(ROOT / "models/catalog.yaml")
TOPO = load_topology(ROOT / "deploy/topologies/demo.yaml")

# 4 periods of 10 s: background, a crowd that appears at edge-2 then moves to edge-4,
# and a task that appears at edge-3: classes come and go, so placements must move.
TINY = {"name": "tiny", "duration_s": 40, "period_s": 10, "interpolation": "step", "classes": [
    {"ingress": "edge-1", "task": "digits", "rate": 20},
    {"ingress": "edge-3", "task": "waveforms", "max_latency_ms": 80, "rate": [[0, 10], [20, 0]]},
    {"ingress": "edge-3", "task": "digits", "rate": [[0, 0], [20, 15]]},
    {"id": "crowd-2", "ingress": "edge-2", "task": "digits", "min_accuracy": 0.94, "rate": [[0, 0], [10, 60], [20, 0]]},
    {"id": "crowd-4", "ingress": "edge-4", "task": "digits", "min_accuracy": 0.94, "rate": [[0, 0], [20, 60]]},
    {"ingress": "regional", "task": "waveforms", "rate": "8 + 4*sin(2*pi*t/40)"},
]}


def same_problem(a, b) -> None:
    for f in dataclasses.fields(a):
        if f.name == "stats":  # informational counts of the pruning
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.shape == y.shape and np.allclose(x, y), f.name
        else:
            assert x == y, f.name


def test_cached_problems_equal_fresh_builds():
    topo, cat, dem = tree_instance(2, 4, 3, 4, 60, seed=4)
    opts = PlacementOptions()
    rng = np.random.default_rng(4)
    plain = ProblemCache(topo, cat, opts)
    universe = ProblemCache(topo, cat, opts, universe=dem)
    for k in range(12):
        keep = [replace(c, rate=c.rate * float(rng.uniform(0.1, 3))) for c in dem.classes
                if k < 3 or rng.random() < 0.5]
        if k == 11:  # a subset without one of the tasks: its variants leave the problem too
            keep = [c for c in keep if c.task != "t0"]
        d = Demand(tuple(keep))
        fresh = build_problem(topo, cat, d, opts)
        same_problem(plain.get(d), fresh)      # same shape again: rescaled
        same_problem(universe.get(d), fresh)   # any subset: restricted from the universe
    assert plain.hits >= 2 and universe.builds == 1 and universe.restricts >= 9


def test_route_finds_best_splits_optimum():
    for seed in (1, 3, 5):
        topo, cat, dem = tree_instance(2, 4, 2, 4, 60, seed=seed, rate=(20, 200))  # compute caps bind
        p = build_problem(topo, cat, dem, PlacementOptions())
        rng = np.random.default_rng(seed)
        for _ in range(4):
            placed = (rng.random(p.n_pairs) < 0.6) | p.repository[p.pair_node]
            assert np.array_equal(cheapest_per_class(p, placed), cheapest_placed(p, placed))
            ours, (theirs, _) = route(p, placed), best_split(p, placed)
            assert (ours is None) == (theirs is None)
            if ours is not None:
                assert p.objective_of(ours) == pytest.approx(p.objective_of(theirs), rel=1e-7)
                np.testing.assert_allclose(np.bincount(p.tri_class, weights=ours), 1.0, atol=1e-7)


def run_tiny(policies=sim.POLICIES, bound=True, **kw):
    trace = parse_trace(TINY, "tiny.yaml", TOPO, CAT)
    return trace, Simulator(TOPO, CAT, trace, SimOptions(**kw)).run(list(policies), bound=bound)


def test_hindsight_bounds_every_policy_in_every_period():
    _, res = run_tiny()
    assert list(res.policies) == list(sim.POLICIES)
    h = res.policies["hindsight"].periods
    for name, pr in res.policies.items():
        assert len(pr.periods) == 4
        for r, b in zip(pr.periods, h):
            assert r.reference == pytest.approx(b.reference)  # one reference for everybody
            if r.violations == 0:
                # the ILP stops within its default relative gap (1e-4) of the optimum
                assert r.objective >= b.objective * (1 - 2e-4), (name, r.index)
                assert r.gain <= b.gain + 2e-4 * b.objective / b.reference, (name, r.index)
        s = pr.summary
        assert s["periods"] == 4 and s["reconfigurations"] == sum(r.added + r.removed for r in pr.periods[1:])
        if name != "hindsight":
            assert s["gain_of_hindsight"] <= 1 + 1e-3
    # static never re-plans: what changes is only what the repository loads on demand
    st = res.policies["static"].periods
    assert all(r.routing != "best-split" or r.added == 0 for r in st[1:])
    # the crowd moves: the periodic ILP follows it one period late, hindsight at once
    assert res.policies["hindsight"].summary["gain"] > res.policies["static"].summary["gain"]
    assert res.policies["periodic-ilp"].summary["reconfigurations"] > 0
    assert res.timing["problem_cache"]["builds"] == 1  # every period's problem restricted from one build


def test_moves_count_bytes_and_time():
    model = sim.LatencyModel(TOPO, CAT)
    big, small = CAT.variant("digits-cnn-l-int8"), CAT.variant("digits-cnn-s")
    m = moves_between({"edge-1": {small.name}}, {"edge-1": {big.name}, "cloud": {small.name}}, model)
    assert (m.added, m.removed, m.bytes) == (2, 1, big.bytes + small.bytes)
    # the ILP's own move time: load time (catalog or size-scaled) + bytes over the links from the repository
    expect = move_time(model, "edge-1", big)
    assert m.load_ms == pytest.approx(expect.load_ms + move_time(model, "cloud", small).load_ms)
    # bytes to edge-1 cross regional-cloud and edge-1-regional at their bandwidths; the cloud's cost nothing
    bw = [TOPO.link_bandwidth_mbps("regional", "cloud"), TOPO.link_bandwidth_mbps("edge-1", "regional")]
    assert m.transfer_ms == pytest.approx(big.bytes * 8 / 1e3 * sum(1 / b for b in bw)) == expect.transfer_ms


def test_periodic_ilp_with_moves_gets_what_the_nodes_hold(monkeypatch):
    calls = []
    real = sim.solve_fn

    def spy(*args, **kw):
        calls.append(kw.get("moves"))
        return real(*args, **kw)

    monkeypatch.setattr(sim, "solve_fn", spy)
    _, res = run_tiny(["periodic-ilp-moves"], measurement="exact", bound=False)
    assert len(calls) == 4 and calls[0] is None  # nothing runs before the first period
    held = res.policies["periodic-ilp-moves"]
    for k, moves in enumerate(calls[1:], start=1):
        assert moves is not None and moves.weight == pytest.approx(1.0 / 10)  # move_weight / period_s
        assert sum(len(v) for v in moves.current.values()) == held.periods[k - 1].held
    calls.clear()
    run_tiny(["periodic-ilp", "static"], measurement="exact")  # no move costs, nor for the bound
    assert calls and all(m is None for m in calls)


def test_simulate_cli_writes_json_and_png(tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from idn.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    args = ["simulate", "--topology", str(ROOT / "deploy/topologies/demo.yaml"), "--trace", "tiny.yaml",
            "--catalog", str(ROOT / "models/catalog.yaml"), "--out", "sim"]
    res = CliRunner().invoke(app, [*args, "--policy", "static,infida"])
    assert res.exit_code == 0, res.output
    assert "static" in res.output and "hindsight" in res.output and "100% (bound)" in res.output
    doc = json.loads((tmp_path / "sim/tiny.json").read_text())
    assert set(doc["policies"]) == {"static", "infida", "hindsight"}
    assert len(doc["policies"]["infida"]["periods"]) == 4
    assert {"gain", "gain_of_hindsight", "reconfigurations", "bytes_moved", "slo_violations"} <= set(
        doc["policies"]["infida"]["summary"])
    assert (tmp_path / "sim/tiny.png").stat().st_size > 10_000
    bad = CliRunner().invoke(app, [*args, "--policy", "oracle"])
    assert bad.exit_code == 1 and "unknown policy 'oracle'" in bad.output


def test_control_policy_is_the_controllers_decision_round():
    """The simulator's control policy takes the decisions ``idn control`` takes: the same knobs,
    the same function, and its state carried the same way (hold, running plan)."""
    from idn.controller import Controller

    opts = SimOptions(measurement="exact", move_weight=2.0, min_gain=0.07, hold_rounds=2)
    s = Simulator(TOPO, CAT, parse_trace(TINY, "<tiny>", TOPO, CAT), opts)
    ctl = Controller(TOPO, CAT, {}, "t", opts.placement, method=opts.method, min_gain=0.07, interval_s=10,
                     move_weight=2.0, hold_rounds=2)
    assert s.knobs() == replace(ctl.knobs(), solver=opts.solver)
    res = s.run(["control"], bound=False).policies["control"]
    applied = [r.applied for r in res.periods]
    # period 0: no plan yet; the crowd that appears at edge-2 in period 1 is measured then and is a
    # class the running plan does not route, so period 2 runs a new plan whatever the hold says
    assert applied[0] is True and applied[2] is True
    assert res.summary["plans_applied"] == sum(applied)
    assert all(r.violations == 0 for r in res.periods[3:])


def test_control_keeps_idle_variants_while_they_fit():
    from idn.control_round import RoundKnobs, decide_round, keep_idle
    from idn.placement.problem import MIB

    dem = Demand(tuple(tc.cls for tc in parse_trace(TINY, "<tiny>", TOPO, CAT).classes if tc.cls.rate > 0))
    first = decide_round(TOPO, CAT, dem, None, 10**6, RoundKnobs())
    assert first.decision.apply and first.kept == ()
    # an idle variant the running plan holds on edge-1 stays, when edge-1's memory has room for it
    small = min((v for v in CAT.variants.values() if v.task == "digits"), key=lambda v: v.bytes)
    on_e1 = set(first.plan.placements.get("edge-1", ()))
    room = TOPO.nodes["edge-1"].mem_mb - sum(CAT.variant(v).bytes for v in on_e1) / MIB
    running = replace(first.plan, placements={**first.plan.placements,
                                              "edge-1": tuple(sorted(on_e1 | {small.name}))})
    plan, kept = keep_idle(first.plan, running, TOPO, CAT, PlacementOptions())
    assert small.name not in on_e1 and small.bytes / MIB <= room  # the demo's edge-1 has room for it
    assert kept == (f"{small.name}@edge-1",) and small.name in plan.placements["edge-1"]
    assert plan.routes == first.plan.routes  # kept, not routed to
    # never beyond a node's memory: with no room at all, nothing is kept
    tiny_topo = replace(TOPO, nodes={**TOPO.nodes, "edge-1": replace(TOPO.nodes["edge-1"], mem_mb=0.001)})
    _, kept_tiny = keep_idle(replace(first.plan, placements={}), running, tiny_topo, CAT, PlacementOptions())
    assert kept_tiny and not any(k.endswith("@edge-1") for k in kept_tiny)
    # with keep_idle off, the round's plan holds only what its routes use
    nokeep = decide_round(TOPO, CAT, dem, running, 10**6, RoundKnobs(keep_idle=False))
    assert nokeep.kept == ()
