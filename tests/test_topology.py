"""Topology loader: routing on trees and general graphs, validation errors, compute-time fallback."""

from pathlib import Path

import pytest
import yaml

from idn.catalog import parse_catalog
from idn.config import ConfigError
from idn.latency import LatencyModel
from idn.placement.synthetic import catalog_doc, variant_doc
from idn.topology import load_topology, parse_topology

ROOT = Path(__file__).resolve().parent.parent


def node(nid, tier="edge", port=1, **kw):
    return {"id": nid, "tier": tier, "address": f"127.0.0.1:{port}", "mem_mb": 64, "cores": 1, **kw}


def tree():
    return {"hardware_class": "hw", "nodes": [
        node("cloud", "cloud", 1, repository=True), node("reg", "regional", 2, parent="cloud"),
        node("e1", port=3, parent="reg", slowdown=3.0), node("e2", port=4, parent="reg")],
        "links": [{"a": "reg", "b": "cloud", "delay_ms": 25}, {"a": "e1", "b": "reg", "delay_ms": 5},
                  {"a": "e2", "b": "reg", "delay_ms": 10}]}


def test_tree_paths_delays_and_next_hops():
    t = parse_topology(tree(), "t.yaml")
    assert t.repositories == ["cloud"]
    assert t.path("e1") == ["e1", "reg", "cloud"]
    assert t.path_delays("e1") == [("e1", 0.0), ("reg", 5.0), ("cloud", 30.0)]
    assert t.path("cloud") == ["cloud"]
    assert t.delay_ms("e1", "e2") == 15.0
    assert t.route("e1", "e2") == ["e1", "reg", "e2"]
    assert t.next_hop("e1", "cloud") == "reg"
    assert t.next_hop("reg", "e2") == "e2"
    assert t.next_hop("cloud", "cloud") is None
    assert t.neighbours("reg") == ["cloud", "e1", "e2"]
    assert t.node("e1").slowdown == 3.0 and t.node("e1").hardware_class == "hw"


def test_general_graph_shortest_by_delay_and_nearest_repository():
    doc = {"hardware_class": "hw", "nodes": [
        node("c1", "cloud", 1, repository=True), node("c2", "cloud", 2, repository=True),
        node("a", port=3), node("b", "regional", 4), node("d", "regional", 5)],
        "links": [{"a": "a", "b": "b", "delay_ms": 1}, {"a": "b", "b": "c1", "delay_ms": 50},
                  {"a": "a", "b": "d", "delay_ms": 10}, {"a": "d", "b": "c2", "delay_ms": 20},
                  {"a": "b", "b": "d", "delay_ms": 2}]}
    t = parse_topology(doc)
    assert t.path("a") == ["a", "b", "d", "c2"]  # 1 + 2 + 20 = 23 beats 50+1 and 10+20
    assert t.delay_ms("a", "c2") == 23.0
    assert t.next_hop("a", "d") == "b"  # 3 ms via b beats 10 ms direct
    assert t.delay_ms("c1", "c2") == 50 + 2 + 20


def test_demo_and_line3_files_load():
    demo = load_topology(ROOT / "deploy/topologies/demo.yaml")
    assert sum(n.tier == "edge" for n in demo.nodes.values()) >= 3
    assert demo.repositories == ["cloud"]
    for e in (n for n in demo.nodes.values() if n.tier == "edge"):
        assert demo.path(e.id) == [e.id, "regional", "cloud"]
        assert 2 <= e.slowdown <= 4
    line = load_topology(ROOT / "deploy/topologies/line3.yaml")
    assert line.path("edge") == ["edge", "regional", "cloud"]


