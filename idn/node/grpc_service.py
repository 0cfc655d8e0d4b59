"""gRPC adapter: ``inference.GRPCInferenceService`` over the data plane.

Only translation lives here: protobuf messages <-> data-plane types, data-plane
errors <-> gRPC status codes. Any exception a handler did not expect becomes
INTERNAL with its message; the server keeps serving. The repository calls that change
what the node holds pass the node's ``Authority`` first (off by default; the control
token in explicit mode).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from idn.node.authority import Authority
from idn.node.dataplane import MAX_NAME_CHARS, DataPlane, Forwarded, InferenceRequest, InputTensor
from idn.node.handlers import answers_errors, error_status, fail
from idn.protocol import params as P
from idn.protocol.params import param_value, set_param
from idn.protocol.status import InvalidInput, echo
from idn.protocol.tensors import encode_raw
from idn.protos import grpc_service_pb2 as pb
from idn.protos import grpc_service_pb2_grpc as pb_grpc

log = logging.getLogger("idn.node")

# Requests one ModelStreamInfer stream may hold in this node at once, running or answered
# but not yet written back (NodeSettings.stream_max_in_flight): past it the node stops
# reading that stream, so a client cannot queue unbounded work (or unbounded answers it
# does not read) behind one stream; HTTP/2 flow control then pushes back on its sender.
# The per-variant admission bound (``max_queue``, RESOURCE_EXHAUSTED) still applies to
# every request on it.
STREAM_MAX_IN_FLIGHT = 64


def request_from_proto(msg: pb.ModelInferRequest) -> InferenceRequest:
    raws = msg.raw_input_contents
    if raws and len(raws) != len(msg.inputs):
        raise InvalidInput(f"raw_input_contents has {len(raws)} entries for {len(msg.inputs)} inputs; "
                           "send one per input, in order")
    inputs = []
    for i, t in enumerate(msg.inputs):
        has_contents = t.HasField("contents")
        if raws:
            if has_contents:
                raise InvalidInput(f"input '{echo(t.name)}': both raw_input_contents and typed contents are set; "
                                   "use one or the other")
            inputs.append(InputTensor(t.name, t.datatype, tuple(t.shape), raw=raws[i]))
        else:
            inputs.append(InputTensor(t.name, t.datatype, tuple(t.shape),
                                      contents=t.contents if has_contents else None))
    params = {k: param_value(v) for k, v in msg.parameters.items()} if msg.parameters else {}
    return InferenceRequest(msg.model_name, msg.model_version, msg.id, params, inputs,
                            [o.name for o in msg.outputs], wire=msg)


def _tensor_meta(dst: Any, metas: Any) -> None:
    for m in metas:
        dst.add(name=m.name, datatype=m.datatype, shape=m.shape)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane, authority: Authority | None = None,
                 stream_max_in_flight: int = STREAM_MAX_IN_FLIGHT):
        self.dp = dataplane
        self.authority = authority or Authority(None)
        self.stream_max_in_flight = stream_max_in_flight

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=self.dp.live())

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.dp.ready())

    async def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.dp.model_ready(request.name, request.version))

    async def ServerMetadata(self, request, context):
        name, version, ext = self.dp.server_metadata()
        return pb.ServerMetadataResponse(name=name, version=version, extensions=ext)

    @answers_errors
    async def ModelMetadata(self, request, context):
        md = self.dp.model_metadata(request.name, request.version)
        resp = pb.ModelMetadataResponse(name=md.name, versions=md.versions, platform=md.platform)
        _tensor_meta(resp.inputs, md.inputs)
        _tensor_meta(resp.outputs, md.outputs)
        return resp

    @answers_errors
    async def ModelInfer(self, request, context):
        remaining = context.time_remaining()
        return await self._infer(request, None if remaining is None else time.monotonic() + remaining)

    async def _infer(self, request: pb.ModelInferRequest, deadline: float | None) -> pb.ModelInferResponse:
        """One request through the data plane, answered as a wire message (unary or on a stream)."""
        req = request_from_proto(request)
        if P.TIMEOUT_US in request.parameters:  # sent by a node forwarding over a stream
            budget = time.monotonic() + max(request.parameters[P.TIMEOUT_US].int64_param, 0) / 1e6
            deadline = budget if deadline is None else min(deadline, budget)
        req.deadline = deadline
        res = await self.dp.infer(req)
        if isinstance(res, Forwarded):
            return res.wire
        resp = pb.ModelInferResponse(model_name=res.model_name, model_version=res.model_version, id=res.id)
        for k, v in res.parameters.items():
            set_param(resp.parameters[k], v)
        raws = resp.raw_output_contents
        for o in res.outputs:
            resp.outputs.add(name=o.name, datatype=o.datatype, shape=o.data.shape)
            raws.append(encode_raw(o.data))
        return resp

    async def ModelStreamInfer(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
                               ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Triton's bidirectional stream: every request runs as soon as it is read, concurrently
        with the others (answers go back as they are ready, carrying the request's ``id``), at
        most ``stream_max_in_flight`` at a time (:class:`_Stream`). A failed request is answered
        on the stream and the stream goes on; the stream's deadline, if any, bounds every request."""
        remaining = context.time_remaining()
        stream = _Stream(self, None if remaining is None else time.monotonic() + remaining,
                         self.stream_max_in_flight)
        async for answer in stream.answers(requests):
            yield answer

    async def RepositoryIndex(self, request, context):
        resp = pb.RepositoryIndexResponse()
        for st in self.dp.repository_index(request.ready):
            resp.models.add(name=st.name, version="1", state=st.state, reason=st.reason)
        return resp

    @answers_errors
    async def RepositoryModelLoad(self, request, context):
        self.authority.check_repository("load", request.model_name, context.invocation_metadata(), context.peer())
        await self.dp.load(request.model_name, _uploaded_model(request))
        return pb.RepositoryModelLoadResponse()

    @answers_errors
    async def RepositoryModelUnload(self, request, context):
        self.authority.check_repository("unload", request.model_name, context.invocation_metadata(),
                                        context.peer())
        await self.dp.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


