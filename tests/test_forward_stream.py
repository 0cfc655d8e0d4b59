"""Forwarding over ModelStreamInfer streams (``--forward-stream``): the end-to-end forwarding
tests of test_network.py, run again with every node forwarding over streams, plus what only
streams have (the deadline travels as ``idn.timeout_us``; errors keep their status; a
neighbour that holds a full stream gets a second one)."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest

from idn.client import Client, build_request
from idn.protocol import params as P
from idn.protos import grpc_service_pb2_grpc as pb_grpc
from tests import test_network as plain
from tests.network import Network, line_topology, toy_catalog

X = {"input": np.ones((1, 4), np.float32)}


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory):
    return toy_catalog(tmp_path_factory.mktemp("cat"))


@pytest.fixture
def net(tmp_path, catalog_path):
    n = Network(line_topology(tmp_path), catalog_path, state_root=tmp_path / "state", forward_stream=True)
    yield n
    n.close()


# The forwarding tests of test_network.py, on this module's stream-forwarding network.
test_requests_are_served_where_the_plan_says = plain.test_requests_are_served_where_the_plan_says
test_pinned_variant_and_request_slo = plain.test_pinned_variant_and_request_slo
test_without_a_plan_requests_go_to_the_repository = plain.test_without_a_plan_requests_go_to_the_repository
test_dead_parent_unavailable_or_degraded_and_node_keeps_serving = \
    plain.test_dead_parent_unavailable_or_degraded_and_node_keeps_serving


def streams(net: Network, nid: str) -> list:
    return [st for sts in net.nodes[nid].server.dataplane.forwarder._streams.values() for st in sts]


def test_forwards_travel_on_streams_and_the_deadline_with_them(net):
    seen: list[float | None] = []
    cloud = net.nodes["cloud"].server.dataplane
    serve = cloud.infer

    async def watching(req):
        seen.append(None if req.deadline is None else req.deadline - time.monotonic())
        return await serve(req)

    cloud.infer = watching
    with Client(net.address("edge")) as c:
        r = c.infer("toy", X, timeout=5)
    assert (r.node, r.hops) == ("cloud", 2)
    assert len(streams(net, "edge")) == 1 and len(streams(net, "regional")) == 1
    # the cloud got the request over a stream (no gRPC deadline of its own) and still knows the client's
    assert len(seen) == 1 and seen[0] is not None and 0 < seen[0] <= 5


def test_an_expired_budget_is_refused_before_any_work(net):
    with grpc.insecure_channel(net.address("cloud")) as ch:
        req = build_request("toy-big", X, parameters={P.TIMEOUT_US: 0}, request_id="late")
        (answer,) = list(pb_grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(iter([req]), timeout=10))
    assert answer.infer_response.id == "late"
    assert answer.infer_response.parameters[P.STATUS].string_param == "DEADLINE_EXCEEDED"


def test_errors_from_downstream_keep_their_status(net):
    with Client(net.address("edge")) as c:
        with pytest.raises(grpc.RpcError) as e:
            c.infer("toy", {"input": np.ones((1, 5), np.float32)}, timeout=5)  # wrong shape, found at the cloud
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "input" in e.value.details()
        assert c.infer("toy", X, timeout=5).node == "cloud"  # the same streams go on


def test_concurrent_forwards_beyond_a_streams_cap_open_another(tmp_path, catalog_path):
    net = Network(line_topology(tmp_path), catalog_path, forward_stream=True, stream_max_in_flight=2)
    try:
        async def burst():
            from idn.client import AsyncClient
            async with AsyncClient(net.address("edge"), timeout=10) as c:
                return await asyncio.gather(*(c.infer("toy", {"input": np.full((1, 4), i, np.float32)})
                                              for i in range(24)))

        res = asyncio.run(burst())
        assert all(r.node == "cloud" for r in res)
        assert len(streams(net, "edge")) >= 1  # more than one whenever more than 2 were in flight at once
        assert all(st.in_flight == 0 for st in streams(net, "edge"))
    finally:
        net.close()
