"""Failures on a real network: node processes on loopback killed with SIGKILL / SIGSTOP, and what
the nodes (routing around), the clients (failing over) and the controller (re-planning) do.

One network for the module (starting one costs seconds); every test begins with ``heal``:
every node running, none stopped, the test plan applied.

Topology (``failover_topology``)::

    cloud (repository) ── regional ── edge-a      edge-a ┄┄ cloud: a backup link
                                   └── edge-b      edge-b: no other way up
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from idn.catalog import load_catalog
from idn.client import AsyncClient, Client, ControlClient
from idn.controller import Controller
from idn.demand import Demand, RequestClass
from idn.launcher import SETTLE_S, RunState, pid_runs_node, restart_node, server_ready, start_network, stop_nodes
from idn.loadgen import LoadOptions, plan_load, run_load
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


@dataclass
class World:
    state: RunState
    topology: Path
    catalog: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("failover")
    cat = toy_catalog(d / "cat")
    np.savez(cat.parent / "toy.npz", inputs=np.ones((8, 4), np.float32))  # held-out inputs for the loadgen
    doc = yaml.safe_load(cat.read_text())
    doc["tasks"]["toy"]["samples"] = "toy.npz"
    cat.write_text(yaml.safe_dump(doc))
    topo_path = failover_topology(d)
    state, procs = start_network(topo_path, catalog=cat, emulate=True, run_dir=d / "run")
    try:
        yield World(state, topo_path, cat)
    finally:
        for n in state.nodes.values():  # a SIGSTOPped node would not drain
            with contextlib.suppress(ProcessLookupError):
                os.kill(n.pid, signal.SIGCONT)
        stop_nodes(state.nodes, timeout_s=5, procs=procs)


@pytest.fixture
def launched(world):
    """The module's network, healed: every node up and answering, the test plan applied."""
    st = world.state
    for nid, n in st.nodes.items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(n.pid, signal.SIGCONT)
        if not pid_runs_node(n.pid, nid):
            restart_node(st, nid)
    push_plan(plan(), load_topology(world.topology), st.addresses, st.token)
    time.sleep(SETTLE_S)
    return st


def wait_for(pred, timeout_s: float = 5.0, step: float = 0.01) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError("condition not met in time")
        time.sleep(step)
    return time.monotonic() - t0


class Stream:
    """Requests to one ingress (or several, failing over) back to back from a thread, each with its
    own deadline, until stopped."""

    def __init__(self, address: str | list[str], timeout_s: float = 3.0, limit: int = 5000, **client: object):
        self.results: list[tuple[float, str, object]] = []  # (sent at, outcome, result or error)
        self.failed_over: set[float] = set()  # sent-at times of requests another address answered
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(address, timeout_s, limit, client), daemon=True)
        self._t.start()

    def _run(self, address: str | list[str], timeout_s: float, limit: int, client: dict) -> None:
        with Client(address, timeout=timeout_s, **client) as c:
            for _ in range(limit):
                if self._stop.is_set():
                    return
                t = time.monotonic()
                before = c.failover.failovers
                try:
                    self.results.append((t, "ok", c.infer("toy", X)))
                except grpc.RpcError as e:
                    self.results.append((t, e.code().name, e.details()))
                if c.failover.failovers > before:
                    self.failed_over.add(t)
                time.sleep(0.005)

    def stop(self) -> list[tuple[float, str, object]]:
        self._stop.set()
        self._t.join(10)
        return self.results


