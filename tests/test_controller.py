"""The controller: measured demand from GetStats, the re-plan decision, and the loop on real nodes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from idn.catalog import load_catalog
from idn.client import Client
from idn.controller import Controller, decide, measured_demand
from idn.placement.evaluate import Evaluation
from idn.protos import control_pb2 as cpb
from idn.topology import load_topology
from tests.network import Network, line_topology, toy_catalog

X = {"input": np.ones((1, 4), np.float32)}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ctl")
    return line_topology(d), toy_catalog(d / "cat")


def window(seconds: float, *classes: tuple) -> cpb.Stats:
    w = cpb.Stats(cursor=1, window_s=seconds)
    for ingress, task, n, lat, acc in classes:
        cs = w.classes.add(ingress=ingress, task=task, requests=n)
        if lat is not None:
            cs.max_latency_ms = lat
        if acc is not None:
            cs.min_accuracy = acc
    return w


def test_measured_demand_sums_rates_and_keeps_slos(parts):
    topo, cat = load_topology(parts[0]), load_catalog(parts[1])
    d = measured_demand([window(2.0, ("edge", "toy", 20, None, None), ("edge", "toy", 4, None, 0.9),
                                ("edge", "nope", 50, None, None), ("mars", "toy", 9, None, None)),
                         window(4.0, ("regional", "toy", 8, 30.0, None))], topo, cat)
    assert {(c.id, c.rate, c.max_latency_ms, c.min_accuracy) for c in d.classes} == {
        ("edge/toy", 10.0, None, None), ("edge/toy/acc0.9", 2.0, None, 0.9), ("regional/toy/lat30", 2.0, 30.0, None)}


def ev(objective: float, violations=()) -> Evaluation:
    return Evaluation(objective=objective, total_rate=1.0, mean_latency_ms=0.0, p95_class_latency_ms=0.0,
                      accuracy=1.0, deployment_cost=0.0, classes={}, nodes={}, violations=list(violations))


def test_decide_replans_only_when_it_pays():
    assert decide(None, ev(10), 0.05).apply
    assert decide(ev(10, ["class edge/x has no route"]), ev(12), 0.05).apply
    assert decide(ev(100), ev(90), 0.05).apply
    keep = decide(ev(100), ev(97), 0.05)
    assert not keep.apply and "keep" in keep.reason


def test_decide_counts_the_moves_and_holds_after_a_change():
    moving = ev(90)
    moving.move_cost, moving.moved, moving.move_ms = 8.0, ["big@edge"], 2400.0
    paid = decide(ev(100), moving, 0.05)  # 10% cheaper, but 8 of the 10 go to moving
    assert not paid.apply and "2.0% cheaper after 1 move(s)" in paid.reason
    assert decide(ev(100), ev(80), 0.05, held=True).apply is False  # hysteresis
    assert decide(ev(100, ["memory: node 'edge'"]), ev(80), 0.05, held=True).apply  # unless broken


def test_controller_loop_on_real_nodes(tmp_path, parts):
    net = Network(line_topology(tmp_path), parts[1])
    try:
        ctl = Controller(net.topology, net.catalog, {n: net.address(n) for n in net.topology.nodes}, net.token)
        assert ctl.step().decision is None  # nothing measured yet
        with Client(net.address("edge")) as c:
            for _ in range(10):
                c.infer("toy", X)
                c.infer("toy", X, parameters={"idn.min_accuracy": 0.9})
        first = ctl.step()
        assert first.decision.apply and first.version == 1 and first.decision.reason == "no plan yet"
        assert {c.id for c in first.demand.classes} == {"edge/toy", "edge/toy/acc0.9"}
        with Client(net.address("edge")) as c:
            r = c.infer("toy", X, parameters={"idn.min_accuracy": 0.9})
            assert r.variant == "toy-big" and r.hops <= 2  # the plan now routes the measured class
            for _ in range(10):
                c.infer("toy", X)
                c.infer("toy", X, parameters={"idn.min_accuracy": 0.9})
        again = ctl.step()  # same demand: nothing to gain
        assert not again.decision.apply and again.version is None
        assert net.nodes["edge"].server.deployment.version == 1
    finally:
        net.close()


def test_control_cli_measures_only_its_own_window_and_knows_the_running_plan(tmp_path, parts):
    import subprocess
    import sys

    from idn.network import push_plan
    from tests.network import make_plan

    net = Network(line_topology(tmp_path), parts[1])
    addresses = {n: net.address(n) for n in net.topology.nodes}
    try:
        push_plan(make_plan(1, {"cloud": ["toy-big"]}, [("cloud", "toy-big", 1.0)]), net.topology, addresses,
                  net.token)
        with Client(net.address("edge")) as c:  # before the controller starts: not its demand
            for _ in range(50):
                c.infer("toy", X)
        proc = subprocess.Popen([sys.executable, "-m", "idn.cli", "control", str(net.topology_path), "--rounds", "2",
                                 "--interval", "2.5", "--token", net.token, "--catalog", str(parts[1])],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = proc.stdout.readline()  # printed once primed
        assert "the network runs plan v1" in line, line
        with Client(net.address("edge")) as c:
            for _ in range(10):
                c.infer("toy", X)
        out = line + proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, out
        assert "round 1: 1 classes" in out and "no plan yet" not in out
        # 10 requests in a 2.5 s window, not 60 over the nodes' lifetime
        rate = float(out.split("round 1: 1 classes, ")[1].split(" req/s")[0])
        assert 3.0 <= rate <= 4.5, out
        assert "applied plan v2" in out  # re-versioned above the running v1
        assert "round 2: no traffic measured" in out
        assert net.nodes["edge"].server.deployment.version == 2
    finally:
        net.close()


def test_measured_rates_match_what_loadgen_sent_on_the_demo(tmp_path):
    """The shipped demo network and demand: per class, the controller counts what the load generator sent."""
    import asyncio

    import yaml

    from idn.catalog import default_catalog_path
    from idn.demand import load_demand
    from idn.launcher import start_network, stop_nodes
    from idn.loadgen import LoadOptions, plan_load, run_load
    from tests.network import free_port

    doc = yaml.safe_load(open("deploy/topologies/demo.yaml"))
    for n in doc["nodes"]:
        n["address"] = f"127.0.0.1:{free_port()}"
    topo_path = tmp_path / "demo.yaml"
    topo_path.write_text(yaml.safe_dump(doc))
    topo, cat = load_topology(topo_path), load_catalog(default_catalog_path())
    demand = load_demand("deploy/demands/demo.yaml", topo, cat)
    state, procs = start_network(topo_path, emulate=True, run_dir=tmp_path / "run")
    try:
        ctl = Controller(topo, cat, state.addresses, state.token)
        loads = plan_load(topo, cat, demand, seed=1)
        t_prime = time.monotonic()
        ctl.prime()
        report = asyncio.run(run_load(loads, LoadOptions(duration_s=6.0, warmup_s=0.0, seed=1)))
        windows, errors = ctl.read_stats()
        t_read = time.monotonic()
        assert not errors
        window_s = max(w.window_s for w in windows)
        counted: dict[str, int] = {}
        for w in windows:
            for cs in w.classes:
                counted[cs.class_key] = counted.get(cs.class_key, 0) + cs.requests
        measured = measured_demand(windows, topo, cat).by_id()
        # the window holds the whole load, and nothing from before the prime or after the read
        # (bracketed by this process's own clock, so a busy machine cannot fail it)
        assert report.duration_s <= window_s <= t_read - t_prime, (window_s, t_read - t_prime)
        for c in report.classes:
            # every request sent is counted once, at its ingress, in its class (forwarded ones are not)
            assert counted.get(c.class_id) == c.sent, (c.class_id, counted.get(c.class_id), c.sent, c.ok, c.errors)
            # and the rate is that count over the controller's own window: exact, not an estimate
            assert measured[c.class_id].rate == pytest.approx(c.sent / window_s, rel=0.01)
    finally:
        stop_nodes(state.nodes, procs=procs)
