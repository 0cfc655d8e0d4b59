"""Closing the loop: measure the demand at the ingresses, re-solve, apply when it pays.

A plan is only as good as the demand it was solved for. The controller reads every
node's GetStats since its last cursor (the requests each ingress received, per
request class with its SLO), turns the rates into a Demand, scores the plan the
network runs now against it, solves afresh, and pushes the new plan (in the three
network-wide phases) only when the current one cannot serve the measured classes,
or when the new one is cheaper by at least ``min_gain`` *after paying for its moves*:
re-planning on noise would churn models for nothing.

Moving models is not free (:mod:`idn.placement.moves`): the solver gets the running plan
and charges each new placement ``move_weight / interval_s`` per ms of moving (load time
plus bytes over the links), i.e. one ms of moving is worth ``move_weight`` request-ms of
latency, and a plan's gain per second is counted over one interval. Hysteresis: after a
change, ``hold_rounds`` rounds keep it unless the running plan breaks a constraint, so
two plans of near-equal cost cannot alternate; the running plan's idle variants stay
while they fit. Every push is logged with its reason, its predicted gain and its move
cost (``StepResult.log_line``). The decision itself (solve, keep idle, decide) is the
pure :func:`idn.control_round.decide_round`, which the simulator's ``control`` policy
calls too, so ``idn simulate`` predicts what this controller does; ``Controller.step``
only measures, calls it and applies.

Measuring right: the first round must not count the time before the controller
started (a node's counters run since it started, most of it idle), so ``prime`` takes
a cursor on every node first and each round measures exactly the window since the
last one. The running plan is read from the nodes (GetPlan, the highest version any
node routes by), so a controller started on a running network knows what it replaces.

Failures: a node that refuses connections is down at once; one that does not answer
within ``timeout_s`` (hung, or starved of CPU) is down after ``misses`` rounds in a row
— logged, never fatal. The round then plans on the live
sub-topology (:func:`idn.subtopology.live_topology`: classes whose path crossed a dead
node re-attached over a backup link or to their nearest live ancestor; classes whose
ingress is dead are absent from the measured demand; a node that comes back is planned
with the classes it had before it went down, until it has been measured again), and
pushes the plan to the live nodes only (a node that dies between the phases is skipped, see ``push_plan``). Any
change in the set of live nodes — one going down, one coming back — re-plans, so a
node that returns is brought back into service the round it answers again. Each
round reports how long the failure took to detect (since the node last answered) and
how long the re-plan took (solve + apply).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import grpc

from idn.catalog import Catalog
from idn.client import ControlClient
from idn.control_round import Decision, RoundKnobs, decide, decide_round, running_moves
from idn.demand import Demand, RequestClass, class_id
from idn.network import NodeCallError, call, push_plan
from idn.placement.moves import Moves
from idn.placement.problem import PlacementOptions
from idn.plan import Plan, parse_plan
from idn.protocol.failures import never_sent
from idn.subtopology import live_topology
from idn.tls import TLSFiles
from idn.topology import Topology

__all__ = ["Controller", "Decision", "Event", "StepResult", "decide", "measured_demand"]

log = logging.getLogger("idn.controller")


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
class Event:
    """Something the controller noticed or did, with the wall-clock time it happened."""
    t: float      # time.time()
    kind: str     # down, up, replan
    node: str | None
    detail: str


@dataclass
class StepResult:
    demand: Demand
    decision: Decision | None  # None: no traffic measured
    version: int | None = None  # the version applied, when one was
    down: tuple[str, ...] = ()  # nodes that did not answer this round
    went_down: tuple[str, ...] = ()
    came_back: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # how the live sub-topology differs from the topology
    detect_s: dict[str, float] = field(default_factory=dict)  # went down: time since it last answered
    solve_s: float | None = None
    apply_s: float | None = None
    kept: tuple[str, ...] = ()  # idle variants the new plan keeps because they fit

    def log_line(self) -> str:
        """What this round did, with what it cost and what it gained (one line, for the log)."""
        d = self.decision
        rate = sum(c.rate for c in self.demand.classes)
        if d is None:
            return "no traffic measured"
        head = f"{len(self.demand.classes)} classes, {rate:.1f} req/s; "
        if self.version is None:
            return head + d.reason
        cand = d.candidate
        gained = "" if d.current is None or cand is None else (
            f"; predicted cost {d.current.objective / max(rate, 1e-9):.1f} -> "
            f"{cand.objective / max(rate, 1e-9):.1f} ms per request")
        moved = "" if cand is None or not cand.moved else (
            f"; moved {', '.join(cand.moved)} ({cand.move_ms / 1000:.2f} s of loading and transfer)")
        kept = f"; kept idle {', '.join(self.kept)}" if self.kept else ""
        return head + f"applied plan v{self.version} ({d.reason}){gained}{moved}{kept}"


@dataclass
class Controller:
    topology: Topology
    catalog: Catalog
    addresses: dict[str, str]
    token: str
    options: PlacementOptions = field(default_factory=PlacementOptions)
    method: str = "highs"
    min_gain: float = 0.05
    interval_s: float = 10.0    # how long a plan is expected to run: gains per second count this long
    move_weight: float = 1.0    # request-ms of latency one ms of moving is worth (0: moves are free)
    hold_rounds: int = 1        # rounds after a change during which only a broken plan is replaced
    keep_idle: bool = True      # keep the running plan's unused variants while they fit (idn.control_round)
    plan: Plan | None = None  # what the network runs (read from the nodes by prime())
    timeout_s: float = 3.0  # a control call not answered within this is a miss
    misses: int = 2  # rounds in a row without an answer before a node that does not refuse is down
    on_event: Callable[[Event], None] | None = None
    down: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    tls: TLSFiles | None = None
    _cursors: dict[str, int] = field(default_factory=dict)
    _last_seen: dict[str, float] = field(default_factory=dict)
    _missed: dict[str, int] = field(default_factory=dict)
    _known: dict[str, tuple[RequestClass, ...]] = field(default_factory=dict)  # ingress -> last measured classes
    planned_live: frozenset[str] | None = None  # the live nodes self.plan was made for
    _since_change: int = 1_000_000

    def prime(self) -> None:
        """Start measuring now: a cursor per node that answers, and the plan the network runs."""
        best: tuple[int, str] = (0, "")
        for nid, addr in self.addresses.items():
            try:
                with ControlClient(addr, self.token, timeout=self.timeout_s, tls=self.tls) as c:
                    self._cursors[nid] = call(nid, addr, self.tls, partial(c.stats, 0), "reading its stats").cursor
                    st = call(nid, addr, self.tls, c.plan, "reading its plan")
            except NodeCallError as e:
                if e.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise  # a wrong token or a broken node is not "down": say so, naming the node
                continue  # down now: read_stats notices and reports it
            self._last_seen[nid] = time.monotonic()
            if st.version > best[0]:
                best = (st.version, st.plan_json)
        if best[0] and (self.plan is None or self.plan.version < best[0]):
            self.plan = parse_plan(json.loads(best[1]), f"<plan v{best[0]} from the nodes>")

    def _event(self, kind: str, node: str | None, detail: str) -> None:
        ev = Event(time.time(), kind, node, detail)
        self.events.append(ev)
        del self.events[:-1000]  # bounded: a long-running controller keeps the recent ones
        (log.warning if kind == "down" else log.info)("%s%s: %s", kind, f" {node}" if node else "", detail)
        if self.on_event is not None:
            self.on_event(ev)

    def _with_returning(self, demand: Demand, came_back: list[str]) -> Demand:
        """A node that just came back has measured (next to) nothing yet, and its clients are
        only returning from the ingresses they failed over to: plan it with the classes it
        had before it went down, so the plan brings it back into service at once rather
        than a round later."""
        if not came_back:
            return demand
        classes = [c for c in demand.classes if c.ingress not in came_back]
        for n in came_back:
            measured = [c for c in demand.classes if c.ingress == n]
            before = self._known.get(n, ())
            classes += list(before) if sum(c.rate for c in before) > sum(c.rate for c in measured) else measured
        return Demand(tuple(sorted(classes, key=lambda c: c.id)), file=demand.file)

    def _remember(self, demand: Demand, down: set[str]) -> None:
        by: dict[str, list[RequestClass]] = {}
        for c in demand.classes:
            by.setdefault(c.ingress, []).append(c)
        for n in self.addresses:
            if n not in down:
                self._known[n] = tuple(by.get(n, ()))

    def read_stats(self) -> tuple[list, dict[str, str]]:
        """Stats windows of the nodes that answered, and node -> error for those that did not."""
        windows, errors = [], {}
        for nid, addr in self.addresses.items():
            try:
                with ControlClient(addr, self.token, timeout=self.timeout_s, tls=self.tls) as c:
                    w = call(nid, addr, self.tls, partial(c.stats, self._cursors.get(nid, 0)), "reading its stats")
            except NodeCallError as e:
                if e.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise  # a wrong token or a broken node is not "down": say so, naming the node
                errors[nid] = f"{e.code.name}: {e.details}"
                continue
            self._cursors[nid] = w.cursor
            self._last_seen[nid] = time.monotonic()
            windows.append(w)
        return windows, errors

    def step(self) -> StepResult:
        if not self._cursors:
            self.prime()
        windows, errors = self.read_stats()
        now = time.monotonic()
        for nid in self.addresses:
            self._missed[nid] = self._missed.get(nid, 0) + 1 if nid in errors else 0
        down = {n for n, e in errors.items()
                if never_sent(e.partition(": ")[2]) or self._missed[n] >= self.misses or n in self.down}
        went_down, came_back = sorted(down - self.down), sorted(self.down - down)
        detect = {n: now - self._last_seen[n] for n in went_down if n in self._last_seen}
        for n in went_down:
            ago = f"; it last answered {detect[n]:.1f} s ago" if n in detect else ""
            self._event("down", n, f"not answering ({errors[n]}){ago}")
        for n in came_back:
            self._event("up", n, "answering again: re-planning with it")
        self.down = down
        notes: list[str] = []

        def result(demand: Demand, decision: Decision | None, **more: Any) -> StepResult:
            return StepResult(demand, decision, down=tuple(sorted(down)), went_down=tuple(went_down),
                              came_back=tuple(came_back), notes=tuple(notes), detect_s=detect, **more)

        if len(down) == len(self.topology.nodes):
            return result(Demand((), file="<measured>"), None)
        topo, notes = live_topology(self.topology, down)
        demand = self._with_returning(measured_demand(windows, topo, self.catalog), came_back)
        self._remember(demand, down)
        if not demand.classes:
            return result(demand, None)
        live = frozenset(topo.nodes)
        self._since_change += 1
        changed = None
        if self.plan is not None and self.planned_live is not None and live != self.planned_live:
            gone, back = sorted(self.planned_live - live), sorted(live - self.planned_live)
            changed = "live nodes changed (" + "; ".join(
                ([f"down: {', '.join(gone)}"] if gone else []) + ([f"back: {', '.join(back)}"] if back else [])) + ")"
        rnd = decide_round(topo, self.catalog, demand, self.plan, self._since_change, self.knobs(), changed)
        d, solve_s = rnd.decision, rnd.solve_s
        if not d.apply:
            return result(demand, d, solve_s=solve_s)
        t1 = time.monotonic()
        failed = set(down)
        version, _ = push_plan(rnd.plan, self.topology, self.addresses, self.token, down=failed,
                               timeout_s=self.timeout_s, tls=self.tls)
        apply_s = time.monotonic() - t1
        for n in sorted(failed - down):
            self._event("down", n, "stopped answering while the plan was applied; re-planning next round")
        self.plan = rnd.plan.with_version(version)
        self.planned_live = live
        self._since_change = 0
        self._event("replan", None, f"plan v{version} on {len(live)} live node(s) ({d.reason}): solved in "
                                    f"{solve_s:.2f} s, applied in {apply_s:.2f} s"
                                    + (f"; {'; '.join(notes)}" if notes else ""))
        return result(demand, d, version=version, solve_s=solve_s, apply_s=apply_s, kept=rnd.kept)

    def knobs(self) -> RoundKnobs:
        """This controller's options as the shared decision round takes them (:mod:`idn.control_round`)."""
        return RoundKnobs(self.options, self.method, min_gain=self.min_gain, interval_s=self.interval_s,
                          move_weight=self.move_weight, hold_rounds=self.hold_rounds, keep_idle=self.keep_idle)

    def moves(self, topology: Topology) -> Moves | None:
        """The running plan (on the live nodes) and the per-second weight of a ms of moving."""
        return running_moves(self.plan, topology, self.move_weight / max(self.interval_s, 1e-9))
