"""Placement solver benchmark: build time, solve time, proven gap, heuristic cost ratios.

Usage (2 shared cores: run it niced)::

    nice -n 10 .venv/bin/python benchmarks/solver.py --out benchmarks/solver-results.json
    nice -n 10 .venv/bin/python benchmarks/solver.py --sizes xl --time-limit 600 --gap 0.02 --repeat 1

Timing: one untimed warm-up solve first (imports and first calls), then each size's
problem build + ILP is run ``--repeat`` times (default 3) and the fastest end-to-end run
is reported, because on a shared machine millisecond timings are noisy.

Instances
---------
* ``tree-*``: generated 3-tier trees (one cloud repository, regionals, edges) with
  seeded random one-way delays (edge-regional 2-15 ms, regional-cloud 10-40 ms),
  small edge memory and cores, and request classes (ingress edge, SLO) with
  Zipf-like rates.
* ``geant2012``: the real GEANT 2012 research network from the Internet Topology Zoo
  as shipped by the ``topohub`` package (optional ``bench`` extra; the row is skipped,
  saying so, when it is not installed). One-way delay = fibre length / 200 km/ms + 0.1 ms
  per hop; the best-connected node is the cloud repository, nodes of degree >= 3 are
  regional, the rest are edges; class rates follow topohub's demand matrix.

Catalog
-------
Public ImageNet-1k classifiers with their published top-1 accuracy, parameter count
and GFLOPs, transcribed from the torchvision model documentation (table "Classification",
https://pytorch.org/vision/stable/models.html#classification; IMAGENET1K_V1 weights
unless noted). One task (``imagenet``); size = parameters x 4 bytes (FP32); latency per
hardware class derived from GFLOPs: ``p50 = overhead + GFLOPs / (effective GFLOP/s)``,
``p95 = 1.3 x p50`` with edge-arm 25 GFLOP/s + 2 ms, regional-x86 150 GFLOP/s + 1 ms,
cloud-gpu 4000 GFLOP/s + 1.5 ms.

What is reported
----------------
For each instance: triples kept after pruning, aggregates (classes after merging
equivalent ones), variables and rows of the PuLP model after the exact reductions,
problem-build time (pure arrays), model build time (aggregation, reductions, PuLP model,
hand-over to the solver), solve time (HiGHS), read-back time (solution into PuLP and
back to shares), the solver's status,
objective, best bound and proven gap, the share of build in the total time, and every
heuristic's cost ratio to the ILP's best bound (1.0 = provably optimal).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from idn.catalog import Catalog, parse_catalog  # noqa: E402
from idn.demand import Demand, parse_demand  # noqa: E402
from idn.placement.backends import SolverOptions
from idn.placement.baselines import greedy, lp_round, repository_only, smallest  # noqa: E402
from idn.placement.ilp import solve_ilp  # noqa: E402
from idn.placement.problem import PlacementOptions, build_problem  # noqa: E402
from idn.placement.solve import score  # noqa: E402
from idn.placement.synthetic import catalog_doc  # noqa: E402
from idn.topology import Topology, parse_topology  # noqa: E402

# name, top-1 (%), parameters (M), GFLOPs  -- torchvision docs, "Classification" table
IMAGENET = [
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
]
HARDWARE = {"edge-arm": (25.0, 2.0), "regional-x86": (150.0, 1.0), "cloud-gpu": (4000.0, 1.5)}
TIER_HW = {"edge": "edge-arm", "regional": "regional-x86", "cloud": "cloud-gpu"}
TIER_NODE = {  # mem_mb, cores, price
    "cloud": (65536, 8, 1.0), "regional": (4096, 4, 2.0), "edge": (256, 1, 4.0)}

SIZES: dict[str, dict[str, Any]] = {
    "s": {"kind": "tree", "nodes": 10, "regionals": 2, "variants": 10, "classes": 30},
    "geant2012": {"kind": "topohub", "key": "topozoo/Geant2012", "variants": 32, "classes": 300},
    "m": {"kind": "tree", "nodes": 37, "regionals": 4, "variants": 32, "classes": 300},
    "l": {"kind": "tree", "nodes": 100, "regionals": 9, "variants": 40, "classes": 1000},
    "xl": {"kind": "tree", "nodes": 1000, "regionals": 30, "variants": 50, "classes": 10000},
}
# SLO levels: latency = round trip to the repository + a slack; accuracy = a quantile of
# the catalog's top-1, so that every class is servable at least at the repository.
SLO_SLACK_MS = (None, 5.0, 15.0, 40.0)
SLO_ACC_QUANTILE = (None, 0.25, 0.5, 0.75)


def imagenet_catalog(n_variants: int) -> Catalog:
    """The first ``n_variants`` classifiers of the table (cheapest first), profiled per tier."""
    vs = []
    for name, top1, params_m, gflops in IMAGENET[:n_variants]:
        lat = {}
        for hw, (gflops_s, overhead) in HARDWARE.items():
            p50 = overhead + 1000.0 * gflops / gflops_s
            lat[hw] = {"single_thread": {1: {"p50_ms": round(p50, 4), "p95_ms": round(1.3 * p50, 4)}}}
        vs.append((name, {"file": f"{name}.onnx", "sha256": "0" * 64, "bytes": int(params_m * 4e6),
                          "parameters": int(params_m * 1e6), "flops_per_sample": gflops * 1e9,
                          "accuracy": {"top1": top1 / 100.0, "split": "imagenet-val (published)"},
                          "latency": lat}))
    doc = catalog_doc({"imagenet": []}, hw=tuple(HARDWARE))
    doc["tasks"]["imagenet"]["variants"] = dict(vs)
    return parse_catalog(doc, "<imagenet catalog>", verify_hashes=False)


def _node(nid: str, tier: str, k: int, parent: str | None = None, slowdown: float = 1.0) -> dict[str, Any]:
    mem, cores, price = TIER_NODE[tier]
    d: dict[str, Any] = {"id": nid, "tier": tier, "address": f"10.{k // 65536}.{k // 256 % 256}.{k % 256}:8001",
                         "mem_mb": mem, "cores": cores, "price": price, "hardware_class": TIER_HW[tier],
                         "slowdown": slowdown}
    if parent:
        d["parent"] = parent
    if tier == "cloud":
        d["repository"] = True
    return d


def tree_topology(n_nodes: int, n_regionals: int, seed: int) -> Topology:
    rng = random.Random(seed)
    nodes = [_node("cloud", "cloud", 1)]
    links = []
    regs = [f"reg-{r}" for r in range(n_regionals)]
    for i, r in enumerate(regs):
        nodes.append(_node(r, "regional", 2 + i, "cloud"))
        links.append({"a": r, "b": "cloud", "delay_ms": round(rng.uniform(10, 40), 2)})
    for e in range(n_nodes - 1 - n_regionals):
        r = regs[e % n_regionals]
        mem = rng.choice((128, 256, 512))
        node = _node(f"edge-{e}", "edge", 2 + n_regionals + e, r, slowdown=round(rng.uniform(1.0, 2.0), 2))
        node["mem_mb"] = mem
        nodes.append(node)
        links.append({"a": f"edge-{e}", "b": r, "delay_ms": round(rng.uniform(2, 15), 2)})
    return parse_topology({"nodes": nodes, "links": links}, f"<tree {n_nodes}>")


def topohub_topology(key: str) -> tuple[Topology, dict[str, float]]:
    """A real topology from topohub and each node's share of the demand matrix."""
    import topohub  # optional `bench` extra

    g = topohub.get(key)
    ids = {str(n["id"]): f"n{n['id']}-{n.get('name', '')}".replace(" ", "_") for n in g["nodes"]}
    deg: dict[str, int] = {i: 0 for i in ids}
    for e in g["edges"]:
        deg[str(e["source"])] += 1
        deg[str(e["target"])] += 1
    repo = max(ids, key=lambda i: (deg[i], -int(i)))
    nodes = []
    for k, i in enumerate(ids):
        tier = "cloud" if i == repo else ("regional" if deg[i] >= 3 else "edge")
        nodes.append(_node(ids[i], tier, k + 1))
    links, seen = [], set()
    for e in g["edges"]:
        a, b = ids[str(e["source"])], ids[str(e["target"])]
        if a == b or frozenset((a, b)) in seen:
            continue
        seen.add(frozenset((a, b)))
        links.append({"a": a, "b": b, "delay_ms": round(float(e.get("dist", 100.0)) / 200.0 + 0.1, 3)})
    weight = {v: 0.0 for v in ids.values()}
    for src, row in (g["graph"].get("demands") or {}).items():
        weight[ids[str(src)]] += sum(float(x) for x in row.values())
    if not any(weight.values()):
        weight = {v: 1.0 for v in weight}
    return parse_topology({"nodes": nodes, "links": links}, f"<topohub {key}>"), weight


