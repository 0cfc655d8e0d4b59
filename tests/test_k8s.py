"""Kubernetes manifests rendered from the demo topology are complete and self-consistent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from idn.k8s import PORT, k8s_name, render
from idn.topology import load_topology, parse_topology

DEMO = Path(__file__).resolve().parent.parent / "deploy" / "topologies" / "demo.yaml"


def test_one_deployment_and_service_per_node_with_cluster_addresses():
    objs = render(DEMO, "idn:test", namespace="edge-ai")
    topo = load_topology(DEMO)
    kinds = [o["kind"] for o in objs]
    assert kinds.count("ConfigMap") == 1
    assert kinds.count("Deployment") == kinds.count("Service") == len(topo.nodes)
    cm = yaml.safe_load(objs[0]["data"]["topology.yaml"])
    in_cluster = parse_topology(cm, "configmap")  # still a valid topology
    assert in_cluster.node("edge-1").address == f"idn-edge-1.edge-ai.svc.cluster.local:{PORT}"
    assert in_cluster.delay_ms("edge-1", "cloud") == topo.delay_ms("edge-1", "cloud")
    deps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
    svcs = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    for node in topo.nodes.values():
        d, s = deps[k8s_name(node.id)], svcs[k8s_name(node.id)]
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        assert spec["nodeSelector"] == {"idn.io/tier": node.tier}
        assert c["args"][c["args"].index("--id") + 1] == node.id and "--emulate" not in c["args"]
        assert c["readinessProbe"]["grpc"]["port"] == PORT
        assert s["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
        assert in_cluster.node(node.id).address.startswith(s["metadata"]["name"] + ".")


def test_names_are_dns_labels():
    assert k8s_name("Edge_1.Paris") == "idn-edge-1-paris"
    assert len(k8s_name("x" * 100)) <= 63


def test_cli_writes_multi_document_yaml(tmp_path):
    out = tmp_path / "idn.yaml"
    proc = subprocess.run([sys.executable, "-m", "idn.cli", "k8s", str(DEMO), "--image", "idn:test", "-o", str(out),
                           "--topology-out", str(tmp_path / "cluster.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert load_topology(tmp_path / "cluster.yaml").node("cloud").address.startswith("idn-cloud.idn.svc")
    docs = list(yaml.safe_load_all(out.read_text()))
    assert len(docs) == 1 + 2 * len(load_topology(DEMO).nodes)
    bad = subprocess.run([sys.executable, "-m", "idn.cli", "k8s", str(tmp_path / "none.yaml"), "--image", "x"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "file not found" in bad.stderr
