"""The one latency model: payload over bandwidth, the p95 SLO rule, and every caller agreeing with it."""

from __future__ import annotations

import itertools
import random

import pytest

from idn.catalog import load_catalog, parse_catalog
from idn.config import ConfigError
from idn.demand import load_demand, parse_demand
from idn.latency import LatencyModel, Payload, task_payload
from idn.node.router import RoutingTable
from idn.placement import PlacementOptions, build_problem, solve
from idn.placement.evaluate import evaluate
from idn.placement.synthetic import catalog_doc, variant_doc
from idn.topology import load_topology, parse_topology

DEMO_TOPOLOGY = "deploy/topologies/demo.yaml"
DEMO_DEMAND = "deploy/demands/demo.yaml"


def line(bw_edge: float | None = 100.0, bw_core: float | None = 1000.0, hop_overhead: float = 0.0):
    """edge - reg - cloud, 5 ms and 20 ms one way, with the given bandwidths."""
    edge_link = {"a": "edge", "b": "reg", "delay_ms": 5}
    core_link = {"a": "reg", "b": "cloud", "delay_ms": 20}
    if bw_edge is not None:
        edge_link["bandwidth_mbps"] = bw_edge
    if bw_core is not None:
        core_link["bandwidth_mbps"] = bw_core
    return parse_topology({"hardware_class": "cpu-x86_64-2c", "hop_overhead_ms": hop_overhead, "nodes": [
        {"id": "cloud", "tier": "cloud", "address": "h:1", "mem_mb": 1024, "cores": 8, "repository": True},
        {"id": "reg", "tier": "regional", "address": "h:2", "mem_mb": 256, "cores": 2, "parent": "cloud",
         "slowdown": 1.5, "overhead_ms": 0.5},
        {"id": "edge", "tier": "edge", "address": "h:3", "mem_mb": 64, "cores": 1, "parent": "reg", "slowdown": 2}],
        "links": [edge_link, core_link]})


def image_catalog(shape=(-1, 224, 224, 3)):
    doc = catalog_doc({"img": [variant_doc("small", 10 << 20, 0.70, 4.0, 5.0),
                               variant_doc("big", 100 << 20, 0.80, 40.0, 50.0)]})
    doc["tasks"]["img"]["inputs"] = [{"name": "x", "datatype": "UINT8", "shape": list(shape)}]
    doc["tasks"]["img"]["outputs"] = [{"name": "p", "datatype": "FP32", "shape": [-1, 1000]}]
    return parse_catalog(doc, verify_hashes=False)


def test_payload_comes_from_the_signature():
    cat = image_catalog()
    assert task_payload(cat.tasks["img"]) == Payload(224 * 224 * 3, 4000)
    # a dynamic dimension past the batch one has no fixed size: it counts 0 (set payload_bytes)
    assert task_payload(image_catalog((-1, -1, 3)).tasks["img"]).request_bytes == 0


def test_prediction_by_hand_round_trip_transfer_and_compute():
    cat = image_catalog()
    topo = line(hop_overhead=0.5)
    m = LatencyModel(topo, cat)
    big = cat.variant("big")
    p = m.predict("edge", "cloud", big)
    size = 224 * 224 * 3 + 4000
    transfer = size * 8 / (100 * 1000) + size * 8 / (1000 * 1000)  # ms, both links, both directions
    assert p.delay_ms == pytest.approx(5 + 20 + 2 * 0.5)
    assert p.transfer_ms == pytest.approx(transfer)
    assert p.latency_ms == pytest.approx(2 * 26 + transfer + 40.0)
    assert p.latency_p95_ms == pytest.approx(2 * 26 + transfer + 50.0)
    # local: no network at all; regional: one link, its slowdown and overhead
    assert m.predict("edge", "edge", big).latency_ms == pytest.approx(80.0)
    assert m.predict("edge", "reg", big).latency_ms == pytest.approx(2 * 5.5 + size * 8 / 1e5 + 40 * 1.5 + 0.5)
    # a link without bandwidth costs nothing extra
    assert LatencyModel(line(None, None), cat).predict("edge", "cloud", big).transfer_ms == 0.0
    # an explicit payload replaces the signature's
    assert m.predict("edge", "cloud", big, Payload(1000, 0)).transfer_ms == pytest.approx(
        1000 * 8 / 1e5 + 1000 * 8 / 1e6)


def test_p95_below_p50_is_raised_to_p50_for_the_slo():
    cat = parse_catalog(catalog_doc({"t": [variant_doc("odd", 100, 0.9, 5.0, 3.0)]}), verify_hashes=False)
    p = LatencyModel(line(), cat).predict("edge", "edge", cat.variant("odd"))
    assert p.compute_p95_ms == p.compute_ms == 10.0


def test_class_payload_override_parsed_and_validated():
    cat, topo = image_catalog(), line()
    dem = parse_demand({"classes": [
        {"ingress": "edge", "task": "img", "rate": 1, "payload_bytes": 5000},
        {"id": "b", "ingress": "edge", "task": "img", "rate": 1, "payload_bytes": {"request": 10, "response": 20}},
        {"id": "c", "ingress": "edge", "task": "img", "rate": 1}]}, "d.yaml", topo, cat)
    assert [c.payload for c in dem.classes] == [Payload(5000, 4000), Payload(10, 20), None]
    for bad in (-1, "big", {"request": -5}, {"bytes": 3}):
        with pytest.raises(ConfigError, match=r"d\.yaml: classes\[0\]\.payload_bytes"):
            parse_demand({"classes": [{"ingress": "edge", "task": "img", "rate": 1, "payload_bytes": bad}]},
                         "d.yaml", topo, cat)


