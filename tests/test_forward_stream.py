"""Forwarding over ModelStreamInfer streams (``--forward-stream``): the end-to-end forwarding
tests of test_network.py, run again with every node forwarding over streams, plus what only
streams have (the deadline travels as ``idn.timeout_us``; errors keep their status; a
neighbour that holds a full stream gets a second one)."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest
import yaml

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
    # (gRPC rounds the timeout header up, hence a little slack over the client's 5 s)
    assert len(seen) == 1 and seen[0] is not None and 0 < seen[0] <= 5.5


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


class UnaryOnlyNode:
    """A neighbour from before streaming: health and ModelInfer only (ModelStreamInfer is
    UNIMPLEMENTED), answering as a node called ``cloud`` would."""

    def __init__(self, address: str):
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc

        from idn.protos import grpc_service_pb2 as pb

        self.calls = 0
        self.loop = asyncio.new_event_loop()

        async def infer(request, context):
            self.calls += 1
            resp = pb.ModelInferResponse(model_name="toy-big", id=request.id)
            resp.parameters[P.NODE].string_param = "cloud"
            return resp

        async def start():
            self.server = grpc.aio.server()
            self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
                "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(
                    infer, request_deserializer=pb.ModelInferRequest.FromString,
                    response_serializer=pb.ModelInferResponse.SerializeToString)}),))
            hs = health.aio.HealthServicer()
            await hs.set("", health_pb2.HealthCheckResponse.SERVING)
            health_pb2_grpc.add_HealthServicer_to_server(hs, self.server)
            self.server.add_insecure_port(address)
            await self.server.start()

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_a_neighbour_without_streams_gets_unary_calls(tmp_path, catalog_path):
    from idn.catalog import load_catalog
    from idn.node.server import NodeConfig
    from idn.node.settings import NodeSettings
    from idn.topology import load_topology
    from tests.conftest import RunningNode
    from tests.network import HW, free_port

    doc = {"hardware_class": HW, "nodes": [
        {"id": "cloud", "tier": "cloud", "address": f"127.0.0.1:{free_port()}", "mem_mb": 1024, "cores": 2,
         "repository": True},
        {"id": "edge", "tier": "edge", "address": f"127.0.0.1:{free_port()}", "mem_mb": 64, "cores": 1,
         "parent": "cloud"}], "links": [{"a": "cloud", "b": "edge", "delay_ms": 1}]}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(doc))
    topo = load_topology(tmp_path / "old.yaml")
    old = UnaryOnlyNode(topo.node("cloud").address)
    edge = RunningNode(NodeConfig(listen=topo.node("edge").address, node_id="edge", topology=topo,
                                  catalog=load_catalog(catalog_path), settings=NodeSettings(forward_stream=True)))
    try:
        with Client(topo.node("edge").address) as c:
            assert [c.infer("toy", X, timeout=5).node for _ in range(3)] == ["cloud"] * 3
        assert edge.server.dataplane.forwarder.unary_only == {"cloud"} and old.calls == 3
    finally:
        edge.stop()
        old.stop()
