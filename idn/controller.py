"""Closing the loop: measure the demand at the ingresses, re-solve, apply when it pays.

A plan is only as good as the demand it was solved for. The controller reads every
node's GetStats since its last cursor (the requests each ingress received, per
request class with its SLO), turns the rates into a Demand, scores the plan the
network runs now against it, solves afresh, and pushes the new plan (in the three
network-wide phases) only when the current one cannot serve the measured classes,
or when the new one is cheaper by at least ``min_gain``: re-planning on noise would
churn models for nothing. Pure decision logic (``measured_demand``, ``decide``) is
separate from the I/O (``Controller.step``) so it can be tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

from idn.catalog import Catalog
from idn.client import ControlClient
from idn.demand import Demand, RequestClass, class_id
from idn.network import call, push_plan
from idn.placement import solve
from idn.placement.evaluate import Evaluation, evaluate
from idn.placement.problem import PlacementOptions
from idn.plan import Plan
from idn.tls import TLSFiles
from idn.topology import Topology


def measured_demand(windows: Iterable, topology: Topology, catalog: Catalog, min_rate: float = 0.0) -> Demand:
    """Stats windows (``idn.v1.Stats``, one per node) -> request classes at their measured rates.

    Requests for tasks the catalog does not know, or at nodes the topology does not
    have, cannot be placed and are left out; so are classes below ``min_rate``.
    """
    rates: dict[tuple, float] = {}
    for w in windows:
        for cs in w.classes:
            if cs.task not in catalog.tasks or cs.ingress not in topology.nodes or w.window_s <= 0:
                continue
            lat = cs.max_latency_ms if cs.HasField("max_latency_ms") else None
            acc = cs.min_accuracy if cs.HasField("min_accuracy") else None
            key = (cs.ingress, cs.task, lat, acc)
            rates[key] = rates.get(key, 0.0) + cs.requests / w.window_s
    classes = tuple(RequestClass(class_id(*k), k[0], k[1], r, k[2], k[3])
                    for k, r in sorted(rates.items(), key=lambda kv: class_id(*kv[0])) if r > min_rate)
    return Demand(classes, file="<measured>")


@dataclass(frozen=True)
class Decision:
    apply: bool
    reason: str
    current: Evaluation | None = None
    candidate: Evaluation | None = None


def decide(current: Evaluation | None, candidate: Evaluation, min_gain: float) -> Decision:
    """Replace the running plan only if it cannot serve the demand or the new one is clearly cheaper."""
    if current is None:
        return Decision(True, "no plan yet", None, candidate)
    if current.violations:
        return Decision(True, f"the running plan breaks {len(current.violations)} constraint(s) under the "
                              f"measured demand (e.g. {current.violations[0]})", current, candidate)
    gain = 1 - candidate.objective / current.objective if current.objective > 0 else 0.0
    if gain >= min_gain:
        return Decision(True, f"new plan {100 * gain:.1f}% cheaper", current, candidate)
    return Decision(False, f"new plan only {100 * gain:.1f}% cheaper (< {100 * min_gain:.0f}%): keep",
                    current, candidate)


@dataclass
class StepResult:
    demand: Demand
    decision: Decision | None  # None: no traffic measured
    version: int | None = None  # the version applied, when one was


@dataclass
class Controller:
    topology: Topology
    catalog: Catalog
    addresses: dict[str, str]
    token: str
    options: PlacementOptions = field(default_factory=PlacementOptions)
    method: str = "highs"
    min_gain: float = 0.05
    plan: Plan | None = None  # what the network runs (as far as this controller applied it)
    tls: TLSFiles | None = None
    _cursors: dict[str, int] = field(default_factory=dict)

    def read_stats(self) -> list:
        """Every node's stats window since the last round (a node that fails raises NodeCallError naming it)."""
        windows = []
        for nid, addr in self.addresses.items():
            with ControlClient(addr, self.token, tls=self.tls) as c:
                w = call(nid, addr, self.tls, partial(c.stats, self._cursors.get(nid, 0)), "reading its stats")
            self._cursors[nid] = w.cursor
            windows.append(w)
        return windows

    def step(self) -> StepResult:
        demand = measured_demand(self.read_stats(), self.topology, self.catalog)
        if not demand.classes:
            return StepResult(demand, None)
        outcome = solve(self.topology, self.catalog, demand, self.options, method=self.method)
        current = evaluate(self.plan, self.topology, self.catalog, demand, self.options) if self.plan else None
        d = decide(current, outcome.evaluation, self.min_gain)
        if not d.apply:
            return StepResult(demand, d)
        version, _ = push_plan(outcome.plan, self.topology, self.addresses, self.token, tls=self.tls)
        self.plan = outcome.plan.with_version(version)
        return StepResult(demand, d, version)
