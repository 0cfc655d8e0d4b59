"""The latency model: the one place that says how long a request takes.

Problem building, the evaluator, the baselines, the infeasibility explainer and the
node's router all predict through this module, so a plan and a live node answer
"does this target meet the SLO?" with the same numbers.

For a request of class r entering at ingress i and served by variant v at node n::

    latency(r, n, v) = 2 * delay(i, n)                 round trip, links + hop overheads
                     + bytes(r) * 8 / bandwidth        per link crossed, request + response
                     + t[v, n]                         compute at n

* ``delay(i, n)`` is the modelled one-way delay along the route (each link's
  ``delay_ms`` plus the topology's ``hop_overhead_ms`` per hop). The route from an
  ingress to a node on its path to the repository is that path's prefix; to any
  other node, the shortest-by-delay route (the same routes nodes forward along).
* The transfer term charges the request bytes on the way out and the response bytes
  on the way back, on every link crossed: ``(req + resp) * 8 / (bandwidth_mbps * 1000)``
  ms per link. A link without ``bandwidth_mbps`` costs nothing extra (infinitely fast).
  The bytes are the task's signature (:func:`task_payload`), or the class's
  ``payload_bytes`` override. Routes stay shortest-by-delay; bandwidth only prices them.
* ``t[v, n]`` = the catalog's batch-1 single-thread profile for n's hardware class x
  n's ``slowdown`` + n's ``overhead_ms``; when a variant was never profiled on that
  class, FLOPs scaling from the closest profiled variant (:func:`base_compute_ms`).
  Two quantiles: p50 prices the objective and the mean, **p95 checks SLOs everywhere**
  (raised to at least p50, as a noisy profile can have p95 < p50).

**Batching: the model assumes none (batch 1), on purpose.** Nodes batch by default
(``idn.node.batcher``): requests that queue while a run is in flight merge into the
next run, up to the variant's ``Variant.batch_limit``. The compute model still prices
every request at the batch-1 profile, for latency and for the capacity rows alike:

* latency: batches form only when requests queue, which the capacity rows (``rho``) are
  there to prevent; an idle node runs each request alone, at exactly ``t[v, n]``. A
  merged request waits for and shares a run of ``t(b)`` > ``t(1)``, so pricing it at
  batched per-sample cost would promise SLOs the node cannot keep at low load.
* capacity: ``rate * t(1)`` over-counts the cores a batching node uses under load (at
  batch 32 the zoo's small models cost 3-30x less per sample), so a plan is
  conservative: it never puts more on a node than it serves unbatched, and batching is
  headroom that absorbs bursts and estimation error. Variants that batching does not
  help (``batch_limit`` 1: the imagenet models, dearer per sample when batched) and
  int8-dynamic ones (never batched) are priced exactly.

So a plan stays valid whatever the node's ``--max-batch``; the price is that the solver
may use more nodes (or smaller variants) than a batching-aware capacity would need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from idn.catalog import Catalog, Task, TensorSpec, Variant
from idn.config import ConfigError
from idn.topology import Node, Topology

# Bytes per element of each v2 datatype (BYTES has no fixed size).
ITEMSIZE = {"BOOL": 1, "INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "FP16": 2, "INT32": 4, "UINT32": 4,
            "FP32": 4, "INT64": 8, "UINT64": 8, "FP64": 8}


@dataclass(frozen=True)
class Payload:
    """Bytes one request moves: the request's tensors out, the response's back."""
    request_bytes: int = 0
    response_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.request_bytes + self.response_bytes


def _tensor_bytes(specs: tuple[TensorSpec, ...]) -> int:
    """Bytes of one sample of these tensors (the leading, batch dimension counted as 1).

    A tensor whose size is not fixed (BYTES, or a dynamic dimension past the batch one)
    counts 0: its size is the request's, and a class that matters should set
    ``payload_bytes``.
    """
    total = 0
    for s in specs:
        dims = s.shape[1:] if s.shape and s.shape[0] == -1 else s.shape
        if s.datatype not in ITEMSIZE or any(d < 0 for d in dims):
            continue
        total += ITEMSIZE[s.datatype] * math.prod(dims)
    return total


def task_payload(task: Task) -> Payload:
    """A batch-1 request's bytes from the task's signature (tensor data only, no framing)."""
    return Payload(_tensor_bytes(task.inputs), _tensor_bytes(task.outputs))


@dataclass(frozen=True)
class ComputeTime:
    """A compute-time estimate and where it came from (``profiled`` or ``flops-scaled:<ref>``)."""
    ms: float
    source: str


def base_compute_ms(variant: Variant, hardware_class: str | None, catalog: Catalog, quantile: str = "p50",
                    file: str | None = None, node_id: str = "?", node_field: str | None = None) -> ComputeTime:
    """Profiled latency of ``variant`` on a hardware class, or the FLOPs-scaled fallback.

    Errors blame the file that is wrong: the topology (``file``, at ``node_field``) when
    the node has no hardware class or one the catalog never profiled anything on; the
    catalog when the class is profiled but this variant has neither a profile nor FLOPs
    to scale from."""
    where = node_field or f"nodes[{node_id}]"
    if hardware_class is None:
        raise ConfigError(file, f"{where}.hardware_class", f"node {node_id!r} has no hardware class",
                          f"set `hardware_class:` on the node or at the top level (catalog classes: "
                          f"{', '.join(catalog.hardware_classes) or 'none'})")
    t = variant.latency_ms(hardware_class, quantile=quantile)
    if t is not None:
        return ComputeTime(t, "profiled")
    refs = [(u, ms) for u in catalog.variants.values()
            if (ms := u.latency_ms(hardware_class, quantile=quantile)) is not None and u.flops_per_sample > 0]
    if not refs:
        profiled = sorted({hw for u in catalog.variants.values() for hw in u.latency} | set(catalog.hardware_classes))
        raise ConfigError(file, f"{where}.hardware_class",
                          f"node {node_id!r}: the catalog{f' {catalog.path}' if catalog.path else ''} has no "
                          f"variant with FLOPs profiled on hardware class {hardware_class!r}, so nothing can be "
                          f"predicted there",
                          f"use a profiled class ({', '.join(profiled) or 'none'}) or profile the zoo on it "
                          f"(`idn models profile --hardware-class {hardware_class}`)")
    if variant.flops_per_sample <= 0:
        raise ConfigError(catalog.path, f"tasks.{variant.task}.variants.{variant.name}.latency",
                          f"no latency profile for hardware class {hardware_class!r} (node {node_id!r}"
                          f"{f' of {file}' if file else ''}) and no flops_per_sample to scale one from",
                          "profile the variant on this class (`idn models profile`) or set its flops_per_sample")
    ref, ref_ms = min(refs, key=lambda r: (r[0].task != variant.task,
                                           abs(math.log(r[0].flops_per_sample / variant.flops_per_sample)),
                                           r[0].name))
    return ComputeTime(ref_ms * variant.flops_per_sample / ref.flops_per_sample, f"flops-scaled:{ref.name}")


@dataclass(frozen=True)
class Hop:
    """A node as seen from an ingress: one-way delay and transfer cost per byte (one way) to reach it."""
    node: str
    delay_ms: float
    ms_per_byte: float


@dataclass(frozen=True)
class Prediction:
    """Predicted time of one request served by a (node, variant) target, in ms."""
    delay_ms: float      # one way
    transfer_ms: float   # request out + response back, over every link crossed
    compute_ms: float    # p50
    compute_p95_ms: float

    @property
    def network_ms(self) -> float:
        return 2.0 * self.delay_ms + self.transfer_ms

    @property
    def latency_ms(self) -> float:
        """Typical (p50 compute) latency: what the objective and the mean use."""
        return self.network_ms + self.compute_ms

    @property
    def latency_p95_ms(self) -> float:
        """The SLO latency: checked against ``max_latency_ms`` everywhere."""
        return self.network_ms + self.compute_p95_ms


def on_node(node: Node, base_ms: float) -> float:
    """A hardware class's time stretched to one node: x its ``slowdown``, + its ``overhead_ms``."""
    return base_ms * node.slowdown + node.overhead_ms


