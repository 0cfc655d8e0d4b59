"""A Docker Swarm stack (Compose file format 3.8) from a topology: one service per node.

The same network as ``idn k8s``, for ``docker stack deploy``:

- one service per topology node (one replica: one node id = one process), named as in
  Kubernetes (``idn.cluster.node_name``); the topology travels as a Swarm config whose
  addresses are the services' names on an attachable overlay network, so forwarding
  and ``idn apply``/``idn status``/``idn infer`` run from any container on it;
- tiers pinned by placement constraints on an engine label (``node.labels.idn.tier ==
  edge``: label the engines with ``docker node update --label-add idn.tier=edge``; label
  keys without ``/``, which Swarm labels do not take);
- ``endpoint_mode: dnsrr``: the service name resolves to the task itself, no virtual IP
  (so no IPVS is needed in the kernel, and a one-replica service gains nothing from one);
- a health check with the gRPC health service (``python -m idn.probe``); the node
  reports SERVING only once its persisted plan is loaded again;
- the control token as a Swarm secret (external: ``docker secret create idn-control -``),
  read from its file by the node (``--control-token-file``);
- the plan persisted on a named volume per node (``<stack>_idn-state-<node>``), so a
  container Swarm replaces comes back with its plan. A local volume lives on one engine:
  a replacement on the same engine finds it; pin a node to one engine, or give the
  volumes a shared driver (``--volume-driver``/``--volume-opt``, e.g. NFS), when a tier
  spans several engines;
- requests/limits as ``deploy.resources`` reservations/limits, separate from the
  topology's modelled capacity (``idn.cluster``); read-only root filesystem, tmpfs /tmp.

Pure: returns the stack and the in-network topology as plain dicts.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from idn.cluster import (
    CATALOG_PATH,
    CONFIG_PATH,
    IMAGE_UID,
    METRICS_PORT,
    PORT,
    STATE_PATH,
    ClusterError,
    ResourcePolicy,
    Resources,
    check_resources,
    network_topology,
    node_names,
    parse_quantity,
)
from idn.config import read_document
from idn.topology import parse_topology

TIER_LABEL = "idn.tier"
TOKEN_TARGET = "idn-control"  # /run/secrets/idn-control in every container
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def service_address(name: str) -> str:
    return f"{name}:{PORT}"


def _cpus(q: str) -> str:
    return format(parse_quantity(q).normalize(), "f")


def _bytes(q: str) -> str:
    n = int(parse_quantity(q).to_integral_value())
    for unit, size in (("G", 2 ** 30), ("M", 2 ** 20), ("K", 2 ** 10)):  # Docker's units are binary
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def swarm_resources(res: Resources) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for kind, cpu, mem in (("reservations", res.cpu_request, res.memory_request),
                           ("limits", res.cpu_limit, res.memory_limit)):
        d: dict[str, str] = {}
        if cpu is not None:
            d["cpus"] = _cpus(cpu)
        if mem is not None:
            d["memory"] = _bytes(mem)
        if d:
            out[kind] = d
    return out


def render_stack(topology_path: str | Path, image: str, topology_file: str = "topology.yaml",
                 network: str = "idn", token_secret: str = "idn-control", catalog: str = CATALOG_PATH,
                 resources: ResourcePolicy | None = None, tier_label: str = TIER_LABEL,
                 volume_driver: str | None = None, volume_opts: dict[str, str] | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(stack, in-network topology). ``topology_file`` is where the caller writes the
    topology, relative to the stack file (``docker stack deploy`` reads it from there)."""
    doc = read_document(topology_path)
    topo = parse_topology(doc, topology_path)
    names = node_names(topo)
    if not _LABEL_KEY.match(tier_label):
        raise ClusterError(f"tier label {tier_label!r}: use [A-Za-z0-9._-] (Swarm label keys take no '/')")
    if not _NETWORK.match(network):
        raise ClusterError(f"network name {network!r}: use [A-Za-z0-9_.-]")
    policy = resources or ResourcePolicy()
    unknown = policy.unknown_keys(topo)
    if unknown:
        raise ClusterError(f"resources given for {unknown}, which are neither node ids nor tiers of "
                           f"{topology_path}: nodes {sorted(topo.nodes)}")
    in_network = network_topology(doc, {nid: service_address(names[nid]) for nid in topo.nodes})
    parse_topology(in_network, f"{topology_path} (service addresses)")

    import yaml

    digest = hashlib.sha256(yaml.safe_dump(in_network, sort_keys=False).encode()).hexdigest()[:12]
    errors: list[str] = []
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    for node in topo.nodes.values():
        name = names[node.id]
        res = policy.for_node(node)
        errors += check_resources(res, f"node {node.id!r} (service {name})")
        volume = f"idn-state-{name.removeprefix('idn-')}"
        volumes[volume] = ({"driver": volume_driver} if volume_driver else {}) | (
            {"driver_opts": dict(volume_opts)} if volume_opts else {})
        services[name] = {
            "image": image,
            "command": ["node", "--topology", f"{CONFIG_PATH}/topology.yaml", "--id", node.id, "--catalog", catalog,
                        "--listen", f"0.0.0.0:{PORT}", "--state-dir", STATE_PATH,
                        "--metrics-port", str(METRICS_PORT), "--control-token-file", f"/run/secrets/{TOKEN_TARGET}"],
            "configs": [{"source": "topology", "target": f"{CONFIG_PATH}/topology.yaml", "mode": 0o444}],
            "secrets": [{"source": "control-token", "target": TOKEN_TARGET, "uid": str(IMAGE_UID),
                         "gid": str(IMAGE_UID), "mode": 0o400}],
            "volumes": [{"type": "volume", "source": volume, "target": STATE_PATH}],
            "networks": ["idn"],
            "read_only": True,
            "tmpfs": ["/tmp"],
            "healthcheck": {"test": ["CMD", "python", "-m", "idn.probe", f"127.0.0.1:{PORT}"],
                            "interval": "5s", "timeout": "4s", "retries": 3, "start_period": "60s"},
            "stop_grace_period": "15s",
            "labels": {"idn.node-id": node.id, "idn.tier": node.tier},
            "deploy": {
                "mode": "replicated", "replicas": 1,
                "endpoint_mode": "dnsrr",
                "placement": {"constraints": [f"node.labels.{tier_label} == {node.tier}"]},
                "restart_policy": {"condition": "any", "delay": "2s"},
                "update_config": {"parallelism": 1, "order": "stop-first"},  # one node id = one process
                "resources": swarm_resources(res),
                "labels": {"idn.node-id": node.id, "idn.tier": node.tier},
            },
        }
    stack = {
        "version": "3.8",
        "services": services,
        "networks": {"idn": {"driver": "overlay", "attachable": True, "name": network}},
        "volumes": volumes,
        "configs": {"topology": {"file": f"./{topology_file}", "name": f"idn-topology-{digest}"}},
        "secrets": {"control-token": {"external": True, "name": token_secret}},
    }
    errors += check_stack(stack)
    if errors:
        raise ClusterError("; ".join(errors))
    return stack, in_network


def check_stack(stack: dict[str, Any]) -> list[str]:
    """What ``docker stack deploy`` would refuse, checked before it runs."""
    errors = []
    for name, svc in stack.get("services", {}).items():
        where = f"node {svc.get('labels', {}).get('idn.node-id', '?')!r} (service {name})"
        if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", name) or len(name) > 63:
            errors.append(f"{where}: service name must be [a-zA-Z0-9_.-], at most 63")
        for kind, d in svc.get("deploy", {}).get("resources", {}).items():
            if "cpus" in d and Decimal(d["cpus"]) <= 0:
                errors.append(f"{where}: {kind}.cpus must be positive")
        for c in svc.get("deploy", {}).get("placement", {}).get("constraints", []):
            if "/" in c.split("==")[0]:
                errors.append(f"{where}: constraint {c!r}: label keys take no '/'")
    return errors