@pytest.mark.parametrize("mutate, field, words", [
    (lambda d: d["nodes"].append(node("e1", port=9)), "nodes[4].id", "duplicate"),
    (lambda d: d["links"].append({"a": "e1", "b": "ghost", "delay_ms": 1}), "links[3].b", "unknown node"),
    (lambda d: [n.pop("repository", None) for n in d["nodes"]], "nodes", "no repository"),
    (lambda d: d["nodes"].append(node("lonely", port=9)), "nodes[4]", "cannot reach"),
    (lambda d: d["nodes"][2].update(mem_mb=-5), "nodes[2].mem_mb", "> 0"),
    (lambda d: d["nodes"][2].update(cores="many"), "nodes[2].cores", "expected a number"),
    (lambda d: d["links"][0].update(delay_ms=-1), "links[0].delay_ms", ">= 0"),
    (lambda d: d["nodes"][1].update(tier="core"), "nodes[1].tier", "unknown tier"),
    (lambda d: d["nodes"][1].update(address="nowhere"), "nodes[1].address", "host:port"),
    (lambda d: d["nodes"][1].update(adress="x:1"), "nodes[1].adress", "unknown field"),
    (lambda d: d["nodes"][3].update(parent="cloud"), "nodes[3].parent", "no link"),
    (lambda d: d["links"].append({"a": "e1", "b": "e1", "delay_ms": 1}), "links[3].b", "itself"),
])
def test_validation_errors_name_file_field_and_fix(mutate, field, words):
    doc = tree()
    mutate(doc)
    with pytest.raises(ConfigError) as e:
        parse_topology(doc, "topo.yaml")
    assert e.value.file == "topo.yaml"
    assert e.value.field == field
    assert words in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_topology(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_topology(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tree()))
    assert load_topology(good).file == str(good)


def test_compute_time_profiled_times_slowdown_and_flops_fallback():
    cat = parse_catalog(catalog_doc({"t": [
        variant_doc("small", 1000, 0.8, 2.0, 3.0, flops=1e6, hw=("hw", "other")),
        variant_doc("big", 4000, 0.9, 8.0, 10.0, flops=4e6, hw=("other",)),
    ]}, hw=("hw", "other")), verify_hashes=False)
    t = parse_topology(tree())
    ct = LatencyModel(t, cat).compute("e1", cat.variant("small"))
    assert (ct.ms, ct.source) == (6.0, "profiled")  # 2 ms x slowdown 3
    assert LatencyModel(t, cat).compute("e1", cat.variant("small"), "p95").ms == 9.0
    fb = LatencyModel(t, cat).compute("e2", cat.variant("big"))  # not profiled on hw: 2 ms x 4e6/1e6 FLOPs
    assert fb.ms == pytest.approx(8.0) and fb.source == "flops-scaled:small"
    doc = tree()
    doc["hardware_class"] = "unknown-hw"
    with pytest.raises(ConfigError, match="nothing can be predicted there"):
        LatencyModel(parse_topology(doc), cat).compute("e1", cat.variant("big"), cat)


def test_modelled_overheads_enter_delay_and_compute_but_not_the_emulated_link():
    cat = parse_catalog(catalog_doc({"t": [variant_doc("small", 1000, 0.8, 2.0, 3.0, flops=1e6, hw=("hw",))]},
                                    hw=("hw",)), verify_hashes=False)
    doc = tree()
    doc["hop_overhead_ms"] = 0.5
    doc["overhead_ms"] = 1.0
    doc["nodes"][2]["overhead_ms"] = 0.25  # e1 overrides the default
    t = parse_topology(doc, "t.yaml")
    assert t.path_delays("e1") == [("e1", 0.0), ("reg", 5.5), ("cloud", 31.0)]
    assert t.delay_ms("e1", "e2") == 16.0
    assert t.link_delay_ms("e1", "reg") == 5.0  # emulation sleeps the link as written
    assert LatencyModel(t, cat).compute("e1", cat.variant("small")).ms == 6.25  # 2 x 3 + 0.25
    assert LatencyModel(t, cat).compute("e2", cat.variant("small")).ms == 3.0  # 2 x 1 + 1.0
    doc["hop_overhead_ms"] = -1
    with pytest.raises(ConfigError, match="hop_overhead_ms"):
        parse_topology(doc, "t.yaml")
