"""Python client for IDN nodes (and any Open Inference Protocol v2 gRPC server).

Takes and returns numpy arrays; exposes the IDN response facts (``idn.node``,
``idn.variant``, ``idn.server_us`` …) as attributes of the result. ``Client`` is
synchronous, ``AsyncClient`` the asyncio twin; both share the message building.

**Failover.** Both take one address or several, best first — e.g. an ingress and the
next nearest nodes of a topology, ``ingress_addresses(topology, "edge-1")``. Each call
has one deadline for all its attempts. A call that fails UNAVAILABLE *before it was
sent* (refused, unreachable: :func:`idn.protocol.failures.never_sent`) moves on to the
next address at once, and that address is skipped for ``retry_after_s`` (then tried
first again, so traffic returns to the nearest ingress once it is back). A call that
failed *after* it was sent (the connection died under it, or the node answered
UNAVAILABLE) is retried elsewhere only with ``retry_sent=True``: inference is
side-effect free, so re-running it is harmless, but it costs a second run and the
caller decides. gRPC's own conventions apply inside each address: calls fail fast
(``wait_for_ready`` off) so that the next address is tried, except the last attempt,
which waits for its channel when ``wait_for_ready=True``; with ``retry_sent`` the
channels also carry a service-config ``retryPolicy`` for ``ModelInfer`` (up to 2
attempts on UNAVAILABLE, 50-200 ms backoff); gRPC's transparent retry of calls that
never left the client is always on. Channels reconnect with a capped backoff
(:data:`idn.protocol.failures.RECONNECT_OPTIONS`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from idn.protocol import params as P
from idn.protocol.failures import RECONNECT_OPTIONS, never_sent
from idn.protocol.params import param_value, set_param
from idn.protocol.stream import InferStream
from idn.protocol.stream import StreamAnswerError as StreamAnswerError  # what stream=True calls raise
from idn.protocol.tensors import CONTENTS_FIELD, DTYPES, datatype_of, decode_raw, encode_raw
from idn.protos import control_pb2 as cpb
from idn.protos import control_pb2_grpc as cpb_grpc
from idn.protos import grpc_service_pb2 as pb
from idn.protos import grpc_service_pb2_grpc as pb_grpc
from idn.tls import TLSFiles, aio_channel, sync_channel

if TYPE_CHECKING:
    from idn.topology import Topology

_MAX_MSG = 64 * 1024 * 1024
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", _MAX_MSG), ("grpc.max_send_message_length", _MAX_MSG),
                    *RECONNECT_OPTIONS]
# With retry_sent: gRPC retries ModelInfer once on UNAVAILABLE on the same address first.
RETRY_SERVICE_CONFIG = json.dumps({"methodConfig": [{
    "name": [{"service": "inference.GRPCInferenceService", "method": "ModelInfer"}],
    "retryPolicy": {"maxAttempts": 2, "initialBackoff": "0.05s", "maxBackoff": "0.2s", "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"]}}]})


def ingress_addresses(topology: Topology, ingress: str, count: int | None = None) -> list[str]:
    """``ingress``'s address, then the other nodes' nearest first (by the topology's delay from
    it): the addresses a client of that ingress fails over to. ``count``: at most this many."""
    others = sorted((n for n in topology.nodes if n != ingress), key=lambda n: (topology.delay_ms(ingress, n), n))
    out = [topology.node(n).address for n in [ingress, *others]]
    return out[:count] if count is not None else out


def channel_options(retry_sent: bool = False) -> list[tuple[str, Any]]:
    opts: list[tuple[str, Any]] = list(_CHANNEL_OPTIONS)
    if retry_sent:
        opts += [("grpc.enable_retries", 1), ("grpc.service_config", RETRY_SERVICE_CONFIG)]
    return opts


class Failover:
    """Which address to try next, and what a failure means (module docstring). No I/O."""

    def __init__(self, addresses: str | Sequence[str], retry_sent: bool = False, retry_after_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        self.addresses = [addresses] if isinstance(addresses, str) else list(addresses)
        if not self.addresses:
            raise ValueError("a client needs at least one address")
        self.retry_sent = retry_sent
        self.retry_after_s = retry_after_s
        self.clock = clock
        self._skip_until: dict[str, float] = {}
        self.failovers = 0  # calls answered by an address other than the first tried

    def order(self) -> list[str]:
        """Addresses to try, best first; those that just failed go last (not dropped: they may be all there is)."""
        now = self.clock()
        fresh = [a for a in self.addresses if self._skip_until.get(a, 0.0) <= now]
        return fresh + [a for a in self.addresses if a not in fresh]

    def should_retry(self, err: grpc.RpcError) -> bool:
        code = err.code() if callable(getattr(err, "code", None)) else None  # RpcError subclasses carry it
        if code != grpc.StatusCode.UNAVAILABLE:
            return False
        return self.retry_sent or never_sent(err.details())

    def failed(self, address: str) -> None:
        self._skip_until[address] = self.clock() + self.retry_after_s

    def answered(self, address: str, attempt: int) -> None:
        self._skip_until.pop(address, None)
        self.failovers += attempt > 0


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


@dataclass
class InferResult:
    model_name: str
    model_version: str
    id: str
    outputs: dict[str, np.ndarray]
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def node(self) -> str | None:
        return self.parameters.get(P.NODE)

    @property
    def variant(self) -> str:
        return self.parameters.get(P.VARIANT, self.model_name)

    @property
    def accuracy(self) -> float | None:
        return self.parameters.get(P.ACCURACY)

    @property
    def hops(self) -> int:
        return int(self.parameters.get(P.HOPS, 0))

    @property
    def server_us(self) -> int | None:
        return self.parameters.get(P.SERVER_US)

    @property
    def degraded(self) -> bool:
        return bool(self.parameters.get(P.DEGRADED, False))

    def output(self, name: str | None = None) -> np.ndarray:
        """One output by name, or the only/first one."""
        return self.outputs[name] if name else next(iter(self.outputs.values()))


def build_request(model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
                  parameters: Mapping[str, Any] | None = None, version: str = "", request_id: str = "",
                  raw: bool = True) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, arr in inputs.items():
        arr = np.asarray(arr)
        dt = datatype_of(arr)
        t = req.inputs.add(name=name, datatype=dt, shape=arr.shape)
        if raw:
            req.raw_input_contents.append(encode_raw(arr))
        else:
            _fill_contents(t.contents, dt, arr)
    for o in outputs or ():
        req.outputs.add(name=o)
    for k, v in (parameters or {}).items():
        set_param(req.parameters[k], v)
    return req


def _fill_contents(contents: pb.InferTensorContents, datatype: str, arr: np.ndarray) -> None:
    fld = CONTENTS_FIELD.get(datatype)
    if fld is None:
        raise ValueError(f"{datatype} has no typed contents field; use raw=True")
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        getattr(contents, fld).extend(x.encode() if isinstance(x, str) else bytes(x) for x in flat)
    else:
        getattr(contents, fld).extend(flat.tolist())


def parse_response(resp: pb.ModelInferResponse) -> InferResult:
    outs: dict[str, np.ndarray] = {}
    raws = resp.raw_output_contents
    for i, t in enumerate(resp.outputs):
        shape = tuple(t.shape)
        if raws:
            arr = decode_raw(t.name, t.datatype, shape, raws[i], max_elements=1 << 62)
            if t.datatype == "BYTES":
                arr = np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(arr) if arr.size else arr
        else:
            vals = getattr(t.contents, CONTENTS_FIELD[t.datatype])
            arr = np.array(list(vals), dtype=DTYPES[t.datatype]).reshape(shape)
        outs[t.name] = arr
    params = {k: param_value(v) for k, v in resp.parameters.items()}
    return InferResult(resp.model_name, resp.model_version, resp.id, outs, params)


def _bearer(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {token}"),) if token else None


class Client:
    """Blocking client. ``Client("127.0.0.1:8001").infer("digits", {"input": x})``; several
    addresses, best first, fail over (module docstring)."""

    def __init__(self, address: str | Sequence[str], timeout: float | None = 10.0, tls: TLSFiles | None = None,
                 retry_sent: bool = False, wait_for_ready: bool = False, retry_after_s: float = 0.5):
        self.failover = Failover(address, retry_sent, retry_after_s)
        self.address = self.failover.addresses[0]
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self._tls, self._options = tls, channel_options(retry_sent)
        self._stubs: dict[str, tuple[grpc.Channel, pb_grpc.GRPCInferenceServiceStub]] = {}
        self.channel, self.stub = self._endpoint(self.address)

    def _endpoint(self, address: str) -> tuple[grpc.Channel, pb_grpc.GRPCInferenceServiceStub]:
        if address not in self._stubs:
            ch = sync_channel(address, self._tls, self._options)
            self._stubs[address] = (ch, pb_grpc.GRPCInferenceServiceStub(ch))
        return self._stubs[address]

    def _call(self, method: str, request: Any, timeout: float | None) -> Any:
        """``method`` on the first address that takes it, within one deadline for all attempts."""
        deadline = None if timeout is None else time.monotonic() + timeout
        order = self.failover.order()
        for i, addr in enumerate(order):
            last = i == len(order) - 1
            try:
                resp = getattr(self._endpoint(addr)[1], method)(request, timeout=_remaining(deadline),
                                                               wait_for_ready=self.wait_for_ready and last)
            except grpc.RpcError as e:
                if last or not self.failover.should_retry(e) or (deadline is not None and time.monotonic() >= deadline):
                    raise
                self.failover.failed(addr)
                continue
            self.failover.answered(addr, i)
            return resp
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        for ch, _ in self._stubs.values():
            ch.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def live(self) -> bool:
        return self._call("ServerLive", pb.ServerLiveRequest(), self.timeout).live

    def ready(self) -> bool:
        return self._call("ServerReady", pb.ServerReadyRequest(), self.timeout).ready

    def model_ready(self, model: str, version: str = "") -> bool:
        return self._call("ModelReady", pb.ModelReadyRequest(name=model, version=version), self.timeout).ready

    def metadata(self, model: str, version: str = "") -> pb.ModelMetadataResponse:
        return self._call("ModelMetadata", pb.ModelMetadataRequest(name=model, version=version), self.timeout)

    def server_metadata(self) -> pb.ServerMetadataResponse:
        return self._call("ServerMetadata", pb.ServerMetadataRequest(), self.timeout)

    def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
              parameters: Mapping[str, Any] | None = None, timeout: float | None = None, **kw: Any) -> InferResult:
        req = build_request(model, inputs, outputs, parameters, **kw)
        return parse_response(self._call("ModelInfer", req, timeout or self.timeout))

    def load(self, model: str, token: str | None = None) -> None:
        """Repository load: needs a node in ``--model-control-mode explicit`` and its control token."""
        self.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=model), timeout=self.timeout,
                                      metadata=_bearer(token))

    def unload(self, model: str, token: str | None = None) -> None:
        """Repository unload: needs a node in ``--model-control-mode explicit`` and its control token."""
        self.stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=model), timeout=self.timeout,
                                        metadata=_bearer(token))

    def index(self, ready_only: bool = False) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        return list(self.stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=ready_only), timeout=self.timeout).models)


class AsyncClient:
    """asyncio client with the same calls (and failover) as ``Client`` (awaitable).

    ``stream=True``: ``infer`` sends every request over one long-lived ``ModelStreamInfer``
    stream per address instead of one ``ModelInfer`` call each (:class:`InferStream`):
    concurrent calls share the stream and are matched to their answers by request id. A
    request the node answers with an error raises :class:`StreamAnswerError` (a
    ``grpc.RpcError`` with the unary call's status code) and the stream goes on; a stream
    that breaks fails the requests on it, is dropped, and the next call opens a new one,
    failing over to the next address as unary calls do. ``timeout`` still bounds each call,
    on this side: the node sees one deadline-less stream (it bounds the work per stream)."""

    def __init__(self, address: str | Sequence[str], timeout: float | None = 10.0, tls: TLSFiles | None = None,
                 retry_sent: bool = False, wait_for_ready: bool = False, retry_after_s: float = 0.5,
                 stream: bool = False):
        self.failover = Failover(address, retry_sent, retry_after_s)
        self.address = self.failover.addresses[0]
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.stream = stream
        self._tls, self._options = tls, channel_options(retry_sent)
        self._stubs: dict[str, tuple[grpc.aio.Channel, pb_grpc.GRPCInferenceServiceStub]] = {}
        self._streams: dict[str, InferStream] = {}
        self.channel, self.stub = self._endpoint(self.address)

    def _stream(self, address: str) -> InferStream:
        """The open stream to ``address`` (a new one if there is none or it broke)."""
        st = self._streams.get(address)
        if st is None or st.broken is not None:
            st = self._streams[address] = InferStream(self._endpoint(address)[0], wait_for_ready=self.wait_for_ready)
        return st

    async def _stream_call(self, request: pb.ModelInferRequest, timeout: float | None) -> pb.ModelInferResponse:
        """``_call`` over streams: the same failover, one deadline for all attempts."""
        return await self._failover(lambda addr, left, last: self._stream(addr).send(request, left), timeout)

    def _endpoint(self, address: str) -> tuple[grpc.aio.Channel, pb_grpc.GRPCInferenceServiceStub]:
        if address not in self._stubs:
            ch = aio_channel(address, self._tls, self._options)
            self._stubs[address] = (ch, pb_grpc.GRPCInferenceServiceStub(ch))
        return self._stubs[address]

    async def _call(self, method: str, request: Any, timeout: float | None) -> Any:
        return await self._failover(
            lambda addr, left, last: getattr(self._endpoint(addr)[1], method)(
                request, timeout=left, wait_for_ready=self.wait_for_ready and last), timeout)

    async def _failover(self, attempt: Callable[[str, float | None, bool], Awaitable[Any]],
                        timeout: float | None) -> Any:
        """``attempt(address, seconds left, is_last)`` on each address in failover order until
        one answers; one deadline for all attempts (the sync ``Client._call`` does the same)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        order = self.failover.order()
        for i, addr in enumerate(order):
            last = i == len(order) - 1
            try:
                resp = await attempt(addr, _remaining(deadline), last)
            except grpc.RpcError as e:
                if last or not self.failover.should_retry(e) or (deadline is not None and time.monotonic() >= deadline):
                    raise
                self.failover.failed(addr)
                continue
            self.failover.answered(addr, i)
            return resp
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def close(self) -> None:
        for st in self._streams.values():
            await st.close()
        self._streams.clear()
        for ch, _ in self._stubs.values():
            await ch.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def ready(self) -> bool:
        return (await self._call("ServerReady", pb.ServerReadyRequest(), self.timeout)).ready

    async def metadata(self, model: str, version: str = "") -> pb.ModelMetadataResponse:
        return await self._call("ModelMetadata", pb.ModelMetadataRequest(name=model, version=version), self.timeout)

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
                    parameters: Mapping[str, Any] | None = None, timeout: float | None = None,
                    **kw: Any) -> InferResult:
        req = build_request(model, inputs, outputs, parameters, **kw)
        if self.stream:
            return parse_response(await self._stream_call(req, timeout or self.timeout))
        return parse_response(await self._call("ModelInfer", req, timeout or self.timeout))


