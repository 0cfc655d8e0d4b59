"""Kubernetes manifests from a topology: per node a Deployment, a Service and a volume claim.

What the cluster gets (DESIGN.md "Scale beyond one machine"): every node runs the
same image as ``idn node --topology /etc/idn/topology.yaml --id <node>``; the
topology travels in a ConfigMap whose addresses are rewritten to the nodes' Service
names, so forwarding uses cluster DNS; tiers are pinned with a node selector on the
``idn.io/tier`` label (label your Kubernetes nodes ``edge``, ``regional``, ``cloud``);
readiness and liveness use the gRPC health service; Prometheus metrics on :8002; the
control token comes from a Secret. Resource requests are not the topology's modelled
capacity (see ``idn.cluster``). The node persists its plan under /var/lib/idn, a
PersistentVolumeClaim per node, so a restarted or rescheduled pod restores its plan
before it reports ready (``--state-volume emptydir`` keeps it only while the pod lives).
Pods run as the image's non-root user with a read-only root filesystem, no privilege
escalation, no capabilities and the runtime's seccomp profile (the "restricted" Pod
Security Standard). Emulation is never switched on: a cluster has real links.

``check_objects`` adds what Kubernetes' JSON schemas (kubernetes-validate) do not check:
DNS-1123/1035 names, label syntax, quantities and port ranges, each error naming the
topology node it comes from. Pure: returns plain dicts; the CLI writes them as YAML.
"""

from __future__ import annotations

import json
import re
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
    is_dns_label,
    network_topology,
    node_name,
    node_names,
    parse_quantity,
)
from idn.config import read_document
from idn.topology import Topology, parse_topology

__all__ = ["PORT", "METRICS_PORT", "k8s_name", "cluster_topology", "render", "check_objects", "schema_errors",
           "STATE_VOLUMES"]

NODE_ID_ANNOTATION = "idn.io/node-id"
STATE_VOLUMES = ("pvc", "emptydir")
k8s_name = node_name  # the name of a node's Deployment, Service and (with -state) volume claim


def cluster_topology(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The topology document with every address replaced by its node's Service."""
    return network_topology(doc, {n["id"]: f"{k8s_name(n['id'])}.{namespace}.svc.cluster.local:{PORT}"
                                  for n in doc["nodes"]})


def render(topology_path: str | Path, image: str, namespace: str = "idn", catalog: str = CATALOG_PATH,
           token_secret: str = "idn-control", resources: ResourcePolicy | None = None,
           state_volume: str = "pvc", storage_class: str | None = None, state_size: str = "64Mi"
           ) -> list[dict[str, Any]]:
    """ConfigMap (topology), then per node a PersistentVolumeClaim, a Deployment and a Service.

    Raises ClusterError (naming the node) when the result would not be admitted.
    """
    import yaml

    doc = read_document(topology_path)
    topo: Topology = parse_topology(doc, topology_path)  # validate before rendering anything
    names = node_names(topo)
    if not is_dns_label(namespace):
        raise ClusterError(f"namespace {namespace!r} is not a DNS-1123 label ([a-z0-9-], at most 63)")
    if state_volume not in STATE_VOLUMES:
        raise ClusterError(f"state volume {state_volume!r}: use one of {', '.join(STATE_VOLUMES)}")
    policy = resources or ResourcePolicy()
    unknown = policy.unknown_keys(topo)
    if unknown:
        raise ClusterError(f"resources given for {unknown}, which are neither node ids nor tiers of "
                           f"{topology_path}: nodes {sorted(topo.nodes)}")
    in_cluster = cluster_topology(doc, namespace)
    parse_topology(in_cluster, f"{topology_path} (cluster addresses)")
    objects: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "idn-topology", "namespace": namespace, "labels": {"app": "idn"}},
        "data": {"topology.yaml": yaml.safe_dump(in_cluster, sort_keys=False)},
    }]
    for node in topo.nodes.values():
        name = names[node.id]
        labels = {"app": "idn", "idn.io/node": name, "idn.io/tier": node.tier}
        meta = {"name": name, "namespace": namespace, "labels": labels,
                "annotations": {NODE_ID_ANNOTATION: node.id}}
        probe = {"grpc": {"port": PORT}, "periodSeconds": 5}
        container = {
            "name": "node", "image": image,
            "args": ["node", "--topology", f"{CONFIG_PATH}/topology.yaml", "--id", node.id, "--catalog", catalog,
                     "--listen", f"0.0.0.0:{PORT}", "--state-dir", STATE_PATH, "--metrics-port", str(METRICS_PORT)],
            "ports": [{"name": "grpc", "containerPort": PORT}, {"name": "metrics", "containerPort": METRICS_PORT}],
            "env": [{"name": "IDN_CONTROL_TOKEN",
                     "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}}}],
            "resources": policy.for_node(node).k8s(),
            # ready only once the persisted plan is loaded again (the node reports SERVING after restore)
            "readinessProbe": probe,
            "livenessProbe": {**probe, "initialDelaySeconds": 10, "failureThreshold": 6},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "topology", "mountPath": CONFIG_PATH, "readOnly": True},
                             {"name": "state", "mountPath": STATE_PATH},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }
        if state_volume == "pvc":
            claim = f"{name}-state"
            spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                    "resources": {"requests": {"storage": state_size}}}
            if storage_class:
                spec["storageClassName"] = storage_class
            objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {**meta, "name": claim}, "spec": spec})
            state: dict[str, Any] = {"name": "state", "persistentVolumeClaim": {"claimName": claim}}
        else:
            state = {"name": "state", "emptyDir": {}}
        objects.append({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1, "selector": {"matchLabels": {"idn.io/node": name}},
                "strategy": {"type": "Recreate"},  # one node id = one process (and one ReadWriteOnce claim)
                "template": {
                    "metadata": {"labels": labels,
                                 "annotations": {NODE_ID_ANNOTATION: node.id, "prometheus.io/scrape": "true",
                                                 "prometheus.io/port": str(METRICS_PORT)}},
                    "spec": {"nodeSelector": {"idn.io/tier": node.tier},
                             "terminationGracePeriodSeconds": 15,
                             "securityContext": {"runAsNonRoot": True, "runAsUser": IMAGE_UID,
                                                 "runAsGroup": IMAGE_UID, "fsGroup": IMAGE_UID,
                                                 "seccompProfile": {"type": "RuntimeDefault"}},
                             "containers": [container],
                             "volumes": [{"name": "topology", "configMap": {"name": "idn-topology"}},
                                         state, {"name": "tmp", "emptyDir": {"medium": "Memory",
                                                                             "sizeLimit": "16Mi"}}]},
                },
            },
        })
        objects.append({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta,
            "spec": {"selector": {"idn.io/node": name},
                     "ports": [{"name": "grpc", "port": PORT, "targetPort": PORT, "appProtocol": "grpc"}]},
        })
    errors = check_objects(objects)
    if errors:
        raise ClusterError("; ".join(errors))
    return json.loads(json.dumps(objects))  # no shared sub-dicts: YAML without anchors


