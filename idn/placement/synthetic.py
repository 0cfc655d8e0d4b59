"""Generated instances for tests and benchmarks: 3-tier trees, catalogs, demands.

Documents are produced in the users' file formats and go through the real loaders
(``parse_topology``, ``parse_catalog``, ``parse_demand``), so generated instances are
validated exactly like hand-written ones. Everything is seeded and deterministic.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from idn.catalog import Catalog, Task, parse_catalog
from idn.demand import Demand, parse_demand
from idn.latency import LatencyModel
from idn.placement.problem import PlacementOptions
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


# ----------------------------------------------------------------------------------------
# Benchmark families: instances drawn from realistic parameters (benchmarks/solver.py
# --families; sources and reasons in benchmarks/README-solver.md)
# ----------------------------------------------------------------------------------------

# Public ImageNet-1k classifiers: name, top-1 (%), parameters (M), GFLOPS as torchvision's
# model table counts them (multiply-adds). Transcribed from the torchvision documentation,
# table "Classification" (https://pytorch.org/vision/stable/models.html#classification),
# IMAGENET1K_V1 weights unless noted.
IMAGENET_TABLE: tuple[tuple[str, float, float, float], ...] = (
    ("mobilenet_v3_small", 67.668, 2.54, 0.06), ("shufflenet_v2_x0_5", 60.552, 1.37, 0.04),
    ("squeezenet1_1", 58.178, 1.24, 0.35), ("mnasnet0_5", 67.734, 2.22, 0.10),
    ("shufflenet_v2_x1_0", 69.362, 2.28, 0.14), ("mnasnet0_75", 71.180, 3.17, 0.21),
    ("mobilenet_v3_large", 74.042, 5.48, 0.22), ("mobilenet_v2", 71.878, 3.50, 0.30),
    ("mnasnet1_0", 73.456, 4.38, 0.31), ("efficientnet_b0", 77.692, 5.29, 0.39),
    ("regnet_y_400mf", 74.046, 4.34, 0.40), ("shufflenet_v2_x1_5", 72.996, 3.50, 0.30),
    ("mnasnet1_3", 76.506, 6.28, 0.53), ("shufflenet_v2_x2_0", 76.230, 7.39, 0.58),
    ("efficientnet_b1", 78.642, 7.79, 0.69), ("alexnet", 56.522, 61.10, 0.71),
    ("squeezenet1_0", 58.092, 1.25, 0.82), ("regnet_y_800mf", 76.420, 6.43, 0.83),
    ("efficientnet_b2", 80.608, 9.11, 1.09), ("googlenet", 69.778, 6.62, 1.50),
    ("regnet_y_1_6gf", 77.950, 11.20, 1.61), ("resnet18", 69.758, 11.69, 1.81),
    ("efficientnet_b3", 82.008, 12.23, 1.83), ("densenet121", 74.434, 7.98, 2.83),
    ("regnet_y_3_2gf", 78.948, 19.44, 3.18), ("densenet169", 75.600, 14.15, 3.36),
    ("resnet34", 73.314, 21.80, 3.66), ("resnet50", 76.130, 25.56, 4.09),
    ("resnext50_32x4d", 77.618, 25.03, 4.23), ("densenet201", 76.896, 20.01, 4.29),
    ("efficientnet_b4", 83.384, 19.34, 4.39), ("vit_b_32", 75.912, 88.22, 4.41),
    ("convnext_tiny", 82.520, 28.59, 4.46), ("swin_t", 81.474, 28.29, 4.49),
    ("maxvit_t", 83.700, 30.92, 5.56), ("inception_v3", 77.294, 27.16, 5.71),
    ("densenet161", 77.138, 28.68, 7.73), ("resnet101", 77.374, 44.55, 7.80),
    ("regnet_y_8gf", 80.032, 39.38, 8.47), ("convnext_small", 83.616, 50.22, 8.68),
    ("swin_s", 83.196, 49.61, 8.74), ("efficientnet_b5", 83.444, 30.39, 10.27),
    ("wide_resnet50_2", 78.468, 68.88, 11.40), ("resnet152", 78.312, 60.19, 11.51),
    ("vgg13", 69.928, 133.05, 11.31), ("vgg16", 71.592, 138.36, 15.47),
    ("resnext101_32x8d", 79.312, 88.79, 16.41), ("vit_b_16", 81.072, 86.57, 17.56),
    ("efficientnet_b6", 84.008, 43.04, 19.07), ("vgg19", 72.376, 143.67, 19.63),
)
# The zoo's hardware class (this CPU, one thread per request): the cloud's per-request speed.
REFERENCE_HW = "cpu-x86_64-2c"
# Until the zoo's imagenet task is profiled here, the table's latency on the reference class
# is p50 = 1 ms + FLOPs / 60 GFLOP/s (FLOPs = 2 x multiply-adds, the zoo's convention) and
# p95 = 1.3 x p50; with the zoo's task present both are calibrated on its FP32 variants.
FALLBACK_GFLOPS = 60.0
FALLBACK_OVERHEAD_MS = 1.0
FALLBACK_P95 = 1.3
# The imagenet signature: one uint8 RGB 224x224 photo in, 1,000 FP32 probabilities out
# (150,528 + 4,000 bytes per request), as the zoo's imagenet task declares it.
IMAGE_INPUT = {"name": "input", "datatype": "UINT8", "shape": [-1, 224, 224, 3]}
IMAGE_OUTPUT = {"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}


@dataclass(frozen=True)
class Calibration:
    """How the table's latencies on the reference class were derived."""
    gflops_per_s: float
    overhead_ms: float
    p95_ratio: float
    source: str  # "fallback" or "zoo: <variants>"


