"""Who may change what a node holds (issue #14): repository control, pins and targets, logs.

Real nodes on ephemeral loopback ports. The stock tritonclient's view of the same rules
is in test_node_tritonclient.py (``repository_needs_token``, ``repository_off``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import yaml

from idn.catalog import load_catalog
from idn.client import Client
from idn.node.authority import Authority, ModelControl
from idn.node.handlers import RateLimitedLog
from idn.node.server import NodeConfig
from idn.plan import plan_to_dict
from idn.protos import control_pb2 as cpb
from idn.protos import control_pb2_grpc as cpb_grpc
from idn.protos import grpc_service_pb2 as pb
from tests.conftest import TOKEN, RunningNode, start_node
from tests.network import Network, line_topology, make_plan, toy_catalog

X = {"input": np.ones((1, 4), np.float32)}
AUTH = [("authorization", f"Bearer {TOKEN}")]


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory):
    return toy_catalog(tmp_path_factory.mktemp("cat"))


def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


# -- repository control ----------------------------------------------------------------------

def test_repository_control_is_off_by_default_for_everyone(model_dir, caplog):
    n = start_node(model_dir, ["linear"])
    try:
        with Client(n.address) as c, caplog.at_level(logging.WARNING, logger="idn.node.authority"):
            upload = pb.RepositoryModelLoadRequest(model_name="linear")
            upload.parameters["file:1/model.onnx"].bytes_param = (model_dir / "fixed.onnx").read_bytes()
            for call in (lambda: c.unload("linear"), lambda: c.unload("linear", token=TOKEN),
                         lambda: c.load("linear"), lambda: c.stub.RepositoryModelLoad(upload, timeout=5)):
                code, details = code_of(call)
                assert code == grpc.StatusCode.PERMISSION_DENIED, details
                assert "--model-control-mode none" in details and "'linear'" in details
            assert c.ready() and c.infer("linear", X).outputs["logits"].shape == (1, 3)  # nothing changed
            assert [m.name for m in c.index()] == ["linear"]  # reading the index stays open
            for _ in range(30):  # a flood of refusals...
                code_of(lambda: c.unload("linear"))
        refusals = [r for r in caplog.records if r.name == "idn.node.authority" and "refused" in r.message]
        assert 1 <= len(refusals) <= 5  # ...is logged, a few lines a minute
        assert "repository unload of model 'linear'" in refusals[0].message and "127.0.0.1" in refusals[0].message
        assert n.server.authority.audit.suppressed("repository") >= 29
    finally:
        n.stop()


def test_explicit_repository_control_needs_the_token(model_dir, catalog_path):
    node = RunningNode(NodeConfig(listen="127.0.0.1:0", catalog=load_catalog(catalog_path), variants=["toy-small"],
                                  models={"linear": model_dir / "linear.onnx"}, control_token=TOKEN,
                                  model_control=ModelControl.EXPLICIT))
    try:
        with Client(node.address) as c:
            for token in (None, "wrong", TOKEN + "x", ""):
                code, details = code_of(lambda t=token: c.unload("toy-small", token=t))
                assert code == grpc.StatusCode.UNAUTHENTICATED and "control token" in details
            assert c.infer("toy-small", X).variant == "toy-small"
            # issue #14's swap: another model's bytes under a catalog variant's name. Refused even
            # with the token: answers would carry that variant's name and catalog accuracy.
            swap = pb.RepositoryModelLoadRequest(model_name="toy-small")
            swap.parameters["file:1/model.onnx"].bytes_param = (model_dir / "linear.onnx").read_bytes()
            code, details = code_of(lambda: c.stub.RepositoryModelLoad(swap, timeout=5))
            assert code == grpc.StatusCode.UNAUTHENTICATED
            code, details = code_of(lambda: c.stub.RepositoryModelLoad(swap, timeout=5, metadata=AUTH))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "catalog variant" in details
            swap.model_name = "toy"  # nor a task's name
            code, details = code_of(lambda: c.stub.RepositoryModelLoad(swap, timeout=5, metadata=AUTH))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "catalog task" in details
            # with the token, the operator's calls work
            c.unload("toy-small", token=TOKEN)
            assert not c.model_ready("toy-small")
            c.load("toy-small", token=TOKEN)
            assert c.infer("toy-small", X).variant == "toy-small"
            upload = pb.RepositoryModelLoadRequest(model_name="mine")
            upload.parameters["file:1/model.onnx"].bytes_param = (model_dir / "linear.onnx").read_bytes()
            c.stub.RepositoryModelLoad(upload, timeout=5, metadata=AUTH)
            assert c.infer("mine", X).variant == "mine"
    finally:
        node.stop()


def test_explicit_mode_without_a_token_does_not_start():
    with pytest.raises(ValueError, match="needs a control token"):
        Authority(None, ModelControl.EXPLICIT)

    def idn_node(*args: str) -> tuple[int, str]:
        env = {k: v for k, v in os.environ.items() if k != "IDN_CONTROL_TOKEN"}
        proc = subprocess.run([sys.executable, "-m", "idn.cli", "node", *args], capture_output=True, text=True,
                              timeout=60, env=env)
        return proc.returncode, " ".join(re.sub("[\u2500-\u257f]", " ", proc.stderr).split())  # unboxed

    rc, err = idn_node("--model-control-mode", "explicit")
    assert rc != 0 and "explicit repository control needs a control token" in err
    rc, err = idn_node("--model-control-mode", "poll")
    assert rc != 0 and "'poll': use one of ['none', 'explicit']" in err


def test_refused_control_calls_are_logged_rate_limited(tmp_path, catalog_path, caplog):
    net = Network(line_topology(tmp_path), catalog_path)
    try:
        ch = grpc.insecure_channel(net.address("edge"))
        stub = cpb_grpc.NodeControlStub(ch)
        with caplog.at_level(logging.WARNING, logger="idn.node.authority"):
            for _ in range(20):
                code, _ = code_of(lambda: stub.GetStats(cpb.GetStatsRequest(), timeout=5,
                                                        metadata=[("authorization", "Bearer wrong")]))
                assert code == grpc.StatusCode.UNAUTHENTICATED
        lines = [r.message for r in caplog.records if r.name == "idn.node.authority"]
        assert 1 <= len(lines) <= 5 and "refused GetStats from ipv4:127.0.0.1" in lines[0]
        ch.close()
    finally:
        net.close()


def test_rate_limited_log_summarises_what_it_dropped(caplog):
    now = [0.0]
    rl = RateLimitedLog(logging.getLogger("t"), burst=2, interval_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        assert [rl.log("k", "line %d", i) for i in range(5)] == [True, True, False, False, False]
        assert rl.log("other", "another kind") and rl.suppressed("k") == 3
        now[0] = 11
        assert rl.log("k", "after the window")
    assert [r.message for r in caplog.records] == [
        "line 0", "line 1", "another kind", "3 more k line(s) were not logged in the last 11 s", "after the window"]


# -- pins and targets: only what the plan placed or the repository holds -------------------------

def small_repository_topology(tmp_path, catalog_path) -> str:
    """The line topology with a repository that holds only one toy variant at a time."""
    path = line_topology(tmp_path)
    doc = yaml.safe_load(path.read_text())
    cat = load_catalog(catalog_path)
    sizes = [v.bytes for v in cat.variants.values()]
    doc["nodes"][0]["mem_mb"] = (max(sizes) + min(sizes) - 1) / 2**20  # cloud: one of them, never both
    path.write_text(yaml.safe_dump(doc))
    return path


def test_targets_and_pins_never_grow_a_node_that_is_not_the_repository(tmp_path, catalog_path):
    net = Network(line_topology(tmp_path), catalog_path)
    try:
        plan = make_plan(1, {"edge": ["toy-small"], "cloud": ["toy-big"]}, [("edge", "toy-small", 1.0)])
        for nid in net.topology.nodes:
            net.nodes[nid].call(net.nodes[nid].server.deployment.apply(plan))
        with Client(net.address("edge")) as c:
            # the probe of issue #14: idn.target=<node>/<variant> for every variant, at every node
            for target in ("edge/toy-big", "edge/toy-small", "regional/toy-big", "regional/toy-small"):
                r = c.infer("toy", X, parameters={"idn.target": target})
                want = target.split("/")[1]
                assert r.variant == want and r.node == ("edge" if target == "edge/toy-small" else "cloud"), target
            assert c.infer("toy-big", X).node == "cloud"  # pinned by name: where the plan has it
            code, details = code_of(lambda: c.infer("toy", X, parameters={"idn.target": "edge/no-such-variant"}))
            assert code == grpc.StatusCode.NOT_FOUND and "no-such-variant" in details
            code, details = code_of(lambda: c.infer("toy", X, parameters={"idn.target": "mars/toy-big"}))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown node 'mars'" in details
        edge, regional = net.nodes["edge"].server, net.nodes["regional"].server
        assert set(edge.store.loaded) == {"toy-small"} and not regional.store.loaded
        assert edge.dataplane.on_demand_loads == regional.dataplane.on_demand_loads == 0
        assert edge.dataplane.redirects == 1 and regional.dataplane.redirects == 2
    finally:
        net.close()


def test_the_repository_loads_on_demand_within_its_memory(tmp_path, catalog_path):
    net = Network(small_repository_topology(tmp_path, catalog_path), catalog_path)
    cloud = net.nodes["cloud"].server
    try:
        with Client(net.address("edge")) as c:
            assert c.infer("toy-small", X).node == "cloud"  # nobody holds it: the repository loads it
            assert set(cloud.store.loaded) == {"toy-small"}
            r = c.infer("toy", X, parameters={"idn.target": "cloud/toy-big"})
            assert (r.node, r.variant, r.degraded) == ("cloud", "toy-big", False)
            assert set(cloud.store.loaded) == {"toy-big"}  # the earlier on-demand load made room
            assert cloud.store.bytes_loaded() <= cloud.dataplane.memory_bytes
            # a planned variant is never evicted: the other one no longer fits, and a pin for it is
            # served by the planned one, flagged degraded
            plan = make_plan(1, {"cloud": ["toy-small"]}, [("cloud", "toy-small", 1.0)])
            for nid in net.topology.nodes:
                net.nodes[nid].call(net.nodes[nid].server.deployment.apply(plan))
            assert set(cloud.store.loaded) == {"toy-small"}
            r = c.infer("toy-big", X)
            assert (r.node, r.variant, r.degraded) == ("cloud", "toy-small", True)
            assert set(cloud.store.loaded) == {"toy-small"}
    finally:
        net.close()


def test_a_node_without_a_memory_figure_never_loads_on_demand(catalog_path):
    cat = load_catalog(catalog_path)
    node = RunningNode(NodeConfig(listen="127.0.0.1:0", catalog=cat, variants=["toy-small"]))
    try:
        with Client(node.address) as c:
            assert c.infer("toy", X).variant == "toy-small"  # a task: its best loaded variant
            code, details = code_of(lambda: c.infer("toy-big", X))
            assert code == grpc.StatusCode.NOT_FOUND and "not loaded" in details
            code, details = code_of(lambda: c.infer("toy", X, parameters={"idn.target": f"{node.address}/toy-big"}))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "no topology" in details  # no peers: no targets
        assert set(node.server.store.loaded) == {"toy-small"}
    finally:
        node.stop()
    node = RunningNode(NodeConfig(listen="127.0.0.1:0", catalog=cat, variants=["toy-small"], mem_mb=1.0))
    try:
        with Client(node.address) as c:  # --mem-mb: a standalone node is its own repository
            assert c.infer("toy-big", X).variant == "toy-big"
    finally:
        node.stop()


def _apply(net: Network, plan, phase=cpb.ApplyPlanRequest.APPLY) -> None:
    for nid in net.topology.nodes:
        ch = grpc.insecure_channel(net.address(nid))
        cpb_grpc.NodeControlStub(ch).ApplyPlan(
            cpb.ApplyPlanRequest(plan_json=json.dumps(plan_to_dict(plan)), phase=phase),
            metadata=[("authorization", f"Bearer {net.token}")], timeout=30)
        ch.close()


@pytest.mark.parametrize("phased", [True, False], ids=["phased", "one-call-per-node"])
def test_plan_changes_load_only_what_the_plans_place(tmp_path, catalog_path, phased):
    """Make-before-break with steady traffic: no request fails, and the nodes that are not the
    repository load exactly what the plans put on them, once (a target that reaches a node
    before or after its plan holds it goes on to the repository)."""
    net = Network(line_topology(tmp_path), catalog_path)
    plans = [make_plan(1, {"edge": ["toy-small"], "cloud": ["toy-big"]}, [("edge", "toy-small", 1.0)]),
             make_plan(2, {"regional": ["toy-big"]}, [("regional", "toy-big", 1.0)]),
             make_plan(3, {"edge": ["toy-big"], "cloud": ["toy-small"]},
                       [("edge", "toy-big", 0.5), ("cloud", "toy-small", 0.5)])]
    loads: dict[str, list[str]] = {"edge": [], "regional": []}
    for nid, seen in loads.items():
        store = net.nodes[nid].server.store
        real = store.load

        async def counted(name, source=None, _real=real, _seen=seen):
            _seen.append(name)
            return await _real(name, source)
        store.load = counted  # type: ignore[method-assign]  # a spy on this node's loads
    results: list = []
    stop = threading.Event()

    def stream():
        with Client(net.address("edge")) as c:
            while not stop.is_set() and len(results) < 5000:
                try:
                    results.append(c.infer("toy", X, timeout=5).node)
                except grpc.RpcError as e:
                    results.append(f"ERROR {e.code().name}: {e.details()}")

    t = threading.Thread(target=stream)
    t.start()
    try:
        for p in plans:
            time.sleep(0.3)
            if phased:
                for phase in (cpb.ApplyPlanRequest.PREPARE, cpb.ApplyPlanRequest.COMMIT,
                              cpb.ApplyPlanRequest.CLEANUP):
                    _apply(net, p, phase)
            else:
                _apply(net, p)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(30)
        net.close()
    errors = [r for r in results if r.startswith("ERROR")]
    assert not errors, errors[:3]
    assert len(results) > 30 and {"edge", "regional", "cloud"} <= set(results)
    assert loads == {"edge": ["toy-small", "toy-big"], "regional": ["toy-big"]}
