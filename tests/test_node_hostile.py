"""Hostile input (issue #14): bounded memory, small errors on the right status.

Whatever strings a client chooses — model names, versions, SLO values, parameter and
input names, targets — the node answers with the right status and a short message, and
nothing it keeps grows with them. The last test runs a real node process and sends it
100,000 distinct hostile keys (``benchmarks/hostile.py`` is the bigger version, with a
table).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import grpc
import numpy as np
import pytest

from idn.catalog import load_catalog
from idn.client import build_request
from idn.node.metrics import MAX_SERIES, NodeMetrics
from idn.node.router import RoutingTable
from idn.node.server import NodeConfig
from idn.node.stats import MAX_CLASSES, MAX_SERVED_BY, OTHER, UNKNOWN, StatsBook, quantise_slo
from idn.protocol.status import MAX_MESSAGE_CHARS, echo
from idn.protos import control_pb2 as cpb
from idn.protos import control_pb2_grpc as cpb_grpc
from idn.protos import grpc_service_pb2_grpc as pb_grpc
from idn.topology import load_topology
from tests.conftest import TOKEN, RunningNode
from tests.network import line_topology, make_plan, toy_catalog

X = {"input": np.ones((1, 4), np.float32)}
MIB = 2 ** 20


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory):
    return toy_catalog(tmp_path_factory.mktemp("cat"))


@pytest.fixture(scope="module")
def toy_node(catalog_path, model_dir):
    n = RunningNode(NodeConfig(listen="127.0.0.1:0", node_id="solo", catalog=load_catalog(catalog_path),
                               variants=["toy-small"], models={"linear": model_dir / "linear.onnx"},
                               control_token=TOKEN, metrics_port=0))
    yield n
    n.stop()


@pytest.fixture
def stub(toy_node):
    ch = grpc.insecure_channel(toy_node.address, options=[("grpc.max_send_message_length", 64 * MIB)])
    yield pb_grpc.GRPCInferenceServiceStub(ch)
    ch.close()


def refused(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call()
    details = e.value.details() or ""
    assert len(details) <= MAX_MESSAGE_CHARS, details[:200]
    return e.value.code(), details


# -- errors: the right status, a short message that says what was wrong -------------------------

def test_huge_and_unknown_names_get_short_accurate_errors(stub):
    code, details = refused(lambda: stub.ModelInfer(build_request("m" * (4 * MIB), X), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"model_name has {4 * MIB} characters" in details
    code, details = refused(lambda: stub.ModelInfer(build_request("nope-" + "n" * 200, X), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "'nope-nnn" in details and "(205 chars)" in details
    code, details = refused(lambda: stub.ModelInfer(build_request("toy-small", X, version="9" * MIB),
                                                    timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "has no version '999" in details
    code, details = refused(lambda: stub.ModelInfer(build_request("linear", {"i" * MIB: X["input"]}), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "has no input 'iii" in details
    req = build_request("linear", X)
    req.inputs[0].shape[:] = [1] * 100_000
    code, details = refused(lambda: stub.ModelInfer(req, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "(100000 items)" in details
    req = build_request("linear", X)
    req.outputs.add(name="o" * MIB)
    code, details = refused(lambda: stub.ModelInfer(req, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "has no output 'ooo" in details


@pytest.mark.parametrize("key,value,words", [
    ("idn.max_latency_ms", float("nan"), "finite number in (0, inf]"),
    ("idn.max_latency_ms", float("inf"), "finite number"),
    ("idn.max_latency_ms", -5.0, "finite number in (0, inf]"),
    ("idn.max_latency_ms", 0, "finite number"),
    ("idn.max_latency_ms", "1e400", "finite number"),
    ("idn.max_latency_ms", "9" * 400_000, "finite number"),
    ("idn.max_latency_ms", "z" * 400_000, "must be a number, got zzz"),
    ("idn.max_latency_ms", True, "must be a number, got True"),
    ("idn.min_accuracy", 1.5, "finite number in [0, 1]"),
    ("idn.min_accuracy", -0.1, "finite number in [0, 1]"),
    ("idn.target", 7, "must be a string '<node>/<variant>'"),
    ("idn.target", "x" * MIB, "idn.target must be '<node>/<variant>'"),
])
def test_bad_request_parameters_are_invalid_argument(stub, key, value, words):
    req = build_request("toy", X)
    p = req.parameters[key]
    if isinstance(value, bool):
        p.bool_param = value
    elif isinstance(value, str):
        p.string_param = value
    elif isinstance(value, int):
        p.int64_param = value
    else:
        p.double_param = value
    code, details = refused(lambda: stub.ModelInfer(req, timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and key in details and words in details, details


def test_repository_calls_with_huge_names(stub):
    from idn.protos import grpc_service_pb2 as pb

    code, details = refused(lambda: stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(
        model_name="u" * (3 * MIB)), timeout=10))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "(3145728 chars)" in details
    assert not stub.ModelReady(pb.ModelReadyRequest(name="r" * (3 * MIB)), timeout=10).ready
    code, details = refused(lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="q" * (3 * MIB)), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "(3145728 chars)" in details


def test_echo_cuts_what_it_quotes():
    assert echo("short") == "short"
    assert echo("x" * 100) == "x" * 64 + "... (100 chars)"
    assert echo(b"\x01" * 100).endswith("... (100 bytes)") and len(echo(b"\x01" * 10**6)) < 300
    assert echo(list(range(10**6))) == "[0, 1, 2, 3, 4, 5, 6, 7]... (1000000 items)"
    assert echo(1.5) == "1.5"


# -- nothing the node keeps is keyed by what a client chose -----------------------------------

def test_unknown_names_and_slo_values_do_not_grow_stats_or_metrics(catalog_path):
    toy_node = RunningNode(NodeConfig(listen="127.0.0.1:0", node_id="solo", catalog=load_catalog(catalog_path),
                                      variants=["toy-small"], control_token=TOKEN, metrics_port=0))
    ch = grpc.insecure_channel(toy_node.address)
    stub = pb_grpc.GRPCInferenceServiceStub(ch)
    dp = toy_node.server.dataplane
    for i in range(300):
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(build_request(f"made-up-{i}", X), timeout=10)
        stub.ModelInfer(build_request("toy", X, parameters={"idn.max_latency_ms": 1 + i / 7,
                                                            "idn.min_accuracy": i / 301,
                                                            f"junk-{i}": i}), timeout=10)
    assert {k[1] for k in dp.stats.classes} == {"toy", UNKNOWN}
    assert len(dp.stats.classes) <= MAX_CLASSES + 2
    assert dp.metrics is not None and {m for m, _ in dp.metrics._children} == {"toy", UNKNOWN}
    st = cpb_grpc.NodeControlStub(ch).GetStats(cpb.GetStatsRequest(), timeout=10,
                                               metadata=[("authorization", f"Bearer {TOKEN}")])
    ch.close()
    toy_node.stop()
    keys = {c.class_key for c in st.classes}
    assert "solo/(unknown)" in keys and "solo/toy/other-slo" in keys
    assert sum(c.requests for c in st.classes if c.task == "toy") == 300


def test_stats_book_stays_bounded():
    book = StatsBook()
    rng = np.random.default_rng(0)
    for i in range(100_000):
        book.record("edge", "digits", float(rng.uniform(0.001, 1e9)), float(rng.uniform(0, 1)), 1.0, True,
                    f"edge/v{i}")
    assert len(book.classes) == MAX_CLASSES + 1  # the overflow class
    for c in book.classes.values():
        assert len(c.served_by) <= MAX_SERVED_BY + 1 and (len(c.served_by) <= MAX_SERVED_BY or OTHER in c.served_by)
    assert sum(c.requests for c in book.classes.values()) == 100_000
    w = book.window()
    assert "edge/digits/other-slo" in w.classes and w.classes["edge/digits/other-slo"].max_latency_ms is None


def test_slo_values_are_quantised_the_strict_way():
    assert quantise_slo(12.34, 0.9004) == (12.0, 0.901)
    assert quantise_slo(3.0, 0.9) == (3.0, 0.9)  # values a demand file holds are unchanged
    assert quantise_slo(250, 0.95) == (250.0, 0.95)
    assert quantise_slo(1e12, 0.0) == (1e6, 0.0) and quantise_slo(1e-9, None) == (0.01, None)
    lats = {quantise_slo(x, None)[0] for x in np.geomspace(0.001, 1e9, 200_000)}
    accs = {quantise_slo(None, a)[1] for a in np.linspace(0, 1, 200_000)}
    assert len(lats) <= 8 * 90 + 1 and len(accs) == 1001
    assert all(math.isfinite(x) for x in lats)


def test_round_robin_state_is_per_candidate_set_not_per_slo(tmp_path, catalog_path):
    topo = load_topology(line_topology(tmp_path))
    plan = make_plan(1, {"edge": ["toy-small"], "cloud": ["toy-big"]},
                     [("edge", "toy-small", 0.5), ("cloud", "toy-big", 0.5)])
    table = RoutingTable("edge", topo, load_catalog(catalog_path), plan)
    rng = np.random.default_rng(0)
    picks = set()
    for _ in range(20_000):
        r = table.resolve("toy", {"toy-small": None}, None, float(rng.uniform(0.01, 100)), float(rng.uniform(0, 1)))
        picks.add((r.node, r.variant, r.slo_met))
    assert len(table._wrr) <= 4  # the subsets of two candidates (and the exact class), not 20,000 SLOs
    assert {("edge", "toy-small"), ("cloud", "toy-big")} <= {p[:2] for p in picks}


def test_metrics_series_are_capped():
    m = NodeMetrics("n")
    for i in range(MAX_SERIES + 500):
        m.observe(f"model-{i}", "local", 0.001)
    assert len(m._children) == MAX_SERIES + 1
    assert m._children[("(other)", "local")][0]._value.get() == 500


# -- a real node process, 100,000 distinct hostile keys ----------------------------------------

def _hostile():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "hostile.py"
    spec = importlib.util.spec_from_file_location("hostile_bench", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_100k_hostile_keys_leave_the_node_rss_flat():
    """Model names, SLO values and parameter names, 100,000 distinct, plus ten 3-4 MiB names and
    a target for every catalog variant: RSS grows by less than 20 MiB, every answer is the right
    status with a short message, the tables stay small and on-demand loads stay within memory."""
    hostile = _hostile()
    r = hostile.run(100_000, hostile.ROOT)
    hostile.print_table([r])
    assert r["node_alive"] and r["distinct_keys"] >= 100_000
    assert r["growth_mib"] < 20, r["rss_mib"]
    assert r["outcomes"] == {
        "bad_slo: INVALID_ARGUMENT": 6, "huge_name: INVALID_ARGUMENT": 10, "name: NOT_FOUND": 40_000,
        "params: OK": 400, "slo: OK": 20_000, "target: OK": 36, "target: OK (degraded)": 6,
        # imagenet's variants (5-25 MB) cannot fit the 2 MiB node, which holds no variant of the
        # task to fall back on: refused, never loaded
        "target: RESOURCE_EXHAUSTED": 18}, r["outcomes"]
    assert r["longest_error_details"] <= 300
    assert r["stats_classes"] <= MAX_CLASSES + 3 and r["metric_series"] <= 10
    assert r["variant_bytes"] <= r["mem_mb"] * MIB
