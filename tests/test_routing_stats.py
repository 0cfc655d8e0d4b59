"""Pure pieces of the request path: smooth weighted round-robin, routing decisions, stats windows."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idn.catalog import load_catalog
from idn.node.router import Action, Candidate, RoutingTable, SmoothWRR, parse_target
from idn.node.stats import StatsBook
from idn.topology import load_topology
from tests.network import line_topology, make_plan, toy_catalog


def cands(weights):
    return [Candidate(f"n{i}", "v", w, None, 0.0) for i, w in enumerate(weights)]


def test_smooth_wrr_interleaves():
    w = SmoothWRR(cands([5, 1, 1]))
    seq = [w.pick().node for _ in range(7)]
    assert seq == ["n0", "n0", "n1", "n0", "n2", "n0", "n0"]  # nginx's reference sequence


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=6), st.integers(1, 5))
def test_smooth_wrr_matches_weights_exactly_every_cycle(weights, cycles):
    w = SmoothWRR(cands(weights))
    total = sum(weights)
    counts = Counter(w.pick().node for _ in range(total * cycles))
    assert counts == {f"n{i}": wt * cycles for i, wt in enumerate(weights)}


def test_parse_target():
    assert parse_target("edge/toy-small") == ("edge", "toy-small")
    with pytest.raises(ValueError):
        parse_target("edge")


@pytest.fixture(scope="module")
def table_parts(tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    return load_topology(line_topology(d)), load_catalog(toy_catalog(d))


def test_routing_decisions(table_parts):
    topo, cat = table_parts
    plan = make_plan(1, {"edge": ["toy-small"], "cloud": ["toy-big"]},
                     [("edge", "toy-small", 0.75), ("cloud", "toy-big", 0.25)])
    t = RoutingTable("edge", topo, cat, plan)
    picks = Counter((d.action, d.node, d.next_hop) for d in (t.resolve("toy", set()) for _ in range(8)))
    assert picks == {(Action.LOCAL, "edge", None): 6, (Action.FORWARD, "cloud", "regional"): 2}
    d = t.resolve("toy-big", set())
    assert (d.action, d.node, d.next_hop, d.target) == (Action.FORWARD, "cloud", "regional", "cloud/toy-big")
    # an intermediate node only forwards what the ingress chose
    mid = RoutingTable("regional", topo, cat, plan)
    d = mid.resolve("toy", set(), target="cloud/toy-big")
    assert (d.action, d.next_hop) == (Action.FORWARD, "cloud")
    # no plan: towards the repository, which serves its best variant
    bare = RoutingTable("edge", topo, cat)
    assert bare.resolve("toy", set()).next_hop == "regional"
    assert RoutingTable("cloud", topo, cat).resolve("toy", set()).action is Action.BEST_LOCAL
    assert bare.best_local_variant("toy", {"toy-small", "toy-big"}) == "toy-big"


def test_stats_windows():
    clock = [0.0]
    book = StatsBook(clock=lambda: clock[0])
    for ms in (1.5, 3, 40):
        book.record("edge", "toy", None, None, ms, True, "edge/v")
    book.record("edge", "toy", None, None, 0, False)
    clock[0] = 2.0
    w1 = book.window()
    c = w1.classes["edge/toy"]
    assert (c.requests, c.errors, sum(c.counts), c.served_by["edge/v"]) == (4, 1, 3, 3)
    assert c.counts[1] == 1 and c.counts[2] == 1 and c.counts[5] == 1  # <=2, <=5, <=50 ms buckets
    assert w1.window_s == 2.0
    book.record("edge", "toy", 10.0, None, 7, True, "cloud/w")
    clock[0] = 3.0
    w2 = book.window(w1.cursor)
    assert w2.classes["edge/toy"].requests == 0 and w2.classes["edge/toy/lat10"].requests == 1
    assert w2.window_s == 1.0
    assert book.window(999).classes["edge/toy"].requests == 4  # unknown cursor: since start
