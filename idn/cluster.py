"""What every orchestrator target shares: names, in-network addresses, resource requests.

``idn k8s`` (Kubernetes manifests) and ``idn swarm`` (a Docker stack file) render the same
network: one container per topology node, running the image of ``deploy/Dockerfile`` as
``idn node --topology <in-network topology> --id <node>``. This module holds the parts
that do not depend on the orchestrator:

- a node's object/service name (a DNS-1123 label, also a valid Swarm service name), and
  a check that no two nodes end up with the same one;
- the topology rewritten with those names as addresses (what the nodes, ``idn apply``
  and ``idn status`` use inside the cluster);
- resource *requests* (what the scheduler must find free), deliberately separate from
  the topology's modelled capacity (``mem_mb``, ``cores``: what the planner may use):
  a cloud node modelled with 8 cores must not make a pod unschedulable on a small
  cluster. Defaults come from a node's measured footprint; options set them per node or
  per tier;
- Kubernetes quantities ("250m", "192Mi"), parsed and checked, converted for Swarm.

Pure: no orchestrator is contacted.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from idn.topology import Node, Topology

PORT = 8001
METRICS_PORT = 8002
CONFIG_PATH = "/etc/idn"
STATE_PATH = "/var/lib/idn"
CATALOG_PATH = "/opt/idn/models/catalog.yaml"
IMAGE_UID = 10001  # deploy/Dockerfile's user and group

# An idle node serving two of the zoo's variants measured ~100 MiB resident in the image
# (docker stats); the default request leaves room for larger plans without asking the
# scheduler for the topology's modelled capacity.
DEFAULT_CPU_REQUEST = "100m"
DEFAULT_MEMORY_REQUEST = "192Mi"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^(?P<num>[+-]?(\d+(\.\d*)?|\.\d+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?\d+)?$")
_BINARY = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_DECIMAL = {"m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
            "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18}


class ClusterError(ValueError):
    """A topology or an option cannot become a valid deployment; the message names the node."""


def node_name(node_id: str) -> str:
    """A DNS-1123 label for a node id (lower case, [a-z0-9-], at most 63 characters,
    starting with a letter): the Deployment/Service name in Kubernetes, the service name
    (and so the DNS name on the overlay network) in Swarm."""
    name = re.sub(r"[^a-z0-9-]+", "-", node_id.lower()).strip("-")
    return f"idn-{name}"[:63].rstrip("-")


def is_dns_label(s: str) -> bool:
    return len(s) <= 63 and bool(_DNS_LABEL.match(s))


def node_names(topo: Topology) -> dict[str, str]:
    """node id -> name, refusing two nodes whose ids map to the same name."""
    names: dict[str, str] = {}
    owner: dict[str, str] = {}
    for nid in topo.nodes:
        name = node_name(nid)
        if name in owner:
            raise ClusterError(f"nodes {owner[name]!r} and {nid!r} both become {name!r} "
                               f"(names keep only [a-z0-9-]); rename one of them")
        owner[name] = nid
        names[nid] = name
    return names


def network_topology(doc: dict[str, Any], address_of: dict[str, str]) -> dict[str, Any]:
    """The topology document with every node's address replaced (node id -> host:port)."""
    out = copy.deepcopy(doc)
    for n in out["nodes"]:
        n["address"] = address_of[n["id"]]
    return out


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity ("250m", "0.5", "192Mi", "1G", "1e3") as a number."""
    m = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if m is None or text != text.strip():
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 250m, 0.5, 192Mi, 1Gi)")
    try:
        num = Decimal(m["num"])
    except InvalidOperation:  # pragma: no cover - the pattern already rules this out
        raise ValueError(f"{text!r} is not a number") from None
    s = m["suffix"] or ""
    if s in _BINARY:
        return num * _BINARY[s]
    if s in _DECIMAL:
        return num * _DECIMAL[s]
    if s:
        return num * (Decimal(10) ** int(s[1:]))
    return num


@dataclass(frozen=True)
class Resources:
    """One node's requests and limits, as Kubernetes quantities (None = not set)."""

    cpu_request: str | None = DEFAULT_CPU_REQUEST
    memory_request: str | None = DEFAULT_MEMORY_REQUEST
    cpu_limit: str | None = None
    memory_limit: str | None = None

    def k8s(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for kind, cpu, mem in (("requests", self.cpu_request, self.memory_request),
                               ("limits", self.cpu_limit, self.memory_limit)):
            d = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v is not None}
            if d:
                out[kind] = d
        return out


RESOURCE_FIELDS = ("cpu_request", "memory_request", "cpu_limit", "memory_limit")


@dataclass
class ResourcePolicy:
    """Requests/limits for every node: a default, then per tier, then per node id.

    Built from option values ``QTY`` (the default) or ``NODE=QTY`` / ``TIER=QTY``; a
    node's own entry wins over its tier's.
    """

    default: Resources = field(default_factory=Resources)
    by_key: dict[str, dict[str, str | None]] = field(default_factory=dict)  # node id or tier -> field -> qty

    @classmethod
    def from_options(cls, **options: list[str] | None) -> ResourcePolicy:
        """``cpu_request=["250m", "edge=100m"], memory_limit=[...]`` -> policy (ValueError names the option)."""
        default = {f: getattr(Resources(), f) for f in RESOURCE_FIELDS}
        by_key: dict[str, dict[str, str | None]] = {}
        for fname, values in options.items():
            if fname not in RESOURCE_FIELDS:
                raise TypeError(f"unknown resource field {fname!r}")
            for value in values or []:
                key, sep, qty = value.rpartition("=")
                qty = qty.strip()
                parsed: str | None = None if qty.lower() in ("none", "") else qty
                if parsed is not None:
                    try:
                        parse_quantity(parsed)
                    except ValueError as e:
                        raise ValueError(f"--{fname.replace('_', '-')} {value!r}: {e}") from None
                if sep:
                    by_key.setdefault(key.strip(), {})[fname] = parsed
                else:
                    default[fname] = parsed
        return cls(Resources(**default), by_key)

    def unknown_keys(self, topo: Topology) -> list[str]:
        known = set(topo.nodes) | {n.tier for n in topo.nodes.values()}
        return sorted(k for k in self.by_key if k not in known)

    def for_node(self, node: Node) -> Resources:
        values = {f: getattr(self.default, f) for f in RESOURCE_FIELDS}
        for key in (node.tier, node.id):  # the node's own entry last: it wins
            values.update(self.by_key.get(key, {}))
        return Resources(**values)


def check_resources(res: Resources, where: str) -> list[str]:
    """Quantities parse, are positive, and no request exceeds its limit."""
    errors: list[str] = []
    parsed: dict[str, Decimal] = {}
    for f in RESOURCE_FIELDS:
        v = getattr(res, f)
        if v is None:
            continue
        try:
            q = parse_quantity(v)
        except ValueError as e:
            errors.append(f"{where}: {f.replace('_', ' ')}: {e}")
            continue
        if q <= 0:
            errors.append(f"{where}: {f.replace('_', ' ')}: {v!r} must be positive")
        parsed[f] = q
    for kind in ("cpu", "memory"):
        r, lim = parsed.get(f"{kind}_request"), parsed.get(f"{kind}_limit")
        if r is not None and lim is not None and r > lim:
            errors.append(f"{where}: {kind} request {getattr(res, f'{kind}_request')} exceeds its limit "
                          f"{getattr(res, f'{kind}_limit')}")
    return errors
