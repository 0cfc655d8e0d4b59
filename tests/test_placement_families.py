"""Benchmark families (idn.placement.synthetic.FAMILIES): valid instances, realistic ranges, the zoo
picked up when present, and the ILP never beaten by a heuristic on a small instance of each family.

No benchmark runs here: each family is shrunk to 2 regionals x 3 edges (9 nodes)."""

from dataclasses import replace

import pytest
import yaml

from idn.placement import SolverOptions, build_problem
from idn.placement.baselines import greedy, lp_round, repository_only, smallest
from idn.placement.ilp import solve_ilp
from idn.placement.solve import score
from idn.placement.synthetic import (
    EDGE_SLOT_MIB,
    FAMILIES,
    IMAGENET_TABLE,
    REFERENCE_HW,
    calibrate,
    family_instance,
    imagenet_family_catalog,
    zoo_imagenet,
)

EXACT = SolverOptions("highs", gap=1e-9)


def small(name):
    return replace(FAMILIES[name], regionals=2, edges_per_regional=3)


def unconstrained_deployment(inst):
    prob = build_problem(inst.topology, inst.catalog, inst.demand, replace(inst.options, budget=None))
    sol = solve_ilp(prob, EXACT)
    assert sol.feasible
    return score(prob, sol, inst.topology, inst.catalog, inst.demand)[1].deployment_cost


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_instances_are_valid_and_within_the_stated_ranges(name):
    fam = small(name)
    inst = family_instance(fam, 3, budget_of=unconstrained_deployment)
    topo, cat, dem = inst.topology, inst.catalog, inst.demand
    assert len(topo.nodes) == fam.n_nodes == 9
    assert set(cat.tasks) == {"imagenet"} and len(cat.variants) >= len(IMAGENET_TABLE)
    edges = [n for n in topo.nodes.values() if n.tier == "edge"]
    cloud = [n for n in topo.nodes.values() if n.repository]
    assert len(cloud) == 1 and cloud[0].slowdown == 1.0
    for e in edges:
        assert 5.0 <= e.slowdown <= 20.0
        assert e.mem_mb / EDGE_SLOT_MIB in (1, 2, 3)
        bw = topo.link_bandwidth_mbps(e.id, e.parent)
        assert bw is not None and 10.0 <= bw <= 100.0
    for r in (n for n in topo.nodes.values() if n.tier == "regional"):
        bw = topo.link_bandwidth_mbps(r.id, "cloud")
        assert bw is not None and 1000.0 <= bw <= 10000.0
    # image payloads: 224x224x3 uint8 in, 1,000 FP32 out
    prob = build_problem(topo, cat, dem, inst.options)
    assert prob.unservable == []  # every class can be served somewhere on its path
    kinds = {c.id.rsplit("-", 1)[1] for c in dem.classes}
    assert kinds <= {"latency", "accuracy", "both", "neither"} and len(kinds) >= 2
    if fam.budget is not None:
        lo, hi = fam.budget
        assert lo <= inst.facts["budget_fraction"] <= hi
        assert inst.options.budget == pytest.approx(inst.facts["budget_fraction"]
                                                    * inst.facts["unconstrained_deployment"], rel=1e-3)
    # deterministic in (family, seed)
    again = family_instance(fam, 3, budget_of=unconstrained_deployment)
    assert again.demand.classes == dem.classes and again.options == inst.options


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_ilp_beats_or_ties_every_heuristic_on_a_small_instance(name):
    inst = family_instance(small(name), 1, budget_of=unconstrained_deployment)
    topo, cat, dem = inst.topology, inst.catalog, inst.demand
    prob = build_problem(topo, cat, dem, inst.options)
    opt = solve_ilp(prob, EXACT)
    assert opt.facts.status == "optimal"
    _, ev = score(prob, opt, topo, cat, dem)
    assert ev.feasible and ev.objective == pytest.approx(opt.facts.objective, rel=1e-9)
    sols = [h(prob) for h in (smallest, greedy, lp_round)]
    sols += [h(prob, lp_completion=False) for h in (smallest, greedy)]
    sols.append(repository_only(prob, topo, cat))
    for sol in sols:
        if not sol.feasible:
            continue
        _, hev = score(prob, sol, topo, cat, dem)
        if hev.feasible:
            assert hev.objective >= opt.facts.objective * (1 - 1e-7), sol.method


def test_the_zoo_imagenet_task_is_picked_up_and_calibrates_the_table(tmp_path):
    """Once models/catalog.yaml has an imagenet task profiled on the reference class, the family
    catalog carries its variants (measured) and derives the table's latency from them."""
    assert calibrate(None).source == "fallback"
    lat = {REFERENCE_HW: {"single_thread": {1: {"p50_ms": 11.0, "p95_ms": 13.2}}}}
    doc = {"version": 1, "hardware_classes": {REFERENCE_HW: {"description": "this CPU"}},
           "tasks": {"imagenet": {
               "inputs": [{"name": "input", "datatype": "UINT8", "shape": [-1, 224, 224, 3]}],
               "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}],
               "variants": {"imagenet-lite0": {"file": "x.onnx", "sha256": "0" * 64, "bytes": 18_700_000,
                                               "flops_per_sample": 0.8e9, "accuracy": {"top1": 0.751},
                                               "latency": lat},
                            "imagenet-lite0-int8": {"file": "y.onnx", "sha256": "0" * 64, "bytes": 5_000_000,
                                                    "flops_per_sample": 0.8e9, "quantization": "int8-static",
                                                    "accuracy": {"top1": 0.74}, "latency": lat}}}}}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(doc))
    zoo = zoo_imagenet(path)
    assert zoo is not None and set(zoo.variants) == {"imagenet-lite0", "imagenet-lite0-int8"}
    cal = calibrate(zoo)
    assert cal.source == "zoo: imagenet-lite0"  # FP32 variants only
    assert cal.gflops_per_s == pytest.approx(0.8 / 0.010)  # 0.8 GFLOP in 11 ms - 1 ms overhead
    assert cal.p95_ratio == pytest.approx(1.2)
    cat, _ = imagenet_family_catalog(zoo)
    v = cat.variants
    assert v["imagenet-lite0"].latency_ms(REFERENCE_HW) == 11.0 and v["imagenet-lite0"].task == "imagenet"
    b0 = next(r for r in IMAGENET_TABLE if r[0] == "efficientnet_b0")
    assert v["efficientnet_b0"].latency_ms(REFERENCE_HW) == pytest.approx(1.0 + 2 * b0[3] / 80.0 * 1000, rel=1e-4)
    # a catalog without the task (the shipped one, until the zoo adds it) falls back to the table alone
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({**doc, "tasks": {"digits": doc["tasks"]["imagenet"]}}))
    assert zoo_imagenet(tmp_path / "other.yaml") is None
