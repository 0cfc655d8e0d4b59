"""`idn demo --trace NAME`: a demand trace played live, static plan vs `idn control`, beside the simulator.

Issue 10 item 5. The simulator (:mod:`idn.simulate`) predicts, per trace period, what a
placement policy costs; this module checks that prediction against real nodes. It starts
the demo network (local node processes on loopback, emulation on: link delays, payload
transfer, slow edges), then replays the trace twice with ``loadgen``'s trace replay
(open-loop, non-homogeneous Poisson at the trace's rates as written):

1. **static**: the ILP on the first period's demand (``--static-on mean``: the trace's mean
   demand), applied once before the replay, never changed;
2. **control**: the same first plan, then a :class:`~idn.controller.Controller` stepping once
   per trace period, in step with the replay: it measures the ingresses (GetStats), runs
   the shared decision round (:func:`idn.control_round.decide_round`) and applies a new plan
   in three phases when that pays.

Time is compressed by ``speed`` (trace seconds per wall second): a 900 s trace at x12
replays in 75 s, so each 30 s trace period lasts 2.5 s of wall time. Rates are *not*
scaled (a period still carries the trace's req/s), so the plans, the compute caps and the
controller's measured rates are those the simulator sees. The controller's knobs are in
trace time (its ``interval_s`` is the trace period, so a move is amortised over one period
exactly as the simulator's ``control`` policy amortises it); only its clock is compressed.

Per period and per run it records the measured mean latency (client side, every OK
request sent in the period), accuracy (right answers on tasks whose accuracy is measured;
the catalog accuracy of the variant that answered on the others, as :mod:`idn.demo`
does), SLO violations (classes whose p95 latency or served accuracy misses their SLO:
the evaluator's per-class check, measured) and reconfigurations (placements added +
removed by the plans applied before the period; the prediction's ``plan_changes``, the
same count on the simulator's plans; its ``reconfigurations`` also count what the
repository loads on demand when the placements cannot serve a class), next to the simulator's prediction for
the same trace (policies ``static`` and ``control``, exact measurements off: Poisson
counts, as the controller measures). Output: a table, JSON and a time-series PNG.

Why they cannot agree exactly (said in the output too): a round reads the ingresses'
counters a little after the period boundary (the GetStats calls themselves, and a thread
that shares the GIL with the load generator), so it sees the first few ms of the next
period too and can react to a class one period earlier than the simulator does; the replay is one Poisson draw
and the simulator's measurement noise is another, so the controller can decide
differently in a period near a threshold; a live plan takes effect only once it is
solved and applied (a fraction of a compressed period late), the simulator's at the
period's start; the simulator serves each class by the best split over what is placed,
the live nodes by the plan's routes; and the predicted latency has no queueing, while the
machine running the nodes (2 shared cores here) adds CPU contention that grows with load.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from idn.catalog import Catalog, default_catalog_path, load_catalog
from idn.controller import Controller
from idn.demand import Demand
from idn.launcher import RUN_ROOT, start_network, stop_nodes
from idn.loadgen import ClassLoad, LoadOptions, TraceWindow, plan_trace_load, run_load
from idn.network import push_plan
from idn.placement import PlacementOptions, solve
from idn.plan import Plan
from idn.simulate import SimOptions, SimResult, Simulator
from idn.topology import Topology, load_topology
from idn.trace import Trace, load_trace

REPO = Path(__file__).resolve().parent.parent
TRACES = REPO / "deploy" / "traces"
DEMO_TOPOLOGY = REPO / "deploy" / "topologies" / "demo.yaml"
RUNS = ("static", "control")
QUIET_CPU = 0.8  # a period is "quiet" when the machine's CPU was at most this busy during it


def trace_path(name: str | Path) -> Path:
    """A trace by name (``flash-crowd`` -> deploy/traces/flash-crowd.yaml) or by path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return TRACES / f"{name}.yaml"