class ControlClient:
    """Blocking client of a node's control plane (``idn.v1.NodeControl``).

    Every call carries the node's control token as ``authorization: Bearer <token>``;
    the operator commands (``idn apply``, ``idn status``) and the launcher use it.
    """

    def __init__(self, address: str, token: str, timeout: float | None = 30.0, tls: TLSFiles | None = None):
        self.address = address
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),)
        self.channel = sync_channel(address, tls, _CHANNEL_OPTIONS)
        self.stub = cpb_grpc.NodeControlStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def info(self) -> cpb.NodeInfo:
        """``NodeInfo``: id, tier, loaded variants, plan version, readiness."""
        return self.stub.GetNodeInfo(cpb.GetNodeInfoRequest(), metadata=self._metadata, timeout=self.timeout)

    def apply_plan(self, plan_json: str,
                   phase: cpb.ApplyPlanRequest.Phase = cpb.ApplyPlanRequest.APPLY) -> cpb.ApplyPlanResponse:
        """``ApplyPlanResponse`` (loaded / unloaded / kept); FAILED_PRECONDITION for a stale version.

        ``phase``: APPLY (all at once on this node) or PREPARE / COMMIT / CLEANUP, each of
        which a network change runs on every node before the next (``network.push_plan``)."""
        return self.stub.ApplyPlan(cpb.ApplyPlanRequest(plan_json=plan_json, phase=phase), metadata=self._metadata,
                                   timeout=self.timeout)

    def stats(self, since: int = 0) -> cpb.Stats:
        """``Stats`` per request class since a cursor (0 = since the node started)."""
        return self.stub.GetStats(cpb.GetStatsRequest(since=since), metadata=self._metadata, timeout=self.timeout)

    def plan(self) -> cpb.PlanState:
        """``PlanState``: the version and JSON of the plan the node routes by (version 0: none)."""
        return self.stub.GetPlan(cpb.GetPlanRequest(), metadata=self._metadata, timeout=self.timeout)