def test_payload_moves_the_optimum_towards_the_edge():
    """Same instance, the link's bandwidth alone decides whether shipping the image to the cloud pays."""
    cat = image_catalog()
    dem_doc = {"classes": [{"ingress": "edge", "task": "img", "rate": 1}]}
    where = {}
    for bw in (None, 10.0):
        topo = line(bw_edge=bw, bw_core=bw)
        dem = parse_demand(dem_doc, "d.yaml", topo, cat)
        out = solve(topo, cat, dem, PlacementOptions(alpha=1000.0))
        (target,) = out.plan.routes["edge/img"].targets
        where[bw] = (target.node, target.variant)
    # No bandwidth: the big variant one hop up (2 x 5 + 60.5 + 200 = 270.5) beats the small
    # one at the edge (8 + 300). At 10 Mb/s the image's round trip over that one link
    # costs 154,528 B x 8 / 10 kb/ms = 124 ms more, so the edge's small variant wins.
    assert where[None] == ("reg", "big") and where[10.0] == ("edge", "small")


def test_router_and_evaluator_predict_the_same_on_the_demo():
    topo, cat = load_topology(DEMO_TOPOLOGY), load_catalog("models/catalog.yaml")
    dem = load_demand(DEMO_DEMAND, topo, cat)
    out = solve(topo, cat, dem, PlacementOptions())
    ev = evaluate(out.plan, topo, cat, dem, PlacementOptions())
    checked = 0
    for c in dem.classes:
        table = RoutingTable(c.ingress, topo, cat, out.plan)
        cands = table._classes[c.task][(c.max_latency_ms, c.min_accuracy)]
        router_worst = max(x.latency_ms for x in cands)
        assert router_worst == pytest.approx(ev.classes[c.id].worst_p95_ms, rel=1e-12)
        for x in cands:  # and each target, against the model the evaluator uses
            expected = LatencyModel(topo, cat).predict(c.ingress, x.node, cat.variant(x.variant))
            assert x.latency_ms == expected.latency_p95_ms
            checked += 1
    assert checked >= len(dem.classes)


def _enumerate(topo, cat, dem, alpha):
    """The optimum by brute force over placements, with the latency written out by hand.

    Compute caps are loose in these instances, so each class takes its cheapest placed
    target on its path that meets its SLO."""
    path = {"edge": ["edge", "reg", "cloud"], "reg": ["reg", "cloud"], "cloud": ["cloud"]}
    links = {("edge", "reg"): topo.links[0], ("reg", "cloud"): topo.links[1]}

    def latency(ingress, node, v, p95):
        hops = path[ingress][:path[ingress].index(node) + 1]
        delay = transfer = 0.0
        for a, b in zip(hops, hops[1:]):
            ln = links[(a, b)]
            delay += ln.delay_ms + topo.hop_overhead_ms
            if ln.bandwidth_mbps:
                transfer += (224 * 224 * 3 + 4000) * 8 / (ln.bandwidth_mbps * 1000)
        n = topo.nodes[node]
        t = v.latency_ms("cpu-x86_64-2c", quantile="p95" if p95 else "p50")
        return 2 * delay + transfer + t * n.slowdown + n.overhead_ms

    pairs = [(n, v) for n in topo.nodes for v in cat.tasks["img"].variants.values()
             if v.bytes / 2 ** 20 <= topo.nodes[n].mem_mb]
    best = float("inf")
    for bits in itertools.product((0, 1), repeat=len(pairs)):
        placed = [p for p, b in zip(pairs, bits) if b]
        mem = {}
        for n, v in placed:
            mem[n] = mem.get(n, 0) + v.bytes / 2 ** 20
        if any(mem[n] > topo.nodes[n].mem_mb for n in mem):
            continue
        total = 0.0
        for c in dem.classes:
            costs = [latency(c.ingress, n, v, False) + alpha * (1 - v.accuracy) for n, v in placed
                     if n in path[c.ingress] and (c.max_latency_ms is None
                                                  or latency(c.ingress, n, v, True) <= c.max_latency_ms)]
            if not costs:
                break
            total += c.rate * min(costs)
        else:
            best = min(best, total)
    return best


@pytest.mark.parametrize("seed", range(8))
def test_ilp_objective_equals_evaluator_and_enumeration_with_payload(seed):
    rng = random.Random(seed)
    topo = line(bw_edge=rng.choice([None, 20.0, 100.0]), bw_core=rng.choice([None, 50.0, 1000.0]),
                hop_overhead=rng.choice([0.0, 0.6]))
    cat = image_catalog()
    classes = [{"ingress": ing, "task": "img", "rate": round(rng.uniform(0.5, 5), 2),
                **({"max_latency_ms": lat} if lat else {})}
               for ing, lat in zip(("edge", "reg", "edge"),
                                   (None, rng.choice([None, 120, 200]), rng.choice([90, 300])))]
    classes[2]["id"] = "third"
    dem = parse_demand({"classes": classes}, "d.yaml", topo, cat)
    alpha = rng.choice([100.0, 400.0, 1500.0])
    exact = _enumerate(topo, cat, dem, alpha)
    opts = PlacementOptions(alpha=alpha, rho=1.0)
    problem = build_problem(topo, cat, dem, opts)
    if exact == float("inf"):
        assert problem.unservable, "enumeration found no plan; the problem must say a class is unservable"
        return
    out = solve(topo, cat, dem, opts, "highs")
    assert out.plan.solver.status == "optimal"
    ev = evaluate(out.plan, topo, cat, dem, opts)
    assert not ev.violations
    assert out.plan.solver.objective == pytest.approx(exact, rel=1e-9)
    assert ev.objective == pytest.approx(exact, rel=1e-9)
