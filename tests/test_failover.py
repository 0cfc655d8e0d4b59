"""Routing around dead and hung nodes: real node processes on loopback, killed with SIGKILL / SIGSTOP.

Topology (``failover_topology``)::

    cloud (repository) ── regional ── edge-a      edge-a ┄┄ cloud: a backup link
                                   └── edge-b      edge-b: no other way up
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from idn.client import Client
from idn.launcher import restart_node, server_ready, start_network, stop_nodes
from idn.network import push_plan
from idn.plan import Plan, Route, SolverFacts, Target
from idn.topology import load_topology
from tests.network import HW, free_port, toy_catalog

X = {"input": np.ones((1, 4), np.float32)}


def failover_topology(d: Path) -> Path:
    doc = {"hardware_class": HW, "nodes": [
        {"id": "cloud", "tier": "cloud", "address": f"127.0.0.1:{free_port()}", "mem_mb": 1024, "cores": 2,
         "repository": True},
        {"id": "regional", "tier": "regional", "address": f"127.0.0.1:{free_port()}", "mem_mb": 256, "cores": 1,
         "parent": "cloud"},
        {"id": "edge-a", "tier": "edge", "address": f"127.0.0.1:{free_port()}", "mem_mb": 64, "cores": 1,
         "parent": "regional"},
        {"id": "edge-b", "tier": "edge", "address": f"127.0.0.1:{free_port()}", "mem_mb": 64, "cores": 1,
         "parent": "regional"}],
        "links": [{"a": "cloud", "b": "regional", "delay_ms": 2},
                  {"a": "regional", "b": "edge-a", "delay_ms": 1},
                  {"a": "regional", "b": "edge-b", "delay_ms": 1},
                  {"a": "edge-a", "b": "cloud", "delay_ms": 4, "backup": True}]}
    p = d / "failover.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def plan(version: int = 1) -> Plan:
    """edge-a's class is served at regional, edge-b's at the cloud; edge-a also holds toy-small."""
    routes = {
        "edge-a/toy": Route("edge-a/toy", "edge-a", "toy", 10.0, (Target("regional", "toy-big", 1.0),)),
        "edge-b/toy": Route("edge-b/toy", "edge-b", "toy", 10.0, (Target("cloud", "toy-big", 1.0),)),
    }
    return Plan(version=version, placements={"regional": ("toy-big",), "cloud": ("toy-big",), "edge-a": ("toy-small",)},
                routes=routes, solver=SolverFacts("test", "heuristic"))


@pytest.fixture
def launched(tmp_path):
    cat = toy_catalog(tmp_path / "cat")
    topo_path = failover_topology(tmp_path)
    state, procs = start_network(topo_path, catalog=cat, emulate=True, run_dir=tmp_path / "run")
    push_plan(plan(), load_topology(topo_path), state.addresses, state.token)
    try:
        yield state
    finally:
        for n in state.nodes.values():  # a SIGSTOPped node would not drain
            try:
                os.kill(n.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        stop_nodes(state.nodes, timeout_s=5, procs=procs)


def wait_for(pred, timeout_s: float = 5.0, step: float = 0.01) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError("condition not met in time")
        time.sleep(step)
    return time.monotonic() - t0


class Stream:
    """Requests to one ingress back to back from a thread, each with its own deadline, until stopped."""

    def __init__(self, address: str, timeout_s: float = 3.0, limit: int = 5000):
        self.results: list[tuple[float, str, object]] = []  # (sent at, outcome, result or error)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(address, timeout_s, limit), daemon=True)
        self._t.start()

    def _run(self, address: str, timeout_s: float, limit: int) -> None:
        with Client(address, timeout=timeout_s) as c:
            for _ in range(limit):
                if self._stop.is_set():
                    return
                t = time.monotonic()
                try:
                    self.results.append((t, "ok", c.infer("toy", X)))
                except grpc.RpcError as e:
                    self.results.append((t, e.code().name, e.details()))
                time.sleep(0.005)

    def stop(self) -> list[tuple[float, str, object]]:
        self._stop.set()
        self._t.join(10)
        return self.results


def test_kill_9_the_regional_node_loses_nothing_and_it_comes_back_within_a_second(launched):
    st = launched
    a, b = Stream(st.nodes["edge-a"].address), Stream(st.nodes["edge-b"].address)
    time.sleep(0.5)
    killed = time.monotonic()
    os.kill(st.nodes["regional"].pid, signal.SIGKILL)
    time.sleep(1.0)
    restart_node(st, "regional")  # comes back with its persisted plan
    ready = time.monotonic()
    time.sleep(1.5)
    results = {"edge-a": a.stop(), "edge-b": b.stop()}
    for ingress, res in results.items():
        errors = [r for r in res if r[1] != "ok"]
        assert not errors, (ingress, errors[:3])  # nothing was lost: in-flight requests were re-routed too
        during = [r[2] for r in res if killed + 0.05 < r[0] < ready - 0.05]
        assert during, ingress
        # the regional node is routed around: edge-a's class over its backup link to the
        # repository, edge-b's straight to the cloud past its dead parent
        assert {(r.node, r.hops, r.parameters.get("idn.rerouted")) for r in during} == {("cloud", 1, "regional")}
        back = [t for t, _, r in res if t > ready and r.parameters.get("idn.rerouted") is None]
        assert back and back[0] - ready < 1.0, (ingress, back[:1])  # used again within 1 s of being ready
    after = [r for t, _, r in results["edge-a"] if t > ready + 1.0]
    assert after and all(r.node == "regional" for r in after)  # back in service under its own plan


def test_a_hung_next_hop_is_given_up_on_early(launched):
    st = launched
    with Client(st.nodes["edge-a"].address, timeout=2.0) as ca, Client(st.nodes["edge-b"].address,
                                                                        timeout=None) as cb:
        assert ca.infer("toy", X).node == "regional" and cb.infer("toy", X).node == "cloud"
        os.kill(st.nodes["regional"].pid, signal.SIGSTOP)
        t0 = time.monotonic()
        r = ca.infer("toy", X)  # 2 s deadline and a local variant: half the deadline at most
        took_a = time.monotonic() - t0
        assert took_a < 1.5 and (r.node, r.degraded) in {("edge-a", True), ("cloud", False)}, (took_a, r.node)
        t0 = time.monotonic()
        r = cb.infer("toy", X)  # no deadline at all: health checks find the hung node
        took_b = time.monotonic() - t0
        assert took_b < 2.5 and (r.node, r.parameters.get("idn.rerouted")) == ("cloud", "regional"), took_b
        t0 = time.monotonic()
        assert ca.infer("toy", X).node == "cloud"  # known down now: straight over the backup link
        assert time.monotonic() - t0 < 0.5
        os.kill(st.nodes["regional"].pid, signal.SIGCONT)
        wait_for(lambda: ca.infer("toy", X).node == "regional", timeout_s=3.0)


def test_no_live_route_fails_fast_naming_the_dead_hop(launched):
    st = launched
    for nid in ("regional", "cloud"):
        os.kill(st.nodes[nid].pid, signal.SIGKILL)
    wait_for(lambda: not server_ready(st.nodes["cloud"].address, 0.2))
    with Client(st.nodes["edge-b"].address, timeout=3.0) as c:
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            c.infer("toy", X)
        assert time.monotonic() - t0 < 1.0
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "regional" in e.value.details()
    with Client(st.nodes["edge-a"].address, timeout=3.0) as c:
        r = c.infer("toy", X)  # a local variant: the degraded answer
        assert (r.node, r.degraded) == ("edge-a", True)
    restart_node(st, "cloud")
    with Client(st.nodes["edge-b"].address, timeout=3.0) as c:
        wait_for(lambda: served_by(c) == "cloud", timeout_s=1.0)  # the repository is used again at once


def served_by(c: Client) -> str | None:
    try:
        return c.infer("toy", X).node
    except grpc.RpcError:
        return None