# --- IDN's own admission checks: what the JSON schemas leave out ---------------------------

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_IANA_SVC = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# Service names must be DNS-1035 labels (they become DNS names and environment variables)
_DNS_1035_KINDS = {"Service"}


def _where(obj: dict[str, Any]) -> str:
    md = obj.get("metadata", {})
    node = (md.get("annotations") or {}).get(NODE_ID_ANNOTATION)
    what = f"{obj.get('kind', '?')} {md.get('name', '?')!s}"
    return f"node {node!r} ({what})" if node is not None else what


def _name_errors(kind: str, name: Any) -> list[str]:
    if not isinstance(name, str) or not name:
        return ["metadata.name is missing"]
    if kind in _DNS_1035_KINDS:
        if len(name) > 63 or not _DNS_1035.match(name):
            return [f"name {name!r} is not a DNS-1035 label (a letter, then [a-z0-9-], at most 63)"]
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return [f"name {name!r} is not a DNS-1123 subdomain ([a-z0-9-.], at most 253)"]
    return []


def _label_errors(labels: dict[str, Any], where: str) -> list[str]:
    errors = []
    for key, value in (labels or {}).items():
        prefix, _, name = str(key).rpartition("/")
        if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
            errors.append(f"{where} key {key!r}: prefix is not a DNS-1123 subdomain")
        if not name or len(name) > 63 or not _LABEL_NAME.match(name):
            errors.append(f"{where} key {key!r}: name must be [A-Za-z0-9-_.], at most 63, alphanumeric at both ends")
        v = str(value)
        if v and (len(v) > 63 or not _LABEL_NAME.match(v)):
            errors.append(f"{where} {key}={v!r}: value must be [A-Za-z0-9-_.], at most 63, "
                          f"alphanumeric at both ends")
    return errors


def _port_errors(port: Any, what: str) -> list[str]:
    if isinstance(port, str):  # a named port
        return [] if _IANA_SVC.match(port) and len(port) <= 15 else [f"{what} {port!r} is not a port name"]
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return [f"{what} {port!r} is outside 1-65535"]
    return []


