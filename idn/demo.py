"""The demo (`make run` = `idn demo`): predicted versus live, for three plans on one network.

Starts the shipped demo topology as local node processes with the emulation knobs on
(link delays slept in the nodes, slow edges), then for each plan — the ILP (HiGHS), the
repository-only baseline and the greedy heuristic — solves it for the shipped demand,
applies it to every node, replays the demand open-loop for a bounded time, and compares
what the evaluator predicted (mean latency, p95 over classes, accuracy) with what the
client measured. The network is always shut down, also on errors and Ctrl-C.

Definitions, so that predicted and measured are the same quantity:

* mean latency: rate-weighted over classes (predicted) = mean over all requests
  (measured; the classes send at their rates, so the pool is rate-weighted);
* p95 by class: the rate-weighted 95th percentile of the per-class mean latencies
  (the evaluator's ``p95_class_latency_ms``), measured from per-class means; the
  per-request p95 is shown beside it (it also sees queueing and jitter, which the
  model does not predict);
* accuracy: rate-weighted held-out accuracy of the serving variants (predicted) =
  share of right answers on held-out samples (measured).

The breakdown (``explain``) splits both sides into network (2 x emulated one-way delay
to the serving node) and the rest (compute predicted from the profiles x slowdown;
measured: the serving node's own ``idn.server_us`` plus transport), so a disagreement
points at its cause.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from idn.catalog import Catalog, default_catalog_path, load_catalog
from idn.client import ControlClient
from idn.demand import Demand, load_demand
from idn.launcher import RUN_ROOT, LaunchError, default_state_path, load_state, pid_runs_node, start_network, stop_nodes
from idn.loadgen import LoadOptions, LoadReport, plan_load, run_load
from idn.network import push_plan
from idn.placement import solve
from idn.placement.evaluate import Evaluation, weighted_quantile
from idn.plan import Plan
from idn.topology import Topology, load_topology

REPO = Path(__file__).resolve().parent.parent
DEMO_TOPOLOGY = REPO / "deploy" / "topologies" / "demo.yaml"
DEMO_DEMAND = REPO / "deploy" / "demands" / "demo.yaml"
# (label, placement method) in the order they are played
DEMO_PLANS = (("ILP (highs)", "highs"), ("repository-only", "repository"), ("greedy", "greedy"))
AGREEMENT = 0.25  # predicted and measured mean latency of the ILP plan should agree within this


@dataclass(frozen=True)
class DemoOptions:
    topology: Path = DEMO_TOPOLOGY
    demand: Path = DEMO_DEMAND
    catalog: Path | None = None
    plans: tuple[tuple[str, str], ...] = DEMO_PLANS
    duration_s: float = 15.0
    warmup_s: float = 1.0
    settle_s: float = 0.5        # after applying a plan, before the load starts
    seed: int = 0
    ready_timeout_s: float = 60.0
    run_dir: Path | None = None  # default .idn/run/<topology>-demo


@dataclass
class Figures:
    """The three headline numbers, plus the breakdown that explains them."""
    mean_latency_ms: float | None
    p95_class_latency_ms: float | None
    accuracy: float | None
    network_ms: float | None = None  # rate-weighted 2 x one-way delay to the serving node
    rest_ms: float | None = None     # predicted: compute; measured: mean latency - network
    server_ms: float | None = None   # measured only: mean time inside the serving node (idn.server_us)
    ingress_ms: float | None = None  # measured only: mean as the ingress nodes saw it (GetStats)


@dataclass
class ClassComparison:
    class_id: str
    rate: float
    predicted_latency_ms: float
    measured_mean_ms: float | None
    measured_p95_ms: float | None
    measured_server_ms: float | None
    ingress_mean_ms: float | None  # the ingress node's own view (GetStats), client and first hop excluded
    predicted_accuracy: float
    measured_accuracy: float | None
    planned: dict[str, float]   # "<node>/<variant>" -> share in the plan
    served_by: dict[str, float]  # "<node>/<variant>" -> share measured


@dataclass
class PlanResult:
    label: str
    method: str
    solver_status: str
    objective: float
    gain_vs_repository: float | None
    version: int
    predicted: Figures
    measured: Figures
    measured_p95_ms: float | None  # per request
    sent: int
    ok: int
    errors: dict[str, int]
    dropped: int
    classes: list[ClassComparison]
    load: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_ratio(self) -> float | None:
        p, m = self.predicted.mean_latency_ms, self.measured.mean_latency_ms
        return m / p if p and m is not None else None


@dataclass
class DemoResult:
    topology: str
    demand: str
    duration_s: float
    warmup_s: float
    seed: int
    plans: list[PlanResult]
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for p, pd in zip(self.plans, d["plans"]):
            pd["latency_ratio"] = p.latency_ratio
        return d


def emulated_ms(topology: Topology, a: str, b: str) -> float:
    """One-way emulated delay a -> b: the links' own delays, without the modelled hop overheads."""
    route = topology.route(a, b)
    return sum(topology.link_delay_ms(x, y) for x, y in zip(route, route[1:]))