def test_kill_9_the_regional_node_loses_nothing_and_it_comes_back_within_a_second(launched):
    st = launched
    a, b = Stream(st.nodes["edge-a"].address), Stream(st.nodes["edge-b"].address)
    time.sleep(0.5)
    os.kill(st.nodes["regional"].pid, signal.SIGKILL)
    # read after the kill: on a loaded machine this thread can lose the CPU between reading
    # the clock and killing, while the request threads go on sending to a live node
    killed = time.monotonic()
    time.sleep(1.0)
    restarting = time.monotonic()  # from here the edges may see it back before this thread does
    restart_node(st, "regional")  # comes back with its persisted plan
    ready = time.monotonic()
    time.sleep(1.5)
    results = {"edge-a": a.stop(), "edge-b": b.stop()}
    for ingress, res in results.items():
        errors = [r for r in res if r[1] != "ok"]
        assert not errors, (ingress, errors[:3])  # nothing was lost: in-flight requests were re-routed too
        # (a margin each side: a request sent just after os.kill can still reach the process
        # before it is scheduled to die)
        during = [r[2] for r in res if killed + 0.2 < r[0] < restarting]
        assert during, ingress
        # the regional node is routed around: edge-a's class over its backup link to the
        # repository, edge-b's straight to the cloud past its dead parent
        assert {(r.node, r.hops, r.parameters.get("idn.rerouted")) for r in during} == {("cloud", 1, "regional")}
        back = [t for t, _, r in res if t > ready and r.parameters.get("idn.rerouted") is None]
        # used again soon after it is ready (1 s is the target, measured by benchmarks/chaos.py; the bound
        # here only has to tell it from gRPC's reconnect backoff, 5.6 s before, on a loaded machine)
        assert back and back[0] - ready < 3.0, (ingress, back[:1])
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
        assert took_a < 1.9 and (r.node, r.degraded) in {("edge-a", True), ("cloud", False)}, (took_a, r.node)
        t0 = time.monotonic()
        r = cb.infer("toy", X)  # no deadline at all: health checks find the hung node
        took_b = time.monotonic() - t0
        assert took_b < 10.0 and (r.node, r.parameters.get("idn.rerouted")) == ("cloud", "regional"), took_b
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
        # it names a dead hop: regional (its parent), or cloud when it already knew the parent
        # was down and tried its backup link first (which is first is a race between probes)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value.details()
        assert "regional" in e.value.details() or "cloud is down" in e.value.details(), e.value.details()
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


# -- clients that fail over -------------------------------------------------------------------

def test_clients_fail_over_when_their_ingress_dies_and_come_back(world, launched):
    st = launched
    ingress, other = st.nodes["edge-b"].address, st.nodes["edge-a"].address
    plain = Stream([ingress, other])
    opted = Stream([ingress, other], retry_sent=True)
    time.sleep(0.5)
    before = time.monotonic()
    os.kill(st.nodes["edge-b"].pid, signal.SIGKILL)
    killed = time.monotonic()  # after the kill (see the regional test above)
    time.sleep(1.0)
    restart_node(st, "edge-b")
    ready = time.monotonic()
    time.sleep(1.5)
    for name, stream, allowed in (("plain", plain, 1), ("retry_sent", opted, 0)):
        res = stream.stop()
        errors = [r for r in res if r[1] != "ok"]
        # only a request the dead ingress already had may be lost, and only without retry_sent
        assert len(errors) <= allowed, (name, errors)
        assert all(r[1] == "UNAVAILABLE" and r[0] < killed + 0.05 for r in errors), errors
        during = [r[2] for r in res if killed + 0.05 < r[0] < ready - 0.05 and r[1] == "ok"]
        assert during and all(r.node in {"regional", "cloud", "edge-a"} for r in during)
        assert any(before < t < ready for t in stream.failed_over), name
        back = [t for t, ok, _ in res if t > ready and ok == "ok" and t not in stream.failed_over]
        assert back and back[0] - ready < 1.0, name  # back to the nearest ingress once it is

    async def one():  # AsyncClient, against an address nobody listens on
        async with AsyncClient([f"127.0.0.1:{free_port()}", other], timeout=3) as c:
            r = await c.infer("toy", X)
            return r.node, c.failover.failovers
    assert asyncio.run(one()) == ("regional", 1)
    np.save(world.catalog.parent / "one.npy", np.ones((1, 4), np.float32))
    p = subprocess.run([sys.executable, "-m", "idn.cli", "infer", "--to", f"127.0.0.1:{free_port()}", "--to", other,
                        "--task", "toy", "--input", str(world.catalog.parent / "one.npy"), "--catalog",
                        str(world.catalog)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, COLUMNS="200"))
    assert p.returncode == 0 and "served:" in p.stdout and "another ingress answered" in p.stdout, p.stdout + p.stderr


