"""Kubernetes manifests: complete, self-consistent, and admitted by a real API server's rules.

No API server runs here, so admission is checked two ways: Kubernetes' own JSON schemas
(kubernetes-validate, strict: no unknown fields) for the oldest and newest versions it
bundles and one between, and IDN's checks for what the schemas cannot express
(DNS-1123/1035 names, label syntax, quantities, port ranges), whose errors name the node.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from idn.cluster import ClusterError, ResourcePolicy, node_name, parse_quantity
from idn.k8s import PORT, check_objects, k8s_name, render, schema_errors
from idn.topology import load_topology, parse_topology

REPO = Path(__file__).resolve().parent.parent
TOPOLOGIES = sorted((REPO / "deploy" / "topologies").glob("*.yaml"))
DEMO = REPO / "deploy" / "topologies" / "demo.yaml"
K8S_VERSIONS = ("1.25", "1.30", "1.37")  # kubernetes-validate bundles 1.25 ... 1.37


def by_kind(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def test_per_node_deployment_service_and_claim_with_cluster_addresses():
    objs = render(DEMO, "idn:test", namespace="edge-ai")
    topo = load_topology(DEMO)
    kinds = [o["kind"] for o in objs]
    assert kinds.count("ConfigMap") == 1
    assert kinds.count("Deployment") == kinds.count("Service") == len(topo.nodes)
    assert kinds.count("PersistentVolumeClaim") == len(topo.nodes)
    cm = yaml.safe_load(objs[0]["data"]["topology.yaml"])
    in_cluster = parse_topology(cm, "configmap")  # still a valid topology
    assert in_cluster.node("edge-1").address == f"idn-edge-1.edge-ai.svc.cluster.local:{PORT}"
    assert in_cluster.delay_ms("edge-1", "cloud") == topo.delay_ms("edge-1", "cloud")
    deps, svcs, pvcs = by_kind(objs, "Deployment"), by_kind(objs, "Service"), by_kind(objs, "PersistentVolumeClaim")
    for node in topo.nodes.values():
        d, s = deps[k8s_name(node.id)], svcs[k8s_name(node.id)]
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        assert spec["nodeSelector"] == {"idn.io/tier": node.tier}
        assert c["args"][c["args"].index("--id") + 1] == node.id and "--emulate" not in c["args"]
        assert c["readinessProbe"]["grpc"]["port"] == PORT
        assert s["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
        assert in_cluster.node(node.id).address.startswith(s["metadata"]["name"] + ".")
        assert d["metadata"]["annotations"]["idn.io/node-id"] == node.id
        # the plan persists on the node's claim, mounted where --state-dir points
        state_dir = c["args"][c["args"].index("--state-dir") + 1]
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == state_dir)
        vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert vol["persistentVolumeClaim"]["claimName"] in pvcs
        assert d["spec"]["strategy"]["type"] == "Recreate"  # a ReadWriteOnce claim, one pod at a time


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("topology", TOPOLOGIES, ids=lambda p: p.stem)
def test_manifests_pass_kubernetes_schemas_strictly(topology, version):
    for state in ("pvc", "emptydir"):
        objs = render(topology, "registry.example/idn:0.1", state_volume=state, storage_class="standard",
                      resources=ResourcePolicy.from_options(cpu_limit=["2"], memory_limit=["1Gi"]))
        assert schema_errors(objs, version, strict=True) == []
        assert check_objects(objs) == []


def test_schema_check_rejects_an_unknown_field_and_names_the_node():
    objs = render(DEMO, "idn:test")
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "idn-edge-2")
    dep["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}  # a typo kubectl would refuse
    errors = schema_errors(objs, "1.30")
    assert len(errors) == 1 and errors[0].startswith("node 'edge-2' (Deployment idn-edge-2)")
    assert "livenessprobe" in errors[0]


def test_pods_meet_the_restricted_pod_security_standard():
    for d in by_kind(render(DEMO, "idn:test"), "Deployment").values():
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]  # the claim is writable
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}}
        assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_requests_are_not_the_modelled_capacity():
    topo = load_topology(DEMO)
    assert topo.node("cloud").cores == 8 and topo.node("cloud").mem_mb == 8192
    deps = by_kind(render(DEMO, "idn:test"), "Deployment")
    res = deps["idn-cloud"]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res == {"requests": {"cpu": "100m", "memory": "192Mi"}}  # schedulable on a small cluster
    policy = ResourcePolicy.from_options(cpu_request=["250m", "edge=50m", "edge-3=75m"],
                                         memory_limit=["cloud=2Gi"], memory_request=["regional=none"])
    deps = by_kind(render(DEMO, "idn:test", resources=policy), "Deployment")
    r = {n: d["spec"]["template"]["spec"]["containers"][0]["resources"] for n, d in deps.items()}
    assert r["idn-cloud"] == {"requests": {"cpu": "250m", "memory": "192Mi"}, "limits": {"memory": "2Gi"}}
    assert r["idn-regional"] == {"requests": {"cpu": "250m"}}
    assert r["idn-edge-1"]["requests"]["cpu"] == "50m"  # its tier's
    assert r["idn-edge-3"]["requests"]["cpu"] == "75m"  # its own wins over its tier's


def test_resource_options_are_checked_before_rendering():
    with pytest.raises(ValueError, match=r"--cpu-request '2 cores'.*not a Kubernetes quantity"):
        ResourcePolicy.from_options(cpu_request=["2 cores"])
    with pytest.raises(ClusterError, match=r"resources given for \['edge-9'\]"):
        render(DEMO, "idn:test", resources=ResourcePolicy.from_options(cpu_request=["edge-9=1"]))
    with pytest.raises(ClusterError, match=r"node 'cloud' \(Deployment idn-cloud\).*memory request 2Gi exceeds "
                                           r"its limit 1Gi"):
        render(DEMO, "idn:test", resources=ResourcePolicy.from_options(memory_request=["cloud=2Gi"],
                                                                       memory_limit=["cloud=1Gi"]))


def test_quantities():
    assert parse_quantity("250m") == parse_quantity("0.25")
    assert parse_quantity("192Mi") == 192 * 2 ** 20
    assert parse_quantity("1G") == 10 ** 9 and parse_quantity("1e3") == 1000
    for bad in ("", "2 cores", "1.5.2", "Mi", "1MB", " 1", "-"):
        with pytest.raises(ValueError):
            parse_quantity(bad)


def test_own_checks_catch_what_the_schemas_miss_and_name_the_node():
    objs = render(DEMO, "idn:test")
    bad = copy.deepcopy(objs)
    dep = next(o for o in bad if o["kind"] == "Deployment" and o["metadata"]["name"] == "idn-edge-1")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["resources"]["requests"]["memory"] = "192MB"
    c["ports"][0]["containerPort"] = 70000
    c["ports"][1]["name"] = "prometheus-metrics"  # 18 characters: longer than an IANA service name
    svc = next(o for o in bad if o["kind"] == "Service" and o["metadata"]["name"] == "idn-cloud")
    svc["metadata"]["name"] = "1-cloud"  # a Service name must start with a letter
    pvc = next(o for o in bad if o["kind"] == "PersistentVolumeClaim")
    pvc["spec"]["resources"]["requests"]["storage"] = "lots"
    for version in ("1.25", "1.37"):
        assert schema_errors(bad, version) == []  # the schemas accept all of it
    errors = check_objects(bad)
    text = "\n".join(errors)
    assert len(errors) == 5, text
    assert "node 'edge-1' (Deployment idn-edge-1): resources.requests.memory: '192MB'" in text
    assert "node 'edge-1' (Deployment idn-edge-1): containerPort 70000 is outside 1-65535" in text
    assert "'prometheus-metrics' is not an IANA service name" in text
    assert "node 'cloud' (Service 1-cloud): name '1-cloud' is not a DNS-1035 label" in text
    assert "node 'cloud' (PersistentVolumeClaim idn-cloud-state): storage request: 'lots'" in text


def test_names_are_dns_labels_and_never_collide(tmp_path):
    assert k8s_name("Edge_1.Paris") == "idn-edge-1-paris"
    assert len(k8s_name("x" * 100)) <= 63
    assert k8s_name is node_name
    doc = yaml.safe_load(DEMO.read_text())
    doc["nodes"][3]["id"] = "Edge_1"  # edge-1 and Edge_1 would both be idn-edge-1
    doc["links"] = [{**lk, "a": "Edge_1"} if lk["a"] == "edge-2" else lk for lk in doc["links"]]
    bad = tmp_path / "t.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ClusterError, match=r"nodes 'edge-1' and 'Edge_1' both become 'idn-edge-1'"):
        render(bad, "idn:test")
    with pytest.raises(ClusterError, match="namespace 'Edge AI'"):
        render(DEMO, "idn:test", namespace="Edge AI")


def test_cli_writes_multi_document_yaml_checked_against_two_versions(tmp_path):
    out = tmp_path / "idn.yaml"
    proc = subprocess.run([sys.executable, "-m", "idn.cli", "k8s", str(DEMO), "--image", "idn:test", "-o", str(out),
                           "--topology-out", str(tmp_path / "cluster.yaml"), "--cpu-request", "edge=50m",
                           "--check-schema", "1.25", "--check-schema", "1.37"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "valid for Kubernetes 1.25, 1.37" in proc.stdout
    assert load_topology(tmp_path / "cluster.yaml").node("cloud").address.startswith("idn-cloud.idn.svc")
    docs = list(yaml.safe_load_all(out.read_text()))
    assert len(docs) == 1 + 3 * len(load_topology(DEMO).nodes)
    assert "&id" not in out.read_text()  # no YAML anchors: every object reads on its own
    bad = subprocess.run([sys.executable, "-m", "idn.cli", "k8s", str(tmp_path / "none.yaml"), "--image", "x"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "file not found" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "idn.cli", "k8s", str(DEMO), "--image", "x", "--memory-request",
                          "cloud=lots"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "not a Kubernetes quantity" in re.sub(r"[│\s]+", " ", bad.stderr)