@dataclass(frozen=True)
class TraceDemoOptions:
    trace: Path
    topology: Path = DEMO_TOPOLOGY
    catalog: Path | None = None
    speed: float = 12.0              # trace seconds per wall second
    warmup_s: float = 1.0            # wall seconds of load at the first period's rates before counting
    seed: int = 0
    static_on: str = "first"         # first | mean: what the static plan is solved on
    placement: PlacementOptions = field(default_factory=PlacementOptions)
    min_gain: float = 0.05           # the controller's knobs (idn control's defaults)
    move_weight: float = 1.0
    hold_rounds: int = 1
    keep_idle: bool = True
    calibrate: bool = True           # rescale the catalog's profiles to this machine's speed first (idn.demo)
    run_dir: Path | None = None
    ready_timeout_s: float = 90.0
    timeout_s: float = 5.0           # per request
    control_timeout_s: float = 10.0  # the controller's per-call timeout: a node starved of CPU on this shared
                                     # box answers late, and the default 3 s would call it down (then re-plan)


@dataclass
class PeriodMeasure:
    index: int
    sent: int
    ok: int
    errors: int
    mean_latency_ms: float | None
    p95_latency_ms: float | None
    accuracy: float | None
    slo_violations: int              # classes missing their SLO in this period (p95 latency or accuracy)
    slo_miss_share: float | None     # share of OK requests of SLO classes that missed their SLO
    reconfigurations: int            # placements added + removed by plans applied for this period
    plan_version: int | None         # the plan the network ran at the period's start (as far as we applied)
    cpu_busy: float | None = None    # share of the machine's CPU time busy during the period (/proc/stat,
                                     # everything on the box: the nodes, the load generator and the rest)


@dataclass
class Round:
    """One controller round during the control run (what was measured, decided, applied, when)."""
    period: int          # the round that decides for this period (measured the one before)
    late_s: float        # wall seconds after the period's start the round finished
    rate: float
    applied: bool
    version: int | None
    reason: str
    moved: list[str]
    kept: list[str]
    solve_s: float | None
    apply_s: float | None
    changed: int = 0     # placements added + removed by the plan applied


@dataclass
class RunResult:
    name: str
    periods: list[PeriodMeasure]
    rounds: list[Round]
    wall_s: float
    load_avg: tuple[float, float, float]   # os.getloadavg() after the run: how busy the machine was


@dataclass
class TraceDemoResult:
    trace: str
    topology: str
    speed: float
    period_s: float
    period_wall_s: float
    periods: int
    offered: list[float]                        # trace req/s per period (mean)
    runs: dict[str, RunResult]
    predicted: dict[str, list[dict[str, Any]]]  # policy -> per period (the simulator's records)
    agreement: dict[str, dict[str, Any]]
    options: dict[str, Any]
    wall_s: float
    png: str | None = None
    speed_check: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict
        return asdict(self)


def plan_delta(before: Plan | None, after: Plan) -> int:
    """Placements added + removed going from ``before`` to ``after`` (what the simulator counts)."""
    old = {(n, v) for n, vs in (before.placements if before else {}).items() for v in vs}
    new = {(n, v) for n, vs in after.placements.items() for v in vs}
    return len(new - old) + len(old - new)