def zoo_imagenet(catalog_path: str | Path | None = None) -> Task | None:
    """The zoo's ``imagenet`` task when ``models/catalog.yaml`` has one profiled on the reference class."""
    from idn.catalog import DEFAULT_CATALOG, load_catalog

    path = Path(catalog_path) if catalog_path is not None else DEFAULT_CATALOG
    if not path.is_file():
        return None
    task = load_catalog(path, verify_hashes=False).tasks.get("imagenet")
    if task is None or not any(v.latency_ms(REFERENCE_HW) for v in task.variants.values()):
        return None
    return task


def calibrate(zoo: Task | None) -> Calibration:
    """Effective GFLOP/s and p95/p50 of the reference class, from the zoo's FP32 imagenet variants."""
    if zoo is not None:
        pts = [(v.name, v.flops_per_sample, t50, v.latency_ms(REFERENCE_HW, quantile="p95") or t50)
               for v in zoo.variants.values()
               if v.quantization is None and v.flops_per_sample > 0 and (t50 := v.latency_ms(REFERENCE_HW))]
        if pts:
            rates = sorted(fl / 1e9 / ((t50 - FALLBACK_OVERHEAD_MS) / 1000.0) for _, fl, t50, _ in pts
                           if t50 > FALLBACK_OVERHEAD_MS)
            ratios = sorted(t95 / t50 for _, _, t50, t95 in pts)
            if rates:
                return Calibration(rates[len(rates) // 2], FALLBACK_OVERHEAD_MS, max(1.0, ratios[len(ratios) // 2]),
                                   "zoo: " + ", ".join(n for n, *_ in pts))
    return Calibration(FALLBACK_GFLOPS, FALLBACK_OVERHEAD_MS, FALLBACK_P95, "fallback")


def imagenet_family_catalog(zoo: Task | None = None, table: bool = True) -> tuple[Catalog, Calibration]:
    """One ``imagenet`` task: the zoo's measured variants (when present) plus the cited table.

    The table's variants get a derived profile on the reference class (see ``calibrate``);
    their size is parameters x 4 bytes (FP32) and their accuracy the published top-1.
    """
    cal = calibrate(zoo)
    variants: dict[str, Any] = {}
    if table:
        for name, top1, params_m, gmacs in IMAGENET_TABLE:
            flops = 2.0 * gmacs * 1e9
            p50 = cal.overhead_ms + 1000.0 * flops / 1e9 / cal.gflops_per_s
            variants[name] = {
                "file": f"{name}.onnx", "sha256": "0" * 64, "bytes": int(params_m * 4e6),
                "parameters": int(params_m * 1e6), "flops_per_sample": flops,
                "accuracy": {"top1": top1 / 100.0, "split": "imagenet-val (published, torchvision)"},
                "latency": {REFERENCE_HW: {"single_thread": {1: {"p50_ms": round(p50, 4),
                                                                 "p95_ms": round(cal.p95_ratio * p50, 4)}}}}}
    doc: dict[str, Any] = {"version": 1, "hardware_classes": {REFERENCE_HW: {"description": "reference server core"}},
                           "tasks": {"imagenet": {"inputs": [IMAGE_INPUT], "outputs": [IMAGE_OUTPUT],
                                                  "variants": variants}}}
    cat = parse_catalog(doc, "<imagenet family catalog>", verify_hashes=False)
    if zoo is None:
        return cat, cal
    # the zoo's variants as they are (measured profiles, its own signature)
    task = cat.tasks["imagenet"]
    merged = {**task.variants, **{n: replace(v, task="imagenet") for n, v in zoo.variants.items()}}
    task = replace(task, inputs=zoo.inputs, outputs=zoo.outputs, variants=merged)
    return replace(cat, tasks={"imagenet": task}), cal


@dataclass(frozen=True)
class Family:
    """A family of 100-node instances: one cloud repository, regionals, edges (see README-solver.md).

    Ranges are drawn per node (slowdown, cores, memory, bandwidth, delay) or per instance
    (budget fraction), uniformly or log-uniformly (``*_log``), from the instance's seed.
    """
    name: str
    summary: str
    regionals: int = 9
    edges_per_regional: int = 10
    # compute: edges 5-20x slower than the cloud per request, regionals 1-2x
    edge_slowdown_log: tuple[float, float] = (5.0, 20.0)
    regional_slowdown: tuple[float, float] = (1.0, 2.0)
    edge_cores: tuple[int, ...] = (1, 2, 4)
    regional_cores: int = 4
    cloud_cores: int = 32
    # memory: an edge holds 1-3 mid-size variants (EDGE_SLOT_MIB each)
    edge_slots: tuple[int, ...] = (1, 2, 3)
    regional_mem_mb: float = 4096
    cloud_mem_mb: float = 65536
    # network: edge uplinks 10-100 Mb/s, core links 1-10 Gb/s
    edge_bw_log: tuple[float, float] = (10.0, 100.0)
    core_bw_log: tuple[float, float] = (1000.0, 10000.0)
    edge_delay: tuple[float, float] = (1.0, 10.0)
    core_delay: tuple[float, float] = (5.0, 30.0)
    # prices per MiB deployed
    price: tuple[float, float, float] = (1.0, 2.0, 4.0)  # cloud, regional, edge
    # demand: per edge a total rate (log-normal), split over 2-4 classes of the SLO mix
    edge_rate_median: float = 6.0
    edge_rate_sigma: float = 0.8
    classes_per_edge: tuple[int, int] = (2, 4)
    slo_mix: tuple[tuple[str, float], ...] = (("latency", 0.3), ("accuracy", 0.3), ("both", 0.2), ("neither", 0.2))
    latency_slo_ms: tuple[float, ...] = (100.0, 150.0, 250.0)
    accuracy_slo: tuple[float, ...] = (0.75, 0.77, 0.80)
    both_latency_ms: tuple[float, ...] = (250.0, 400.0)
    both_accuracy: tuple[float, ...] = (0.72, 0.75)
    # budget: a fraction of the unconstrained optimum's deployment cost (None: no budget)
    budget: tuple[float, float] | None = None
    alpha: float = 1000.0
    rho: float = 0.8
    table: bool = True  # the cited table's variants (else the zoo's only)

    @property
    def n_nodes(self) -> int:
        return 1 + self.regionals * (1 + self.edges_per_regional)


EDGE_SLOT_MIB = 25.0


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def family_topology_doc(fam: Family, rng: random.Random) -> dict[str, Any]:
    p_cloud, p_reg, p_edge = fam.price
    nodes: list[dict[str, Any]] = [{"id": "cloud", "tier": "cloud", "address": "10.0.0.1:8001",
                                    "mem_mb": fam.cloud_mem_mb, "cores": fam.cloud_cores, "price": p_cloud,
                                    "repository": True}]
    links: list[dict[str, Any]] = []
    k = 2
    for r in range(fam.regionals):
        rid = f"reg-{r}"
        nodes.append({"id": rid, "tier": "regional", "address": f"10.0.{k // 250}.{k % 250 + 1}:8001",
                      "mem_mb": fam.regional_mem_mb, "cores": fam.regional_cores, "parent": "cloud",
                      "price": p_reg, "slowdown": round(rng.uniform(*fam.regional_slowdown), 3)})
        k += 1
        links.append({"a": rid, "b": "cloud", "delay_ms": round(rng.uniform(*fam.core_delay), 2),
                      "bandwidth_mbps": round(_log_uniform(rng, *fam.core_bw_log), 1)})
        for e in range(fam.edges_per_regional):
            eid = f"edge-{r}-{e}"
            nodes.append({"id": eid, "tier": "edge", "address": f"10.0.{k // 250}.{k % 250 + 1}:8001",
                          "mem_mb": EDGE_SLOT_MIB * rng.choice(fam.edge_slots), "cores": rng.choice(fam.edge_cores),
                          "parent": rid, "price": p_edge,
                          "slowdown": round(_log_uniform(rng, *fam.edge_slowdown_log), 3)})
            k += 1
            links.append({"a": eid, "b": rid, "delay_ms": round(rng.uniform(*fam.edge_delay), 2),
                          "bandwidth_mbps": round(_log_uniform(rng, *fam.edge_bw_log), 1)})
    return {"hardware_class": REFERENCE_HW, "nodes": nodes, "links": links}


def family_demand_doc(fam: Family, topology: Topology, catalog: Catalog,
                      rng: random.Random) -> tuple[dict[str, Any], dict[str, int]]:
    """Per edge: a log-normal total rate split over 2-4 classes drawn from the SLO mix.

    Latency bounds are the application's (absolute ms), then made servable, and each
    change is counted in the returned facts:

    * a bound that no target on the class's path can meet (p95 of any variant that fits
      the node alone and meets the class's accuracy floor) is raised to 1.1 x the best
      (``raised_unservable``);
    * a class whose bound only its own edge can meet needs that edge's compute (its
      fastest admissible variant there) and memory; while those edge-only classes need
      more than the edge has (``rho x cores``, ``mem_mb``), the heaviest one's bound is
      raised to 1.1 x the best p95 upstream (``raised_capacity``).

    So each edge can carry what only it can serve; the ILP, run on every instance, is
    the check that the whole instance is feasible.
    """
    model = LatencyModel(topology, catalog)
    variants = list(catalog.tasks["imagenet"].variants.values())
    kinds = [k for k, _ in fam.slo_mix]
    weights = [w for _, w in fam.slo_mix]
    classes: list[dict[str, Any]] = []
    facts = {"raised_unservable": 0, "raised_capacity": 0}
    mib = float(1 << 20)
    for node in topology.nodes.values():
        if node.tier != "edge":
            continue
        total = fam.edge_rate_median * math.exp(rng.gauss(0.0, fam.edge_rate_sigma))
        n = rng.randint(*fam.classes_per_edge)
        shares = [rng.expovariate(1.0) for _ in range(n)]
        path = model.path(node.id)
        rows: list[dict[str, Any]] = []
        edge_only: list[tuple[float, float, str, int]] = []  # (load, size MiB, variant, row)
        for j, share in enumerate(shares):
            kind = rng.choices(kinds, weights)[0]
            row: dict[str, Any] = {"id": f"{node.id}/{j}-{kind}", "ingress": node.id, "task": "imagenet",
                                   "rate": round(max(0.05, total * share / sum(shares)), 3)}
            acc = None
            if kind in ("accuracy", "both"):
                acc = row["min_accuracy"] = rng.choice(fam.accuracy_slo if kind == "accuracy" else fam.both_accuracy)
            if kind in ("latency", "both"):
                lat = rng.choice(fam.latency_slo_ms if kind == "latency" else fam.both_latency_ms)
                ok = [v for v in variants if acc is None or v.accuracy >= acc]
                p95 = {h.node: min((model.predict(node.id, h.node, v).latency_p95_ms for v in ok
                                    if v.bytes / mib <= topology.nodes[h.node].mem_mb), default=math.inf)
                       for h in path}
                best, best_up = min(p95.values()), min(p95[h.node] for h in path[1:])
                if best > lat:
                    lat = math.ceil(1.1 * best)
                    facts["raised_unservable"] += 1
                if best_up > lat:  # only the edge itself meets it: its fastest admissible variant there
                    t, name, size = min((model.compute_times(node.id, v)[0], v.name, v.bytes / mib) for v in ok
                                        if v.bytes / mib <= node.mem_mb
                                        and model.predict(node.id, node.id, v).latency_p95_ms <= lat)
                    edge_only.append((row["rate"] * t / 1000.0, size, name, len(rows)))
                row["max_latency_ms"] = lat
                row["_up"] = math.ceil(1.1 * best_up)
            rows.append(row)
        edge_only.sort(reverse=True)
        while edge_only and (sum(e[0] for e in edge_only) > fam.rho * node.cores + 1e-9
                             or sum(sz for sz in {v: s for _, s, v, _ in edge_only}.values()) > node.mem_mb):
            _, _, _, i = edge_only.pop(0)
            rows[i]["max_latency_ms"] = rows[i]["_up"]
            facts["raised_capacity"] += 1
        for row in rows:
            row.pop("_up", None)
        classes.extend(rows)
    return {"description": f"family {fam.name}", "classes": classes}, facts


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("budget", "normal load (median 6 req/s per edge); deployment budget 30-70% of the unconstrained "
                     "optimum's deployment cost", budget=(0.3, 0.7)),
    Family("peak", "peak-hour load (median 15 req/s per edge, 2.5x normal) on the same hardware; no budget",
           edge_rate_median=15.0),
    Family("peak-budget", "peak-hour load and a deployment budget 30-70% of the unconstrained optimum's",
           edge_rate_median=15.0, budget=(0.3, 0.7)),
    Family("standard", "control, not in the default set: normal load, no budget (greedy ties the ILP: see "
                       "README-solver.md)"),
)}
DEFAULT_FAMILIES = ("budget", "peak", "peak-budget")


