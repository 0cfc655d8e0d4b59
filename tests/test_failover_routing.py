"""Failover routing, pure: backup links, routes that avoid down nodes, the router's alternatives."""

from __future__ import annotations

import pytest

from idn.catalog import load_catalog
from idn.config import ConfigError
from idn.latency import LatencyModel
from idn.node.router import Action, RoutingTable
from idn.plan import Plan, Route, SolverFacts, Target
from idn.protocol.failures import never_sent, unreachable
from idn.topology import parse_topology
from tests.network import HW, toy_catalog


def topo(backup: bool = True):
    doc = {"hardware_class": HW, "nodes": [
        {"id": "cloud", "tier": "cloud", "address": "127.0.0.1:1", "mem_mb": 1024, "cores": 2, "repository": True},
        {"id": "regional", "tier": "regional", "address": "127.0.0.1:2", "mem_mb": 256, "cores": 1,
         "parent": "cloud"},
        {"id": "r2", "tier": "regional", "address": "127.0.0.1:5", "mem_mb": 256, "cores": 1, "parent": "cloud"},
        {"id": "edge-a", "tier": "edge", "address": "127.0.0.1:3", "mem_mb": 64, "cores": 1, "parent": "regional"},
        {"id": "edge-b", "tier": "edge", "address": "127.0.0.1:4", "mem_mb": 64, "cores": 1, "parent": "regional"}],
        "links": [{"a": "cloud", "b": "regional", "delay_ms": 25, "bandwidth_mbps": 1000},
                  {"a": "cloud", "b": "r2", "delay_ms": 20},
                  {"a": "regional", "b": "edge-a", "delay_ms": 5, "bandwidth_mbps": 100},
                  {"a": "regional", "b": "edge-b", "delay_ms": 10, "bandwidth_mbps": 50},
                  {"a": "edge-a", "b": "cloud", "delay_ms": 2, "backup": backup}]}
    return parse_topology(doc, "t.yaml")


def test_backup_links_are_invisible_in_normal_operation():
    t, plain = topo(), topo(backup=False)
    # the backup link is the shortest way up, but routing and prediction ignore it
    assert t.path("edge-a") == ["edge-a", "regional", "cloud"] and plain.path("edge-a") == ["edge-a", "cloud"]
    assert t.next_hop("edge-a", "cloud") == "regional" and t.delay_ms("edge-a", "cloud") == 30
    assert t.neighbours("edge-a") == ["regional"] and t.neighbours("edge-a", backup=True) == ["cloud", "regional"]
    assert t.link_delay_ms("edge-a", "cloud") == 2  # what emulation sleeps when it is used


def test_backup_must_be_a_boolean():
    doc = {"nodes": [{"id": "c", "tier": "cloud", "address": "h:1", "mem_mb": 1, "cores": 1, "repository": True},
                     {"id": "e", "tier": "edge", "address": "h:2", "mem_mb": 1, "cores": 1}],
           "links": [{"a": "c", "b": "e", "delay_ms": 1, "backup": "yes"}]}
    with pytest.raises(ConfigError) as e:
        parse_topology(doc, "t.yaml")
    assert "links[0].backup" in str(e.value)


def test_routes_that_avoid_down_nodes():
    t = topo()
    assert t.route_avoiding("edge-a", "cloud", frozenset({"regional"})) == ["edge-a", "cloud"]  # backup link
    assert t.route_avoiding("edge-b", "cloud", frozenset({"regional"})) is None  # nothing else
    # failover routes are shortest over every link: another node's backup link is fair game
    assert t.route_avoiding("edge-b", "cloud", frozenset({"r2"})) == ["edge-b", "regional", "edge-a", "cloud"]
    assert t.route_avoiding("r2", "edge-a", frozenset({"regional"})) == ["r2", "cloud", "edge-a"]
    # a direct connection crosses the link itself, or the normal route's links
    assert t.emulated_links("edge-a", "cloud") == [(2, None)]
    assert t.emulated_links("edge-b", "cloud") == [(10, 50), (25, 1000)]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return load_catalog(toy_catalog(tmp_path_factory.mktemp("cat")))


def table(node: str, catalog, placements, targets, t=None):
    t = t or topo()
    route = Route(f"{node}/toy", node, "toy", 10.0, tuple(Target(n, v, 1.0 / len(targets)) for n, v in targets))
    plan = Plan(version=1, placements={n: tuple(v) for n, v in placements.items()}, routes={route.class_id: route},
                solver=SolverFacts("test", "heuristic"))
    return RoutingTable(node, t, catalog, plan)


def test_failover_alternatives_in_order(catalog):
    rt = table("edge-b", catalog, {"regional": ["toy-small"], "cloud": ["toy-big"]}, [("regional", "toy-small")])
    d = rt.resolve("toy", set())
    assert (d.action, d.node, d.next_hop) == (Action.FORWARD, "regional", "regional")
    down = frozenset({"regional"})
    # the target is the dead node: the next node up the path that serves the task, past it
    alts = rt.failover("toy", d, down)
    assert [(a.node, a.variant, a.next_hop) for a in alts] == [("cloud", "toy-big", "cloud")]
    # the target is alive behind a dead node: the same target, straight past the dead one
    rt = table("edge-b", catalog, {"cloud": ["toy-big"]}, [("cloud", "toy-big")])
    alts = rt.failover("toy", rt.resolve("toy", set()), down)
    assert [(a.node, a.variant, a.next_hop) for a in alts][0] == ("cloud", "toy-big", "cloud")
    # over a backup link when there is one
    rt = table("edge-a", catalog, {"cloud": ["toy-big"]}, [("cloud", "toy-big")], topo())
    alts = rt.failover("toy", rt.resolve("toy", set()), down)
    assert (alts[0].node, alts[0].next_hop) == ("cloud", "cloud")
    # the repository serves a task it holds no variant of with the task's most accurate one
    rt = table("edge-b", catalog, {"regional": ["toy-small"]}, [("regional", "toy-small")])
    alts = rt.failover("toy", rt.resolve("toy", set()), down)
    assert [(a.node, a.variant) for a in alts] == [("cloud", "toy-big")]
    # a pinned variant goes only where it is placed, or to a repository
    alts = rt.failover("toy-small", rt.resolve("toy-small", set()), down)
    assert [(a.node, a.variant) for a in alts] == [("cloud", "toy-small")]
    # nothing alive up the path: nothing to offer (the data plane falls back locally or fails)
    assert rt.failover("toy", rt.resolve("toy", set()), frozenset({"regional", "cloud"})) == []


def test_the_latency_model_ignores_backup_links(catalog):
    with_backup, without = LatencyModel(topo(), catalog), LatencyModel(topo(backup=False), catalog)
    v = catalog.variants["toy-big"]
    assert with_backup.predict("edge-a", "cloud", v).delay_ms == 30
    assert without.predict("edge-a", "cloud", v).delay_ms == 2


def test_what_counts_as_an_unreachable_peer():
    assert unreachable("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Connection "
                       "refused")
    assert unreachable("Stream removed (Socket closed)")
    # a peer that answered UNAVAILABLE itself is reachable, even when it quotes gRPC's words
    assert not unreachable("via regional: failed to connect to all addresses")
    assert not unreachable(None)
    # a connection that died under a call may have carried it: unreachable, but maybe sent
    assert never_sent("failed to connect to all addresses") and not never_sent("Stream removed (Socket closed)")