class _Collector:
    """Per period, every counted outcome of the replay (the loadgen's ``on_outcome``)."""

    def __init__(self, n_periods: int, catalog: Catalog):
        self.catalog = catalog
        self.by_period: list[list[tuple[Any, Any]]] = [[] for _ in range(n_periods)]
        self.lock = threading.Lock()

    def __call__(self, load: ClassLoad, outcome: Any) -> None:
        if 0 <= outcome.period < len(self.by_period):
            with self.lock:
                self.by_period[outcome.period].append((load.cls, outcome))

    def measure(self, k: int) -> tuple[int, int, int, float | None, float | None, float | None, int, float | None]:
        rows = self.by_period[k]
        ok = [(c, o) for c, o in rows if o.code == "OK"]
        lat = np.array([o.latency_ms for _, o in ok]) if ok else np.zeros(0)
        accs = []
        for _, o in ok:
            if o.correct is not None:
                accs.append(1.0 if o.correct else 0.0)
            else:
                variant = o.served_by.partition("/")[2]
                if variant in self.catalog.variants:
                    accs.append(self.catalog.variant(variant).accuracy)
        by_class: dict[str, list[Any]] = {}
        for c, o in ok:
            by_class.setdefault(c.id, []).append((c, o))
        broken, slo_total, slo_missed = 0, 0, 0
        for items in by_class.values():
            c = items[0][0]
            if c.max_latency_ms is None and c.min_accuracy is None:
                continue
            lats = np.array([o.latency_ms for _, o in items])
            miss_lat = lats > c.max_latency_ms if c.max_latency_ms is not None else np.zeros(len(items), bool)
            served_acc = np.array([self._acc(o) for _, o in items])
            miss_acc = served_acc < c.min_accuracy - 1e-9 if c.min_accuracy is not None else np.zeros(len(items), bool)
            slo_total += len(items)
            slo_missed += int((miss_lat | miss_acc).sum())
            if (c.max_latency_ms is not None and float(np.percentile(lats, 95)) > c.max_latency_ms) or miss_acc.any():
                broken += 1
        return (len(rows), len(ok), len(rows) - len(ok),
                float(lat.mean()) if len(lat) else None,
                float(np.percentile(lat, 95)) if len(lat) else None,
                float(np.mean(accs)) if accs else None, broken,
                slo_missed / slo_total if slo_total else None)

    def _acc(self, o: Any) -> float:
        variant = o.served_by.partition("/")[2]
        return self.catalog.variant(variant).accuracy if variant in self.catalog.variants else 0.0


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            parts = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)
    return sum(parts) - idle, sum(parts)


class _CpuSampler:
    """The machine's CPU busy share in each trace period (sampled at the period boundaries), so that
    every measured latency can be read beside how contended the box was while it was measured."""

    def __init__(self, n_periods: int, period_wall_s: float):
        self.n, self.period_wall_s = n_periods, period_wall_s
        self.busy: list[float | None] = [None] * n_periods
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.last: tuple[float, float] | None = None
        self.k = 0

    def start(self, t0: float) -> None:
        self.thread = threading.Thread(target=self._run, args=(t0,), daemon=True)
        self.thread.start()

    def _run(self, t0: float) -> None:
        if self.stop.wait(max(0.0, t0 - time.monotonic())):
            return
        self.last = cpu_times()
        for k in range(self.n):
            self.k = k
            if self.stop.wait(max(0.0, t0 + (k + 1) * self.period_wall_s - time.monotonic())):
                return
            self._sample(k)

    def _sample(self, k: int) -> None:
        now = cpu_times()
        if self.last is not None and now is not None and now[1] > self.last[1]:
            self.busy[k] = (now[0] - self.last[0]) / (now[1] - self.last[1])
        self.last = now

    def close(self) -> None:
        """Stop; the period in progress (the last one, when the load ends at its boundary) is sampled now."""
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
            if self.busy[self.k] is None:
                self._sample(self.k)


def _first_plan(topology: Topology, catalog: Catalog, demand: Demand, options: PlacementOptions) -> Plan:
    return solve(topology, catalog, demand, options).plan


def _replay(trace: Trace, window: TraceWindow, loads: list[ClassLoad], opts: TraceDemoOptions, catalog: Catalog,
            on_start: Callable[[float], None] | None = None) -> tuple[_Collector, _CpuSampler]:
    n = len(window.period_edges()) - 1
    col = _Collector(n, catalog)
    cpu = _CpuSampler(n, trace.period_s / opts.speed)

    def started(t0: float) -> None:
        cpu.start(t0)
        if on_start is not None:
            on_start(t0)

    try:
        asyncio.run(run_load(loads, LoadOptions(warmup_s=opts.warmup_s, seed=opts.seed, timeout_s=opts.timeout_s),
                             window=window, on_outcome=col, on_start=started))
    finally:
        cpu.close()
    return col, cpu


