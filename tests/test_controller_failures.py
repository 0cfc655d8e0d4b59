"""A controller that survives failures, pure parts: the live sub-topology and a tolerant apply (the
loop with a node killed under it: tests/test_failover.py)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from idn import network
from idn.network import NodeCallError, push_plan
from idn.protos import control_pb2 as cpb
from idn.subtopology import live_topology
from tests.network import toy_catalog
from tests.test_failover import plan
from tests.test_failover_routing import topo

X = {"input": np.ones((1, 4), np.float32)}


def test_live_topology_reattaches_over_backup_links_or_to_the_nearest_live_ancestor():
    t = topo()  # cloud - regional - {edge-a (backup link to cloud), edge-b}; cloud - r2
    live, notes = live_topology(t, {"regional"})
    assert set(live.nodes) == {"cloud", "r2", "edge-a", "edge-b"}
    assert live.path("edge-a") == ["edge-a", "cloud"] and live.delay_ms("edge-a", "cloud") == 2  # the backup link
    assert live.path("edge-b") == ["edge-b", "cloud"] and live.link_delay_ms("edge-b", "cloud") == 35  # 10 + 25
    assert live.link_bandwidth_mbps("edge-b", "cloud") == 50  # the narrowest link it still crosses
    assert any("edge-a re-attached to cloud over its backup link" in n for n in notes)
    assert any("edge-b re-attached to cloud past regional" in n for n in notes)
    assert live_topology(t, set()) == (t, [])


def test_without_a_live_repository_the_nearest_live_node_stands_in():
    t = topo()
    live, notes = live_topology(t, {"cloud"})
    assert live.repositories == ["r2"]  # 20 ms from the cloud, regional is 25
    assert live.path("edge-a") == ["edge-a", "regional", "r2"] and "stands in" in notes[0]
    live, _ = live_topology(t, {"cloud", "regional", "r2"})
    assert live.repositories == ["edge-a"] and live.path("edge-b") == ["edge-b", "edge-a"]


class FakeControl:
    """ControlClient stand-in: records calls; ``dies`` maps a node to the phase it dies in."""

    calls: list = []
    dies: dict = {}

    def __init__(self, address, token, timeout=None, tls=None):
        self.node = address

    def info(self):
        return cpb.NodeInfo(plan_version=4)

    def apply_plan(self, doc, phase):
        name = cpb.ApplyPlanRequest.Phase.Name(phase)
        if self.dies.get(self.node) == name:
            raise FakeRpcError()
        self.calls.append((self.node, name))
        return cpb.ApplyPlanResponse()

    def close(self):
        pass


class FakeRpcError(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "failed to connect to all addresses"


def test_three_phase_apply_tolerates_a_node_that_dies_between_phases(monkeypatch):
    t = topo()
    monkeypatch.setattr(network, "ControlClient", FakeControl)
    FakeControl.calls, FakeControl.dies = [], {"regional": "COMMIT"}
    addresses = {n: n for n in t.nodes}
    with pytest.raises(NodeCallError):  # without `down`, a failure is the caller's, naming the node
        push_plan(plan(), t, addresses, "tok")
    FakeControl.calls = []
    down = {"r2"}
    version, results = push_plan(plan(), t, addresses, "tok", down=down)
    assert version == 5 and down == {"r2", "regional"}
    assert {r.node for r in results} == {"cloud", "edge-a", "edge-b"}
    assert ("regional", "PREPARE") in FakeControl.calls and ("regional", "CLEANUP") not in FakeControl.calls
    assert not any(n == "r2" for n, _ in FakeControl.calls)
    assert [p for n, p in FakeControl.calls if n == "cloud"] == ["PREPARE", "COMMIT", "CLEANUP"]


def test_a_node_that_comes_back_is_planned_with_the_classes_it_had(tmp_path):
    from idn.catalog import load_catalog
    from idn.controller import Controller
    from idn.demand import Demand, RequestClass

    t = topo()
    ctl = Controller(t, load_catalog(toy_catalog(tmp_path)), {n: n for n in t.nodes}, "tok")
    a, b = RequestClass("edge-a/toy", "edge-a", "toy", 30.0), RequestClass("edge-b/toy", "edge-b", "toy", 20.0)
    ctl._remember(Demand((a, b)), set())
    ctl._remember(Demand((RequestClass("regional/toy", "regional", "toy", 30.0), b)), {"edge-a"})  # edge-a dead
    # back, with a window too short to have measured much: planned with what it had
    back = ctl._with_returning(Demand((RequestClass("edge-a/toy", "edge-a", "toy", 1.0), b)), ["edge-a"])
    assert {(c.id, c.rate) for c in back.classes} == {("edge-a/toy", 30.0), ("edge-b/toy", 20.0)}
    assert ctl._with_returning(Demand((b,)), []) == Demand((b,))
