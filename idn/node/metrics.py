"""Prometheus metrics of a node (``--metrics-port``), for the dashboards operators already run.

GetStats answers the controller (per request class, since a cursor); this answers
Prometheus (cumulative, per model and outcome), the way Triton's :8002/metrics does.
prometheus_client does the exposition; each node has its own registry so several
nodes can live in one process (tests). Label children are cached per model so the
hot path pays one dict lookup and two increments per request.

Label values are bounded: the data plane labels a request with the model's name only when
the node knows that name (else ``(unknown)``), outcomes are a fixed set, and past
``MAX_SERIES`` label pairs further ones are counted under ``(other)``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Request latency buckets (seconds): sub-millisecond local runs to multi-hop forwards.
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
MAX_SERIES = 1024


class NodeMetrics:
    def __init__(self, node_id: str):
        self.registry = CollectorRegistry()
        labels = {"node": node_id or "-"}
        self.requests = Counter("idn_requests", "Requests answered by this node, by model and outcome",
                                ["model", "outcome"], registry=self.registry).labels
        self.latency = Histogram("idn_request_duration_seconds",
                                 "Time from arrival to answer at this node, by model", ["model"],
                                 buckets=BUCKETS, registry=self.registry).labels
        self.plan_version = Gauge("idn_plan_version", "Version of the plan this node routes by",
                                  list(labels), registry=self.registry).labels(**labels)
        self.loaded = Gauge("idn_variants_loaded", "Variants loaded on this node", list(labels),
                            registry=self.registry).labels(**labels)
        self._children: dict[tuple[str, str], tuple] = {}
        self._server: Any = None  # prometheus-client's WSGI server, once serving

    def observe(self, model: str, outcome: str, seconds: float) -> None:
        """outcome: local, forwarded, degraded, or the gRPC status name of an error."""
        key = (model, outcome)
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= MAX_SERIES:
                model = "(other)"
                key = (model, outcome)
                child = self._children.get(key)
            if child is None:
                child = self._children[key] = (self.requests(model, outcome), self.latency(model))
        child[0].inc()
        child[1].observe(seconds)

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Expose /metrics over HTTP on ``port`` (0 picks a free one); returns the port."""
        self._server, _ = start_http_server(port, addr=addr, registry=self.registry)
        return self._server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
