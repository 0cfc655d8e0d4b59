"""Kubernetes manifests from a topology: one Deployment + Service per node.

What the cluster gets (DESIGN.md "Scale beyond one machine"): every node runs the
same image as ``idn node --topology /etc/idn/topology.yaml --id <node>``; the
topology travels in a ConfigMap whose addresses are rewritten to the nodes' Service
names, so forwarding uses cluster DNS; tiers are pinned with a node selector on the
``idn.io/tier`` label (label your Kubernetes nodes ``edge``, ``regional``, ``cloud``);
readiness and liveness use the gRPC health service; Prometheus metrics on :8002; the control token comes from a
Secret; the persisted plan lives in an ``emptyDir`` (use a volume claim to keep it
across pod moves). Emulation is never switched on: a cluster has real links.
Pure: returns plain dicts; the CLI writes them as YAML.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from idn.config import read_document
from idn.topology import Topology, parse_topology

PORT = 8001
METRICS_PORT = 8002
CONFIG_PATH = "/etc/idn"
STATE_PATH = "/var/lib/idn"
BASE_MEMORY_MB = 256  # the Python process, gRPC and ONNX Runtime before any model


def k8s_name(node_id: str) -> str:
    """A DNS-1123 label for a node id (lower case, [a-z0-9-], at most 63 characters)."""
    name = re.sub(r"[^a-z0-9-]+", "-", node_id.lower()).strip("-")
    return f"idn-{name}"[:63].rstrip("-")


def cluster_topology(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The topology document with every address replaced by its node's Service."""
    out = copy.deepcopy(doc)
    for n in out["nodes"]:
        n["address"] = f"{k8s_name(n['id'])}.{namespace}.svc.cluster.local:{PORT}"
    return out


def render(topology_path: str | Path, image: str, namespace: str = "idn",
           catalog: str = "/opt/idn/models/catalog.yaml", token_secret: str = "idn-control") -> list[dict[str, Any]]:
    """ConfigMap (topology), then a Deployment and a Service per node."""
    import yaml

    doc = read_document(topology_path)
    topo: Topology = parse_topology(doc, topology_path)  # validate before rendering anything
    in_cluster = cluster_topology(doc, namespace)
    parse_topology(in_cluster, f"{topology_path} (cluster addresses)")
    objects: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "idn-topology", "namespace": namespace, "labels": {"app": "idn"}},
        "data": {"topology.yaml": yaml.safe_dump(in_cluster, sort_keys=False)},
    }]
    for node in topo.nodes.values():
        name = k8s_name(node.id)
        labels = {"app": "idn", "idn.io/node": name, "idn.io/tier": node.tier}
        probe = {"grpc": {"port": PORT}, "periodSeconds": 5}
        container = {
            "name": "node", "image": image,
            "args": ["node", "--topology", f"{CONFIG_PATH}/topology.yaml", "--id", node.id, "--catalog", catalog,
                     "--listen", f"0.0.0.0:{PORT}", "--state-dir", STATE_PATH, "--metrics-port", str(METRICS_PORT)],
            "ports": [{"name": "grpc", "containerPort": PORT}, {"name": "metrics", "containerPort": METRICS_PORT}],
            "env": [{"name": "IDN_CONTROL_TOKEN",
                     "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}}}],
            "resources": {"requests": {"cpu": str(node.cores),
                                       "memory": f"{int(node.mem_mb + BASE_MEMORY_MB)}Mi"}},
            "readinessProbe": probe,
            "livenessProbe": {**probe, "initialDelaySeconds": 10},
            "volumeMounts": [{"name": "topology", "mountPath": CONFIG_PATH, "readOnly": True},
                             {"name": "state", "mountPath": STATE_PATH}],
        }
        objects.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 1, "selector": {"matchLabels": {"idn.io/node": name}},
                "strategy": {"type": "Recreate"},  # one node id = one process
                "template": {
                    "metadata": {"labels": labels,
                                 "annotations": {"prometheus.io/scrape": "true",
                                                 "prometheus.io/port": str(METRICS_PORT)}},
                    "spec": {"nodeSelector": {"idn.io/tier": node.tier},
                             "terminationGracePeriodSeconds": 15,
                             "containers": [container],
                             "volumes": [{"name": "topology", "configMap": {"name": "idn-topology"}},
                                         {"name": "state", "emptyDir": {}}]},
                },
            },
        })
        objects.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"selector": {"idn.io/node": name},
                     "ports": [{"name": "grpc", "port": PORT, "targetPort": PORT, "appProtocol": "grpc"}]},
        })
    return objects
