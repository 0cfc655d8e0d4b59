"""Many concurrent requests over one ``ModelStreamInfer`` stream, matched to answers by ``id``.

A stream answers out of order, so each request in flight needs an id of its own: the
caller's ``request.id`` with a suffix unique on this stream (the caller's id is put back
in the answer). ``send`` awaits the request's
own answer; a request answered with ``error_message`` raises :class:`StreamAnswerError`, a
``grpc.RpcError`` with the status the node sent in ``idn.status``, so callers handle it
like a unary call's error; the stream goes on. When the stream itself ends (the peer
went away, the channel closed, ``close()``), every request still waiting fails with the
stream's error and the stream is ``broken``: the owner opens a new one.

A request that runs out of its ``timeout`` (its write included: a node stops reading a
stream that holds its cap of requests) fails DEADLINE_EXCEEDED here; the node still
finishes it (a stream has one deadline for all its requests, none per message, and no
way to cancel one request), within its own bound on work per stream. A write cut short
(timeout, cancellation) ends the stream, which may be left mid-message.

Used by ``idn.AsyncClient(stream=True)`` and, when configured, by a node forwarding to a
neighbour.
"""

from __future__ import annotations

import asyncio
import itertools

import grpc

from idn.protocol import params as P
from idn.protocol.failures import unreachable
from idn.protos import grpc_service_pb2 as pb

STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"


class StreamAnswerError(grpc.RpcError):
    """A request answered on a stream with ``error_message``, or failed by its stream.

    ``code()`` and ``details()`` as a unary call's ``AioRpcError`` has them."""

    def __init__(self, code: grpc.StatusCode, details: str, request_id: str = "", answered: bool = False):
        super().__init__(f"{code.name}: {details}")
        self._code, self._details, self.request_id = code, details, request_id
        self.answered = answered  # the node answered this request so; else the stream failed it

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


# Statuses a server ends a whole stream with on purpose: passed on as they are. Anything
# else (INTERNAL "Internal error from Core", UNKNOWN, CANCELLED, UNAVAILABLE with an odd
# message...) when the stream ends under its requests means the connection is gone.
_DECIDED = {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INVALID_ARGUMENT}


def _ended(e: BaseException) -> grpc.RpcError:
    """What the requests on a stream that ended with ``e`` fail with: the server's own status
    when it ended the stream on purpose, a transport error that says it never reached the
    peer or lost it as it is (:mod:`idn.protocol.failures` reads its words), and anything
    else as UNAVAILABLE "connection lost", the words for a peer gone under a call."""
    code = e.code() if isinstance(e, grpc.RpcError) and callable(getattr(e, "code", None)) else None
    details = (e.details() if isinstance(e, grpc.RpcError) and callable(getattr(e, "details", None)) else str(e)) or ""
    if isinstance(e, grpc.RpcError) and code is not None and (
            code in _DECIDED or (code is grpc.StatusCode.UNAVAILABLE and unreachable(details))):
        return e
    why = f"{code.name}: {details}" if code is not None else details or type(e).__name__
    return StreamAnswerError(grpc.StatusCode.UNAVAILABLE, f"connection lost: the stream ended ({why})")


def _status(name: str) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN) if name else grpc.StatusCode.UNKNOWN