def _controller_loop(ctl: Controller, started: threading.Event, start_at: list[float], n_periods: int,
                     period_wall_s: float, rounds: list[Round], stop: threading.Event,
                     say: Callable[[str], None]) -> None:
    """One round per period boundary, from the counted window's start: prime at period 0,
    step at the start of periods 1..n-1 (each measures the period just ended)."""
    from idn.placement import NoPlan

    if not started.wait(120):
        return
    t0 = start_at[0]
    if stop.wait(max(0.0, t0 - time.monotonic())):
        return
    ctl.prime()
    for k in range(1, n_periods):
        at = t0 + k * period_wall_s
        if stop.wait(max(0.0, at - time.monotonic())):  # one wait: wakes within a ms of the boundary
            return
        before = ctl.plan
        try:
            res = ctl.step()
        except NoPlan as e:
            rounds.append(Round(k, time.monotonic() - at, 0.0, False, None, f"no plan: {e.headline}", [], [],
                                None, None))
            continue
        d = res.decision
        applied = res.version is not None
        cand = d.candidate if d is not None else None
        changed = plan_delta(before, ctl.plan) if applied and ctl.plan is not None else 0
        rounds.append(Round(k, time.monotonic() - at, sum(c.rate for c in res.demand.classes), applied, res.version,
                            d.reason if d is not None else "no traffic measured",
                            list(cand.moved) if applied and cand is not None else [], list(res.kept),
                            res.solve_s, res.apply_s, changed))
        if applied:
            say(f"  period {k}: applied plan v{res.version} ({d.reason if d else ''}); {changed} placement(s) "
                f"changed, {time.monotonic() - at:.2f} s into the period")