class _Stream:
    """The requests of one ModelStreamInfer call: a reader task that starts one task per
    request (waiting for a free slot first), and the answers in the order they finish.

    A slot is freed only when its answer has been handed to gRPC to write, so requests in
    the node plus answers waiting to be written never exceed the cap. The stream ends when
    the client has half-closed and every request is answered. If the call ends early (the
    client cancels, the deadline passes, the node stops), the generator is closed and
    ``answers`` cancels the reader and every request still running: nothing outlives it."""

    def __init__(self, servicer: InferenceServicer, deadline: float | None, max_in_flight: int):
        self.servicer = servicer
        self.deadline = deadline
        self.slots = asyncio.Semaphore(max(1, max_in_flight))
        self.done: asyncio.Queue[pb.ModelStreamInferResponse | _EndOfRequests] = asyncio.Queue()
        self.running: set[asyncio.Task[None]] = set()

    async def answers(self, requests: AsyncIterator[Any]) -> AsyncIterator[pb.ModelStreamInferResponse]:
        reader = asyncio.get_running_loop().create_task(self._read(requests))
        pending = 0  # requests read and not yet answered
        reading = True
        try:
            while reading or pending:
                item = await self.done.get()
                if isinstance(item, _EndOfRequests):
                    reading = False
                    pending += item.count
                    if item.error is not None:
                        raise item.error
                    continue
                pending -= 1
                yield item
                self.slots.release()
        finally:
            reader.cancel()
            for t in list(self.running):
                t.cancel()

    async def _read(self, requests: AsyncIterator[Any]) -> None:
        """Start a task per request as it arrives; at the end (or a transport error reading),
        tell ``answers`` how many were started, so it knows when the last one is answered."""
        count = 0
        error: BaseException | None = None
        loop = asyncio.get_running_loop()
        try:
            async for msg in requests:
                await self.slots.acquire()
                task = loop.create_task(self._one(msg))
                self.running.add(task)
                task.add_done_callback(self.running.discard)
                count += 1
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the transport failed reading: end the call with it
            error = e
        self.done.put_nowait(_EndOfRequests(count, error))

    async def _one(self, msg: Any) -> None:
        try:
            if isinstance(msg, _Refused):
                raise InvalidInput(msg.reason)
            answer = pb.ModelStreamInferResponse(infer_response=await self.servicer._infer(msg, self.deadline))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            code, message = error_status(err, "ModelStreamInfer")
            answer = pb.ModelStreamInferResponse(error_message=message)
            if not isinstance(msg, _Refused):
                answer.infer_response.id = msg.id
                if len(msg.model_name) <= MAX_NAME_CHARS:
                    answer.infer_response.model_name = msg.model_name
            answer.infer_response.parameters[P.STATUS].string_param = code.name
        self.done.put_nowait(answer)