def network_ms(plan: Plan, topology: Topology, demand: Demand) -> float:
    """Rate-weighted round-trip emulated delay from each class's ingress to its targets."""
    num = den = 0.0
    for c in demand.classes:
        r = plan.routes[c.id]
        num += c.rate * sum(t.share * 2 * emulated_ms(topology, c.ingress, t.node) for t in r.targets)
        den += c.rate
    return num / den if den else 0.0


def stats_cursors(addresses: dict[str, str], token: str) -> dict[str, int]:
    """A GetStats cursor per node, so that the next read covers only what follows."""
    out = {}
    for nid, addr in addresses.items():
        with ControlClient(addr, token) as c:
            out[nid] = c.stats(0).cursor
    return out


def ingress_means(addresses: dict[str, str], token: str, cursors: dict[str, int]) -> dict[str, tuple[float, int]]:
    """Class id -> (mean ms of OK requests, OK count) as the ingress nodes measured them since ``cursors``.

    The ingress counts from the request's arrival to its answer, so the client's own
    cost and its hop to the ingress are excluded (warm-up requests are included).
    """
    out: dict[str, tuple[float, int]] = {}
    for nid, addr in addresses.items():
        with ControlClient(addr, token) as c:
            for cs in c.stats(cursors[nid]).classes:
                ok = cs.requests - cs.errors
                if ok:
                    out[cs.class_key] = (cs.mean_ms, ok)
    return out


def compare(label: str, method: str, plan: Plan, ev: Evaluation, report: LoadReport, topology: Topology,
            demand: Demand, at_ingress: dict[str, tuple[float, int]]) -> PlanResult:
    """Line up the evaluator's predictions with what the load generator measured."""
    net = network_ms(plan, topology, demand)
    classes = []
    means, rates = [], []
    by_id = {c.class_id: c for c in report.classes}
    for c in demand.classes:
        m, p = by_id[c.id], ev.classes[c.id]
        route = plan.routes[c.id]
        classes.append(ClassComparison(
            class_id=c.id, rate=c.rate, predicted_latency_ms=p.latency_ms, measured_mean_ms=m.latency.mean_ms,
            measured_p95_ms=m.latency.p95_ms, measured_server_ms=m.server_ms,
            ingress_mean_ms=at_ingress[c.id][0] if c.id in at_ingress else None, predicted_accuracy=p.accuracy,
            measured_accuracy=m.accuracy, planned={f"{t.node}/{t.variant}": t.share for t in route.targets},
            served_by=m.served_by))
        if m.latency.mean_ms is not None:
            means.append(m.latency.mean_ms)
            rates.append(c.rate)
    overall = report.overall
    measured_mean = overall.latency.mean_ms
    seen = [at_ingress[c.id] for c in demand.classes if c.id in at_ingress]
    n_ingress = sum(n for _, n in seen)
    ingress_ms = sum(ms * n for ms, n in seen) / n_ingress if n_ingress else None
    return PlanResult(
        label=label, method=method, solver_status=plan.solver.status, objective=ev.objective,
        gain_vs_repository=ev.gain_vs_repository, version=plan.version,
        predicted=Figures(ev.mean_latency_ms, ev.p95_class_latency_ms, ev.accuracy, net, ev.mean_latency_ms - net),
        measured=Figures(measured_mean, weighted_quantile(means, rates, 0.95) if means else None, overall.accuracy,
                         net, (measured_mean - net) if measured_mean is not None else None, overall.server_ms,
                         ingress_ms),
        measured_p95_ms=overall.latency.p95_ms, sent=overall.sent, ok=overall.ok, errors=overall.errors,
        dropped=overall.dropped, classes=classes, load=report.to_dict())


