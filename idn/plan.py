"""The plan: what the solver decided, in a form nodes apply and people audit.

File format (YAML or JSON; ``save_plan`` picks by suffix)::

    version: 3                       # int >= 1, increases monotonically; nodes refuse stale versions
    created: "2025-01-01T12:00:00Z"
    placements:                      # node -> variants loaded there
      edge-1: [digits-mlp-s]
      cloud: [digits-cnn-l, waveforms-gru]
    routes:                          # one entry per request class, keyed by the class id
      edge-1/digits:
        ingress: edge-1
        task: digits
        rate: 40.0
        max_latency_ms: null
        min_accuracy: null
        targets:                     # shares sum to 1; every target variant is placed on its node
          - {node: edge-1, variant: digits-mlp-s, share: 0.75}
          - {node: cloud, variant: digits-cnn-l, share: 0.25}
        predicted: {latency_ms: 12.3, accuracy: 0.93, cost_ms: 14.1}
    predicted: {objective: 1234.5, mean_latency_ms: 10.2, ...}   # plan-wide totals
    inputs:                          # sha256 of what the plan was computed from
      topology: <hex>
      catalog: <hex>
      demand: <hex>
    solver: {name: highs, status: optimal, objective: 1234.5, bound: 1234.5, gap: 0.0,
             time_s: 0.41, options: {alpha: 100, rho: 0.8, budget: null, ...}}

A node builds its routing table from the routes entering at it (``plan.routes``; the
router filters their targets by the request's own SLO) and loads
``plan.variants_on(node)``; ``plan.targets_for(ingress, task)`` lists one ingress's
classes for a task (for tools and tests). ``solver.status`` is a :class:`SolveStatus`.
``load_plan(save_plan(p))`` equals ``p``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from idn.config import ConfigError, Fields, finite, read_document

if TYPE_CHECKING:
    from idn.catalog import Catalog
    from idn.topology import Topology

SHARE_TOLERANCE = 1e-6
# The largest plan version: every JSON reader keeps it exact (2^53 - 1), protobuf's int64
# carries it, and re-versioning (``idn apply``: max + 1) can go on for ever below it.
MAX_VERSION = 2**53 - 1


@dataclass(frozen=True)
class Target:
    node: str
    variant: str
    share: float


@dataclass(frozen=True)
class Route:
    """How one request class is split over (node, variant) targets, and what that predicts."""
    class_id: str
    ingress: str
    task: str
    rate: float
    targets: tuple[Target, ...]
    max_latency_ms: float | None = None
    min_accuracy: float | None = None
    predicted: dict[str, float] = field(default_factory=dict)


class SolveStatus(StrEnum):
    """How a plan's solver run ended (the ``solver.status`` of a plan file).

    OPTIMAL: proven within the solver's default relative gap (1e-4). GAP_LIMIT: stopped
    at a requested --gap, proven within it. TIME_LIMIT: stopped on time with a plan; the
    gap says how far from the bound. FEASIBLE: stopped by another limit with a plan.
    NO_SOLUTION: stopped with no plan and no proof either way (not infeasible).
    INFEASIBLE: proven that no plan exists. HEURISTIC: a heuristic's plan (its gap is
    against a bound when one was computed). FAILED: a heuristic found no plan, which says
    nothing about whether one exists.
    """
    OPTIMAL = "optimal"
    GAP_LIMIT = "gap-limit"
    TIME_LIMIT = "time-limit"
    FEASIBLE = "feasible"
    NO_SOLUTION = "no-solution"
    INFEASIBLE = "infeasible"
    HEURISTIC = "heuristic"
    FAILED = "failed"

    @property
    def has_plan(self) -> bool:
        return self not in (SolveStatus.NO_SOLUTION, SolveStatus.INFEASIBLE, SolveStatus.FAILED)


@dataclass(frozen=True)
class ApplyResult:
    """What applying (one phase of) a plan did on one node."""
    version: int
    loaded: tuple[str, ...]
    unloaded: tuple[str, ...]
    kept: tuple[str, ...]
    node: str = ""


@dataclass(frozen=True)
class SolverFacts:
    """What the solver (or heuristic) reported, honestly: a time-limited run is not 'optimal'."""
    name: str
    status: SolveStatus
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    time_s: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    version: int
    placements: dict[str, tuple[str, ...]]
    routes: dict[str, Route]
    solver: SolverFacts
    inputs: dict[str, str] = field(default_factory=dict)
    predicted: dict[str, float] = field(default_factory=dict)
    created: str = ""

    def variants_on(self, node_id: str) -> list[str]:
        """Variants the plan places on a node (empty for a node it does not use)."""
        return list(self.placements.get(node_id, ()))

    def targets_for(self, ingress: str, task: str) -> list[tuple[Route, tuple[Target, ...]]]:
        """Every class entering at ``ingress`` for ``task``, with its targets, by class id."""
        return [(r, r.targets) for _, r in sorted(self.routes.items())
                if r.ingress == ingress and r.task == task]

    def nodes_with(self, variant: str) -> list[str]:
        """Nodes holding a variant (for requests that pin a variant by name)."""
        return sorted(n for n, vs in self.placements.items() if variant in vs)

    def with_version(self, version: int) -> Plan:
        return Plan(version, self.placements, self.routes, self.solver, self.inputs, self.predicted, self.created)


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _clean(x: Any) -> Any:
    """Plain YAML/JSON types (NaN/inf become null: JSON has no spelling for them)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return _clean({
        "version": plan.version,
        "created": plan.created,
        "placements": {n: list(vs) for n, vs in sorted(plan.placements.items())},
        "routes": {cid: {
            "ingress": r.ingress, "task": r.task, "rate": r.rate,
            "max_latency_ms": r.max_latency_ms, "min_accuracy": r.min_accuracy,
            "targets": [{"node": t.node, "variant": t.variant, "share": t.share} for t in r.targets],
            "predicted": dict(r.predicted),
        } for cid, r in sorted(plan.routes.items())},
        "predicted": dict(plan.predicted),
        "inputs": dict(plan.inputs),
        "solver": {"name": plan.solver.name, "status": str(plan.solver.status), "objective": plan.solver.objective,
                   "bound": plan.solver.bound, "gap": plan.solver.gap, "time_s": plan.solver.time_s,
                   "options": dict(plan.solver.options)},
    })