@dataclass(slots=True)
class _EndOfRequests:
    count: int
    error: BaseException | None = None


class _Refused:
    """Stands in for a request refused before parsing, so the handler can answer why."""

    def __init__(self, reason: str):
        self.reason = reason


def _tolerant(parse: Callable[[bytes], Any], type_name: str, max_bytes: int,
              on_size: Callable[[int], None] | None = None) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        if on_size is not None:
            on_size(len(data))
        if len(data) > max_bytes:
            return _Refused(f"the {type_name} message has {len(data)} bytes, more than this node's limit of "
                            f"{max_bytes} (--max-message-mb); send smaller batches")
        try:
            return parse(data)
        except Exception as e:  # protobuf's DecodeError
            return _Refused(f"request is not a valid {type_name} message: {e}")
    return deserialize


def add_servicer(servicer: pb_grpc.GRPCInferenceServiceServicer, server: grpc.aio.Server,
                 max_message_bytes: int, on_size: Callable[[int], None] | None = None) -> None:
    """Register like the generated ``add_..._to_server``, but a request that does not parse, or
    is larger than ``max_message_bytes``, gets INVALID_ARGUMENT saying so (instead of gRPC's
    UNKNOWN for a parse failure). The transport's own limit is set higher (see
    ``server.grpc_options``) so that oversize messages reach this check. ``on_size`` hears the
    size of every request message (``MemoryTrimmer.saw``)."""
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {}
    for method in service.methods:
        req_cls = getattr(pb, method.input_type.name)
        resp_cls = getattr(pb, method.output_type.name)
        deserializer = _tolerant(req_cls.FromString, method.input_type.full_name, max_message_bytes, on_size)
        if method.client_streaming and method.server_streaming:  # ModelStreamInfer answers refusals itself
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                getattr(servicer, method.name), request_deserializer=deserializer,
                response_serializer=resp_cls.SerializeToString)
            continue
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _guard(getattr(servicer, method.name)), request_deserializer=deserializer,
            response_serializer=resp_cls.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


def _guard(handler: Callable[..., Any]) -> Callable[..., Any]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Refused):
            return fail(context, grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        return await handler(request, context)
    return guarded


def _uploaded_model(request: pb.RepositoryModelLoadRequest) -> bytes | None:
    """Triton's load-with-files convention: a ``file:<path>.onnx`` parameter carries the model bytes."""
    files = {k: v.bytes_param for k, v in request.parameters.items() if k.startswith("file:")}
    onnx_files = [b for k, b in files.items() if k.endswith(".onnx")]
    if len(onnx_files) > 1:
        raise InvalidInput("load request carries more than one .onnx file; send exactly one")
    return onnx_files[0] if onnx_files else None
