"""Placement solver benchmark: build time, solve time, proven gap, heuristic cost ratios.

Usage (2 shared cores: run it niced)::

    nice -n 10 .venv/bin/python benchmarks/solver.py --out benchmarks/solver-results.json
    nice -n 10 .venv/bin/python benchmarks/solver.py --sizes xl --time-limit 600 --gap 0.02 --repeat 1
    nice -n 10 .venv/bin/python benchmarks/solver.py --families default --instances 50 \
        --out benchmarks/solver-families.json

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

Families (``--families``)
-------------------------
Many 100-node instances per family (``--instances``, seeds 0..n-1), drawn from realistic
parameters by ``idn/placement/synthetic.py`` (``FAMILIES``; parameters, sources and why
they are realistic in ``benchmarks/README-solver.md``): the zoo's imagenet task plus the
table below, edges 5-20x slower than the cloud, 150 KB images over 10-100 Mb/s edge
uplinks, edge memory for 1-3 variants, SLO mixes, and (budget families) a budget of
30-70% of the unconstrained optimum's deployment cost. Per instance the ILP runs to a
proven 0.1% gap (``--family-gap``; timed end to end from the topology, catalog and
demand: wall and CPU seconds) and every heuristic runs, ``greedy-alone`` and
``smallest-alone`` also without the LP-guided completion; every plan is scored by the
evaluator (a plan with any violation counts as infeasible) and divided by the ILP's best
bound. Per family: ILP status, gap and time; each method's cost / bound (median, p90,
worst over the instances it solved) and its infeasible count; the ILP's saving over the
best heuristic of each instance. Rows and summaries go to ``--out`` (JSON).

What is reported (sizes)
------------------------
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
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from idn.catalog import Catalog, Task, parse_catalog  # noqa: E402
from idn.demand import Demand, parse_demand  # noqa: E402
from idn.placement.backends import SolverOptions
from idn.placement.baselines import greedy, lp_round, repository_only, smallest  # noqa: E402
from idn.placement.ilp import solve_ilp  # noqa: E402
from idn.placement.problem import PlacementOptions, build_problem  # noqa: E402
from idn.placement.solve import score  # noqa: E402
from idn.placement.synthetic import (  # noqa: E402
    DEFAULT_FAMILIES,
    FAMILIES,
    IMAGENET_TABLE,
    FamilyInstance,
    calibrate,
    catalog_doc,
    family_instance,
    zoo_imagenet,
)
from idn.topology import Topology, parse_topology  # noqa: E402

IMAGENET = IMAGENET_TABLE  # name, top-1 (%), parameters (M), GFLOPs (torchvision docs)
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


# ----------------------------------------------------------------------------------------
# Families (issue #8 item 4): many 100-node instances per family, drawn from realistic
# parameters (idn/placement/synthetic.py: FAMILIES; README-solver.md says why each is realistic)
# ----------------------------------------------------------------------------------------

# name, run(problem, solver options); "-alone": the rule without the LP-guided completion
FAMILY_METHODS: tuple[tuple[str, Any], ...] = (
    ("smallest", lambda p, o: smallest(p, o)),
    ("smallest-alone", lambda p, o: smallest(p, o, lp_completion=False)),
    ("greedy", lambda p, o: greedy(p, o)),
    ("greedy-alone", lambda p, o: greedy(p, o, lp_completion=False)),
    ("lp-round", lambda p, o: lp_round(p, o)),
)
# the methods whose best plan the ILP is compared with ("-alone" plans are never better:
# the completion only runs where the rule alone finds none)
COMPARED = ("repository", "smallest", "greedy", "lp-round")


def unconstrained_deployment(inst: FamilyInstance, time_limit: float) -> float:
    """Deployment cost (price x MiB) of the ILP's plan without a budget: what a family's budget is a fraction of."""
    prob = build_problem(inst.topology, inst.catalog, inst.demand, replace(inst.options, budget=None))
    sol = solve_ilp(prob, SolverOptions("highs", time_limit=time_limit))
    if not sol.feasible:
        raise RuntimeError(f"{inst.family.name} #{inst.seed}: no unconstrained plan ({sol.facts.status})")
    _, ev = score(prob, sol, inst.topology, inst.catalog, inst.demand)
    return ev.deployment_cost


def _plan_facts(prob: Any, sol: Any, inst: FamilyInstance) -> dict[str, Any]:
    """A method's plan, scored by the one evaluator: objective, violations, deployment (and the share of
    the budget it uses), edge memory used and edges used; ``lp_bound`` where the method has one."""
    extra = {} if sol.facts.bound is None or sol.method in ("highs", "cbc") else {"lp_bound": sol.facts.bound}
    if not sol.feasible:
        return {"status": sol.facts.status, "objective": None,
                "why": str(sol.facts.options.get("solver_message", ""))[:240], **extra}
    _, ev = score(prob, sol, inst.topology, inst.catalog, inst.demand)
    edges = [n for nid, n in ev.nodes.items() if inst.topology.nodes[nid].tier == "edge"]
    out = {"status": sol.facts.status, "objective": ev.objective, "violations": len(ev.violations),
           "deployment": round(ev.deployment_cost, 3),
           "edge_mem_used": round(sum(n.mem_mb for n in edges) / max(sum(n.mem_cap_mb for n in edges), 1e-9), 4),
           "edges_used": sum(1 for n in edges if n.variants), **extra}
    if inst.options.budget:
        out["budget_used"] = round(ev.deployment_cost / inst.options.budget, 4)
    if ev.violations:
        out["first_violation"] = ev.violations[0][:240]
    return out


def run_family_instance(name: str, seed: int, time_limit: float, gap: float, zoo: Task | None) -> dict[str, Any]:
    """One instance: generate, solve the ILP (timed: problem build + model + solve + read-back), run every
    heuristic, score every plan with the evaluator."""
    fam = FAMILIES[name]
    inst = family_instance(fam, seed, zoo, budget_of=lambda i: unconstrained_deployment(i, time_limit))
    dem, topo, cat = inst.demand, inst.topology, inst.catalog
    t0, c0 = time.perf_counter(), time.process_time()
    prob = build_problem(topo, cat, dem, inst.options)
    sol = solve_ilp(prob, SolverOptions("highs", time_limit=time_limit, gap=gap))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    o = sol.facts.options
    row: dict[str, Any] = {
        "family": name, "seed": seed, "nodes": len(topo.nodes), "classes": len(dem.classes),
        "rate": round(dem.total_rate, 3), "triples": prob.n_triples, "aggregates": o.get("aggregates"),
        "model_vars": o.get("variables"), "model_rows": o.get("rows"), "budget": inst.options.budget,
        "load_avg": round(os.getloadavg()[0], 2),
        **inst.facts, "calibration": inst.calibration.source,
        "ilp": {"status": sol.facts.status, "gap": sol.facts.gap, "bound": sol.facts.bound,
                "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), **_plan_facts(prob, sol, inst)}}
    bound = sol.facts.bound
    t = time.perf_counter()
    ref = repository_only(prob, topo, cat)
    row["repository"] = {"wall_s": round(time.perf_counter() - t, 3), **_plan_facts(prob, ref, inst)}
    if row["repository"].get("violations"):  # everything at the repository breaks a cap or an SLO: no plan
        row["repository"]["status"] = "infeasible"
    for mname, method in FAMILY_METHODS:
        t = time.perf_counter()
        hs = method(prob, SolverOptions("highs", time_limit=time_limit))
        row[mname] = {"wall_s": round(time.perf_counter() - t, 3), **_plan_facts(prob, hs, inst)}
    for mname in ("repository",) + tuple(m for m, _ in FAMILY_METHODS):
        r = row[mname]
        ok = r.get("objective") is not None and not r.get("violations")
        r["ratio"] = round(r["objective"] / bound, 6) if ok and bound else None
    feasible = {m: row[m]["objective"] for m in COMPARED if row[m].get("ratio") is not None}
    ilp_obj = row["ilp"].get("objective")
    if feasible and ilp_obj is not None:
        best = min(feasible, key=lambda m: feasible[m])
        row["best_heuristic"] = best
        row["ilp_saving"] = round(1 - ilp_obj / feasible[best], 6)
        row["ilp_saving_ms"] = round((feasible[best] - ilp_obj) / dem.total_rate, 4)  # per request
        row["best_heuristic_ratio"] = row[best]["ratio"]  # the most any method could save: best / bound
    return row


def _pct(xs: list[float], q: float) -> float:
    """Nearest-rank quantile (q=0.5 median, 0.9 p90, 1 worst)."""
    xs = sorted(xs)
    return xs[max(0, math.ceil(q * len(xs)) - 1)]


def family_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per family: ILP status/gap/time, each method's cost / bound over the instances it solved."""
    ilp = [r["ilp"] for r in rows]
    out: dict[str, Any] = {
        "family": rows[0]["family"], "instances": len(rows), "nodes": sorted({r["nodes"] for r in rows}),
        "classes_median": _pct([r["classes"] for r in rows], 0.5),
        "ilp_status": {s: sum(1 for i in ilp if i["status"] == s) for s in sorted({i["status"] for i in ilp})},
        "ilp_gap_max": max((i["gap"] for i in ilp if i["gap"] is not None), default=None),
        "ilp_within_0.1pct": sum(1 for i in ilp if i["gap"] is not None and i["gap"] <= 1e-3),
        "ilp_wall_s_median": _pct([i["wall_s"] for i in ilp], 0.5), "ilp_wall_s_max": max(i["wall_s"] for i in ilp),
        "ilp_cpu_s_median": _pct([i["cpu_s"] for i in ilp], 0.5), "ilp_cpu_s_max": max(i["cpu_s"] for i in ilp),
        "ilp_violations": sum(i.get("violations") or 0 for i in ilp),
        "raised_unservable": sum(r.get("raised_unservable", 0) for r in rows),
        "raised_capacity": sum(r.get("raised_capacity", 0) for r in rows),
        "ilp_edge_mem_used_median": _pct([i.get("edge_mem_used", 0.0) for i in ilp], 0.5),
    }
    for m in ("repository",) + tuple(m for m, _ in FAMILY_METHODS):
        ratios = [r[m]["ratio"] for r in rows if r[m].get("ratio") is not None]
        out[m] = {"solved": len(ratios), "infeasible": len(rows) - len(ratios),
                  "median": _pct(ratios, 0.5) if ratios else None, "p90": _pct(ratios, 0.9) if ratios else None,
                  "worst": max(ratios) if ratios else None,
                  "wall_s_median": _pct([r[m]["wall_s"] for r in rows], 0.5)}
    sav = [r["ilp_saving"] for r in rows if "ilp_saving" in r]
    ms = [r["ilp_saving_ms"] for r in rows if "ilp_saving_ms" in r]
    best = [r["best_heuristic_ratio"] for r in rows if "best_heuristic_ratio" in r]
    out["ilp_saving"] = {"median": _pct(sav, 0.5), "p90": _pct(sav, 0.9), "max": max(sav), "min": min(sav),
                         "ms_per_request_median": _pct(ms, 0.5), "best_over_bound_median": _pct(best, 0.5),
                         "best_over_bound_max": max(best)} if sav else None
    lp = [1 - r["lp-round"]["lp_bound"] / r["ilp"]["bound"] for r in rows
          if r["lp-round"].get("lp_bound") and r["ilp"].get("bound")]
    out["lp_relaxation_gap"] = {"median": _pct(lp, 0.5), "max": max(lp)} if lp else None
    for m in ("greedy", "lp-round"):
        used = [r[m]["budget_used"] for r in rows if "budget_used" in r[m]]
        if used:
            out[m]["budget_used_median"] = _pct(used, 0.5)
    used = [r["ilp"]["budget_used"] for r in rows if "budget_used" in r["ilp"]]
    if used:
        out["ilp_budget_used_median"] = _pct(used, 0.5)
    out["load_avg_median"] = _pct([r["load_avg"] for r in rows], 0.5)
    out["best_heuristic"] = {m: sum(1 for r in rows if r.get("best_heuristic") == m) for m in COMPARED}
    if any(r.get("budget_fraction") for r in rows):
        out["budget_fraction"] = [min(r["budget_fraction"] for r in rows), max(r["budget_fraction"] for r in rows)]
    return out