def demand_for(topo: Topology, cat: Catalog, n_classes: int, seed: int,
               weight: dict[str, float] | None = None) -> Demand:
    """Classes (ingress, SLO) over non-repository nodes; Zipf-like rates (or demand-matrix weights)."""
    rng = random.Random(seed)
    ingress = [n.id for n in topo.nodes.values() if not n.repository]
    accs = sorted(v.accuracy for v in cat.variants.values())
    acc_levels = [None if q is None else round(accs[int(q * (len(accs) - 1))], 4) for q in SLO_ACC_QUANTILE]
    combos = [(slack, acc) for slack in SLO_SLACK_MS for acc in acc_levels]
    per = max(1, math.ceil(n_classes / len(ingress)))
    total_w = sum((weight or {}).get(n, 1.0) for n in ingress)
    rows = []
    for n in ingress:
        node_rate = 40.0 * len(ingress) * (weight or {}).get(n, 1.0) / total_w
        rtt = 2 * topo.path_delays(n)[-1][1]
        for k, (slack, acc) in enumerate(rng.sample(combos, min(per, len(combos)))):
            if len(rows) >= n_classes:
                break
            row: dict[str, Any] = {"ingress": n, "task": "imagenet",
                                   "rate": round(max(0.05, node_rate / (k + 1) / 2.0), 3)}
            if slack is not None:
                row["max_latency_ms"] = round(rtt + slack, 2)
            if acc is not None:
                row["min_accuracy"] = acc
            rows.append(row)
    return parse_demand({"classes": rows}, "<benchmark demand>", topo, cat)


