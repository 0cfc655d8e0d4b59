"""The cost of moving models: by hand, in the ILP against an enumeration, and its effect on plans."""

from __future__ import annotations

import itertools
import random

import pytest

from idn.catalog import parse_catalog
from idn.demand import parse_demand
from idn.latency import LatencyModel
from idn.placement import PlacementOptions, solve
from idn.placement.evaluate import evaluate
from idn.placement.moves import Moves, load_time_ms, move_time
from idn.placement.synthetic import catalog_doc, variant_doc
from tests.test_latency import line

SIZES = {"small": 10 << 20, "mid": 40 << 20, "big": 100 << 20}


def catalog(load_ms=None):
    """img: small/mid/big, 4/15/40 ms, 70/76/80 %; load times per variant on the class (None: untimed)."""
    load_ms = {"small": 100.0, "mid": 400.0, "big": 900.0} if load_ms is None else load_ms
    vs = [variant_doc("small", SIZES["small"], 0.70, 4.0, 5.0), variant_doc("mid", SIZES["mid"], 0.76, 15.0, 18.0),
          variant_doc("big", SIZES["big"], 0.80, 40.0, 50.0)]
    for name, doc in vs:
        if load_ms.get(name) is not None:
            doc["load_ms"] = {"cpu-x86_64-2c": load_ms[name]}
    doc = catalog_doc({"img": vs})
    doc["tasks"]["img"]["inputs"] = [{"name": "x", "datatype": "UINT8", "shape": [-1, 224, 224, 3]}]
    doc["tasks"]["img"]["outputs"] = [{"name": "p", "datatype": "FP32", "shape": [-1, 1000]}]
    return parse_catalog(doc, verify_hashes=False)


def test_move_time_by_hand_and_the_size_scaled_fallback():
    cat, topo = catalog(), line(bw_edge=100.0, bw_core=1000.0)
    m = LatencyModel(topo, cat)
    mt = move_time(m, "edge", cat.variant("mid"))
    bits = SIZES["mid"] * 8
    assert mt.load_ms == 400.0 and mt.source == "profiled"
    assert mt.transfer_ms == pytest.approx(bits / 1e6 + bits / 1e5)  # 1 Gb/s core + 100 Mb/s edge link, in ms
    assert move_time(m, "cloud", cat.variant("mid")).transfer_ms == 0.0  # the repository has it
    untimed = catalog({"small": 100.0, "mid": None, "big": 900.0})
    ms, source = load_time_ms(untimed.variant("mid"), "cpu-x86_64-2c", untimed)
    assert source == "load-scaled:small" and ms == pytest.approx(400.0)  # 100 ms x 40/10 MiB
    assert load_time_ms(cat.variant("mid"), "other-hw", cat) == (0.0, "none-profiled")


def _enumerate(topo, cat, dem, alpha, moves):
    """Optimum over every placement subset; each class takes its cheapest placed target (caps loose)."""
    lm = LatencyModel(topo, cat)
    path = {"edge": ["edge", "reg", "cloud"], "reg": ["reg", "cloud"], "cloud": ["cloud"]}
    pairs = [(n, v) for n in topo.nodes for v in cat.tasks["img"].variants.values()
             if v.bytes / 2 ** 20 <= topo.nodes[n].mem_mb]
    best = float("inf")
    for bits in itertools.product((0, 1), repeat=len(pairs)):
        placed = [p for p, b in zip(pairs, bits) if b]
        mem: dict[str, float] = {}
        for n, v in placed:
            mem[n] = mem.get(n, 0) + v.bytes / 2 ** 20
        if any(mem[n] > topo.nodes[n].mem_mb for n in mem):
            continue
        total, used = 0.0, set()
        for c in dem.classes:
            opts = [(lm.predict(c.ingress, n, v).latency_ms + alpha * (1 - v.accuracy), (n, v.name))
                    for n, v in placed if n in path[c.ingress]]
            if not opts:
                break
            cost, where = min(opts)
            total += c.rate * cost
            used.add(where)
        else:  # only placements that carry traffic are kept, so only they are moved in
            total += sum(moves.weight * move_time(lm, n, cat.variant(v)).ms for n, v in used
                         if not moves.placed(n, v))
            best = min(best, total)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_ilp_with_moves_matches_enumeration_and_the_evaluator(seed):
    rng = random.Random(seed)
    topo, cat = line(bw_edge=rng.choice([None, 50.0]), bw_core=1000.0), catalog()
    dem = parse_demand({"classes": [{"ingress": "edge", "task": "img", "rate": round(rng.uniform(1, 10), 2)},
                                    {"ingress": "reg", "task": "img", "rate": round(rng.uniform(1, 10), 2)}]},
                       "d.yaml", topo, cat)
    current = rng.choice([{"cloud": ["big"]}, {"edge": ["small"], "reg": ["mid"]}, {"reg": ["big"]}])
    moves = Moves.from_placements(current, weight=rng.choice([0.0, 0.01, 0.05, 1.0]))
    alpha = rng.choice([100.0, 500.0])
    opts = PlacementOptions(alpha=alpha, rho=1.0)
    out = solve(topo, cat, dem, opts, moves=moves)
    assert out.plan.solver.status == "optimal"
    exact = _enumerate(topo, cat, dem, alpha, moves)
    assert out.plan.solver.objective == pytest.approx(exact, rel=1e-9)
    ev = evaluate(out.plan, topo, cat, dem, opts, moves=moves)
    assert ev.objective + ev.move_cost == pytest.approx(exact, rel=1e-9)
    assert out.evaluation.move_cost == ev.move_cost


def test_a_heavy_move_weight_keeps_the_running_plan_a_light_one_moves():
    topo, cat = line(bw_edge=50.0, bw_core=1000.0), catalog()
    dem = parse_demand({"classes": [{"ingress": "edge", "task": "img", "rate": 5}]}, "d.yaml", topo, cat)
    opts = PlacementOptions(alpha=500.0, rho=1.0)
    free = solve(topo, cat, dem, opts).plan.placements
    current = {"cloud": ("big",)}
    assert free != current  # without moves the optimum is elsewhere
    assert solve(topo, cat, dem, opts, moves=Moves.from_placements(current, 0.0)).plan.placements == free
    kept = solve(topo, cat, dem, opts, moves=Moves.from_placements(current, 100.0))
    assert kept.plan.placements == current and kept.evaluation.moved == [] and kept.evaluation.move_cost == 0.0
    moved = solve(topo, cat, dem, opts, moves=Moves.from_placements(current, 0.001))
    assert moved.plan.placements == free and moved.evaluation.moved and moved.evaluation.move_ms > 900.0
