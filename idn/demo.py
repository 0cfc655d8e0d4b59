"""The demo (`make run` = `idn demo`): predicted versus live, for several plans on one network.

A *scenario* (``deploy/scenarios/demo.yaml``) names a topology, a demand and the solver's
knobs: three alphas (ms per unit of inaccuracy) and a deployment budget. The demo starts
the topology as local node processes with the emulation knobs on (link delays and
payload transfer slept in the nodes, slow edges), then plays, one after the other:

* the ILP at each of the three alphas (a latency/accuracy Pareto frontier, predicted and
  measured, drawn as a PNG);
* at the middle alpha, the heuristics: greedy, smallest-everywhere, LP rounding and
  repository-only, scored by the same evaluator.

For each plan it solves, applies it to every node in three phases, replays the demand
open-loop for a bounded time, and compares what the evaluator predicted (mean latency,
p95 over classes, accuracy) with what the client measured. The network is always shut
down, also on errors and Ctrl-C.

Definitions, so that predicted and measured are the same quantity:

* mean latency: rate-weighted over classes (predicted) = mean over all requests
  (measured; the classes send at their rates, so the pool is rate-weighted);
* p95 by class: the rate-weighted 95th percentile of the per-class mean latencies
  (the evaluator's ``p95_class_latency_ms``), measured from per-class means; the
  per-request p95 is shown beside it (it also sees queueing and jitter, which the
  model does not predict);
* accuracy: rate-weighted accuracy of the serving variants (predicted). Measured, a
  task whose catalog accuracy is ``measured`` (held-out samples shipped with the repo)
  counts the share of right answers on those samples; a task whose accuracy is
  ``cited`` or ``estimated`` (ImageNet: no labelled set ships here) counts the catalog
  accuracy of the variant that *actually* served each request (the live served-by
  split). ``accuracy_measured_tasks`` compares the two sides on the measured tasks only.

The breakdown (``explain``) splits both sides into network (2 x emulated one-way delay
to the serving node) and the rest (compute predicted from the profiles x slowdown;
measured: the serving node's own ``idn.server_us`` plus transport), so a disagreement
points at its cause.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from idn.catalog import Catalog, default_catalog_path, load_catalog
from idn.client import ControlClient
from idn.config import Fields, read_document
from idn.demand import Demand, load_demand
from idn.latency import LatencyModel
from idn.launcher import RUN_ROOT, LaunchError, default_state_path, load_state, pid_runs_node, start_network, stop_nodes
from idn.loadgen import LoadOptions, LoadReport, plan_load, run_load
from idn.network import push_plan
from idn.placement import NoPlan, PlacementOptions, solve
from idn.placement.evaluate import Evaluation, weighted_quantile
from idn.plan import Plan
from idn.topology import Topology, load_topology

REPO = Path(__file__).resolve().parent.parent
DEMO_SCENARIO = REPO / "deploy" / "scenarios" / "demo.yaml"
AGREEMENT = 0.25  # predicted and measured mean latency should agree within this
HEURISTICS = (("greedy", "greedy"), ("smallest", "smallest"), ("lp-round", "lp-round"),
              ("repository-only", "repository"))
_SCENARIO_KEYS = {"topology", "demand", "catalog", "alphas", "budget", "rho", "duration_s", "warmup_s", "description"}


@dataclass(frozen=True)
class PlanSpec:
    """One plan the demo plays: a label, a placement method and the alpha it is solved at."""
    label: str
    method: str
    alpha: float


@dataclass(frozen=True)
class Scenario:
    """What the demo plays: a topology, a demand, and the solver's knobs (``deploy/scenarios/*.yaml``).

    File format::

        topology: ../topologies/demo.yaml     # relative to this file
        demand: ../demands/demo.yaml
        alphas: [100, 600, 3000]               # low, middle, high: ms per unit of inaccuracy
        budget: 250                            # price x MiB, or null for none
        rho: 0.8                               # utilisation cap
        duration_s: 12                         # counted load per plan
        warmup_s: 1
    """
    topology: Path
    demand: Path
    alphas: tuple[float, float, float]
    budget: float | None = None
    rho: float = 0.8
    catalog: Path | None = None
    duration_s: float = 12.0
    warmup_s: float = 1.0

    @property
    def middle_alpha(self) -> float:
        return self.alphas[1]

    def options(self, alpha: float) -> PlacementOptions:
        return PlacementOptions(alpha=alpha, rho=self.rho, budget=self.budget)

    def plans(self) -> tuple[PlanSpec, ...]:
        """The ILP at every alpha, then the heuristics at the middle one."""
        ilp = tuple(PlanSpec(f"ILP α={a:g}", "highs", a) for a in self.alphas)
        return ilp + tuple(PlanSpec(f"{label} α={self.middle_alpha:g}", m, self.middle_alpha)
                           for label, m in HEURISTICS)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; every error names the file, the field and the fix."""
    base = Path(path).resolve().parent
    f = Fields(read_document(path), path, "")
    f.check_keys(_SCENARIO_KEYS)
    alphas = f.req("alphas", list)
    if len(alphas) != 3 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a)
                                   and a >= 0 for a in alphas) or sorted(alphas) != alphas:
        raise f.error("alphas", f"expected three finite alphas >= 0 in increasing order, got {alphas!r}",
                      "write e.g. `alphas: [100, 600, 3000]` (low, middle, high)")
    budget = f.opt("budget", float, None)
    if budget is not None and not (budget > 0 and math.isfinite(budget)):
        raise f.error("budget", f"must be a positive number or null, got {budget}")
    rho = f.positive("rho", float, default=0.8)
    if not (0 < rho <= 1):
        raise f.error("rho", f"must be within (0, 1], got {rho}")
    catalog = f.opt("catalog", str, None)
    return Scenario(topology=base / f.req("topology", str), demand=base / f.req("demand", str),
                    alphas=(float(alphas[0]), float(alphas[1]), float(alphas[2])), budget=budget, rho=rho,
                    catalog=base / catalog if catalog else None,
                    duration_s=f.positive("duration_s", float, default=12.0),
                    warmup_s=f.positive("warmup_s", float, default=1.0, allow_zero=True))


