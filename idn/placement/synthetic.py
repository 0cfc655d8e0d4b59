"""Generated instances for tests and benchmarks: 3-tier trees, catalogs, demands.

Documents are produced in the users' file formats and go through the real loaders
(``parse_topology``, ``parse_catalog``, ``parse_demand``), so generated instances are
validated exactly like hand-written ones. Everything is seeded and deterministic.
"""

from __future__ import annotations

import random
from typing import Any

from idn.catalog import Catalog, parse_catalog
from idn.demand import Demand, parse_demand
from idn.topology import Topology, parse_topology

HW = "cpu-x86_64-2c"


def variant_doc(name: str, size_bytes: int, accuracy: float, p50_ms: float, p95_ms: float | None = None,
                flops: float = 0.0, hw: tuple[str, ...] = (HW,)) -> tuple[str, dict[str, Any]]:
    """One catalog variant entry (no model file: load with verify_hashes=False)."""
    p95 = p95_ms if p95_ms is not None else p50_ms * 1.25
    return name, {
        "file": f"{name}.onnx", "sha256": "0" * 64, "bytes": int(size_bytes), "flops_per_sample": float(flops),
        "accuracy": {"top1": float(accuracy), "split": "synthetic"},
        "latency": {h: {"single_thread": {1: {"p50_ms": float(p50_ms), "p95_ms": float(p95)}}} for h in hw},
    }


def catalog_doc(tasks: dict[str, list[tuple[str, dict[str, Any]]]], hw: tuple[str, ...] = (HW,)) -> dict[str, Any]:
    return {
        "version": 1,
        "hardware_classes": {h: {"description": "synthetic"} for h in hw},
        "tasks": {t: {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                      "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
                      "variants": dict(vs)} for t, vs in tasks.items()},
    }


def random_catalog(n_tasks: int, n_variants: int, seed: int = 0) -> Catalog:
    """Tasks whose variants trade size/latency against accuracy (bigger is slower and better, noisily)."""
    rng = random.Random(seed)
    tasks = {}
    for t in range(n_tasks):
        vs = []
        for k in range(n_variants):
            gflops = rng.uniform(0.3, 12.0)
            acc = min(0.99, 0.55 + 0.08 * gflops ** 0.5 + rng.uniform(-0.05, 0.05))
            vs.append(variant_doc(f"t{t}-v{k}", int(gflops * rng.uniform(2e6, 6e6)), acc,
                                  gflops * rng.uniform(1.5, 2.5), flops=gflops * 1e9))
        tasks[f"t{t}"] = vs
    return parse_catalog(catalog_doc(tasks), "<synthetic catalog>", verify_hashes=False)


def tree_topology_doc(n_regional: int, edges_per_regional: int, seed: int = 0, *, cloud_mem: float = 16384,
                      cloud_cores: float = 64, regional_mem: float = 1024, regional_cores: float = 8,
                      edge_mem: tuple[float, ...] = (64, 128, 256), edge_cores: float = 1,
                      hw: str = HW) -> dict[str, Any]:
    """cloud (repository) - regionals - edges, with realistic one-way delays and slowdowns."""
    rng = random.Random(seed)
    nodes: list[dict[str, Any]] = [{"id": "cloud", "tier": "cloud", "address": "10.0.0.1:8001", "mem_mb": cloud_mem,
                                    "cores": cloud_cores, "price": 1.0, "repository": True}]
    links: list[dict[str, Any]] = []
    k = 2
    for r in range(n_regional):
        rid = f"reg-{r}"
        nodes.append({"id": rid, "tier": "regional", "address": f"10.0.{k // 250}.{k % 250 + 1}:8001",
                      "mem_mb": regional_mem, "cores": regional_cores, "parent": "cloud", "price": 2.0,
                      "slowdown": 1.5})
        k += 1
        links.append({"a": rid, "b": "cloud", "delay_ms": round(rng.uniform(20, 30), 2)})
        for e in range(edges_per_regional):
            eid = f"edge-{r}-{e}"
            nodes.append({"id": eid, "tier": "edge", "address": f"10.0.{k // 250}.{k % 250 + 1}:8001",
                          "mem_mb": rng.choice(edge_mem), "cores": edge_cores, "parent": rid, "price": 4.0,
                          "slowdown": round(rng.uniform(2.0, 4.0), 2)})
            k += 1
            links.append({"a": eid, "b": rid, "delay_ms": round(rng.uniform(5, 15), 2)})
    return {"hardware_class": hw, "nodes": nodes, "links": links}


def random_demand_doc(topology: Topology, tasks: list[str], n_classes: int, seed: int = 0, *,
                      rate: tuple[float, float] = (1.0, 20.0), slo_latency: tuple[float | None, ...] = (None, 80, 150),
                      slo_accuracy: tuple[float | None, ...] = (None,),
                      ingress_tiers: tuple[str, ...] = ("edge",)) -> dict[str, Any]:
    """Distinct (ingress, task, SLO) classes drawn at random, up to ``n_classes``."""
    rng = random.Random(seed)
    ingress = [n.id for n in topology.nodes.values() if n.tier in ingress_tiers] or list(topology.nodes)
    combos = len(ingress) * len(tasks) * len(slo_latency) * len(slo_accuracy)
    seen: set[tuple[Any, ...]] = set()
    classes: list[dict[str, Any]] = []
    while len(classes) < min(n_classes, combos):
        key = (rng.choice(ingress), rng.choice(tasks), rng.choice(slo_latency), rng.choice(slo_accuracy))
        if key in seen:
            continue
        seen.add(key)
        row: dict[str, Any] = {"ingress": key[0], "task": key[1], "rate": round(rng.uniform(*rate), 3)}
        if key[2] is not None:
            row["max_latency_ms"] = key[2]
        if key[3] is not None:
            row["min_accuracy"] = key[3]
        classes.append(row)
    return {"classes": classes}


def tree_instance(n_regional: int, edges_per_regional: int, n_tasks: int, n_variants: int, n_classes: int,
                  seed: int = 0, **demand_kw: Any) -> tuple[Topology, Catalog, Demand]:
    topo = parse_topology(tree_topology_doc(n_regional, edges_per_regional, seed), "<synthetic topology>")
    cat = random_catalog(n_tasks, n_variants, seed)
    dem = parse_demand(random_demand_doc(topo, list(cat.tasks), n_classes, seed, **demand_kw),
                       "<synthetic demand>", topo, cat)
    return topo, cat, dem