def explain(result: PlanResult) -> str:
    """One sentence on where predicted and measured mean latency part."""
    p, m = result.predicted, result.measured
    if p.mean_latency_ms is None or m.mean_latency_ms is None:
        return f"{result.label}: nothing measured"
    ratio = result.latency_ratio or 0.0
    verdict = "agree" if abs(ratio - 1) <= AGREEMENT else "DISAGREE"
    transport = (m.rest_ms or 0.0) - (m.server_ms or 0.0)
    client = m.mean_latency_ms - m.ingress_ms if m.ingress_ms is not None else float("nan")
    return (f"{result.label}: measured mean {m.mean_latency_ms:.1f} ms vs predicted {p.mean_latency_ms:.1f} ms "
            f"({100 * (ratio - 1):+.0f}%, {verdict} within {100 * AGREEMENT:.0f}%). Both include "
            f"{p.network_ms:.1f} ms of emulated network round trip. Predicted compute plus the topology's "
            f"modelled overheads (overhead_ms per request, hop_overhead_ms per hop) {p.rest_ms:.2f} ms; measured "
            f"{m.server_ms or 0.0:.2f} ms inside the serving node and {transport:.2f} ms of transport "
            f"(of which {client:.2f} ms between the client and its ingress node): gRPC/Python cost at each hop "
            f"and the client, and CPU contention among the nodes sharing this machine.")


def _check_ports_free(topology_path: Path) -> None:
    state_path = default_state_path(topology_path)
    if state_path.is_file():
        st = load_state(state_path)
        if any(pid_runs_node(n.pid, nid) for nid, n in st.nodes.items()):
            raise LaunchError(f"a network started by `idn up` is running on this topology's ports "
                              f"({state_path}); stop it with `idn down {topology_path}` first")


def run_demo(opts: DemoOptions, say: Callable[[str], None] = print) -> DemoResult:
    """Start, play every plan, compare, and always shut down."""
    t_start = time.monotonic()
    catalog: Catalog = load_catalog(opts.catalog or default_catalog_path())
    topology = load_topology(opts.topology)
    demand = load_demand(opts.demand, topology, catalog)
    loads = plan_load(topology, catalog, demand, seed=opts.seed)  # same messages and arrivals for every plan
    _check_ports_free(opts.topology)
    run_dir = opts.run_dir or RUN_ROOT / f"{opts.topology.stem}-demo"
    shutil.rmtree(run_dir / "state", ignore_errors=True)  # start planless: no plan restored from a last run
    say(f"starting {len(topology.nodes)} nodes of {opts.topology} (emulated delays and slowdowns; logs in {run_dir})")
    state, procs = start_network(opts.topology, catalog=opts.catalog, emulate=True, run_dir=run_dir,
                                 ready_timeout_s=opts.ready_timeout_s)
    results: list[PlanResult] = []
    try:
        for label, method in opts.plans:
            t0 = time.monotonic()
            outcome = solve(topology, catalog, demand, method=method)
            version, _ = push_plan(outcome.plan, topology, state.addresses, state.token)
            plan = outcome.plan.with_version(version)
            say(f"{label}: solved ({outcome.solution.facts.status}) and applied as v{version} in "
                f"{time.monotonic() - t0:.1f} s; {opts.warmup_s:g} s warm-up + {opts.duration_s:g} s of load")
            time.sleep(opts.settle_s)
            cursors = stats_cursors(state.addresses, state.token)
            report = asyncio.run(run_load(loads, LoadOptions(duration_s=opts.duration_s, warmup_s=opts.warmup_s,
                                                             seed=opts.seed)))
            at_ingress = ingress_means(state.addresses, state.token, cursors)
            results.append(compare(label, method, plan, outcome.evaluation, report, topology, demand, at_ingress))
    finally:
        outcome_stop = stop_nodes(state.nodes, procs=procs)
        say("network stopped: " + ", ".join(f"{n} {how}" for n, how in outcome_stop.items()))
    return DemoResult(str(opts.topology), str(opts.demand), opts.duration_s, opts.warmup_s, opts.seed, results,
                      time.monotonic() - t_start)