@dataclass(frozen=True)
class DemoOptions:
    scenario: Scenario
    plans: tuple[PlanSpec, ...] | None = None  # default: scenario.plans()
    duration_s: float | None = None  # default: the scenario's
    warmup_s: float | None = None
    settle_s: float = 0.5        # after applying a plan, before the load starts
    seed: int = 0
    ready_timeout_s: float = 60.0
    run_dir: Path | None = None  # default .idn/run/<topology>-demo
    # Time a few variants first and rescale the catalog's profiles of the machine's class to
    # how fast it runs now (idn.zoo.speed): a shared machine drifts, the profile does not.
    calibrate: bool = True


@dataclass
class Figures:
    """The three headline numbers, plus the breakdown that explains them."""
    mean_latency_ms: float | None
    p95_class_latency_ms: float | None
    accuracy: float | None            # all classes (see the module docstring for "measured")
    accuracy_measured_tasks: float | None = None  # classes of tasks with held-out samples only
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
    alpha: float
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
    placements: dict[str, list[str]] = field(default_factory=dict)
    deployment_cost: float = 0.0
    load: dict[str, Any] = field(default_factory=dict)

    @property
    def latency_ratio(self) -> float | None:
        p, m = self.predicted.mean_latency_ms, self.measured.mean_latency_ms
        return m / p if p and m is not None else None


@dataclass
class DemoResult:
    topology: str
    demand: str
    alphas: tuple[float, float, float]
    budget: float | None
    duration_s: float
    warmup_s: float
    seed: int
    plans: list[PlanResult]
    wall_s: float = 0.0
    pareto_png: str | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)  # (plan label, why it found no plan)
    speed: dict[str, Any] | None = None  # the speed check the predictions used (None: the catalog as profiled)

    def ties(self) -> list[tuple[str, str]]:
        """(heuristic, ILP label) pairs whose plans place the same variants on the same nodes."""
        mid = next((p for p in self.plans if p.method == "highs" and p.alpha == self.alphas[1]), None)
        if mid is None:
            return []
        return [(p.label, mid.label) for p in self.plans
                if p.method != "highs" and p.alpha == mid.alpha and p.placements == mid.placements]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for p, pd in zip(self.plans, d["plans"]):
            pd["latency_ratio"] = p.latency_ratio
        return d


def emulated_ms(topology: Topology, a: str, b: str) -> float:
    """One-way emulated delay a -> b: the links' own delays, without the modelled hop overheads."""
    route = topology.route(a, b)
    return sum(topology.link_delay_ms(x, y) for x, y in zip(route, route[1:]))


def network_ms(plan: Plan, topology: Topology, catalog: Catalog, demand: Demand) -> float:
    """Rate-weighted emulated network time of a request: 2 x the links' one-way delays from its
    ingress to its target, plus the payload's transfer over their bandwidth (what the nodes sleep)."""
    model = LatencyModel(topology, catalog)
    num = den = 0.0
    for c in demand.classes:
        r = plan.routes[c.id]
        num += c.rate * sum(t.share * (2 * emulated_ms(topology, c.ingress, t.node) + model.predict(
            c.ingress, t.node, catalog.variant(t.variant), c.payload).transfer_ms) for t in r.targets)
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