class InferStream:
    """One open ``ModelStreamInfer`` call on ``channel`` and the requests waiting on it."""

    def __init__(self, channel: grpc.aio.Channel, wait_for_ready: bool = False,
                 metadata: tuple[tuple[str, str], ...] | None = None):
        method = channel.stream_stream(STREAM_METHOD, request_serializer=pb.ModelInferRequest.SerializeToString,
                                       response_deserializer=pb.ModelStreamInferResponse.FromString)
        self.call = method(wait_for_ready=wait_for_ready, metadata=metadata)
        self.waiting: dict[str, asyncio.Future[pb.ModelStreamInferResponse]] = {}
        self.broken: grpc.RpcError | None = None
        self._ids = itertools.count()
        self._write = asyncio.Lock()  # one write at a time on a grpc.aio call
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def send(self, request: pb.ModelInferRequest, timeout: float | None = None) -> pb.ModelInferResponse:
        """Send ``request`` on the stream and return its answer (``request.id`` as the caller set it)."""
        if self.broken is not None:
            raise self.broken
        asked = request.id
        # Always a wire id of this stream's own: the counter after the last '#s' makes it
        # unique. (Keeping the caller's id when it was free let a made-up id collide with an
        # id a caller had chosen, e.g. one an upstream node's stream had made up: the second
        # waiter replaced the first, which got the other's answer or none.)
        rid = f"{asked}#s{next(self._ids)}"
        request.id = rid
        fut: asyncio.Future[pb.ModelStreamInferResponse] = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        writing = False
        try:
            async with asyncio.timeout(timeout):  # the write too: a peer that stops reading pushes back
                async with self._write:
                    writing = True
                    await self.call.write(request)
                    writing = False
                answer = await fut
        except (grpc.RpcError, asyncio.InvalidStateError) as e:  # the stream ended under the write
            if not writing:
                raise
            self.waiting.pop(rid, None)
            raise await self._broken_by(e) from None
        except TimeoutError:
            if writing:
                self.waiting.pop(rid, None)
                self._abort("a write did not finish within its request's timeout")
            raise StreamAnswerError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                    f"no answer on the stream within {timeout:.3g} s", asked) from None
        except asyncio.CancelledError:
            if writing:
                self.waiting.pop(rid, None)
                self._abort("a write was cancelled")
            raise
        finally:
            request.id = asked
            self.waiting.pop(rid, None)
        resp = answer.infer_response
        resp.id = asked
        if answer.error_message:
            status = resp.parameters[P.STATUS].string_param if P.STATUS in resp.parameters else ""
            raise StreamAnswerError(_status(status), answer.error_message, asked, answered=True)
        return resp

    async def _read(self) -> None:
        error: grpc.RpcError
        try:
            async for answer in self.call:
                fut = self.waiting.get(answer.infer_response.id)
                if fut is not None and not fut.done():
                    fut.set_result(answer)
            error = StreamAnswerError(grpc.StatusCode.UNAVAILABLE,
                                      "connection lost: the server ended the stream under its requests")
        except asyncio.CancelledError:
            error = StreamAnswerError(grpc.StatusCode.CANCELLED, "the stream was closed")
        except grpc.RpcError as e:
            error = _ended(e)
        self._fail(error)

    def _abort(self, why: str) -> None:
        """A write interrupted half way may leave the call unusable: end it, so that the owner
        opens a new stream (the requests waiting on this one fail as if the connection dropped)."""
        self._fail(StreamAnswerError(grpc.StatusCode.UNAVAILABLE, f"stream abandoned: {why}"))
        self.call.cancel()

    async def _broken_by(self, e: BaseException) -> grpc.RpcError:
        """A write failed: the stream ended. The write's own error says little (gRPC raises
        INTERNAL "Internal error from Core" for a write on a call the server already ended),
        so the call's final status is what the requests fail with (e.g. UNIMPLEMENTED from a
        server without ModelStreamInfer, UNAVAILABLE from one that went away)."""
        if self.broken is None:
            real: BaseException = e
            try:
                code = await asyncio.wait_for(self.call.code(), 1.0)
                if code != grpc.StatusCode.OK:
                    real = StreamAnswerError(code, await self.call.details() or "")
            except (TimeoutError, asyncio.CancelledError, grpc.RpcError):
                pass
            if self.broken is None:
                self._fail(_ended(real))
        assert self.broken is not None
        return self.broken

    def _fail(self, error: grpc.RpcError) -> None:
        if self.broken is None:
            self.broken = error
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(self.broken)

    @property
    def in_flight(self) -> int:
        return len(self.waiting)

    async def close(self) -> None:
        """Cancel the call; requests still waiting fail CANCELLED."""
        self.call.cancel()
        self._reader.cancel()
        try:
            await self._reader
        except asyncio.CancelledError:
            pass
        self._fail(StreamAnswerError(grpc.StatusCode.CANCELLED, "the stream was closed"))
