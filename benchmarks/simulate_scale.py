"""Speed of `idn simulate` at 100 nodes, and the policies on a large generated instance.

The instance is the solver benchmark's size ``l`` (``benchmarks/solver.py``: a 3-tier tree
of 100 nodes, the 40 cheapest public ImageNet classifiers, 1,000 request classes with
SLOs, alpha = 200) turned into a trace: every class follows its own compressed day
(random phase); a third of them are silent for half of it, so classes come and go.

    nice -n 10 .venv/bin/python benchmarks/simulate_scale.py --periods 2000 --ilp-periods 40

Two runs: the policies without an ILP per period (static, infida, infida-coupled) over
``--periods`` periods without the bound, then every policy with the bound over
``--ilp-periods`` periods. Reports wall and CPU time (the machine is shared: the load
average is recorded too). Writes results/simulate_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from solver import make_instance  # noqa: E402

from idn.demand import demand_document  # noqa: E402
from idn.online.infida import InfidaOptions  # noqa: E402
from idn.placement.problem import PlacementOptions  # noqa: E402
from idn.simulate import SimOptions, Simulator  # noqa: E402
from idn.trace import parse_trace  # noqa: E402

ALPHA = 200.0  # the solver benchmark's


def instance(periods: int, seed: int = 0, gated: float = 1 / 3, period_s: float = 60.0, day_periods: int = 24):
    topo, cat, dem = make_instance("l", seed)
    rng = random.Random(seed)
    rows = demand_document(dem)["classes"]
    day = day_periods * period_s
    for row in rows:
        base, phase = row.pop("rate"), rng.uniform(0, 6.283)
        wave = f"sin(2*pi*t/{day:g} + {phase:.3f})"
        row["rate"] = f"{base} * max(0, {wave})" if rng.random() < gated else f"{base} * (1 + 0.8*{wave})"
    trace = parse_trace({"name": "l-diurnal", "duration_s": periods * period_s, "period_s": period_s,
                         "classes": rows}, "<benchmark trace>", topo, cat)
    return topo, cat, trace


def run(policies: list[str], periods: int, seed: int, bound: bool, infida: InfidaOptions) -> dict:
    topo, cat, trace = instance(periods, seed)
    opts = SimOptions(seed=seed, placement=PlacementOptions(alpha=ALPHA), infida=infida)
    t0, c0 = time.perf_counter(), time.process_time()
    res = Simulator(topo, cat, trace, opts).run(policies, bound=bound)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"policies": list(res.policies), "periods": periods, "nodes": len(topo.nodes),
           "classes": len(trace.classes), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "periods_per_s": round(periods / wall, 3), "periods_per_cpu_s": round(periods / cpu, 3),
           "load_average": os.getloadavg(), "timing": res.timing,
           "summary": {n: p.summary for n, p in res.policies.items()}}
    print(json.dumps({k: out[k] for k in ("policies", "periods", "wall_s", "cpu_s", "periods_per_s",
                                          "periods_per_cpu_s", "load_average")}), flush=True)
    print("  per policy s:", res.timing["per_policy_s"], "cache:", res.timing["problem_cache"], flush=True)
    for n, p in res.policies.items():
        s = p.summary
        print(f"  {n:13s} gain {s['gain']:.4f} of hindsight {s.get('gain_of_hindsight', 1) or 0:.3f} "
              f"periods with violations {s['periods_with_violations']} reconfigurations {s['reconfigurations']} "
              f"MiB moved {s['bytes_moved'] / 2**20:.1f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--periods", type=int, default=2000, help="periods for static and infida (no bound)")
    ap.add_argument("--ilp-periods", type=int, default=40, help="periods for every policy with the bound")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eta", type=float, default=InfidaOptions().eta)
    ap.add_argument("--rounding", default=InfidaOptions().rounding)
    ap.add_argument("--out", default="results/simulate_scale.json")
    a = ap.parse_args()
    inf = InfidaOptions(eta=a.eta, rounding=a.rounding, seed=a.seed)
    rows = []
    if a.periods:
        rows.append(run(["static", "infida", "infida-coupled"], a.periods, a.seed, False, inf))
    if a.ilp_periods:
        rows.append(run(["static", "periodic-ilp", "periodic-ilp-moves", "greedy", "infida", "infida-coupled",
                         "hindsight"], a.ilp_periods,
                        a.seed, True, inf))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
