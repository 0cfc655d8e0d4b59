"""Chaos: the demo network under steady load while nodes are killed and restarted (issue #12, item 5).

The demo topology (deploy/topologies/demo.yaml, on free loopback ports) and its demand
(deploy/demands/demo.yaml), emulation on, the ILP plan applied, ``idn control``'s loop
running in this process every ``--interval`` seconds, and open-loop load from the demand
with client failover (each class may fail over to the 2 nodes nearest its ingress;
``--no-failover`` turns it off). The fault schedule: every ``--kill-every`` seconds
``kill -9`` a random non-repository node (seeded), restarted ``--down-for`` seconds later
with its state folder; the middle fault kills the repository instead.

Reported per fault and overall:

* failed requests by cause: *in flight at the dead node* (ended after the kill, with
  the dead node on the class's path, sent before the kill, or within 50 ms after it
  and lost with its connection), *ingress dead, no failover* (sent
  while the class's own ingress was down and not answered elsewhere), *during detection*
  (sent between the kill and the first neighbour marking the node down), *other*;
* time to detect: the first neighbour's health check (node logs) and the controller;
* time to re-plan: kill -> a plan without the node applied; restart -> a plan with it;
* time back to the pre-fault mean latency after the restart (3 s windows; the first
  whose mean is within 10% of the mean before the first fault, and the next one too);
* every node's RSS (sampled each second): per process, growth from its 30 s mark to its
  end, and drift over the second half of its life (a leak grows throughout; a model
  load is a step, and the allocator keeps what an unloaded model freed), with the
  variants each node holds at the end.

Targets: with client failover on, failed requests <= the requests in flight at the dead
node + 1% of the traffic during detection; back within 10% of the pre-fault mean latency
within 2 controller intervals after a restart; no node's RSS grows more than 10%.

    python benchmarks/chaos.py [--duration 300] [--kill-every 40] [--down-for 10] [--interval 5] [--seed 0]
                               [--no-failover] [--json results/chaos.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from idn.catalog import default_catalog_path, load_catalog  # noqa: E402
from idn.client import ControlClient  # noqa: E402
from idn.controller import Controller, Event  # noqa: E402
from idn.demand import load_demand  # noqa: E402
from idn.launcher import restart_node, start_network, stop_nodes  # noqa: E402
from idn.loadgen import LoadOptions, plan_load, run_load  # noqa: E402
from idn.network import push_plan  # noqa: E402
from idn.placement import PlacementOptions, solve  # noqa: E402
from idn.protocol.failures import never_sent, unreachable  # noqa: E402
from idn.topology import Topology, load_topology  # noqa: E402

TOPOLOGY = ROOT / "deploy" / "topologies" / "demo.yaml"
DEMAND = ROOT / "deploy" / "demands" / "demo.yaml"
KILL_GRACE_S = 0.05
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ idn\.node: neighbour (\S+) down")


# -- what happened -----------------------------------------------------------------------------

@dataclass
class Fault:
    node: str
    killed: float                 # time.time()
    ready: float | None = None    # restarted and ready (time.time())


@dataclass
class Sample:
    """One request, as the load generator saw it (times: time.time())."""
    cls: str
    ingress: str
    sent: float
    ms: float
    code: str
    via: str = ""
    detail: str = ""


@dataclass
class FaultReport:
    node: str
    at_s: float
    in_flight_lost: int = 0
    ingress_dead: int = 0
    during_detection: int = 0
    other: int = 0
    sent_during_detection: int = 0
    node_detect_ms: float | None = None
    controller_detect_s: float | None = None
    replan_s: float | None = None          # kill -> plan without it applied
    replan_back_s: float | None = None     # ready -> plan with it applied
    back_to_mean_s: float | None = None    # ready -> mean latency within 10% of before
    back_in_intervals: float | None = None
    after_ready_ms: list[float] = field(default_factory=list)  # 3 s window means, 1 s apart, from the restart


@dataclass
class ChaosReport:
    duration_s: float
    interval_s: float
    failover: bool
    requests: int
    failed: int
    by_cause: dict[str, int]
    pre_fault_mean_ms: float
    faults: list[FaultReport]
    rss: dict[str, dict[str, Any]]
    targets: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)  # every failed request, for the record
    events: list[dict[str, Any]] = field(default_factory=list)  # the controller's, seconds into the run


# -- analysis (pure: tested on synthetic runs) -----------------------------------------------------

def window_means(samples: list[Sample], start: float, end: float, width: float = 3.0,
                 step: float = 0.5) -> list[tuple[float, float]]:
    """(window start, mean ms of OK requests sent in [start, start + width)) for windows in [start, end)."""
    ok = sorted((s.sent, s.ms) for s in samples if s.code == "OK")
    t_arr = np.asarray([t for t, _ in ok])
    ms_arr = np.asarray([m for _, m in ok])
    out, t = [], start
    while t + width <= end:
        lo, hi = np.searchsorted(t_arr, t), np.searchsorted(t_arr, t + width)
        if hi > lo:
            out.append((t, float(ms_arr[lo:hi].mean())))
        t += step
    return out


def back_to_mean(samples: list[Sample], ready: float, end: float, target_ms: float,
                 tolerance: float = 0.10, width: float = 3.0) -> float | None:
    """Seconds after ``ready`` until two consecutive non-overlapping windows are within tolerance."""
    means = window_means(samples, ready, end, width)
    ok = {t for t, m in means if m <= target_ms * (1 + tolerance)}
    for t, _ in means:
        if t in ok and any(abs(u - (t + width)) < 1e-6 for u in ok):
            return t - ready
    return None


def classify(samples: list[Sample], faults: list[Fault], paths: dict[str, list[str]],
             detect_s: dict[int, float]) -> tuple[dict[str, int], list[FaultReport]]:
    """Failed requests by cause (module docstring); ``detect_s``: fault index -> node-level detection."""
    by_cause = {"in flight at the dead node": 0, "ingress dead, no failover": 0, "during detection": 0, "other": 0}
    reports = [FaultReport(f.node, 0.0) for f in faults]
    for i, f in enumerate(faults):
        det = detect_s.get(i)
        if det is not None:
            reports[i].sent_during_detection = sum(f.killed <= s.sent < f.killed + det for s in samples)
    for s in samples:
        if s.code == "OK":
            continue
        cause, which = "other", None
        for i, f in enumerate(faults):
            end = f.ready if f.ready is not None else float("inf")
            # in flight when the node died: ended after the kill, on a path through the dead node,
            # sent before it (or just after, its connection dying under it: a dying process still
            # accepts for a moment)
            lost = unreachable(s.detail) and not never_sent(s.detail)
            if (f.killed <= s.sent + s.ms / 1000 and f.node in paths.get(s.ingress, [s.ingress])
                    and (s.sent < f.killed or (lost and s.sent < f.killed + KILL_GRACE_S))):
                cause, which = "in flight at the dead node", i
                break
            if f.killed <= s.sent <= end and s.ingress == f.node:
                cause, which = "ingress dead, no failover", i
                break
            det = detect_s.get(i)
            if det is not None and f.killed <= s.sent < f.killed + det:
                cause, which = "during detection", i
                break
        by_cause[cause] += 1
        if which is not None:
            r = reports[which]
            if cause == "in flight at the dead node":
                r.in_flight_lost += 1
            elif cause == "ingress dead, no failover":
                r.ingress_dead += 1
            else:
                r.during_detection += 1
    return by_cause, reports


def node_detection(logs: dict[str, Path], faults: list[Fault]) -> dict[int, float]:
    """Fault index -> seconds from the kill to the first other node logging it down."""
    seen: list[tuple[float, str]] = []
    for path in logs.values():
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            m = LOG_TIME.match(line)
            if m:
                t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                seen.append((t, m.group(2)))
    out = {}
    for i, f in enumerate(faults):
        after = [t - f.killed for t, n in seen if n == f.node and t >= f.killed - 0.01]
        if after:
            out[i] = max(min(after), 0.0)
    return out


def rss_growth(samples: list[tuple[float, str, int, float]], warm_s: float = 30.0) -> dict[str, dict[str, Any]]:
    """Per node: every process's RSS at its ``warm_s`` mark and at its end, and the worst growth."""
    out: dict[str, dict[str, Any]] = {}
    by_proc: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for t, nid, pid, mb in samples:
        by_proc.setdefault((nid, pid), []).append((t, mb))
    for (nid, pid), rows in sorted(by_proc.items(), key=lambda kv: kv[1][0][0]):
        t0 = rows[0][0]
        warm = [mb for t, mb in rows if t - t0 >= warm_s]
        life = rows[-1][0] - t0
        entry = out.setdefault(nid, {"processes": [], "max_growth": None, "max_drift": None})
        proc = {"pid": pid, "life_s": round(life, 1), "start_mb": round(rows[0][1], 1),
                "warm_mb": round(warm[0], 1) if warm else None, "end_mb": round(rows[-1][1], 1),
                "max_mb": round(max(mb for _, mb in rows), 1),
                "series_mb": [round(mb, 1) for t, mb in rows[::10]]}  # every 10th sample (~10 s)
        if warm and len(warm) > 1:
            proc["growth"] = round(warm[-1] / warm[0] - 1, 4)
            entry["max_growth"] = max(entry["max_growth"] or -1.0, proc["growth"])
            # drift: the second half of its warm life (a leak grows throughout; loading a
            # model is a step, and freed model memory stays with the allocator)
            proc["drift"] = round(warm[-1] / warm[len(warm) // 2] - 1, 4)
            entry["max_drift"] = max(entry.get("max_drift") or -1.0, proc["drift"])
        entry["processes"].append(proc)
    return out


# -- the run ----------------------------------------------------------------------------------------

def free_ports_topology(src: Path, dst: Path) -> Path:
    import socket

    doc = yaml.safe_load(src.read_text())
    for n in doc["nodes"]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            n["address"] = f"127.0.0.1:{s.getsockname()[1]}"
    dst.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst


def schedule(topology: Topology, duration: float, every: float, down_for: float, seed: int) -> list[tuple[float, str]]:
    """(seconds into the run, node) to kill: random non-repositories, the middle one a repository."""
    rng = random.Random(seed)
    times = []
    t = every
    while t + down_for + every / 2 <= duration:
        times.append(t)
        t += every
    others = sorted(n for n, node in topology.nodes.items() if not node.repository)
    victims = [rng.choice(others) for _ in times]
    if victims:
        victims[len(victims) // 2] = topology.repositories[0]
    return list(zip(times, victims))


def run(duration: float, every: float, down_for: float, interval: float, seed: int, failover: bool,
        scale: float = 1.0, out: Console | None = None) -> ChaosReport:
    con = out or Console(stderr=True)
    cat = load_catalog(default_catalog_path())
    with tempfile.TemporaryDirectory(prefix="idn-chaos-") as tmp:
        topo_path = free_ports_topology(TOPOLOGY, Path(tmp) / "demo.yaml")
        topo = load_topology(topo_path)
        demand = load_demand(DEMAND, topo, cat)
        if scale != 1.0:
            from idn.loadgen import scale_demand
            demand = scale_demand(demand, scale)
        plan = solve(topo, cat, demand, PlacementOptions()).plan
        con.print(f"chaos: starting {len(topo.nodes)} nodes (emulated links) ...")
        state, procs = start_network(topo_path, catalog=default_catalog_path(), emulate=True, run_dir=Path(tmp) / "run")
        try:
            version, _ = push_plan(plan, topo, state.addresses, state.token)
            return _drive(con, topo, cat, demand, plan.with_version(version), state, duration, every, down_for,
                          interval, seed, failover)
        finally:
            stop_nodes(state.nodes, timeout_s=10, procs=procs)


def _drive(con, topo, cat, demand, plan, state, duration, every, down_for, interval, seed, failover) -> ChaosReport:
    events: list[Event] = []
    ctl = Controller(topo, cat, dict(state.addresses), state.token, timeout_s=2.0, on_event=events.append,
                     plan=plan, planned_live=frozenset(topo.nodes))
    stop = threading.Event()

    def control_loop():
        while not stop.wait(interval):
            try:
                ctl.step()
            except Exception as e:  # report, keep going: the benchmark measures the rest
                con.print(f"controller round failed: {type(e).__name__}: {e}")

    rss: list[tuple[float, str, int, float]] = []

    def sample_rss():
        while not stop.wait(1.0):
            for nid, n in list(state.nodes.items()):
                mb = _rss_mb(n.pid)
                if mb is not None:
                    rss.append((time.time(), nid, n.pid, mb))

    faults: list[Fault] = []
    plan_kills = schedule(topo, duration, every, down_for, seed)
    warmup = 2.0

    def inject(t0: float):
        for at, nid in plan_kills:
            if stop.wait(max(t0 + at - time.time(), 0)):
                return
            f = Fault(nid, time.time())
            faults.append(f)
            try:
                import os
                os.kill(state.nodes[nid].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            con.print(f"  t={at:5.1f} s  kill -9 {nid}")
            if stop.wait(down_for):
                return
            try:
                restart_node(state, nid)
                f.ready = time.time()
                con.print(f"  t={f.ready - t0:5.1f} s  {nid} restarted and ready")
            except Exception as e:
                con.print(f"  restart of {nid} failed: {e}")

    samples: list[Sample] = []
    mono_to_wall = time.time() - time.monotonic()

    def on_outcome(ld, o) -> None:
        samples.append(Sample(ld.cls.id, ld.cls.ingress, o.sent_at + mono_to_wall, o.latency_ms, o.code, o.via,
                              o.detail))

    loads = plan_load(topo, cat, demand, seed=seed, failover=2 if failover else 0)
    threads = [threading.Thread(target=f, daemon=True) for f in (control_loop, sample_rss)]
    for t in threads:
        t.start()
    t0 = time.time() + 0.05 + warmup
    injector = threading.Thread(target=inject, args=(t0,), daemon=True)
    injector.start()
    con.print(f"chaos: {demand.total_rate:.0f} req/s for {duration:g} s, faults every {every:g} s "
              f"(down {down_for:g} s), controller every {interval:g} s, client failover "
              f"{'on' if failover else 'off'}")
    report = asyncio.run(run_load(loads, LoadOptions(duration_s=duration, warmup_s=warmup, seed=seed, timeout_s=5.0),
                                  on_outcome=on_outcome))
    stop.set()
    loaded = {}
    for nid, n in state.nodes.items():  # what each node holds at the end (memory is models too)
        try:
            with ControlClient(n.address, state.token, timeout=3) as c:
                loaded[nid] = list(c.info().variants)
        except Exception:
            loaded[nid] = None
    injector.join(60)
    for t in threads:
        t.join(30)
    r = analyse(topo, state, samples, faults, events, rss, t0, duration, interval, failover, report)
    for nid, vs in loaded.items():
        r.rss.setdefault(nid, {"processes": [], "max_growth": None})["variants_at_end"] = vs
    return r


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def analyse(topo, state, samples, faults, events, rss, t0, duration, interval, failover, load_report) -> ChaosReport:
    end = t0 + duration
    first_kill = faults[0].killed if faults else end
    pre = [s.ms for s in samples if s.code == "OK" and s.sent < first_kill]
    pre_mean = float(np.mean(pre)) if pre else float("nan")
    paths = {n: topo.path(n) for n in topo.nodes}
    logs = {nid: Path(n.log) for nid, n in state.nodes.items()}
    detect = node_detection(logs, faults)
    by_cause, reports = classify(samples, faults, paths, detect)
    for i, (f, r) in enumerate(zip(faults, reports)):
        r.at_s = round(f.killed - t0, 1)
        r.node_detect_ms = round(detect[i] * 1000, 0) if i in detect else None
        later = [e for e in events if e.t >= f.killed - 0.01]
        down = next((e for e in later if e.kind == "down" and e.node == f.node), None)
        if down is not None:
            r.controller_detect_s = round(down.t - f.killed, 2)
            rep = next((e for e in later if e.kind == "replan" and e.t >= down.t), None)
            if rep is not None and (f.ready is None or rep.t <= f.ready):
                r.replan_s = round(rep.t - f.killed, 2)
        if f.ready is not None:
            up = next((e for e in events if e.kind == "up" and e.node == f.node and e.t >= f.ready - 0.01), None)
            if up is not None:
                rep = next((e for e in events if e.kind == "replan" and e.t >= up.t), None)
                if rep is not None:
                    r.replan_back_s = round(rep.t - f.ready, 2)
            nxt = faults[i + 1].killed if i + 1 < len(faults) else end
            after = window_means(samples, f.ready, min(nxt, f.ready + 30), step=1.0)
            r.after_ready_ms = [round(m, 1) for _, m in after]
            back = back_to_mean(samples, f.ready, nxt, pre_mean)
            if back is not None:
                r.back_to_mean_s = round(back, 1)
                r.back_in_intervals = round(back / interval, 2)
    requests = len(samples)
    failed = sum(s.code != "OK" for s in samples)
    in_flight = by_cause["in flight at the dead node"]
    during = sum(r.sent_during_detection for r in reports)
    growth = rss_growth(rss)
    worst = max((g["max_growth"] for g in growth.values() if g["max_growth"] is not None), default=None)
    backs = [r.back_in_intervals for r in reports if r.back_in_intervals is not None]
    targets = {
        "failed": failed, "allowed": in_flight + 0.01 * during,
        "failed_met": failed <= in_flight + 0.01 * during,
        "back_within_2_intervals": all(b <= 2 for b in backs) and len(backs) == sum(f.ready is not None
                                                                                    for f in faults),
        "rss_worst_growth": worst, "rss_met": worst is not None and worst <= 0.10,
        "rss_worst_drift": max((g["max_drift"] for g in growth.values() if g.get("max_drift") is not None),
                               default=None),
        "ok_answers": load_report.overall.ok,
    }
    failures = [{"t_s": round(s.sent - t0, 3), "class": s.cls, "code": s.code, "ms": round(s.ms, 1),
                 "detail": s.detail} for s in samples if s.code != "OK"]
    evs = [{"t_s": round(e.t - t0, 2), "kind": e.kind, "node": e.node, "detail": e.detail} for e in events]
    return ChaosReport(duration, interval, failover, requests, failed, by_cause, round(pre_mean, 2), reports, growth,
                       targets, failures, evs)


# -- output -----------------------------------------------------------------------------------------

def _f(x: Any, suffix: str = "") -> str:
    return "-" if x is None else f"{x:g}{suffix}"


def render(r: ChaosReport) -> tuple[Table, Table]:
    t = Table(title=f"chaos: {r.duration_s:g} s, {r.requests} requests, controller every {r.interval_s:g} s, "
                    f"client failover {'on' if r.failover else 'off'}; pre-fault mean {r.pre_fault_mean_ms:.1f} ms")
    for col in ("t s", "killed", "lost in flight", "ingress dead", "in detection", "node detect ms",
                "ctl detect s", "re-plan s", "re-plan back s", "back to mean s"):
        t.add_column(col, justify="left" if col == "killed" else "right")
    for f in r.faults:
        t.add_row(f"{f.at_s:g}", f.node, str(f.in_flight_lost), str(f.ingress_dead), str(f.during_detection),
                  _f(f.node_detect_ms), _f(f.controller_detect_s), _f(f.replan_s), _f(f.replan_back_s),
                  _f(f.back_to_mean_s) + (f" ({f.back_in_intervals:g} int.)" if f.back_in_intervals is not None
                                          else ""))
    m = Table(title="node memory (RSS, MiB) per process: start, 30 s into its life, end, max; worst growth from the "
                    "30 s mark, and over the second half of its life (drift)")
    for col in ("node", "processes", "start", "at 30 s", "end", "max", "growth", "drift", "variants at end"):
        m.add_column(col, justify="left" if col == "node" else "right")
    for nid, g in sorted(r.rss.items()):
        ps = g["processes"]
        m.add_row(nid, str(len(ps)), " / ".join(_f(p["start_mb"]) for p in ps),
                  " / ".join(_f(p["warm_mb"]) for p in ps), " / ".join(_f(p["end_mb"]) for p in ps),
                  " / ".join(_f(p["max_mb"]) for p in ps),
                  "-" if g["max_growth"] is None else f"{100 * g['max_growth']:+.1f}%",
                  "-" if g.get("max_drift") is None else f"{100 * g['max_drift']:+.1f}%",
                  "?" if g.get("variants_at_end") is None else str(len(g["variants_at_end"])))
    return t, m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--kill-every", type=float, default=40.0)
    ap.add_argument("--down-for", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=5.0, help="controller interval, s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the demand's rates")
    ap.add_argument("--no-failover", action="store_true", help="clients do not fail over between ingresses")
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "chaos.json")
    a = ap.parse_args()
    con = Console(width=200)
    r = run(a.duration, a.kill_every, a.down_for, a.interval, a.seed, not a.no_failover, a.scale, con)
    t, m = render(r)
    con.print(t)
    con.print(m)
    causes = ", ".join(f"{k} {v}" for k, v in r.by_cause.items())
    tg = r.targets
    con.print(f"failed {r.failed} of {r.requests} ({causes}); target failed <= in flight + 1% of the traffic "
              f"during detection = {tg['allowed']:.1f}: {'met' if tg['failed_met'] else 'NOT met'}")
    con.print(f"back within 10% of the pre-fault mean within 2 controller intervals after every restart: "
              f"{'met' if tg['back_within_2_intervals'] else 'NOT met'}; worst RSS growth "
              f"{_f(None if tg['rss_worst_growth'] is None else round(100 * tg['rss_worst_growth'], 1), '%')}: "
              f"{'met' if tg['rss_met'] else 'NOT met'} (worst drift over a process's second half "
              f"{_f(None if tg['rss_worst_drift'] is None else round(100 * tg['rss_worst_drift'], 1), '%')})")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(asdict(r), indent=1) + "\n")
    con.print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