def _opt_float(f: Fields, key: str) -> float | None:
    v = f.data.get(key)
    if v is None:
        return None
    return f.opt(key, float, 0.0)


def _metrics(f: Fields, key: str) -> dict[str, float]:
    sub = f.sub(key, required=False)
    out = {}
    for k in sub.data:
        v = sub.data[k]
        if v is None:  # a non-finite number was written as null
            continue
        if not finite(v):
            raise sub.error(str(k), f"expected a finite number, got {v!r}", "write a number, or null for none")
        out[str(k)] = float(v)
    return out


def _slo(r: Fields) -> tuple[float | None, float | None]:
    lat, acc = _opt_float(r, "max_latency_ms"), _opt_float(r, "min_accuracy")
    if lat is not None and lat <= 0:
        raise r.error("max_latency_ms", f"must be > 0, got {lat}", "null for no latency SLO")
    if acc is not None and not 0.0 <= acc <= 1.0:
        raise r.error("min_accuracy", f"must be within [0, 1], got {acc}", "null for no accuracy SLO")
    return lat, acc


def _name(f: Fields, key: str) -> str:
    v = f.req(key, str)
    if not v.strip():
        raise f.error(key, "empty", f"give the {key}")
    return v


def parse_plan(doc: Any, file: str | Path | None = None) -> Plan:
    """Validate a plan document: shares sum to 1 and every target is placed where it points."""
    root = Fields(doc, file, "")
    root.check_keys({"version", "created", "placements", "routes", "predicted", "inputs", "solver"})
    version = root.req("version", int)
    if not 1 <= version <= MAX_VERSION:
        raise root.error("version", f"must be within 1..{MAX_VERSION} (2^53 - 1), got {version}",
                         "versions start at 1 and go up by one; `idn apply` re-versions a plan for you")
    pf = root.sub("placements")
    placements: dict[str, tuple[str, ...]] = {}
    for node, vs in pf.data.items():
        node = str(node)
        if not isinstance(vs, list) or not all(isinstance(v, str) and v for v in vs):
            raise pf.error(node, f"expected a list of variant names, got {vs!r}", f"write `{node}: [variant, ...]`")
        if len(set(vs)) != len(vs):
            raise pf.error(node, "a variant is listed twice", "list each variant once per node")
        placements[node] = tuple(vs)
    rf = root.sub("routes")
    routes: dict[str, Route] = {}
    for cid in rf.data:
        r = rf.sub(cid)
        cid = str(cid)
        r.check_keys({"ingress", "task", "rate", "max_latency_ms", "min_accuracy", "targets", "predicted"})
        ingress, task = _name(r, "ingress"), _name(r, "task")
        rate = r.req("rate", float)
        if rate < 0:
            raise r.error("rate", f"must be >= 0, got {rate}", "rates are requests per second")
        lat, acc = _slo(r)
        targets = []
        seen: set[tuple[str, str]] = set()
        for i, item in enumerate(r.req("targets", list)):
            t = Fields(item, file, f"{r.path('targets')}[{i}]")
            t.check_keys({"node", "variant", "share"})
            node, variant, share = t.req("node", str), t.req("variant", str), t.req("share", float)
            if not 0.0 < share <= 1.0 + SHARE_TOLERANCE:
                raise t.error("share", f"must be within (0, 1], got {share}", "drop targets with no share")
            if variant not in placements.get(node, ()):
                raise t.error("variant", f"{variant!r} is not placed on node {node!r}",
                              f"add it to placements.{node} or route elsewhere")
            if (node, variant) in seen:
                raise t.error("variant", f"{variant}@{node} is a target twice", "merge the two shares")
            seen.add((node, variant))
            targets.append(Target(node, variant, share))
        total = sum(t.share for t in targets)
        if not targets or abs(total - 1.0) > SHARE_TOLERANCE:
            raise r.error("targets", f"shares sum to {total:.9f}, not 1", "every class must be fully served")
        routes[cid] = Route(
            class_id=cid, ingress=ingress, task=task, rate=rate,
            targets=tuple(targets), max_latency_ms=lat, min_accuracy=acc, predicted=_metrics(r, "predicted"))
    sf = root.sub("solver")
    status = sf.req("status", str)
    if status not in SolveStatus.__members__.values():
        raise sf.error("status", f"unknown solver status {status!r}",
                       f"use one of {', '.join(s.value for s in SolveStatus)}")
    solver = SolverFacts(
        name=sf.req("name", str), status=SolveStatus(status), objective=_opt_float(sf, "objective"),
        bound=_opt_float(sf, "bound"), gap=_opt_float(sf, "gap"), time_s=_opt_float(sf, "time_s"),
        options=dict(sf.opt("options", dict, {})))
    inputs = {str(k): str(v) for k, v in root.opt("inputs", dict, {}).items()}
    return Plan(version, placements, routes, solver, inputs, _metrics(root, "predicted"),
                root.opt("created", str, ""))