@dataclass
class FamilyInstance:
    family: Family
    seed: int
    topology: Topology
    catalog: Catalog
    demand: Demand
    options: PlacementOptions
    calibration: Calibration
    facts: dict[str, Any] = field(default_factory=dict)


def family_instance(fam: Family, seed: int, zoo: Task | None = None,
                    budget_of: Callable[[FamilyInstance], float] | None = None) -> FamilyInstance:
    """One instance of a family, through the real loaders, deterministic in (family, seed).

    With ``fam.budget``, ``budget_of`` must return the unconstrained optimum's deployment
    cost (``benchmarks/solver.py`` solves the ILP without a budget for it); the budget is a
    fraction of it drawn from ``fam.budget``."""
    rng = random.Random(f"{fam.name}/{seed}")
    cat, cal = imagenet_family_catalog(zoo, fam.table)
    topo = parse_topology(family_topology_doc(fam, rng), f"<family {fam.name} #{seed}>")
    ddoc, facts = family_demand_doc(fam, topo, cat, rng)
    dem = parse_demand(ddoc, f"<family {fam.name} #{seed} demand>", topo, cat)
    inst = FamilyInstance(fam, seed, topo, cat, dem, PlacementOptions(alpha=fam.alpha, rho=fam.rho), cal,
                          dict(facts))
    if fam.budget is not None:
        if budget_of is None:
            raise ValueError(f"family {fam.name} has a budget: pass budget_of (the unconstrained deployment cost)")
        frac = rng.uniform(*fam.budget)
        unconstrained = budget_of(inst)
        inst.options = replace(inst.options, budget=round(frac * unconstrained, 3))
        inst.facts.update(budget_fraction=round(frac, 4), unconstrained_deployment=round(unconstrained, 3))
    return inst
