"""Where a request goes: the routing table a node derives from the plan.

Pure logic, no I/O. A node builds one ``RoutingTable`` per applied plan and swaps it
in atomically; resolution happens once, at the ingress (DESIGN.md "Request path"):

1. ``idn.target`` set (an upstream ingress already chose): serve it here if the target
   node is this node, else forward one hop towards it.
2. ``model_name`` is a variant (pinned): serve it here if loaded, else forward towards
   the nearest node the plan put it on; with no such node, towards the repository.
3. ``model_name`` is a task: the plan's classes for (this ingress, task) give weighted
   targets. A class with exactly the request's SLO is used as is; otherwise every
   target of the task at this ingress is a candidate, filtered by the request's own
   SLO (the p95 prediction of :mod:`idn.latency`, the one the ILP and the evaluator
   check; catalog accuracy). Among candidates a
   smooth weighted round-robin picks deterministically (nginx's algorithm: over any
   window the split matches the weights to within one request, with no coin flips).
   Round-robin state is kept per candidate set, not per SLO value: the SLOs clients
   send are unbounded, the subsets of a plan's targets they can select are not.
4. Anything this node cannot place (no plan yet, a task the plan does not route here)
   goes one hop towards the repository; the repository serves it with its most
   accurate variant of the task. A pinned variant nobody closer holds goes there with
   the repository named as its target, so it can never bounce back down.

Failover (``failover``): when the next hop, or a node further along the route, is down,
the alternatives in order are (a) the same target over another route, backup links
included (:meth:`Topology.route_avoiding`), or by connecting straight to the first live
node past the dead one on the normal route; (b) the nearest node further up this node's
path to the repository, past the dead one, that can serve the request (the plan placed
a variant of its task there, or it is a repository), reached the same way. What is left
after that — a local degraded answer, else UNAVAILABLE — is the data plane's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from idn.catalog import Catalog, Variant
from idn.config import ConfigError
from idn.latency import LatencyModel, Prediction
from idn.plan import Plan
from idn.protocol.status import echo
from idn.topology import Topology


class Action(Enum):
    LOCAL = "local"        # run `variant` here
    FORWARD = "forward"    # send to `next_hop`, carrying `target` (node/variant) when chosen
    BEST_LOCAL = "best"    # repository: serve the task with the best variant it has (loading if needed)


@dataclass(frozen=True, slots=True)
class Resolution:
    action: Action
    variant: str | None = None
    node: str | None = None      # the node that will serve (None: not chosen yet)
    next_hop: str | None = None
    slo_met: bool = True         # False when no target satisfied the request's own SLO

    @property
    def target(self) -> str | None:
        return f"{self.node}/{self.variant}" if self.node and self.variant else None


@dataclass(frozen=True, slots=True)
class Candidate:
    node: str
    variant: str
    weight: float
    latency_ms: float | None  # predicted p95 (idn.latency; None: not predictable)
    accuracy: float


class SmoothWRR:
    """Smooth weighted round-robin: deterministic, evenly interleaved picks."""

    __slots__ = ("items", "weights", "current", "total")

    def __init__(self, items: list[Candidate]):
        self.items = items
        self.weights = [max(c.weight, 0.0) for c in items]
        self.current = [0.0] * len(items)
        self.total = sum(self.weights)

    def pick(self) -> Candidate:
        if self.total <= 0:
            return self.items[0]
        best, best_val = 0, float("-inf")
        cur, w = self.current, self.weights
        for i in range(len(cur)):
            cur[i] += w[i]
            if cur[i] > best_val:
                best, best_val = i, cur[i]
        cur[best] -= self.total
        return self.items[best]


def parse_target(value: str) -> tuple[str, str]:
    node, sep, variant = value.partition("/")
    if not sep or not node or not variant:
        raise ValueError(f"idn.target must be '<node>/<variant>', got {echo(value)!r}")
    return node, variant


def slo_key(max_latency_ms: float | None, min_accuracy: float | None) -> tuple[float | None, float | None]:
    return (None if max_latency_ms is None else float(max_latency_ms),
            None if min_accuracy is None else float(min_accuracy))


@dataclass
class RoutingTable:
    node_id: str
    topology: Topology | None
    catalog: Catalog | None
    plan: Plan | None = None
    # task -> SLO key -> candidates of the class with that SLO (weights = shares)
    _classes: dict[str, dict[tuple, list[Candidate]]] = field(default_factory=dict)
    # task -> every candidate at this ingress (weights = share x class rate)
    _task_all: dict[str, list[Candidate]] = field(default_factory=dict)
    # ("class", task, SLO of a plan class) or ("subset", task, candidate indices) -> its round-robin
    _wrr: dict[tuple, SmoothWRR] = field(default_factory=dict)
    _pinned: dict[str, str] = field(default_factory=dict)  # variant -> nearest node holding it
    _latency: LatencyModel | None = None
    _task_variants: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model -> its task's variants

    def __post_init__(self) -> None:
        if self.plan is None or self.topology is None:
            return
        if self.catalog is not None:
            self._latency = LatencyModel(self.topology, self.catalog)
        for route in self.plan.routes.values():
            if route.ingress != self.node_id:
                continue
            cands = [self._candidate(t.node, t.variant, t.share) for t in route.targets if t.share > 0]
            key = slo_key(route.max_latency_ms, route.min_accuracy)
            self._classes.setdefault(route.task, {})[key] = cands
            self._task_all.setdefault(route.task, []).extend(
                Candidate(c.node, c.variant, c.weight * max(route.rate, 1e-9), c.latency_ms, c.accuracy)
                for c in cands)
        for node, variants in self.plan.placements.items():
            for v in variants:
                cur = self._pinned.get(v)
                if cur is None or self._delay(node) < self._delay(cur):
                    self._pinned[v] = node

    # -- building -------------------------------------------------------------------------

    def _delay(self, node: str) -> float:
        assert self.topology is not None  # only called while building from a plan, which needs one
        return 0.0 if node == self.node_id else self.topology.delay_ms(self.node_id, node)

    def _candidate(self, node: str, variant: str, weight: float) -> Candidate:
        acc, lat = 0.0, None
        if self._latency is not None and variant in self._latency.catalog.variants:
            v = self._latency.catalog.variants[variant]
            acc = v.accuracy
            try:
                lat = self.predict(node, v).latency_p95_ms
            except ConfigError:
                lat = None  # never profiled and nothing to scale from: cannot filter on latency
        return Candidate(node, variant, weight, lat, acc)

    def predict(self, node: str, variant: Variant) -> Prediction:
        """This ingress's prediction for a target, from the one latency model (task-signature payload)."""
        assert self._latency is not None
        return self._latency.predict(self.node_id, node, variant)

    @property
    def version(self) -> int:
        return self.plan.version if self.plan is not None else 0

    def towards_repository(self) -> str | None:
        if self.topology is None:
            return None
        path = self.topology.path(self.node_id)
        return path[1] if len(path) > 1 else None

    def repository_id(self) -> str | None:
        """The repository this node's requests end at (None without a topology)."""
        return self.topology.path(self.node_id)[-1] if self.topology is not None else None

    def is_repository(self) -> bool:
        return self.topology is None or self.topology.node(self.node_id).repository

    # -- resolution -----------------------------------------------------------------------

    def resolve(self, model: str, loaded: set[str] | dict, target: str | None = None,
                max_latency_ms: float | None = None, min_accuracy: float | None = None) -> Resolution:
        if target:
            node, variant = parse_target(target)
            if node == self.node_id:
                return Resolution(Action.LOCAL, variant, node)
            return Resolution(Action.FORWARD, variant, node, self._next_hop(node))
        if model in loaded:
            return Resolution(Action.LOCAL, model, self.node_id)
        if self.catalog is not None and model in self.catalog.variants:
            holder = self._pinned.get(model)
            if holder is not None and holder != self.node_id:
                return Resolution(Action.FORWARD, model, holder, self._next_hop(holder))
            return self._towards_repository(model, variant=model)
        if model in self._classes:
            return self._choose(model, slo_key(max_latency_ms, min_accuracy))
        if self.catalog is not None and model in self.catalog.tasks:
            return self._towards_repository(model)
        nxt = self.towards_repository()
        if nxt is not None:
            return Resolution(Action.FORWARD, next_hop=nxt)
        return Resolution(Action.LOCAL, model, self.node_id)  # the data plane answers NOT_FOUND

    def _towards_repository(self, task_or_variant: str, variant: str | None = None) -> Resolution:
        if self.is_repository():
            return Resolution(Action.LOCAL, variant, self.node_id) if variant else Resolution(Action.BEST_LOCAL,
                                                                                         node=self.node_id)
        return Resolution(Action.FORWARD, variant, self.repository_id() if variant else None,
                          self.towards_repository())

    def _next_hop(self, node: str) -> str:
        if self.topology is None:
            raise ValueError(f"this node has no topology: cannot reach node {node!r}")
        if node not in self.topology.nodes:
            raise ValueError(f"idn.target names unknown node {echo(node)!r}")
        hop = self.topology.next_hop(self.node_id, node)
        if hop is None:
            raise ValueError(f"node {node!r} is this node: nothing to forward")
        return hop

    def _choose(self, task: str, slo: tuple[float | None, float | None]) -> Resolution:
        exact = self._classes[task].get(slo)
        met = True
        if exact is not None:
            key: tuple[object, ...] = ("class", task, slo)
            wrr = self._wrr.get(key)
            if wrr is None:
                wrr = self._wrr[key] = SmoothWRR(exact)
        else:
            max_lat, min_acc = slo
            all_c = self._task_all[task]
            chosen = tuple(i for i, c in enumerate(all_c)
                           if (max_lat is None or c.latency_ms is None or c.latency_ms <= max_lat)
                           and (min_acc is None or c.accuracy >= min_acc))
            if not chosen:
                chosen, met = tuple(range(len(all_c))), False
            key = ("subset", task, chosen)
            wrr = self._wrr.get(key)
            if wrr is None:
                wrr = self._wrr[key] = SmoothWRR([all_c[i] for i in chosen])
        c = wrr.pick()
        if c.node == self.node_id:
            return Resolution(Action.LOCAL, c.variant, c.node, slo_met=met)
        return Resolution(Action.FORWARD, c.variant, c.node, self._next_hop(c.node), slo_met=met)

    # -- failover -------------------------------------------------------------------------

    def failover(self, model: str, decision: Resolution, down: frozenset[str]) -> list[Resolution]:
        """Where to send a request whose route crosses a ``down`` node, best first (see the module
        docstring); [] when nothing reachable can serve it. Pure: ``down`` is the caller's knowledge."""
        topo = self.topology
        if topo is None:
            return []
        me, out = self.node_id, []
        target = decision.node
        if target is not None and target != me and target not in down:
            hop = self._hop_avoiding(target, down)
            if hop is not None:
                out.append(Resolution(Action.FORWARD, decision.variant, target, hop, decision.slo_met))
        task = self.task_of(model)
        if task is not None:
            path = topo.path(me)
            first_down = next((i for i, n in enumerate(path) if n in down), 0)
            for n in path[first_down + 1:]:
                if n in down or n == target:
                    continue
                variant = self._serves(n, model, task)
                hop = self._hop_avoiding(n, down) if variant is not None else None
                if variant is not None and hop is not None:
                    out.append(Resolution(Action.FORWARD, variant, n, hop, decision.slo_met))
                    break
        return out

    def _hop_avoiding(self, node: str, down: frozenset[str]) -> str | None:
        """First hop towards ``node`` around the down nodes: another route, else straight past them."""
        assert self.topology is not None
        route = self.topology.route_avoiding(self.node_id, node, down)
        if route is not None and len(route) > 1:
            return route[1]
        return next((n for n in self.topology.route(self.node_id, node)[1:] if n not in down), None)

    def _serves(self, node: str, model: str, task: str) -> str | None:
        """The variant ``node`` would answer ``model`` with, as far as the plan says (None: it cannot)."""
        assert self.topology is not None
        placed = self.plan.placements.get(node, ()) if self.plan is not None else ()
        repository = self.topology.node(node).repository
        cat = self.catalog
        if model != task:  # a pinned variant
            return model if (model in placed or repository) else None
        if cat is None or task not in cat.tasks:
            return None
        variants = cat.tasks[task].variants.values()
        mine = [v for v in variants if v.name in placed] or (list(variants) if repository else [])
        return max(mine, key=lambda v: (v.accuracy, v.name)).name if mine else None

    def has_local(self, model: str, loaded: set[str] | dict) -> bool:
        """Whether a local degraded answer exists for ``model`` (a loaded variant of its task)."""
        names = self._task_variants.get(model)
        if names is None:
            task = self.task_of(model)
            cat = self.catalog
            if cat is None or task not in cat.tasks:
                return False  # not cached: names clients make up must not grow this table
            names = self._task_variants[model] = tuple(cat.tasks[task].variants)
        return any(n in loaded for n in names)

    def best_local_variant(self, task: str, loaded: set[str] | dict) -> str | None:
        """The most accurate loaded variant of a task (the degraded fallback and the repository's default)."""
        if self.catalog is None or task not in self.catalog.tasks:
            return None
        vs = [v for v in self.catalog.tasks[task].variants.values() if v.name in loaded]
        return max(vs, key=lambda v: v.accuracy).name if vs else None

    def task_of(self, model: str) -> str | None:
        if self.catalog is None:
            return None
        if model in self.catalog.tasks:
            return model
        v = self.catalog.variants.get(model)
        return v.task if v else None
