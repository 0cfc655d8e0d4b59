"""End to end on loopback: three real nodes, plans, forwarding, deadlines, faults, control plane."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import grpc
import numpy as np
import pytest

from idn.client import Client
from idn.plan import plan_to_dict
from idn.protos import control_pb2 as cpb
from idn.protos import control_pb2_grpc as cpb_grpc
from tests.network import Network, line_topology, make_plan, toy_catalog

X = {"input": np.ones((1, 4), np.float32)}
SPLIT = make_plan(1, {"edge": ["toy-small"], "cloud": ["toy-big"]},
                  [("edge", "toy-small", 0.5), ("cloud", "toy-big", 0.5)])


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory):
    return toy_catalog(tmp_path_factory.mktemp("cat"))


@pytest.fixture
def net(tmp_path, catalog_path):
    n = Network(line_topology(tmp_path), catalog_path, state_root=tmp_path / "state")
    yield n
    n.close()


def control(net: Network, nid: str, token: str | None = None):
    ch = grpc.insecure_channel(net.address(nid))
    return ch, cpb_grpc.NodeControlStub(ch), [("authorization", f"Bearer {token or net.token}")]


def apply(net: Network, plan, nodes=None, phase=cpb.ApplyPlanRequest.APPLY) -> None:
    for nid in nodes or net.topology.nodes:
        ch, stub, md = control(net, nid)
        stub.ApplyPlan(cpb.ApplyPlanRequest(plan_json=json.dumps(plan_to_dict(plan)), phase=phase),
                       metadata=md, timeout=30)
        ch.close()


def apply_phased(net: Network, plan) -> None:
    """What idn apply does: every node loads, then every node switches, then every node unloads."""
    for phase in (cpb.ApplyPlanRequest.PREPARE, cpb.ApplyPlanRequest.COMMIT, cpb.ApplyPlanRequest.CLEANUP):
        apply(net, plan, phase=phase)


def test_requests_are_served_where_the_plan_says(net):
    apply(net, SPLIT)
    with Client(net.address("edge")) as c:
        res = [c.infer("toy", X) for _ in range(10)]
    served = Counter((r.node, r.variant, r.hops) for r in res)
    # smooth weighted round-robin: exactly the 50/50 split, interleaved
    assert served == {("edge", "toy-small", 0): 5, ("cloud", "toy-big", 2): 5}
    assert [r.node for r in res[:4]] in (["edge", "cloud"] * 2, ["cloud", "edge"] * 2)
    assert all(r.accuracy in (0.80, 0.95) for r in res)
    # the slow edge (slowdown 2) and the 2 x (2 + 2) ms round trip to the cloud are emulated
    assert all(r.server_us > 0 for r in res)


def test_pinned_variant_and_request_slo(net):
    apply(net, SPLIT)
    with Client(net.address("edge")) as c:
        assert c.infer("toy-big", X).node == "cloud"  # pinned: served where the plan has it
        assert c.infer("toy-small", X).node == "edge"
        hi = [c.infer("toy", X, parameters={"idn.min_accuracy": 0.9}) for _ in range(4)]
        assert {(r.node, r.variant) for r in hi} == {("cloud", "toy-big")}
        fast = [c.infer("toy", X, parameters={"idn.max_latency_ms": 3.0}) for _ in range(4)]
        assert {(r.node, r.variant) for r in fast} == {("edge", "toy-small")}
        bad = c.infer("toy", X, parameters={"idn.min_accuracy": 0.99})  # nobody meets it: served, flagged
        assert bad.parameters.get("idn.slo_met") is False
        with pytest.raises(grpc.RpcError) as e:
            c.infer("toy", X, parameters={"idn.max_latency_ms": "soon"})
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "idn.max_latency_ms" in e.value.details()


def test_without_a_plan_requests_go_to_the_repository(net):
    with Client(net.address("edge")) as c:
        r = c.infer("toy", X)
        assert (r.node, r.variant, r.hops) == ("cloud", "toy-big", 2)  # the repository's most accurate
        with pytest.raises(grpc.RpcError) as e:
            c.infer("no-such-task", X)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_deadline_exceeded_when_a_link_is_slower_than_the_deadline(tmp_path, catalog_path):
    net = Network(line_topology(tmp_path, delays_ms=(2.0, 300.0)), catalog_path)
    try:
        with Client(net.address("edge")) as c:
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as e:
                c.infer("toy", X, timeout=0.1)
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - t0 < 0.5
            assert c.infer("toy", X, timeout=5).node == "cloud"  # a deadline that covers it is fine
    finally:
        net.close()


def test_dead_parent_unavailable_or_degraded_and_node_keeps_serving(net):
    net.stop("regional")
    with Client(net.address("edge")) as c:
        r = c.infer("toy", X, timeout=3)  # no plan, nothing local: the edge skips its dead parent
        assert (r.node, r.parameters.get("idn.rerouted")) == ("cloud", "regional")
        net.stop("cloud")
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            c.infer("toy", X, timeout=3)  # nothing up the path is alive
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "regional" in e.value.details()
        assert time.monotonic() - t0 < 3
        # with a local variant of the task, the edge answers itself, flagged degraded
        apply(net, make_plan(1, {"edge": ["toy-small"], "cloud": ["toy-big"]}, [("cloud", "toy-big", 1.0)]),
              nodes=["edge"])
        r = c.infer("toy", X, timeout=3)
        assert (r.node, r.variant, r.degraded) == ("edge", "toy-small", True)
        assert c.ready()


def test_phases_load_then_switch_then_unload(net):
    old = make_plan(1, {"edge": ["toy-small"]}, [("edge", "toy-small", 1.0)])
    new = make_plan(2, {"edge": ["toy-big"]}, [("edge", "toy-big", 1.0)])
    apply(net, old)
    edge = net.nodes["edge"].server
    apply(net, new, nodes=["edge"], phase=cpb.ApplyPlanRequest.PREPARE)
    assert set(edge.store.loaded) == {"toy-small", "toy-big"} and edge.deployment.version == 1
    with Client(net.address("edge")) as c:
        assert c.infer("toy", X).variant == "toy-small"  # still routed by the old plan
        apply(net, new, nodes=["edge"], phase=cpb.ApplyPlanRequest.COMMIT)
        assert c.infer("toy", X).variant == "toy-big" and edge.deployment.version == 2
        assert "toy-small" in edge.store.loaded  # not yet unloaded
        apply(net, new, nodes=["edge"], phase=cpb.ApplyPlanRequest.CLEANUP)
        assert set(edge.store.loaded) == {"toy-big"}
    with pytest.raises(grpc.RpcError) as e:  # CLEANUP of a plan that is not the committed one
        apply(net, old, nodes=["edge"], phase=cpb.ApplyPlanRequest.CLEANUP)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "COMMIT" in e.value.details()


def test_control_plane_needs_the_token_and_refuses_stale_plans(net):
    ch, stub, _ = control(net, "edge")
    with pytest.raises(grpc.RpcError) as e:
        stub.GetNodeInfo(cpb.GetNodeInfoRequest(), metadata=[("authorization", "Bearer wrong")], timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    apply(net, SPLIT.with_version(3))
    _, _, md = control(net, "edge")
    info = stub.GetNodeInfo(cpb.GetNodeInfoRequest(), metadata=md, timeout=5)
    assert (info.id, info.tier, info.plan_version, list(info.variants)) == ("edge", "edge", 3, ["toy-small"])
    assert info.slowdown == 2.0
    with pytest.raises(grpc.RpcError) as e:
        stub.ApplyPlan(cpb.ApplyPlanRequest(plan_json=json.dumps(plan_to_dict(SPLIT.with_version(2)))),
                       metadata=md, timeout=5)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "not newer" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.ApplyPlan(cpb.ApplyPlanRequest(plan_json="{not json"), metadata=md, timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:  # an unknown phase is the caller's mistake, not the node's
        stub.ApplyPlan(cpb.ApplyPlanRequest(plan_json=json.dumps(plan_to_dict(SPLIT.with_version(9))), phase=99),
                       metadata=md, timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unknown apply phase 99" in e.value.details()
    assert stub.GetNodeInfo(cpb.GetNodeInfoRequest(), metadata=md, timeout=5).plan_version == 3
    ch.close()


def test_stats_count_requests_per_class_since_a_cursor(net):
    apply(net, SPLIT)
    ch, stub, md = control(net, "edge")
    first = stub.GetStats(cpb.GetStatsRequest(), metadata=md, timeout=5)
    with Client(net.address("edge")) as c:
        for _ in range(6):
            c.infer("toy", X)
        c.infer("toy", X, parameters={"idn.min_accuracy": 0.9})
    st = stub.GetStats(cpb.GetStatsRequest(since=first.cursor), metadata=md, timeout=5)
    by = {c.class_key: c for c in st.classes}
    assert by["edge/toy"].requests == 6 and by["edge/toy"].errors == 0
    assert dict(by["edge/toy"].served_by) == {"edge/toy-small": 3, "cloud/toy-big": 3}
    assert sum(by["edge/toy"].counts) == 6 and by["edge/toy"].mean_ms > 0
    assert by["edge/toy/acc0.9"].requests == 1
    # the cloud served 3 forwarded requests but is no ingress for them: no class there
    ch2, stub2, md2 = control(net, "cloud")
    assert not stub2.GetStats(cpb.GetStatsRequest(), metadata=md2, timeout=5).classes
    ch.close()
    ch2.close()


def test_plan_persists_across_restart(net):
    apply(net, SPLIT.with_version(7))
    net.stop("edge")
    net.start("edge")
    ch, stub, md = control(net, "edge")
    info = stub.GetNodeInfo(cpb.GetNodeInfoRequest(), metadata=md, timeout=5)
    assert info.plan_version == 7 and list(info.variants) == ["toy-small"] and info.ready
    ch.close()


@pytest.mark.parametrize("phased", [True, False], ids=["phased", "one-call-per-node"])
def test_three_plan_changes_under_steady_traffic_lose_no_request(net, phased):
    plans = [
        make_plan(1, {"edge": ["toy-small"], "cloud": ["toy-big"]}, [("edge", "toy-small", 1.0)]),
        make_plan(2, {"regional": ["toy-big"]}, [("regional", "toy-big", 1.0)]),
        make_plan(3, {"edge": ["toy-big"], "cloud": ["toy-small"]},
                  [("edge", "toy-big", 0.5), ("cloud", "toy-small", 0.5)]),
    ]
    results: list = []
    stop = threading.Event()

    def stream():
        with Client(net.address("edge")) as c:
            for _ in range(3000):  # bounded; ends when the plans are in
                if stop.is_set():
                    return
                try:
                    r = c.infer("toy", X, timeout=5)
                    results.append((r.node, r.variant))
                except grpc.RpcError as e:
                    results.append(("ERROR", f"{e.code().name}: {e.details()}"))

    t = threading.Thread(target=stream)
    t.start()
    try:
        for p in plans:
            time.sleep(0.3)
            (apply_phased if phased else apply)(net, p)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(30)
    errors = [r for r in results if r[0] == "ERROR"]
    assert not errors, errors[:3]
    seen = set(results)
    assert ("edge", "toy-small") in seen and ("regional", "toy-big") in seen and ("edge", "toy-big") in seen
    assert len(results) > 30
    on_demand = sum(n.server.dataplane.on_demand_loads for n in net.nodes.values())
    if phased:
        assert on_demand == 0  # every target was loaded before anyone routed to it


def test_prometheus_metrics_count_outcomes(tmp_path, catalog_path):
    import urllib.request

    from idn.catalog import load_catalog
    from idn.node.server import NodeConfig
    from tests.conftest import RunningNode

    node = RunningNode(NodeConfig(listen="127.0.0.1:0", catalog=load_catalog(catalog_path),
                                  variants=["toy-small"], metrics_port=0))
    try:
        with Client(node.address) as c:
            for _ in range(3):
                c.infer("toy-small", X)
            with pytest.raises(grpc.RpcError):
                c.infer("toy-small", {"input": np.ones((1, 5), np.float32)})
        port = node.server.metrics_port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'idn_requests_total{model="toy-small",outcome="local"} 3.0' in text
        assert 'idn_requests_total{model="toy-small",outcome="INVALID_ARGUMENT"} 1.0' in text
        assert 'idn_request_duration_seconds_count{model="toy-small"} 4.0' in text
        assert "idn_variants_loaded" in text and "idn_plan_version" in text
    finally:
        node.stop()


def test_health_checks_that_are_wrong_do_not_fail_a_request_with_nowhere_else_to_go(net):
    """A node starved of CPU can miss its health checks without being dead: with no other route
    and no local answer, the normal route is still tried before failing."""
    edge = net.nodes["edge"]
    health = edge.server.dataplane.forwarder.health
    edge.call(health.stop())  # no probes to correct the (wrong) view during the test
    for nid in ("regional", "cloud"):
        edge.loop.call_soon_threadsafe(health.mark_down, nid, "missed 2 health checks (test)")
    time.sleep(0.1)
    assert health.down >= {"regional", "cloud"}
    with Client(net.address("edge")) as c:
        r = c.infer("toy", X, timeout=3)
    assert (r.node, r.hops) == ("cloud", 2) and "idn.rerouted" not in r.parameters
