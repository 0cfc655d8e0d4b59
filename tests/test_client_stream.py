"""``AsyncClient(stream=True)``: requests over one ModelStreamInfer stream, against a real node."""

from __future__ import annotations

import asyncio
import socket

import grpc
import numpy as np
import pytest

from idn.client import AsyncClient, StreamAnswerError, build_request


def rows(i: int) -> np.ndarray:
    """A request whose answer is its own: distinct per i."""
    return (np.arange(8, dtype=np.float32).reshape(2, 4) - i) * (1 + i % 5)


def test_concurrent_requests_share_one_stream_and_get_their_own_answers(node):
    async def go():
        async with AsyncClient(node.address) as unary, AsyncClient(node.address, stream=True) as streamed:
            n = 64
            want = await asyncio.gather(*(unary.infer("linear", {"input": rows(i)}) for i in range(n)))
            got = await asyncio.gather(*(streamed.infer("linear", {"input": rows(i)}, request_id=f"q{i}")
                                         for i in range(n)))
            assert len(streamed._streams) == 1
            return want, got

    want, got = asyncio.run(go())
    for i, (w, g) in enumerate(zip(want, got)):
        assert g.id == f"q{i}" and g.variant == "linear" and g.node == "test-node"
        np.testing.assert_allclose(g.outputs["logits"], w.outputs["logits"], rtol=1e-6)


def test_the_same_request_id_twice_in_flight_is_kept_apart(node):
    async def go():
        async with AsyncClient(node.address, stream=True) as c:
            return await asyncio.gather(*(c.infer("linear", {"input": rows(i)}, request_id="same") for i in range(8)))

    got = asyncio.run(go())
    assert [g.id for g in got] == ["same"] * 8
    for g in got:
        np.testing.assert_array_equal(g.outputs["label"], g.outputs["logits"].argmax(1))
        assert g.outputs["logits"].shape == (2, 3)
    assert len({g.outputs["logits"].tobytes() for g in got}) == 8  # each its own answer


def test_caller_ids_that_look_like_made_up_ones_do_not_collide(node):
    """Ids like '#s3' are what a stream makes up for a caller without one (and what a node
    forwarding over a stream sends on). Mixed with id-less requests in flight at once on one
    stream, each request still gets its own answer: the wire id is always the stream's own."""
    ids = ["", "#s1", "", "#s2", "", "#s3", "", "#s0", "#s4#s1", ""] * 3

    async def go():
        async with AsyncClient(node.address) as unary, AsyncClient(node.address, stream=True) as streamed:
            want = await asyncio.gather(*(unary.infer("linear", {"input": rows(i)}) for i in range(len(ids))))
            got = await asyncio.wait_for(asyncio.gather(*(
                streamed.infer("linear", {"input": rows(i)}, request_id=rid) for i, rid in enumerate(ids))), 10)
            return want, got

    want, got = asyncio.run(go())
    for rid, w, g in zip(ids, want, got):
        assert g.id == rid
        np.testing.assert_allclose(g.outputs["logits"], w.outputs["logits"], rtol=1e-6)


def test_an_error_raises_for_its_request_and_the_stream_goes_on(node):
    async def go():
        async with AsyncClient(node.address, stream=True) as c:
            first = await c.infer("linear", {"input": rows(0)})
            stream = c._streams[node.address]
            results = await asyncio.gather(c.infer("nope", {"input": rows(1)}),
                                           c.infer("linear", {"input": np.ones((1, 5), np.float32)}),
                                           c.infer("linear", {"input": rows(2)}), return_exceptions=True)
            after = await c.infer("linear", {"input": rows(3)})
            return first, results, after, stream is c._streams[node.address]

    first, (unknown, shape, ok), after, same_stream = asyncio.run(go())
    assert isinstance(unknown, StreamAnswerError) and isinstance(unknown, grpc.RpcError)
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and "nope" in unknown.details()
    assert isinstance(shape, StreamAnswerError) and shape.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ok.variant == "linear" and after.variant == "linear" and first.variant == "linear"
    assert same_stream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_stream_fails_over_to_the_next_address(node):
    dead = f"127.0.0.1:{free_port()}"

    async def go():
        async with AsyncClient([dead, node.address], stream=True) as c:
            res = await c.infer("linear", {"input": rows(0)})
            return res, c.failover.failovers

    res, failovers = asyncio.run(go())
    assert res.node == "test-node" and failovers == 1


def test_a_broken_stream_fails_its_requests_and_the_next_call_opens_another(node):
    async def go():
        async with AsyncClient(node.address, stream=True) as c:
            await c.infer("linear", {"input": rows(0)})
            old = c._streams[node.address]
            old.call.cancel()  # as if the connection had dropped
            with pytest.raises(grpc.RpcError):
                await old.send(build_request("linear", {"input": rows(1)}))
            res = await c.infer("linear", {"input": rows(2)})
            return res, old is not c._streams[node.address]

    res, reopened = asyncio.run(go())
    assert res.variant == "linear" and reopened