def test_loadgen_fails_over_from_a_dead_ingress(world, launched):
    st = launched
    topo, catalog = load_topology(world.topology), load_catalog(world.catalog)
    demand = Demand((RequestClass("edge-b/toy", "edge-b", "toy", 40.0),
                     RequestClass("edge-a/toy", "edge-a", "toy", 40.0)))
    seen: list = []
    dead = {"edge-b": f"127.0.0.1:{free_port()}"}  # edge-b's ingress address: nobody listens there
    report = asyncio.run(run_load(plan_load(topo, catalog, demand, addresses=dead, failover=2),
                                  LoadOptions(duration_s=1.5, warmup_s=0.2, timeout_s=3),
                                  on_outcome=lambda ld, o: seen.append((ld.cls.id, o))))
    assert report.overall.errors == {} and report.overall.ok > 60
    assert {o.via for cid, o in seen if cid == "edge-b/toy"} == {st.nodes["regional"].address}  # the nearest
    assert all(o.via == "" for cid, o in seen if cid == "edge-a/toy")


# -- a controller that survives failures -----------------------------------------------------------

def traffic(state, n: int = 10) -> None:
    for ingress in ("edge-a", "edge-b"):
        with Client(state.nodes[ingress].address, timeout=3) as c:
            for _ in range(n):
                c.infer("toy", X)


def test_controller_replans_around_a_killed_node_and_back(world, launched):
    st = launched
    events: list = []
    ctl = Controller(load_topology(world.topology), load_catalog(world.catalog), st.addresses, st.token,
                     timeout_s=2.0, on_event=events.append)
    ctl.prime()  # measure from now on
    traffic(st)
    first = ctl.step()
    assert first.version is not None and not first.down
    os.kill(st.nodes["regional"].pid, signal.SIGKILL)
    traffic(st)  # the edges route around it on their own meanwhile
    res = ctl.step()  # not fatal: the round plans on the live nodes
    assert res.went_down == ("regional",) and res.version == first.version + 1
    assert "down: regional" in res.decision.reason
    assert 0 < res.detect_s["regional"] < 30 and res.solve_s is not None and res.apply_s is not None
    assert any("edge-b re-attached to cloud past regional" in n for n in res.notes)
    assert "regional" not in {t.node for r in ctl.plan.routes.values() for t in r.targets}
    assert "regional" not in ctl.plan.placements
    with Client(st.nodes["edge-b"].address) as c:
        assert c.infer("toy", X).node in {"cloud", "edge-b"}
    restart_node(st, "regional")
    traffic(st)
    back = ctl.step()
    assert back.came_back == ("regional",) and back.version == res.version + 1 and not back.down
    assert [e.kind for e in events] == ["replan", "down", "replan", "up", "replan"]
    with ControlClient(st.nodes["regional"].address, st.token) as c:
        assert c.info().plan_version == back.version  # back in service with the current plan


def test_control_cli_keeps_going_with_a_dead_node(world, launched):
    st = launched
    proc = subprocess.Popen([sys.executable, "-m", "idn.cli", "control", str(world.topology), "--rounds", "2",
                             "--interval", "2", "--token", st.token, "--catalog", str(world.catalog)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, COLUMNS="200"))
    first = proc.stdout.readline()  # primed: the controller measures from now on
    assert "measuring every" in first, first
    traffic(st, 5)
    os.kill(st.nodes["regional"].pid, signal.SIGKILL)
    traffic(st, 5)
    out = first + proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out
    assert "node regional down" in out and "applied plan v" in out, out
    assert "re-planned in" in out