def _port_name_errors(name: Any, what: str) -> list[str]:
    if name is None:
        return []
    if (not isinstance(name, str) or len(name) > 15 or not _IANA_SVC.match(name) or "--" in name
            or not re.search(r"[a-z]", name)):
        return [f"{what} name {name!r} is not an IANA service name ([a-z0-9-], at most 15, a letter, no '--')"]
    return []


def _quantity_errors(q: Any, what: str) -> list[str]:
    try:
        parse_quantity(q)
    except ValueError as e:
        return [f"{what}: {e}"]
    return []


def _container_errors(c: dict[str, Any]) -> list[str]:
    errors = []
    if not is_dns_label(str(c.get("name", ""))):
        errors.append(f"container name {c.get('name')!r} is not a DNS-1123 label")
    for p in c.get("ports", []):
        errors += _port_errors(p.get("containerPort"), "containerPort")
        errors += _port_name_errors(p.get("name"), "container port")
    res = c.get("resources", {})
    amounts: dict[tuple[str, str], Any] = {}
    for kind in ("requests", "limits"):
        for k, v in res.get(kind, {}).items():
            bad = _quantity_errors(v, f"resources.{kind}.{k}")
            errors += bad
            if not bad:
                amounts[kind, k] = parse_quantity(v)
    for k in ("cpu", "memory"):
        r, lim = amounts.get(("requests", k)), amounts.get(("limits", k))
        if r is not None and lim is not None and r > lim:
            errors.append(f"resources: {k} request {res['requests'][k]} exceeds its limit {res['limits'][k]}")
    for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = c.get(probe_name) or {}
        for handler in ("grpc", "tcpSocket", "httpGet"):
            if handler in probe:
                errors += _port_errors(probe[handler].get("port"), f"{probe_name}.{handler}.port")
    return errors


def check_objects(objects: list[dict[str, Any]]) -> list[str]:
    """Admission checks the JSON schemas cannot express; each error names its node."""
    errors: list[str] = []
    seen: dict[tuple[str, str, str], str] = {}
    for obj in objects:
        kind, md = obj.get("kind", "?"), obj.get("metadata", {})
        where = _where(obj)
        found: list[str] = []
        found += _name_errors(kind, md.get("name"))
        ns = md.get("namespace")
        if ns is not None and not is_dns_label(str(ns)):
            found.append(f"namespace {ns!r} is not a DNS-1123 label")
        key = (kind, str(ns), str(md.get("name")))
        if key in seen:
            found.append(f"{kind} {md.get('name')!r} is also rendered for {seen[key]}")
        seen[key] = where
        found += _label_errors(md.get("labels", {}), "label")
        if kind == "Deployment":
            tmpl = obj["spec"]["template"]
            found += _label_errors(tmpl["metadata"].get("labels", {}), "pod label")
            found += _label_errors(obj["spec"]["selector"].get("matchLabels", {}), "selector")
            found += _label_errors(tmpl["spec"].get("nodeSelector", {}), "nodeSelector")
            for c in tmpl["spec"].get("containers", []):
                found += _container_errors(c)
            for v in tmpl["spec"].get("volumes", []):
                limit = (v.get("emptyDir") or {}).get("sizeLimit")
                if limit is not None:
                    found += _quantity_errors(limit, f"volume {v.get('name')} sizeLimit")
        elif kind == "Service":
            for p in obj["spec"].get("ports", []):
                found += _port_errors(p.get("port"), "port")
                found += _port_errors(p.get("targetPort", p.get("port")), "targetPort")
                found += _port_name_errors(p.get("name"), "service port")
        elif kind == "PersistentVolumeClaim":
            storage = obj["spec"].get("resources", {}).get("requests", {}).get("storage")
            found += _quantity_errors(storage, "storage request")
        errors += [f"{where}: {e}" for e in found]
    return errors


def schema_errors(objects: list[dict[str, Any]], version: str, strict: bool = True) -> list[str]:
    """Kubernetes' own JSON schemas for ``version`` (e.g. "1.30"), via kubernetes-validate
    (the ``k8s`` extra). Returns one message per object that fails, naming its node."""
    try:
        import kubernetes_validate
    except ImportError:
        raise ClusterError("checking against Kubernetes' schemas needs kubernetes-validate: "
                           "pip install 'idn[k8s]'") from None
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=strict)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{_where(obj)}: Kubernetes {version}: {path or '<root>'}: {e.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
            raise ClusterError(f"Kubernetes {version}: {e}") from None
        except kubernetes_validate.utils.VersionNotSupportedError:
            raise ClusterError(f"kubernetes-validate has no schemas for Kubernetes {version}") from None
    return errors
