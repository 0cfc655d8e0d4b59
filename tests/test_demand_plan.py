"""Demand and plan files: validation, stable class ids, plan round trips and router helpers."""

from pathlib import Path

import pytest

from idn.config import ConfigError
from idn.demand import class_id, demand_document, load_demand, parse_demand
from idn.placement.synthetic import tree_instance
from idn.plan import Plan, Route, SolverFacts, Target, load_plan, parse_plan, plan_to_dict, save_plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def inst():
    return tree_instance(1, 2, 2, 3, 4, seed=1)


def test_class_ids_are_stable_and_derived(inst):
    topo, cat, _ = inst
    d = parse_demand({"classes": [
        {"ingress": "edge-0-0", "task": "t0", "rate": 5},
        {"ingress": "edge-0-0", "task": "t0", "rate": 2, "max_latency_ms": 30, "min_accuracy": 0.9},
        {"id": "gold", "ingress": "edge-0-1", "task": "t1", "rate": 1.5}]}, "d.yaml", topo, cat)
    assert [c.id for c in d.classes] == ["edge-0-0/t0", "edge-0-0/t0/lat30/acc0.9", "gold"]
    assert class_id("e", "t", 30.0, None) == "e/t/lat30"
    assert d.total_rate == 8.5
    again = parse_demand(demand_document(d), "d2.yaml", topo, cat)
    assert again.classes == d.classes


@pytest.mark.parametrize("row, field, words", [
    ({"ingress": "ghost", "task": "t0", "rate": 1}, "classes[0].ingress", "unknown node"),
    ({"ingress": "edge-0-0", "task": "nope", "rate": 1}, "classes[0].task", "unknown task"),
    ({"ingress": "edge-0-0", "task": "t0", "rate": 0}, "classes[0].rate", "> 0"),
    ({"ingress": "edge-0-0", "task": "t0", "rate": 1, "min_accuracy": 95}, "classes[0].min_accuracy", "[0, 1]"),
    ({"ingress": "edge-0-0", "task": "t0", "rate": 1, "max_latency_ms": -3}, "classes[0].max_latency_ms", "positive"),
    ({"ingress": "edge-0-0", "task": "t0", "rate": 1, "rates": 2}, "classes[0].rates", "unknown field"),
])
def test_demand_errors(inst, row, field, words):
    topo, cat, _ = inst
    with pytest.raises(ConfigError) as e:
        parse_demand({"classes": [row]}, "d.yaml", topo, cat)
    assert (e.value.file, e.value.field) == ("d.yaml", field)
    assert words in str(e.value) and e.value.fix


def test_duplicate_class_refused(inst):
    topo, cat, _ = inst
    row = {"ingress": "edge-0-0", "task": "t0", "rate": 1}
    with pytest.raises(ConfigError, match="already used by classes\\[0\\]"):
        parse_demand({"classes": [row, row]}, "d.yaml", topo, cat)


def test_demo_demand_matches_demo_topology_when_zoo_exists():
    from idn.catalog import DEFAULT_CATALOG, load_catalog
    from idn.topology import load_topology
    if not DEFAULT_CATALOG.is_file():
        pytest.skip("models/catalog.yaml not built yet")
    cat = load_catalog(DEFAULT_CATALOG, verify_hashes=False)
    topo = load_topology(ROOT / "deploy/topologies/demo.yaml")
    hw = topo.nodes["cloud"].hardware_class
    if not {"digits", "waveforms"} <= set(cat.tasks) or hw not in cat.hardware_classes:
        pytest.skip(f"the zoo catalog does not have both tasks profiled on {hw} yet")
    d = load_demand(ROOT / "deploy/demands/demo.yaml", topo, cat)
    assert 100 <= d.total_rate <= 200
    from idn.placement import solve
    out = solve(topo, cat, d)  # the demo must be feasible with the real zoo
    assert out.evaluation.feasible, out.evaluation.violations


def sample_plan() -> Plan:
    return Plan(
        version=3,
        placements={"edge": ("a-small",), "cloud": ("a-big", "b-one")},
        routes={"edge/a": Route("edge/a", "edge", "a", 10.0, (Target("edge", "a-small", 0.25),
                                                              Target("cloud", "a-big", 0.75)),
                                predicted={"latency_ms": 12.5, "accuracy": 0.9}),
                "edge/b/lat50": Route("edge/b/lat50", "edge", "b", 2.0, (Target("cloud", "b-one", 1.0),), 50.0, None),
                "edge/a/acc0.9": Route("edge/a/acc0.9", "edge", "a", 1.0, (Target("cloud", "a-big", 1.0),), None, 0.9)},
        solver=SolverFacts("highs", "time-limit", 100.5, 99.0, 0.0149, 1.25, {"alpha": 1000.0, "budget": None}),
        inputs={"topology": "ab" * 32, "catalog": "cd" * 32, "demand": "ef" * 32},
        predicted={"objective": 100.5, "mean_latency_ms": 11.0}, created="2025-01-01T00:00:00Z")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_plan_round_trip(tmp_path, suffix):
    p = sample_plan()
    assert load_plan(save_plan(p, tmp_path / f"plan{suffix}")) == p


def test_plan_router_helpers():
    p = sample_plan()
    got = p.targets_for("edge", "a")
    assert [r.class_id for r, _ in got] == ["edge/a", "edge/a/acc0.9"]
    assert got[0][1] == (Target("edge", "a-small", 0.25), Target("cloud", "a-big", 0.75))
    assert got[1][0].min_accuracy == 0.9
    assert p.targets_for("cloud", "a") == []
    assert p.variants_on("cloud") == ["a-big", "b-one"] and p.variants_on("nowhere") == []
    assert p.nodes_with("a-big") == ["cloud"]
    assert p.with_version(4).version == 4


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d["routes"]["edge/a"]["targets"][0].update(share=0.5), "shares sum to"),
    (lambda d: d["routes"]["edge/a"]["targets"][0].update(node="cloud"), "not placed on node"),
    (lambda d: d.update(version=0), "must be within 1.."),
    (lambda d: d["routes"]["edge/a"]["targets"][0].update(share=-0.25), "within (0, 1]"),
    (lambda d: d["placements"].update(edge=["a-small", "a-small"]), "listed twice"),
])
def test_plan_validation(mutate, words):
    d = plan_to_dict(sample_plan())
    mutate(d)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace("]", r"\]")):
        parse_plan(d, "plan.yaml")