def run_trace_demo(opts: TraceDemoOptions, say: Callable[[str], None] = print) -> TraceDemoResult:
    """Start the network, replay the trace under both runs, predict, compare; always shut down."""
    t_start = time.monotonic()
    catalog = load_catalog(opts.catalog or default_catalog_path())
    topology = load_topology(opts.topology)
    speed_info = None
    if opts.calibrate:
        from idn.demo import calibrated
        catalog, speed_info = calibrated(catalog, topology, say)
    trace = load_trace(opts.trace, topology, catalog)
    periods = trace.periods()
    n = len(periods)
    period_wall = trace.period_s / opts.speed
    window = TraceWindow(trace, speed=opts.speed)

    # the prediction: the simulator's static and control policies on the same trace and knobs
    sim_opts = SimOptions(seed=opts.seed, static_on=opts.static_on, placement=opts.placement,
                          move_weight=opts.move_weight, min_gain=opts.min_gain, hold_rounds=opts.hold_rounds,
                          keep_idle=opts.keep_idle)
    sim: SimResult = Simulator(topology, catalog, trace, sim_opts).run(["static", "control"], bound=True)
    predicted = {name: [_sim_record(r) for r in res.periods] for name, res in sim.policies.items()}

    first_demand = periods[0].demand
    static_demand = first_demand if opts.static_on == "first" else Demand(
        tuple(tc.cls for tc in trace.classes if tc.cls.rate > 0), "<trace mean>")
    static_plan = _first_plan(topology, catalog, static_demand, opts.placement)
    control_first = _first_plan(topology, catalog, first_demand, opts.placement)

    run_dir = opts.run_dir or RUN_ROOT / f"{opts.topology.stem}-demo-trace"
    shutil.rmtree(run_dir / "state", ignore_errors=True)  # start planless
    say(f"starting {len(topology.nodes)} nodes of {opts.topology} (emulated delays, bandwidth and slowdowns; "
        f"logs in {run_dir})")
    state, procs = start_network(opts.topology, catalog=opts.catalog,
                                 emulate=True, run_dir=run_dir, ready_timeout_s=opts.ready_timeout_s)
    runs: dict[str, RunResult] = {}
    try:
        loads = plan_trace_load(topology, catalog, window, seed=opts.seed, addresses=state.addresses,
                                warmup_s=opts.warmup_s)
        for name in RUNS:
            first = static_plan if name == "static" else control_first
            version, _ = push_plan(first, topology, state.addresses, state.token)
            applied_first = first.with_version(version)
            say(f"{name}: plan v{version} applied; replaying {trace.name} ({n} periods of {trace.period_s:g} s) "
                f"at x{opts.speed:g}: {window.wall_s:.0f} s")
            t_run = time.monotonic()
            rounds: list[Round] = []
            versions: dict[int, tuple[int, int]] = {}  # period -> (version, reconfigurations)
            if name == "static":
                col, cpu = _replay(trace, window, loads, opts, catalog)
            else:
                ctl = Controller(topology, catalog, dict(state.addresses), state.token, opts.placement,
                                 min_gain=opts.min_gain, interval_s=trace.period_s, move_weight=opts.move_weight,
                                 hold_rounds=opts.hold_rounds, keep_idle=opts.keep_idle, plan=applied_first,
                                 timeout_s=opts.control_timeout_s)
                started, stop = threading.Event(), threading.Event()
                start_at: list[float] = []

                def on_start(t: float, started: threading.Event = started, start_at: list[float] = start_at) -> None:
                    start_at.append(t)
                    started.set()

                th = threading.Thread(target=_controller_loop, daemon=True,
                                      args=(ctl, started, start_at, n, period_wall, rounds, stop, say))
                th.start()
                try:
                    col, cpu = _replay(trace, window, loads, opts, catalog, on_start)
                finally:
                    stop.set()
                    th.join(timeout=60)
                for r in rounds:
                    if r.applied and r.version is not None:
                        versions[r.period] = (r.version, r.changed)
            wall = time.monotonic() - t_run
            measures = []
            current_v = version
            for k in range(n):
                if k in versions:
                    current_v = versions[k][0]
                sent, ok, errors, mean, p95, acc, broken, miss = col.measure(k)
                measures.append(PeriodMeasure(k, sent, ok, errors, mean, p95, acc, broken, miss,
                                              versions.get(k, (0, 0))[1], current_v, cpu.busy[k]))
            runs[name] = RunResult(name, measures, rounds, wall, os.getloadavg())
            say(f"{name}: done in {wall:.0f} s (load average {os.getloadavg()[0]:.2f})")
    finally:
        outcome = stop_nodes(state.nodes, procs=procs)
        say("network stopped: " + ", ".join(f"{k} {how}" for k, how in outcome.items()))
    agreement = {name: agree(runs[name], predicted[name]) for name in RUNS}
    return TraceDemoResult(
        trace.name, str(opts.topology), opts.speed, trace.period_s, period_wall, n,
        [p.demand.total_rate for p in periods], runs, predicted, agreement,
        {"speed": opts.speed, "warmup_s": opts.warmup_s, "seed": opts.seed, "static_on": opts.static_on,
         "placement": opts.placement.as_dict(), "min_gain": opts.min_gain, "move_weight": opts.move_weight,
         "hold_rounds": opts.hold_rounds, "keep_idle": opts.keep_idle, "calibrate": opts.calibrate},
        time.monotonic() - t_start, speed_check=speed_info)


def _sim_record(r: Any) -> dict[str, Any]:
    return {"index": r.index, "rate": r.rate, "mean_latency_ms": r.mean_latency_ms if r.rate > 0 else None,
            "accuracy": r.accuracy if r.rate > 0 else None, "slo_violations": r.slo_violations,
            "reconfigurations": (r.added + r.removed) if r.index > 0 else 0, "applied": r.applied,
            # placements the policy's own plans add + remove (static: none after the first), without the
            # repository's on-demand loads that ``reconfigurations`` also counts: what the live runs count
            "plan_changes": (r.plan_changes or 0) if r.index > 0 else 0,
            "gain": r.gain, "routing": r.routing}


