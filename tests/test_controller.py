"""The controller: measured demand from GetStats, the re-plan decision, and the loop on real nodes."""

from __future__ import annotations

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


def test_control_cli_rounds(tmp_path, parts):
    import subprocess
    import sys

    net = Network(line_topology(tmp_path), parts[1])
    try:
        with Client(net.address("edge")) as c:
            for _ in range(5):
                c.infer("toy", X)
        proc = subprocess.run([sys.executable, "-m", "idn.cli", "control", str(net.topology_path), "--rounds", "2",
                               "--interval", "0.1", "--token", net.token, "--catalog", str(parts[1])],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "round 1: 1 classes" in proc.stdout and "applied plan v1" in proc.stdout
        assert "round 2: no traffic measured" in proc.stdout
    finally:
        net.close()
