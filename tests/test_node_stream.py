"""ModelStreamInfer (Triton's bidirectional streaming RPC) against a real node.

Requests on one stream run concurrently and are answered as they finish, each answer
carrying its request's ``id``; a failed request is answered on the stream
(``error_message``, with the id and the ``idn.status`` it would have had as a unary call)
and the stream goes on; a stream holds at most ``stream_max_in_flight`` requests; a
cancelled stream cancels what it still runs. Where a test needs to see inside the node
(concurrency, the bound, cancellation) the node's data plane is replaced by a stand-in
on the node's own loop; the gRPC server, the stream and the servicer are the real ones.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from idn.client import build_request, parse_response
from idn.node.dataplane import InferenceResponse, OutputTensor
from idn.protocol import params as P
from idn.protos import grpc_service_pb2 as pb
from idn.protos import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import start_node

X = np.arange(8, dtype=np.float32).reshape(2, 4)


@pytest.fixture
def stub(node) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    ch = grpc.insecure_channel(node.address)
    yield pb_grpc.GRPCInferenceServiceStub(ch)
    ch.close()


def good(request_id: str, model: str = "linear") -> pb.ModelInferRequest:
    return build_request(model, {"input": X}, request_id=request_id)


def test_errors_reach_their_request_and_the_stream_goes_on(stub):
    reqs = [good("a"), good("b", model="nope"), build_request("linear", {"input": np.ones((1, 5), np.float32)},
                                                                request_id="c"),
            good("d"), build_request("linear", {"input": X}, version="7", request_id="e"), good("f")]
    answers = {a.infer_response.id: a for a in stub.ModelStreamInfer(iter(reqs), timeout=30)}
    assert sorted(answers) == ["a", "b", "c", "d", "e", "f"]
    for rid in "adf":
        assert answers[rid].error_message == ""
        res = parse_response(answers[rid].infer_response)
        assert res.variant == "linear" and res.outputs["label"].shape == (2,)
        np.testing.assert_array_equal(res.outputs["label"], res.outputs["logits"].argmax(1))
    expected = {"b": ("NOT_FOUND", "nope"), "c": ("INVALID_ARGUMENT", "input"), "e": ("NOT_FOUND", "version")}
    for rid, (status, words) in expected.items():
        a = answers[rid]
        assert words in a.error_message, a.error_message
        assert a.infer_response.parameters[P.STATUS].string_param == status
        assert not a.infer_response.outputs


def test_a_message_that_does_not_parse_is_answered_on_the_stream(node):
    with grpc.insecure_channel(node.address) as ch:
        raw = ch.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer",
                               request_serializer=None, response_deserializer=pb.ModelStreamInferResponse.FromString)
        answers = list(raw(iter([b"\xff\xff\xff", good("after").SerializeToString()]), timeout=30))
    by_id = {a.infer_response.id: a for a in answers}
    assert "not a valid inference.ModelInferRequest" in by_id[""].error_message
    assert by_id[""].infer_response.parameters[P.STATUS].string_param == "INVALID_ARGUMENT"
    assert by_id["after"].error_message == "" and by_id["after"].infer_response.model_name == "linear"


def test_an_empty_stream_ends_cleanly(stub):
    assert list(stub.ModelStreamInfer(iter([]), timeout=10)) == []


class StandIn:
    """A data plane whose ``infer`` the test steers, run on the node's loop; counts what it saw."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.running = 0
        self.most = 0
        self.entered: list[str] = []
        self.cancelled = 0
        self.finished: dict[str, asyncio.Event] = {}
        self.seen = threading.Condition()

    def event(self, rid: str) -> asyncio.Event:
        return self.finished.setdefault(rid, asyncio.Event())

    async def infer(self, req):
        self.running += 1
        self.most = max(self.most, self.running)
        with self.seen:
            self.entered.append(req.id)
            self.seen.notify_all()
        try:
            wait_for = req.parameters.get("wait_for")
            if wait_for == "forever":
                await asyncio.Event().wait()
            elif wait_for:
                await self.event(wait_for).wait()
            else:
                for _ in range(3):
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            with self.seen:
                self.cancelled += 1
                self.seen.notify_all()
            raise
        finally:
            self.running -= 1
        self.event(req.id).set()  # answered (only then may a request waiting for it go on)
        return InferenceResponse(req.model_name, "1", req.id, {}, [OutputTensor("y", "FP32", np.zeros(1, np.float32))])

    def wait(self, pred, timeout: float = 20) -> bool:
        with self.seen:
            return self.seen.wait_for(pred, timeout)


@pytest.fixture
def steered(model_dir):
    n = start_node(model_dir, ["linear"], stream_max_in_flight=3)
    stand_in = StandIn(n.loop)
    n.server.dataplane.infer = stand_in.infer  # the servicer calls self.dp.infer
    yield n, stand_in
    n.stop()


def steer(rid: str, wait_for: str | None = None) -> pb.ModelInferRequest:
    return build_request("linear", {"input": X}, parameters={"wait_for": wait_for} if wait_for else None,
                         request_id=rid)


def test_requests_on_a_stream_run_concurrently_and_answer_out_of_order(steered):
    n, stand_in = steered
    with grpc.insecure_channel(n.address) as ch:
        answers = list(pb_grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(
            iter([steer("first", wait_for="second"), steer("second")]), timeout=30))
    # "first" can only finish once "second" has: a stream served one request at a time would hang
    assert [a.infer_response.id for a in answers] == ["second", "first"]


def test_a_stream_holds_at_most_its_cap(steered):
    n, stand_in = steered
    with grpc.insecure_channel(n.address) as ch:
        answers = list(pb_grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(
            iter([steer(f"r{i}") for i in range(40)]), timeout=30))
    assert sorted(a.infer_response.id for a in answers) == sorted(f"r{i}" for i in range(40))
    assert all(a.error_message == "" for a in answers)
    assert 1 <= stand_in.most <= 3


def test_cancelling_a_stream_cancels_what_it_runs(steered):
    n, stand_in = steered
    with grpc.insecure_channel(n.address) as ch:
        call = pb_grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(
            iter([steer("x", wait_for="forever"), steer("y", wait_for="forever")]), timeout=60)
        assert stand_in.wait(lambda: len(stand_in.entered) == 2), stand_in.entered
        call.cancel()
        assert stand_in.wait(lambda: stand_in.cancelled == 2), stand_in.cancelled
    assert stand_in.running == 0