def _r(x: float | None, nd: int = 4) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def family_tables(summaries: list[dict[str, Any]]) -> str:
    """Two Markdown tables: the ILP per family; every method's cost / bound per family."""
    lines = ["| family | instances | nodes | classes (median) | ILP status | within 0.1% | worst gap "
             "| ILP wall s median / max | ILP CPU s median / max | ILP saving over best heuristic: median / p90 / max "
             "| ms per request (median) | best heuristic / bound: median / max |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        st = ", ".join(f"{k} {v}" for k, v in s["ilp_status"].items())
        sv = s["ilp_saving"] or {}
        lines.append(f"| {s['family']} | {s['instances']} | {','.join(map(str, s['nodes']))} | {s['classes_median']} "
                     f"| {st} | {s['ilp_within_0.1pct']}/{s['instances']} | {_r(s['ilp_gap_max'], 5)} "
                     f"| {s['ilp_wall_s_median']:.2f} / {s['ilp_wall_s_max']:.2f} "
                     f"| {s['ilp_cpu_s_median']:.2f} / {s['ilp_cpu_s_max']:.2f} "
                     f"| {_pct_s(sv.get('median'))} / {_pct_s(sv.get('p90'))} / {_pct_s(sv.get('max'))} "
                     f"| {_r(sv.get('ms_per_request_median'), 2)} "
                     f"| {_r(sv.get('best_over_bound_median'))} / {_r(sv.get('best_over_bound_max'))} |")
    lines += ["", "| family | method | cost / bound: median | p90 | worst | infeasible | s (median) |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for s in summaries:
        for m in ("repository",) + tuple(m for m, _ in FAMILY_METHODS):
            d = s[m]
            lines.append(f"| {s['family']} | {m} | {_r(d['median'])} | {_r(d['p90'])} | {_r(d['worst'])} "
                         f"| {d['infeasible']}/{s['instances']} | {d['wall_s_median']:.2f} |")
    return "\n".join(lines)


def _pct_s(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def families_json(summaries: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """Summaries indented, then one instance per line (compact: 200 instances are a few hundred KB)."""
    head = json.dumps({"summaries": summaries}, indent=1)[:-2]
    body = ",\n".join(json.dumps(r, separators=(",", ":")) for r in rows)
    return f'{head},\n "instances": [\n{body}\n ]\n}}\n'


def run_families(names: list[str], instances: int, time_limit: float, gap: float,
                 out: Path | None, first_seed: int = 0) -> list[dict[str, Any]]:
    zoo = zoo_imagenet()
    print(f"catalog: {'zoo imagenet task + ' if zoo else ''}cited ImageNet table "
          f"({calibrate(zoo).source} latency calibration)", file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    summaries = []
    for name in names:
        fam_rows = []
        for seed in range(first_seed, first_seed + instances):
            row = run_family_instance(name, seed, time_limit, gap, zoo)
            fam_rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        rows += fam_rows
        summaries.append(family_summary(fam_rows))
        if out:
            out.write_text(families_json(summaries, rows))
    print(family_tables(summaries))
    return summaries


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
    ap.add_argument("--families", default=None,
                    help=f"run instance families instead of sizes: comma list of {', '.join(FAMILIES)} "
                         f"(or 'default': {','.join(DEFAULT_FAMILIES)})")
    ap.add_argument("--instances", type=int, default=50, help="instances per family (seeds 0..n-1)")
    ap.add_argument("--family-gap", type=float, default=1e-3,
                    help="relative MIP gap the ILP stops at on family instances (default 0.1%%)")
    a = ap.parse_args()
    if a.families:
        names = list(DEFAULT_FAMILIES) if a.families == "default" else [f.strip() for f in a.families.split(",")]
        unknown = [n for n in names if n not in FAMILIES]
        if unknown:
            ap.error(f"unknown family {', '.join(unknown)}; use {', '.join(FAMILIES)}")
        run("s", a.time_limit, None, False, a.seed, a.alpha)  # warm-up, untimed
        run_families(names, a.instances, min(a.time_limit, 60.0), a.family_gap, a.out, a.seed)
        return
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
