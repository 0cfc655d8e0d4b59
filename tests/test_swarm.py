"""`idn swarm`: a Docker stack file from a topology; the probe its health checks run; the
control token read from a secret's file; the image's build context.

The stack itself runs in `make test-cluster` (tests/cluster/swarm_e2e.py) on a
three-engine Swarm; these tests check what can be checked without Docker.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml

from idn.cluster import ClusterError, ResourcePolicy, Resources
from idn.protos import control_pb2 as cpb
from idn.protos import control_pb2_grpc as cpb_grpc
from idn.swarm import render_stack, swarm_resources
from idn.topology import load_topology, parse_topology
from tests.network import free_port

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "deploy" / "topologies" / "demo.yaml"
CI = REPO / "deploy" / "topologies" / "swarm-ci.yaml"


def test_one_service_per_node_pinned_to_its_tier_on_the_overlay():
    stack, in_net = render_stack(DEMO, "idn:test")
    topo = load_topology(DEMO)
    net_topo = parse_topology(in_net, "in-network")
    assert set(stack["services"]) == {f"idn-{n}" for n in topo.nodes}
    assert stack["networks"]["idn"] == {"driver": "overlay", "attachable": True, "name": "idn"}
    assert stack["secrets"]["control-token"] == {"external": True, "name": "idn-control"}
    for node in topo.nodes.values():
        svc = stack["services"][f"idn-{node.id}"]
        cmd = svc["command"]
        assert cmd[cmd.index("--id") + 1] == node.id and "--emulate" not in cmd
        assert net_topo.node(node.id).address == f"idn-{node.id}:8001"  # the service name, on the overlay
        d = svc["deploy"]
        assert d["replicas"] == 1 and d["endpoint_mode"] == "dnsrr"  # no IPVS needed
        assert d["placement"]["constraints"] == [f"node.labels.idn.tier == {node.tier}"]
        assert d["restart_policy"]["condition"] == "any"
        assert svc["healthcheck"]["test"] == ["CMD", "python", "-m", "idn.probe", "127.0.0.1:8001"]
        # the token from the secret's file; the plan on a volume of its own, where --state-dir points
        assert cmd[cmd.index("--control-token-file") + 1] == "/run/secrets/" + svc["secrets"][0]["target"]
        assert svc["secrets"][0]["mode"] == 0o400 and svc["secrets"][0]["uid"] == "10001"
        vol = svc["volumes"][0]
        assert vol["type"] == "volume" and vol["target"] == cmd[cmd.index("--state-dir") + 1]
        assert vol["source"] in stack["volumes"]
        assert svc["read_only"] is True and svc["tmpfs"] == ["/tmp"]
        assert svc["configs"][0]["target"] == cmd[cmd.index("--topology") + 1]
    assert len({s["volumes"][0]["source"] for s in stack["services"].values()}) == len(topo.nodes)


def test_reservations_are_not_the_modelled_capacity():
    stack, _ = render_stack(DEMO, "idn:test")
    assert stack["services"]["idn-cloud"]["deploy"]["resources"] == {
        "reservations": {"cpus": "0.1", "memory": "192M"}}  # not the modelled 8 cores / 8 GiB
    policy = ResourcePolicy.from_options(cpu_request=["edge=250m"], memory_limit=["cloud=1.5Gi"], cpu_limit=["2"])
    stack, _ = render_stack(DEMO, "idn:test", resources=policy)
    assert stack["services"]["idn-edge-1"]["deploy"]["resources"]["reservations"]["cpus"] == "0.25"
    assert stack["services"]["idn-cloud"]["deploy"]["resources"]["limits"] == {"cpus": "2", "memory": "1536M"}
    assert swarm_resources(Resources("1500m", "1000000", None, "1Gi")) == {
        "reservations": {"cpus": "1.5", "memory": "1000000"}, "limits": {"memory": "1G"}}
    with pytest.raises(ClusterError, match=r"node 'edge-1' \(service idn-edge-1\): cpu request 2 exceeds its "
                                           r"limit 1"):
        render_stack(DEMO, "idn:test", resources=ResourcePolicy.from_options(cpu_request=["edge-1=2"],
                                                                             cpu_limit=["1"]))


def test_labels_networks_and_topology_config():
    with pytest.raises(ClusterError, match="take no '/'"):
        render_stack(DEMO, "idn:test", tier_label="idn.io/tier")
    with pytest.raises(ClusterError, match="network name"):
        render_stack(DEMO, "idn:test", network="my net")
    stack, _ = render_stack(DEMO, "idn:test", topology_file="x.topology.yaml", volume_driver="local",
                            volume_opts={"type": "nfs", "device": ":/export/idn"})
    assert stack["configs"]["topology"]["file"] == "./x.topology.yaml"
    assert all(v == {"driver": "local", "driver_opts": {"type": "nfs", "device": ":/export/idn"}}
               for v in stack["volumes"].values())
    # Swarm configs are immutable: a changed topology gets a new config name
    other, _ = render_stack(REPO / "deploy" / "topologies" / "line3.yaml", "idn:test")
    assert re.fullmatch(r"idn-topology-[0-9a-f]{12}", stack["configs"]["topology"]["name"])
    assert other["configs"]["topology"]["name"] != stack["configs"]["topology"]["name"]


def test_cli_writes_stack_and_topology_beside_it(tmp_path):
    out = tmp_path / "deploy" / "ci.yaml"
    proc = subprocess.run([sys.executable, "-m", "idn.cli", "swarm", str(CI), "--image", "idn:ci", "-o", str(out),
                           "--memory-limit", "edge=512Mi"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "docker stack deploy -c" in proc.stdout
    stack = yaml.safe_load(out.read_text())
    topo_file = out.parent / stack["configs"]["topology"]["file"]
    assert topo_file == tmp_path / "deploy" / "ci.topology.yaml"
    assert load_topology(topo_file).node("edge").address == "idn-edge:8001"
    assert stack["services"]["idn-edge"]["deploy"]["resources"]["limits"] == {"memory": "512M"}
    bad = subprocess.run([sys.executable, "-m", "idn.cli", "swarm", str(CI), "--image", "x", "-o", str(out),
                          "--volume-opt", "novalue"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "KEY=VALUE" in bad.stderr


def test_node_reads_its_token_from_a_file_and_the_probe_sees_it_serving(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    port = free_port()
    address = f"127.0.0.1:{port}"
    probe = [sys.executable, "-m", "idn.probe", address, "--timeout", "1"]
    down = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr
    env = {k: v for k, v in os.environ.items() if k != "IDN_CONTROL_TOKEN"}
    node = subprocess.Popen([sys.executable, "-m", "idn.cli", "node", "--listen", address, "--variant",
                             "digits-linear", "--control-token-file", str(token)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(probe, capture_output=True, timeout=30).returncode != 0:
            assert node.poll() is None, node.stderr.read()
            assert time.monotonic() < deadline, "the node never reported SERVING"
            time.sleep(0.3)
        ok = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0 and ok.stdout.strip() == f"{address}: SERVING"
        with grpc.insecure_channel(address) as ch:
            stub = cpb_grpc.NodeControlStub(ch)
            info = stub.GetNodeInfo(cpb.GetNodeInfoRequest(), metadata=(("authorization", "Bearer s3cret"),),
                                    timeout=10)
            assert "digits-linear" in info.variants
            with pytest.raises(grpc.RpcError) as e:
                stub.GetNodeInfo(cpb.GetNodeInfoRequest(), metadata=(("authorization", "Bearer s3cret2"),),
                                 timeout=10)
            assert e.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    finally:
        node.terminate()
        node.wait(30)


def test_token_file_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for args, message in ((["--control-token-file", str(empty)], "not a token (empty"),
                          (["--control-token-file", str(tmp_path / "none")], "token file not found")):
        p = subprocess.run([sys.executable, "-m", "idn.cli", "node", *args], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode != 0 and message in re.sub(r"[│\s]+", " ", p.stderr), p.stderr


def test_image_build_context_holds_what_the_dockerfile_copies():
    """.dockerignore is an allowlist: everything the Dockerfile COPYs must pass it, and
    nothing large (a .venv, .git) may."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    allow = [ln[1:].rstrip("/") for ln in lines if ln.startswith("!")]
    assert "*" in lines  # everything else stays out
    copies = re.findall(r"^COPY (?!--from)(.+)$", (REPO / "deploy" / "Dockerfile").read_text(), re.M)
    sources = [s for line in copies for s in line.split()[:-1]]
    assert sources
    for src in sources:
        assert any(src == a or src.startswith(a + "/") or a.startswith(src + "/") for a in allow), src
    assert not any(a.startswith((".venv", ".git", "results", ".idn")) for a in allow)