def make_instance(size: str, seed: int = 0) -> tuple[Topology, Catalog, Demand]:
    spec = SIZES[size]
    cat = imagenet_catalog(spec["variants"])
    if spec["kind"] == "topohub":
        topo, weight = topohub_topology(spec["key"])
        return topo, cat, demand_for(topo, cat, spec["classes"], seed, weight)
    topo = tree_topology(spec["nodes"], spec["regionals"], seed)
    return topo, cat, demand_for(topo, cat, spec["classes"], seed)


def run(size: str, time_limit: float, gap: float | None, heuristics: bool, seed: int = 0,
        alpha: float = 200.0, repeat: int = 1) -> dict[str, Any]:
    """One size: problem build + ILP ``repeat`` times (the fastest end-to-end run is reported), then heuristics."""
    spec = SIZES[size]
    try:
        topo, cat, dem = make_instance(size, seed)
    except ImportError as e:
        return {"size": size, "skipped": f"topohub not installed ({e}); pip install -e '.[bench]'"}
    opts = PlacementOptions(alpha=alpha, rho=0.8)
    best = None
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        prob = build_problem(topo, cat, dem, opts)
        problem_s = time.perf_counter() - t0
        sol = solve_ilp(prob, SolverOptions("highs", time_limit=time_limit, gap=gap))
        total = problem_s + sol.build_s + sol.solve_s + sol.readback_s
        if best is None or total < best[0]:
            best = (total, problem_s, prob, sol)
    total, problem_s, prob, sol = best
    row: dict[str, Any] = {"size": size, "nodes": len(topo.nodes), "variants": spec["variants"],
                           "classes": len(dem.classes), "triples": prob.n_triples, "pairs": prob.n_pairs,
                           "unservable": len(prob.unservable), "problem_s": round(problem_s, 4), "repeat": repeat}
    o = sol.facts.options
    row.update({"aggregates": o.get("aggregates"), "model_vars": o.get("variables"), "model_rows": o.get("rows"),
                "model_s": round(sol.build_s, 4), "solve_s": round(sol.solve_s, 4),
                "readback_s": round(sol.readback_s, 4), "total_s": round(total, 4),
                "build_share": round((problem_s + sol.build_s) / total, 3), "status": sol.facts.status,
                "objective": sol.facts.objective, "bound": sol.facts.bound, "gap": sol.facts.gap,
                "solver_message": sol.facts.options.get("solver_message")})
    bound = sol.facts.bound
    if heuristics and bound:
        ref = repository_only(prob, topo, cat)
        _, ref_ev = score(prob, ref, topo, cat, dem)
        row["repository_ratio"] = round(ref_ev.objective / bound, 4)
        row["repository_violations"] = len(ref_ev.violations)
        if sol.facts.objective:
            row["gain_vs_repository"] = round(1 - sol.facts.objective / ref_ev.objective, 4)
        for name, h in (("smallest", smallest), ("greedy", greedy), ("lp_round", lp_round)):
            t = time.perf_counter()
            hs = h(prob, SolverOptions("highs", time_limit=time_limit))
            row[f"{name}_s"] = round(time.perf_counter() - t, 3)
            row[f"{name}_ratio"] = round(hs.facts.objective / bound, 4) if hs.facts.objective else hs.facts.status
    return row


