"""One evaluator for every plan: the ILP's, each heuristic's, or a hand-written one.

Scores a Plan from the topology, catalog and demand alone (not from any solver's
arrays), with the ILP's own cost model, so numbers are comparable across methods and
``evaluate(plan).objective`` equals the ILP objective of the same split:

* per class: expected latency (share-weighted p50 prediction of :mod:`idn.latency`:
  round trip + payload transfer + compute), accuracy, cost
  (latency + alpha x (1 - accuracy)), and SLO checks per target (p95 latency, accuracy);
* totals: the objective ``sum_r rate_r x cost_r``, rate-weighted mean latency, the
  rate-weighted 95th percentile of class latencies ("p95 by class"), rate-weighted
  accuracy, deployment cost (price x MiB), gain versus a reference objective
  (repository-only) as ``1 - objective / reference``;
* per node: memory used and utilisation (busy cores / cores);
* violations (memory, compute above rho, budget, SLOs, unserved or mis-targeted
  classes), each as a sentence. A plan is feasible when the list is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from idn.catalog import Catalog
from idn.demand import Demand
from idn.latency import LatencyModel, meets_latency
from idn.placement.moves import Moves, move_time
from idn.placement.problem import MIB, PlacementOptions
from idn.plan import SHARE_TOLERANCE, Plan
from idn.topology import Topology

TOL = 1e-6


@dataclass
class ClassScore:
    latency_ms: float
    accuracy: float
    cost_ms: float
    worst_p95_ms: float

    def as_dict(self) -> dict[str, float]:
        return {"latency_ms": self.latency_ms, "accuracy": self.accuracy, "cost_ms": self.cost_ms,
                "worst_p95_ms": self.worst_p95_ms}


@dataclass
class NodeScore:
    variants: list[str]
    mem_mb: float
    mem_cap_mb: float
    busy_cores: float
    cores: float

    @property
    def utilisation(self) -> float:
        return self.busy_cores / self.cores


@dataclass
class Evaluation:
    objective: float
    total_rate: float
    mean_latency_ms: float
    p95_class_latency_ms: float
    accuracy: float
    deployment_cost: float
    classes: dict[str, ClassScore]
    nodes: dict[str, NodeScore]
    violations: list[str] = field(default_factory=list)
    gain_vs_repository: float | None = None
    # against a running plan (idn.placement.moves): what the change costs, once
    move_cost: float = 0.0      # weight x move ms: the ILP's objective is objective + move_cost
    move_ms: float = 0.0        # load + transfer time of every new placement
    moved: list[str] = field(default_factory=list)  # "<variant>@<node>" placed anew
    slo_violations: list[str] = field(default_factory=list)  # the SLO ones among ``violations``

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def hard_violations(self) -> list[str]:
        """Violations other than SLOs: memory, compute, budget, classes not (fully) served, unknown names.

        No plan that has one is ever written; SLO misses are allowed only in the
        repository-only reference, which serves everything at the repository by definition."""
        slo = set(self.slo_violations)
        return [v for v in self.violations if v not in slo]

    @property
    def mean_cost_ms(self) -> float:
        return self.objective / self.total_rate if self.total_rate else 0.0

    def totals(self) -> dict[str, float]:
        out = {"objective": self.objective, "mean_cost_ms": self.mean_cost_ms, "mean_latency_ms": self.mean_latency_ms,
               "p95_class_latency_ms": self.p95_class_latency_ms, "accuracy": self.accuracy,
               "deployment_cost": self.deployment_cost, "violations": float(len(self.violations))}
        if self.gain_vs_repository is not None:
            out["gain_vs_repository"] = self.gain_vs_repository
        if self.moved:
            out.update(move_cost=self.move_cost, move_ms=self.move_ms, moves=float(len(self.moved)))
        return out


def weighted_quantile(values: list[float], weights: list[float], q: float) -> float:
    """Smallest value whose cumulative weight reaches q of the total."""
    if not values:
        return 0.0
    pairs = sorted(zip(values, weights))
    total = sum(weights)
    acc = 0.0
    for v, w in pairs:
        acc += w
        if acc >= q * total - 1e-12:
            return v
    return pairs[-1][0]


def evaluate(plan: Plan, topology: Topology, catalog: Catalog, demand: Demand,
             options: PlacementOptions = PlacementOptions(), reference_objective: float | None = None,
             latency: LatencyModel | None = None, moves: Moves | None = None) -> Evaluation:
    """Score a plan. ``reference_objective`` (repository-only's objective) gives the gain.

    ``latency``: a model of the same topology and catalog to reuse (its caches), e.g. when
    scoring many plans. ``moves``: the running plan, to count what changing to this one
    costs (``move_cost``, ``move_ms``, ``moved``)."""
    alpha, rho = options.alpha, options.rho
    violations: list[str] = []
    slo: list[str] = []
    load = {n: 0.0 for n in topology.nodes}
    classes: dict[str, ClassScore] = {}
    model = latency or LatencyModel(topology, catalog)
    objective = lat_sum = acc_sum = 0.0
    lats, rates = [], []
    for c in demand.classes:
        route = plan.routes.get(c.id)
        if route is None or not route.targets:
            violations.append(f"class {c.id!r} is not served by the plan")
            continue
        total_share = sum(t.share for t in route.targets)
        if abs(total_share - 1.0) > SHARE_TOLERANCE:
            violations.append(f"class {c.id!r}: shares sum to {total_share:.6f}, not 1")
        lat = acc = cost = 0.0
        worst = 0.0
        for t in route.targets:
            if t.node not in topology.nodes:
                violations.append(f"class {c.id!r}: target node {t.node!r} is not in the topology")
                continue
            try:
                v = catalog.variant(t.variant)
            except KeyError:
                violations.append(f"class {c.id!r}: variant {t.variant!r} is not in the catalog")
                continue
            if v.task != c.task:
                violations.append(f"class {c.id!r}: variant {t.variant!r} implements {v.task}, not {c.task}")
            if t.variant not in plan.placements.get(t.node, ()):
                violations.append(f"class {c.id!r}: {t.variant} is not placed on {t.node}")
            p = model.predict(c.ingress, t.node, v, c.payload)
            lat += t.share * p.latency_ms
            acc += t.share * v.accuracy
            cost += t.share * (p.latency_ms + alpha * (1 - v.accuracy))
            worst = max(worst, p.latency_p95_ms)
            load[t.node] += c.rate * t.share * p.compute_ms / 1000.0
            if not meets_latency(p, c.max_latency_ms, TOL):
                slo.append(f"SLO: class {c.id!r} sent to {t.variant}@{t.node} with p95 "
                           f"{p.latency_p95_ms:.1f} ms > {c.max_latency_ms:g} ms")
                violations.append(slo[-1])
            if c.min_accuracy is not None and v.accuracy < c.min_accuracy - TOL:
                slo.append(f"SLO: class {c.id!r} sent to {t.variant} with accuracy "
                           f"{v.accuracy:.4f} < {c.min_accuracy:g}")
                violations.append(slo[-1])
        classes[c.id] = ClassScore(lat, acc, cost, worst)
        objective += c.rate * cost
        lat_sum += c.rate * lat
        acc_sum += c.rate * acc
        lats.append(lat)
        rates.append(c.rate)
    nodes: dict[str, NodeScore] = {}
    deployment = 0.0
    for nid, node in topology.nodes.items():
        names = list(plan.placements.get(nid, ()))
        mem = 0.0
        for name in names:
            try:
                mem += catalog.variant(name).bytes / MIB
            except KeyError:
                violations.append(f"node {nid!r}: placed variant {name!r} is not in the catalog")
        deployment += node.price * mem
        nodes[nid] = NodeScore(names, mem, node.mem_mb, load[nid], node.cores)
        if mem > node.mem_mb * (1 + TOL):
            violations.append(f"memory: node {nid!r} holds {mem:.1f} MiB > {node.mem_mb:g} MiB")
        if load[nid] > rho * node.cores * (1 + TOL) + 1e-9:
            violations.append(f"compute: node {nid!r} busy {load[nid]:.3f} cores > rho x cores = "
                              f"{rho * node.cores:.3f}")
    for nid in plan.placements:
        if nid not in topology.nodes:
            violations.append(f"placement on unknown node {nid!r}")
    if options.budget is not None and deployment > options.budget * (1 + TOL):
        violations.append(f"budget: deployment cost {deployment:.1f} > {options.budget:g}")
    total = sum(rates)
    gain = None
    if reference_objective is not None and reference_objective > 0:
        gain = 1.0 - objective / reference_objective
    moved: list[str] = []
    move_ms = move_weighted = 0.0
    if moves is not None:
        for nid, placed in plan.placements.items():
            for vname in placed:
                if nid in topology.nodes and vname in catalog.variants and not moves.placed(nid, vname):
                    moved.append(f"{vname}@{nid}")
                    move_ms += move_time(model, nid, catalog.variant(vname)).ms
        move_weighted = moves.weight * move_ms
    return Evaluation(
        move_cost=move_weighted, move_ms=move_ms, moved=sorted(moved),
        objective=objective, total_rate=total, mean_latency_ms=lat_sum / total if total else 0.0,
        p95_class_latency_ms=weighted_quantile(lats, rates, 0.95), accuracy=acc_sum / total if total else 0.0,
        deployment_cost=deployment, classes=classes, nodes=nodes, violations=violations, gain_vs_repository=gain,
        slo_violations=slo)
