"""The demand: request classes (ingress node, task, optional SLO) and their arrival rates.

File format (``deploy/demands/*.yaml``)::

    classes:
      - {ingress: edge-1, task: digits, rate: 40}                      # req/s
      - {ingress: edge-1, task: digits, rate: 10, max_latency_ms: 30, min_accuracy: 0.95}
      - {id: gold, ingress: edge-2, task: waveforms, rate: 5, max_latency_ms: 50}
      - {ingress: edge-3, task: imagenet, rate: 2, payload_bytes: 60000}     # request bytes
      - {ingress: edge-3, task: imagenet, rate: 2, payload_bytes: {request: 60000, response: 400}}

A class's ``id`` is stable: given explicitly, or derived from its fields as
``<ingress>/<task>`` plus ``/lat<ms>`` and ``/acc<min>`` when it has those SLO terms
(e.g. ``edge-1/digits/lat30/acc0.95``). Plans and node statistics refer to classes by
this id, so re-measuring a demand yields the same ids. Two classes with the same id are
refused (merge their rates or give them explicit ids).

SLO meaning: every (node, variant) target that serves the class must have
predicted p95 latency (round-trip delay + payload transfer + p95 compute, see
:mod:`idn.latency`) <= ``max_latency_ms`` and held-out accuracy >= ``min_accuracy``.

``payload_bytes`` (optional) overrides the bytes one request moves, which otherwise
come from the task's signature: a number is the request's bytes (the response keeps
the signature's), a mapping ``{request, response}`` sets both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idn.catalog import Catalog
from idn.config import INT64_MAX, Fields, read_document
from idn.latency import Payload, task_payload
from idn.topology import Topology

MAX_RATE = 1e6  # requests per second per class: beyond it the solver's numbers lose meaning
_CLASS_KEYS = {"id", "ingress", "task", "rate", "max_latency_ms", "min_accuracy", "payload_bytes"}


@dataclass(frozen=True)
class RequestClass:
    id: str
    ingress: str
    task: str
    rate: float  # requests per second
    max_latency_ms: float | None = None
    min_accuracy: float | None = None
    payload: Payload | None = None  # None: the task's signature decides



def class_id(ingress: str, task: str, max_latency_ms: float | None = None, min_accuracy: float | None = None) -> str:
    """The derived, stable id of a request class."""
    parts = [ingress, task]
    if max_latency_ms is not None:
        parts.append(f"lat{max_latency_ms:g}")
    if min_accuracy is not None:
        parts.append(f"acc{min_accuracy:g}")
    return "/".join(parts)


@dataclass(frozen=True)
class Demand:
    classes: tuple[RequestClass, ...]
    file: str | None = None

    @property
    def total_rate(self) -> float:
        return sum(c.rate for c in self.classes)

    def by_id(self) -> dict[str, RequestClass]:
        return {c.id: c for c in self.classes}

    def tasks(self) -> list[str]:
        return sorted({c.task for c in self.classes})


def parse_demand(doc: Any, file: str | Path | None, topology: Topology, catalog: Catalog) -> Demand:
    """Validate a demand document against the topology (ingress nodes) and the catalog (tasks)."""
    root = Fields(doc, file, "")
    root.check_keys({"classes", "name", "description"})
    raw = root.req("classes", list)
    if not raw:
        raise root.error("classes", "no request classes", "add at least one {ingress, task, rate}")
    out: list[RequestClass] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        f = Fields(item, file, f"classes[{i}]")
        f.check_keys(_CLASS_KEYS)
        ingress = f.req("ingress", str)
        if ingress not in topology.nodes:
            raise f.error("ingress", f"unknown node {ingress!r}",
                          f"use a node of the topology: {', '.join(topology.nodes)}")
        task = f.req("task", str)
        if task not in catalog.tasks:
            raise f.error("task", f"unknown task {task!r}", f"use a catalog task: {', '.join(catalog.tasks)}")
        rate = f.req("rate", float)
        if not (0 < rate <= MAX_RATE):
            raise f.error("rate", f"must be > 0 and <= {MAX_RATE:g}, got {rate:g}",
                          "rates are requests per second; drop a class that has no traffic")
        lat = f.opt("max_latency_ms", float, None)
        if lat is not None and not (0 < lat <= 1e9):
            raise f.error("max_latency_ms", f"must be a positive number, got {lat}", "omit it for no latency SLO")
        acc = f.opt("min_accuracy", float, None)
        if acc is not None and not 0.0 <= acc <= 1.0:
            raise f.error("min_accuracy", f"must be within [0, 1], got {acc}", "accuracy is a fraction, e.g. 0.95")
        payload = _payload(f, task_payload(catalog.tasks[task]))
        cid = f.opt("id", str, None) or class_id(ingress, task, lat, acc)
        if cid in seen:
            raise f.error("id", f"class id {cid!r} already used by classes[{seen[cid]}]",
                          "merge the two rates into one class or give each an explicit `id:`")
        seen[cid] = i
        out.append(RequestClass(cid, ingress, task, rate, lat, acc, payload))
    return Demand(tuple(out), str(file) if file is not None else None)


def _payload(f: Fields, signature: Payload) -> Payload | None:
    """The class's ``payload_bytes`` override: a request size, or ``{request, response}``."""
    raw = f.data.get("payload_bytes") if isinstance(f.data, dict) else None
    if raw is None:
        return None
    fix = "write a byte count (the request's), or {request: <bytes>, response: <bytes>}"
    if isinstance(raw, dict):
        sub = f.sub("payload_bytes")
        sub.check_keys({"request", "response"})
        req = sub.positive("request", int, default=signature.request_bytes, allow_zero=True)
        resp = sub.positive("response", int, default=signature.response_bytes, allow_zero=True)
        return Payload(req, resp)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= INT64_MAX:
        raise f.error("payload_bytes", f"must be a byte count >= 0 or a mapping, got {raw!r}", fix)
    return Payload(raw, signature.response_bytes)


def load_demand(path: str | Path, topology: Topology, catalog: Catalog) -> Demand:
    """Load and validate a demand YAML/JSON file."""
    return parse_demand(read_document(path), path, topology, catalog)


def demand_document(demand: Demand) -> dict[str, Any]:
    """The YAML-ready form of a demand (for generated or measured demands)."""
    rows = []
    for c in demand.classes:
        row: dict[str, Any] = {"id": c.id, "ingress": c.ingress, "task": c.task, "rate": c.rate}
        if c.max_latency_ms is not None:
            row["max_latency_ms"] = c.max_latency_ms
        if c.min_accuracy is not None:
            row["min_accuracy"] = c.min_accuracy
        if c.payload is not None:
            row["payload_bytes"] = {"request": c.payload.request_bytes, "response": c.payload.response_bytes}
        rows.append(row)
    return {"classes": rows}

