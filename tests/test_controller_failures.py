"""A controller that survives failures: the live sub-topology, a tolerant apply, and the loop with a
node killed (SIGKILL) and restarted under it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import grpc
import numpy as np
import pytest

from idn import network
from idn.client import Client
from idn.controller import Controller
from idn.launcher import restart_node, start_network, stop_nodes
from idn.network import NodeCallError, push_plan
from idn.protos import control_pb2 as cpb
from idn.subtopology import live_topology
from idn.topology import load_topology
from tests.network import toy_catalog
from tests.test_failover import failover_topology, plan
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


@pytest.fixture
def launched(tmp_path):
    cat = toy_catalog(tmp_path / "cat")
    topo_path = failover_topology(tmp_path)
    state, procs = start_network(topo_path, catalog=cat, emulate=True, run_dir=tmp_path / "run")
    try:
        yield state, topo_path, cat
    finally:
        stop_nodes(state.nodes, timeout_s=5, procs=procs)


def traffic(state, n: int = 10) -> None:
    for ingress in ("edge-a", "edge-b"):
        with Client(state.nodes[ingress].address, timeout=3) as c:
            for _ in range(n):
                c.infer("toy", X)


def test_controller_replans_around_a_killed_node_and_back(launched):
    from idn.catalog import load_catalog

    state, topo_path, cat = launched
    events = []
    ctl = Controller(load_topology(topo_path), load_catalog(cat), state.addresses, state.token, timeout_s=2.0,
                     on_event=events.append)
    ctl.prime()  # measure from now on
    traffic(state)
    first = ctl.step()
    assert first.version == 1 and not first.down
    os.kill(state.nodes["regional"].pid, signal.SIGKILL)
    traffic(state)  # the edges route around it on their own meanwhile
    res = ctl.step()  # not fatal: the round plans on the live nodes
    assert res.went_down == ("regional",) and res.version == 2 and "down: regional" in res.decision.reason
    assert 0 < res.detect_s["regional"] < 30 and res.solve_s is not None and res.apply_s is not None
    assert any("edge-b re-attached to cloud past regional" in n for n in res.notes)
    placed = {t.node for r in ctl.plan.routes.values() for t in r.targets}
    assert "regional" not in placed and "regional" not in ctl.plan.placements
    with Client(state.nodes["edge-b"].address) as c:
        assert c.infer("toy", X).node in {"cloud", "edge-b"}
    restart_node(state, "regional")
    traffic(state)
    back = ctl.step()
    assert back.came_back == ("regional",) and back.version == 3 and not back.down
    assert [e.kind for e in events] == ["replan", "down", "replan", "up", "replan"]
    with network.ControlClient(state.nodes["regional"].address, state.token) as c:
        assert c.info().plan_version == 3  # back in service with the current plan


def test_control_cli_keeps_going_with_a_dead_node(launched):
    state, topo_path, cat = launched
    proc = subprocess.Popen([sys.executable, "-m", "idn.cli", "control", str(topo_path), "--rounds", "2",
                             "--interval", "2", "--token", state.token, "--catalog", str(cat)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, COLUMNS="200"))
    first = proc.stdout.readline()  # primed: measuring from now on
    assert "measuring every" in first, first
    traffic(state, 5)
    os.kill(state.nodes["regional"].pid, signal.SIGKILL)
    traffic(state, 5)
    out = first + proc.communicate(timeout=120)[0]
    proc.stdout = None
    assert proc.returncode == 0, out
    proc = subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
    assert "node regional down" in proc.stdout and "applied plan v" in proc.stdout, proc.stdout
    assert "re-planned in" in proc.stdout