def save_plan(plan: Plan, path: str | Path) -> Path:
    """Write a plan as JSON (``.json``) or YAML (anything else)."""
    p = Path(path)
    doc = plan_to_dict(plan)
    if p.suffix == ".json":
        p.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    else:
        p.write_text(yaml.safe_dump(doc, sort_keys=False, width=120), encoding="utf-8")
    return p


def load_plan(path: str | Path) -> Plan:
    return parse_plan(read_document(path), path)


def check_plan_against(plan: Plan, node_ids: set[str], variant_names: set[str], file: str | None = None,
                       variant_tasks: dict[str, str] | None = None) -> None:
    """Refuse a plan that names nodes or variants a topology/catalog does not have.

    ``variant_tasks`` (variant -> task, from the catalog): also refuse a route whose task
    the catalog does not have or whose targets run a variant of another task (such a
    plan applies cleanly and then fails every request of the class). :func:`check_plan`
    passes everything from a topology and a catalog.
    """
    fix_topo, fix_cat = "re-solve against the current topology", "re-solve against the current catalog"
    for node, vs in plan.placements.items():
        if node not in node_ids:
            raise ConfigError(file, f"placements.{node}", f"unknown node {node!r}", fix_topo)
        for v in vs:
            if v not in variant_names:
                raise ConfigError(file, f"placements.{node}", f"unknown variant {v!r}", fix_cat)
    tasks = set(variant_tasks.values()) if variant_tasks is not None else None
    for cid, r in plan.routes.items():
        where = f"routes.{cid}"
        if r.ingress not in node_ids:
            raise ConfigError(file, f"{where}.ingress", f"unknown node {r.ingress!r}", fix_topo)
        if tasks is None or variant_tasks is None:
            continue
        if r.task not in tasks:
            raise ConfigError(file, f"{where}.task", f"unknown task {r.task!r}", fix_cat)
        for i, t in enumerate(r.targets):
            vt = variant_tasks.get(t.variant)
            if vt != r.task:
                raise ConfigError(file, f"{where}.targets[{i}].variant",
                                  f"{t.variant!r} implements task {vt!r}, not the route's task {r.task!r}",
                                  f"route {r.task} to a variant of {r.task} (re-solve)")


def check_plan(plan: Plan, topology: Topology, catalog: Catalog, file: str | None = None) -> None:
    """Every rule a plan must meet against the network it is applied to (nodes, variants, tasks)."""
    check_plan_against(plan, set(topology.nodes), set(catalog.variants), file,
                       {v.name: v.task for v in catalog.variants.values()})