def agree(run: RunResult, pred: list[dict[str, Any]]) -> dict[str, Any]:
    """How well one live run follows its prediction, per period and in total."""
    both = [(m, p) for m, p in zip(run.periods, pred) if m.mean_latency_ms is not None and p["mean_latency_ms"]]
    pairs = [(m.mean_latency_ms, p["mean_latency_ms"]) for m, p in both]
    ratios = [a / b for a, b in pairs]
    quiet = [a / b for (a, b), (m, _) in zip(pairs, both) if m.cpu_busy is not None and m.cpu_busy <= QUIET_CPU]
    with_cpu = [(math.log(a / b), m.cpu_busy) for (a, b), (m, _) in zip(pairs, both) if m.cpu_busy is not None]
    cpu_corr = None
    if len(with_cpu) > 2:
        lr, cb = np.array(with_cpu).T
        if lr.std() > 0 and cb.std() > 0:
            cpu_corr = float(np.corrcoef(lr, cb)[0, 1])
    ml = np.array([a for a, _ in pairs])
    pl = np.array([b for _, b in pairs])
    corr = float(np.corrcoef(ml, pl)[0, 1]) if len(pairs) > 2 and ml.std() > 0 and pl.std() > 0 else None
    acc = [(m.accuracy, p["accuracy"]) for m, p in zip(run.periods, pred)
           if m.accuracy is not None and p["accuracy"] is not None]
    live_applied = sorted(r.period for r in run.rounds if r.applied)
    pred_applied = sorted(p["index"] for p in pred if p.get("applied") and p["index"] > 0)
    return {
        "periods_compared": len(pairs),
        "latency_ratio_median": float(np.median(ratios)) if ratios else None,
        "latency_ratio_range": [float(min(ratios)), float(max(ratios))] if ratios else None,
        "latency_correlation": corr,
        "quiet_periods": len(quiet),  # periods with the machine's CPU at most QUIET_CPU busy
        "latency_ratio_median_quiet": float(np.median(quiet)) if quiet else None,
        "log_ratio_vs_cpu_busy_correlation": cpu_corr,
        "cpu_busy_mean": float(np.mean([m.cpu_busy for m in run.periods if m.cpu_busy is not None]))
        if any(m.cpu_busy is not None for m in run.periods) else None,
        "measured_mean_latency_ms": float(ml.mean()) if len(ml) else None,
        "predicted_mean_latency_ms": float(pl.mean()) if len(pl) else None,
        "accuracy_abs_diff_mean": float(np.mean([abs(a - b) for a, b in acc])) if acc else None,
        "slo_violations": {"measured": sum(m.slo_violations for m in run.periods),
                           "predicted": sum(p["slo_violations"] for p in pred)},
        "reconfigurations": {"measured": sum(m.reconfigurations for m in run.periods),
                             "predicted": sum(p["plan_changes"] for p in pred),
                             "predicted_with_on_demand_loads": sum(p["reconfigurations"] for p in pred)},
        "plans_applied": {"measured": live_applied, "predicted": pred_applied},
        "slo_request_miss_share": _miss_share(run),
        "errors": sum(m.errors for m in run.periods),
    }


def _miss_share(run: RunResult) -> str:
    shares = [m.slo_miss_share for m in run.periods if m.slo_miss_share is not None]
    return (f"{100 * float(np.mean(shares)):.1f}% of the requests of SLO classes missed their SLO (mean over "
            "periods)") if shares else "no SLO classes"