def measured_task(catalog: Catalog, task: str) -> bool:
    """A task whose variants' accuracies were measured on samples shipped here (so live answers can be scored)."""
    return all(getattr(v, "accuracy_source", "measured") == "measured" for v in catalog.tasks[task].variants.values())


def _weighted(pairs: list[tuple[float | None, float]]) -> float | None:
    known = [(x, w) for x, w in pairs if x is not None]
    den = sum(w for _, w in known)
    return sum(x * w for x, w in known) / den if den else None


def compare(spec: PlanSpec, plan: Plan, ev: Evaluation, report: LoadReport, topology: Topology,
            catalog: Catalog, demand: Demand, at_ingress: dict[str, tuple[float, int]]) -> PlanResult:
    """Line up the evaluator's predictions with what the load generator measured."""
    net = network_ms(plan, topology, catalog, demand)
    classes = []
    means, rates = [], []
    acc_pred_m: list[tuple[float | None, float]] = []
    acc_live_m: list[tuple[float | None, float]] = []
    acc_live: list[tuple[float | None, float]] = []
    by_id = {c.class_id: c for c in report.classes}
    for c in demand.classes:
        m, p = by_id[c.id], ev.classes[c.id]
        route = plan.routes[c.id]
        if measured_task(catalog, c.task):
            live_acc = m.accuracy
            acc_pred_m.append((p.accuracy, c.rate))
            acc_live_m.append((m.accuracy, c.rate))
        else:  # cited/estimated: the catalog accuracy of the variants that really answered
            live_acc = _weighted([(catalog.variant(k.split("/", 1)[1]).accuracy, share)
                                  for k, share in m.served_by.items()])
        acc_live.append((live_acc, c.rate))
        classes.append(ClassComparison(
            class_id=c.id, rate=c.rate, predicted_latency_ms=p.latency_ms, measured_mean_ms=m.latency.mean_ms,
            measured_p95_ms=m.latency.p95_ms, measured_server_ms=m.server_ms,
            ingress_mean_ms=at_ingress[c.id][0] if c.id in at_ingress else None, predicted_accuracy=p.accuracy,
            measured_accuracy=live_acc, planned={f"{t.node}/{t.variant}": t.share for t in route.targets},
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
        label=spec.label, method=spec.method, alpha=spec.alpha, solver_status=str(plan.solver.status),
        objective=ev.objective, gain_vs_repository=ev.gain_vs_repository, version=plan.version,
        predicted=Figures(ev.mean_latency_ms, ev.p95_class_latency_ms, ev.accuracy, _weighted(acc_pred_m), net,
                          ev.mean_latency_ms - net),
        measured=Figures(measured_mean, weighted_quantile(means, rates, 0.95) if means else None,
                         _weighted(acc_live), _weighted(acc_live_m), net,
                         (measured_mean - net) if measured_mean is not None else None, overall.server_ms,
                         ingress_ms),
        measured_p95_ms=overall.latency.p95_ms, sent=overall.sent, ok=overall.ok, errors=overall.errors,
        dropped=overall.dropped, classes=classes,
        placements={n: sorted(vs) for n, vs in sorted(plan.placements.items()) if vs},
        deployment_cost=ev.deployment_cost, load=report.to_dict())


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
            f"{p.network_ms:.1f} ms of emulated network (round-trip delay and payload transfer). "
            f"Predicted compute plus the topology's "
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
    sc = opts.scenario
    duration = opts.duration_s if opts.duration_s is not None else sc.duration_s
    warmup = opts.warmup_s if opts.warmup_s is not None else sc.warmup_s
    catalog: Catalog = load_catalog(sc.catalog or default_catalog_path())
    topology = load_topology(sc.topology)
    speed: dict[str, Any] | None = None
    if opts.calibrate:
        catalog, speed = calibrated(catalog, topology, say)
    demand = load_demand(sc.demand, topology, catalog)
    loads = plan_load(topology, catalog, demand, seed=opts.seed)  # same messages and arrivals for every plan
    specs = opts.plans or sc.plans()
    _check_ports_free(sc.topology)
    run_dir = opts.run_dir or RUN_ROOT / f"{sc.topology.stem}-demo"
    shutil.rmtree(run_dir / "state", ignore_errors=True)  # start planless: no plan restored from a last run
    say(f"starting {len(topology.nodes)} nodes of {sc.topology} (emulated delays, bandwidth and slowdowns; "
        f"logs in {run_dir})")
    state, procs = start_network(sc.topology, catalog=sc.catalog, emulate=True, run_dir=run_dir,
                                 ready_timeout_s=opts.ready_timeout_s)
    results: list[PlanResult] = []
    failed: list[tuple[str, str]] = []
    try:
        for spec in specs:
            t0 = time.monotonic()
            try:
                outcome = solve(topology, catalog, demand, sc.options(spec.alpha), method=spec.method)
            except NoPlan as e:
                if spec.method == "highs":
                    raise  # the scenario itself has no plan: nothing to compare
                why = "; ".join(e.reasons)
                say(f"{spec.label}: found no plan ({why}); skipped")
                failed.append((spec.label, why))
                continue
            version, _ = push_plan(outcome.plan, topology, state.addresses, state.token)
            plan = outcome.plan.with_version(version)
            say(f"{spec.label}: solved ({outcome.solution.facts.status}) and applied as v{version} in "
                f"{time.monotonic() - t0:.1f} s; {warmup:g} s warm-up + {duration:g} s of load")
            time.sleep(opts.settle_s)
            cursors = stats_cursors(state.addresses, state.token)
            report = asyncio.run(run_load(loads, LoadOptions(duration_s=duration, warmup_s=warmup, seed=opts.seed)))
            at_ingress = ingress_means(state.addresses, state.token, cursors)
            results.append(compare(spec, plan, outcome.evaluation, report, topology, catalog, demand, at_ingress))
    finally:
        outcome_stop = stop_nodes(state.nodes, procs=procs)
        say("network stopped: " + ", ".join(f"{n} {how}" for n, how in outcome_stop.items()))
    return DemoResult(str(sc.topology), str(sc.demand), sc.alphas, sc.budget, duration, warmup, opts.seed, results,
                      time.monotonic() - t_start, failed=failed, speed=speed)


def calibrated(catalog: Catalog, topology: Topology, say: Callable[[str], None]) -> tuple[Catalog, dict[str, Any]]:
    """The catalog with the topology's hardware classes rescaled to this machine's speed now.

    Only classes this machine is (its own default class): a class profiled elsewhere
    says nothing about how fast this box is. Plans are solved and predicted with the
    rescaled profiles, as an operator would after re-profiling a box."""
    from idn.zoo.profile import default_hardware_class
    from idn.zoo.speed import rescaled, speed_check

    here = default_hardware_class()
    used = {n.hardware_class for n in topology.nodes.values()}
    if here not in used:
        say(f"speed check skipped: no node of this topology is of this machine's class {here}")
        return catalog, {"hardware_class": here, "skipped": True}
    check = speed_check(catalog, here)
    say(check.describe() + "; predictions use the rescaled profiles (--no-calibrate: as profiled)")
    return rescaled(catalog, here, check.variant_factors), {
        "hardware_class": here, "task_factors": check.task_factors,
        "per_variant": {n: {"profile_ms": p, "now_ms": m} for n, (_, p, m) in check.per_variant.items()}}


def draw_pareto(result: DemoResult, path: Path) -> Path:
    """The ILP plans' (mean latency, accuracy), predicted and measured, and the heuristics at the middle alpha."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ilp = [p for p in result.plans if p.method == "highs"]
    for side, style, label in (("predicted", "o--", "ILP predicted"), ("measured", "s-", "ILP measured")):
        pts = [(getattr(p, side).mean_latency_ms, getattr(p, side).accuracy) for p in ilp]
        if all(x is not None and y is not None for x, y in pts):
            ax.plot([x for x, _ in pts], [100 * y for _, y in pts], style, label=label,
                    mfc="none" if side == "predicted" else None)
    for p in ilp:
        if p.measured.mean_latency_ms is not None and p.measured.accuracy is not None:
            ax.annotate(f"α={p.alpha:g}", (p.measured.mean_latency_ms, 100 * p.measured.accuracy),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
    markers = iter("^vDPX*")
    for p in result.plans:
        if p.method == "highs":
            continue
        m = next(markers, "x")
        if p.measured.mean_latency_ms is not None and p.measured.accuracy is not None:
            ax.plot(p.measured.mean_latency_ms, 100 * p.measured.accuracy, m, label=f"{p.label} measured", alpha=0.8)
        if p.predicted.mean_latency_ms is not None and p.predicted.accuracy is not None:
            ax.plot(p.predicted.mean_latency_ms, 100 * p.predicted.accuracy, m, mfc="none", alpha=0.5)
    ax.set_xlabel("mean latency (ms)")
    ax.set_ylabel("rate-weighted accuracy (%)")
    ax.set_title("latency / accuracy: predicted (hollow) vs measured (filled)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