COLUMNS = [("size", "size"), ("nodes", "N"), ("variants", "V"), ("classes", "R"), ("triples", "triples"),
           ("aggregates", "aggr"), ("model_vars", "vars"), ("model_rows", "rows"),
           ("problem_s", "prob s"), ("model_s", "model s"), ("solve_s", "solve s"), ("readback_s", "read s"),
           ("build_share", "build%"),
           ("status", "status"), ("gap", "gap"), ("gain_vs_repository", "gain"), ("repository_ratio", "repo/LB"),
           ("smallest_ratio", "small/LB"), ("greedy_ratio", "greedy/LB"), ("lp_round_ratio", "lpround/LB")]


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(h for _, h in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [head, sep]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['size']} | skipped: {r['skipped']} |")
            continue
        lines.append("| " + " | ".join(fmt(r.get(k)) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="s,geant2012,m,l", help=f"comma list of {', '.join(SIZES)}")
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument("--gap", type=float, default=None, help="relative MIP gap to stop at (default: HiGHS' 1e-4)")
    ap.add_argument("--no-heuristics", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=200.0, help="ms per unit of inaccuracy (200: 1 point = 2 ms)")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    ap.add_argument("--repeat", type=int, default=3,
                    help="ILP runs per size; the fastest end-to-end run is reported (timings on a shared machine)")
    a = ap.parse_args()
    # Warm-up, untimed: imports and first calls (numpy, PuLP, highspy) would otherwise be
    # charged to whichever size runs first.
    run("s", a.time_limit, None, False, a.seed, a.alpha)
    rows = []
    for size in a.sizes.split(","):
        row = run(size.strip(), a.time_limit, a.gap, not a.no_heuristics, a.seed, a.alpha, a.repeat)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(table(rows))
    if a.out:
        a.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