def verdict(res: TraceDemoResult) -> list[str]:
    """Plain sentences: how well live and predicted agree, and why not better."""
    lines = []
    for name in RUNS:
        a = res.agreement[name]
        r = res.runs[name]
        if a["latency_ratio_median"] is None:
            lines.append(f"{name}: nothing to compare (no answered requests)")
            continue
        corr = f", correlation over periods {a['latency_correlation']:.2f}" if a["latency_correlation"] is not None \
            else ""
        lines.append(
            f"{name}: measured mean latency {a['measured_mean_latency_ms']:.1f} ms vs predicted "
            f"{a['predicted_mean_latency_ms']:.1f} ms (median ratio {a['latency_ratio_median']:.2f}, per period "
            f"{a['latency_ratio_range'][0]:.2f}-{a['latency_ratio_range'][1]:.2f}{corr}); accuracy within "
            f"{100 * (a['accuracy_abs_diff_mean'] or 0):.1f} points on average; SLO-violating class-periods "
            f"{a['slo_violations']['measured']} measured vs {a['slo_violations']['predicted']} predicted; "
            f"plan changes (placements added + removed) {a['reconfigurations']['measured']} vs "
            f"{a['reconfigurations']['predicted']}; {a['slo_request_miss_share']}; "
            f"load average {r.load_avg[0]:.2f} on {os.cpu_count()} cores")
        if a["cpu_busy_mean"] is not None:
            q = a["latency_ratio_median_quiet"]
            cc = a["log_ratio_vs_cpu_busy_correlation"]
            lines.append(
                f"  {name}: CPU {100 * a['cpu_busy_mean']:.0f}% busy on average; in the {a['quiet_periods']} periods "
                f"with the CPU <= {100 * QUIET_CPU:.0f}% busy the median latency ratio is "
                f"{'-' if q is None else f'{q:.2f}'}; correlation of log(measured/predicted) with CPU busy "
                f"{'-' if cc is None else f'{cc:.2f}'}")
    c = res.agreement["control"]["plans_applied"]
    lines.append(f"control: plans applied before periods {c['measured']} live vs {c['predicted']} predicted")
    lines.append(
        "why not closer: the prediction has no queueing or CPU contention (every node, the load generator and "
        f"the controller share {os.cpu_count()} cores with whatever else runs; latency grows with the load "
        "average), the replay and the simulator draw different Poisson noise so a decision near the 5% "
        "threshold can go either way, a live plan takes effect when it is solved and applied (a fraction of a "
        f"{res.period_wall_s:.1f} s compressed period late), and the simulator routes each class by the best "
        "split over the placed variants where the nodes follow the plan's routes")
    return lines


def draw(res: TraceDemoResult, path: Path) -> Path:
    """Time series: offered load; mean latency, accuracy, SLO violations and reconfigurations per
    period, measured (solid) and predicted (dashed), static and control."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.arange(res.periods) * res.period_s + res.period_s / 2
    fig, ax = plt.subplots(5, 1, figsize=(10, 12), sharex=True)
    ax[0].plot(x, res.offered, color="black")
    ax[0].set_ylabel("offered (req/s)")
    ax[0].set_title(f"{res.trace} live (x{res.speed:g}, {res.period_wall_s:.1f} s per period) vs idn simulate")
    colors = {"static": "tab:blue", "control": "tab:orange"}
    for name in RUNS:
        m, p = res.runs[name].periods, res.predicted[name]
        col = colors[name]

        def nz(v: float | None) -> float:
            return math.nan if v is None else v

        ax[1].plot(x, [nz(q.mean_latency_ms) for q in m], color=col, label=f"{name} measured")
        ax[1].plot(x, [nz(q["mean_latency_ms"]) for q in p], color=col, linestyle="--", label=f"{name} predicted")
        ax[2].plot(x, [100 * nz(q.accuracy) for q in m], color=col)
        ax[2].plot(x, [100 * nz(q["accuracy"]) for q in p], color=col, linestyle="--")
        ax[3].plot(x, [q.slo_violations for q in m], color=col, marker="o", markersize=3)
        ax[3].plot(x, [q["slo_violations"] for q in p], color=col, linestyle="--")
        ax[4].plot(x, np.cumsum([q.reconfigurations for q in m]), color=col)
        ax[4].plot(x, np.cumsum([q["plan_changes"] for q in p]), color=col, linestyle="--")
    ax[1].set_ylabel("mean latency (ms)")
    ax[1].legend(fontsize=8)
    ax[2].set_ylabel("accuracy (%)")
    ax[3].set_ylabel("classes missing SLO")
    ax[4].set_ylabel("reconfigurations (cum.)")
    ax[4].set_xlabel("trace time (s)")
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