class LatencyModel:
    """Predictions for one (topology, catalog); caches per hardware class and per ingress."""

    def __init__(self, topology: Topology, catalog: Catalog):
        self.topology, self.catalog = topology, catalog
        self._base: dict[tuple[str | None, str], tuple[float, float]] = {}
        self.fallbacks: dict[tuple[str | None, str], str] = {}
        self._paths: dict[str, list[Hop]] = {}
        self._off_path: dict[tuple[str, str], Hop] = {}
        self._payloads: dict[str, Payload] = {}

    # -- compute --------------------------------------------------------------------------

    def base_times(self, hardware_class: str | None, variant: Variant, node_id: str = "?") -> tuple[float, float]:
        """(p50, p95) on a hardware class before the node's slowdown and overhead; p95 >= p50."""
        key = (hardware_class, variant.name)
        if key not in self._base:
            file, where = self.topology.file, self._node_field(node_id)
            t50 = base_compute_ms(variant, hardware_class, self.catalog, "p50", file, node_id, where)
            t95 = base_compute_ms(variant, hardware_class, self.catalog, "p95", file, node_id, where)
            self._base[key] = (t50.ms, max(t95.ms, t50.ms))
            if t50.source != "profiled":
                self.fallbacks[key] = t50.source
        return self._base[key]

    def compute_times(self, node_id: str, variant: Variant) -> tuple[float, float]:
        """(p50, p95) time to serve one request of ``variant`` at the node, overhead included."""
        node = self.topology.node(node_id)
        t50, t95 = self.base_times(node.hardware_class, variant, node_id)
        return on_node(node, t50), on_node(node, t95)

    def compute(self, node_id: str, variant: Variant, quantile: str = "p50") -> ComputeTime:
        """One quantile of the compute time at a node, with its source (p95 here is the raw profile's)."""
        node = self.topology.node(node_id)
        base = base_compute_ms(variant, node.hardware_class, self.catalog, quantile, self.topology.file, node_id,
                               self._node_field(node_id))
        return ComputeTime(on_node(node, base.ms), base.source)

    def _node_field(self, node_id: str) -> str:
        """Where a node sits in its topology file: ``nodes[<index>]``."""
        ids = list(self.topology.nodes)
        return f"nodes[{ids.index(node_id)}]" if node_id in self.topology.nodes else f"nodes[{node_id}]"

    # -- network --------------------------------------------------------------------------

    def path(self, ingress: str) -> list[Hop]:
        """``Topology.path(ingress)`` with cumulative one-way delay and ms per byte to each node."""
        if ingress not in self._paths:
            topo = self.topology
            p = topo.path(ingress)
            out, delay, mspb = [Hop(p[0], 0.0, 0.0)], 0.0, 0.0
            for a, b in zip(p, p[1:]):
                delay += topo.link_delay_ms(a, b) + topo.hop_overhead_ms
                mspb += self.link_ms_per_byte(a, b)
                out.append(Hop(b, delay, mspb))
            self._paths[ingress] = out
        return self._paths[ingress]

    def link_ms_per_byte(self, a: str, b: str) -> float:
        """Transfer time of one byte over link a-b in ms (0 without a bandwidth)."""
        bw = self.topology.link_bandwidth_mbps(a, b)
        return 0.0 if bw is None else 8.0 / (bw * 1000.0)

    def hop(self, ingress: str, node: str) -> Hop:
        """How far ``node`` is from ``ingress``: along its path if on it, else along the shortest route."""
        for h in self.path(ingress):
            if h.node == node:
                return h
        key = (ingress, node)
        if key not in self._off_path:
            route = self.topology.route(ingress, node)
            mspb = sum(self.link_ms_per_byte(a, b) for a, b in zip(route, route[1:]))
            self._off_path[key] = Hop(node, self.topology.delay_ms(ingress, node), mspb)
        return self._off_path[key]

    def payload(self, task: str, override: Payload | None = None) -> Payload:
        """The bytes a request of ``task`` moves (the class's override when it has one)."""
        if override is not None:
            return override
        if task not in self._payloads:
            self._payloads[task] = task_payload(self.catalog.tasks[task])
        return self._payloads[task]

    # -- the prediction -------------------------------------------------------------------

    def predict(self, ingress: str, node: str, variant: Variant, payload: Payload | None = None) -> Prediction:
        """Time for a request entering at ``ingress`` and served by ``variant`` at ``node``."""
        h = self.hop(ingress, node)
        t50, t95 = self.compute_times(node, variant)
        size = self.payload(variant.task, payload).total_bytes
        return Prediction(h.delay_ms, size * h.ms_per_byte, t50, t95)


def check_profiles(topology: Topology, catalog: Catalog) -> None:
    """Refuse a topology/catalog pair in which some node cannot predict some variant's time (the
    ConfigError names the file that is wrong, see :func:`base_compute_ms`). A node's router and the
    solver need every such prediction; finding out here beats finding out at the first request."""
    model = LatencyModel(topology, catalog)
    for nid in topology.nodes:
        for v in catalog.variants.values():
            model.compute_times(nid, v)


def meets_latency(prediction: Prediction, max_latency_ms: float | None, tolerance: float = 0.0) -> bool:
    """The SLO check every component uses: p95 latency within ``max_latency_ms`` (x (1 + tolerance))."""
    return max_latency_ms is None or prediction.latency_p95_ms <= max_latency_ms * (1.0 + tolerance)
