"""Python client for IDN nodes (and any Open Inference Protocol v2 gRPC server).

Takes and returns numpy arrays; exposes the IDN response facts (``idn.node``,
``idn.variant``, ``idn.server_us`` …) as attributes of the result. ``Client`` is
synchronous, ``AsyncClient`` the asyncio twin; both share the message building.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from idn.protocol import params as P
from idn.protocol.params import param_value, set_param
from idn.protocol.tensors import CONTENTS_FIELD, DTYPES, datatype_of, decode_raw, encode_raw
from idn.protos import control_pb2 as cpb
from idn.protos import control_pb2_grpc as cpb_grpc
from idn.protos import grpc_service_pb2 as pb
from idn.protos import grpc_service_pb2_grpc as pb_grpc
from idn.tls import TLSFiles, aio_channel, sync_channel

_MAX_MSG = 64 * 1024 * 1024
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", _MAX_MSG), ("grpc.max_send_message_length", _MAX_MSG)]


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
    """Blocking client. ``Client("127.0.0.1:8001").infer("digits", {"input": x})``."""

    def __init__(self, address: str, timeout: float | None = 10.0, tls: TLSFiles | None = None):
        self.address = address
        self.timeout = timeout
        self.channel = sync_channel(address, tls, _CHANNEL_OPTIONS)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def live(self) -> bool:
        return self.stub.ServerLive(pb.ServerLiveRequest(), timeout=self.timeout).live

    def ready(self) -> bool:
        return self.stub.ServerReady(pb.ServerReadyRequest(), timeout=self.timeout).ready

    def model_ready(self, model: str, version: str = "") -> bool:
        return self.stub.ModelReady(pb.ModelReadyRequest(name=model, version=version), timeout=self.timeout).ready

    def metadata(self, model: str, version: str = "") -> pb.ModelMetadataResponse:
        return self.stub.ModelMetadata(pb.ModelMetadataRequest(name=model, version=version), timeout=self.timeout)

    def server_metadata(self) -> pb.ServerMetadataResponse:
        return self.stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=self.timeout)

    def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
              parameters: Mapping[str, Any] | None = None, timeout: float | None = None, **kw: Any) -> InferResult:
        req = build_request(model, inputs, outputs, parameters, **kw)
        return parse_response(self.stub.ModelInfer(req, timeout=timeout or self.timeout))

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
    """asyncio client with the same calls as ``Client`` (awaitable)."""

    def __init__(self, address: str, timeout: float | None = 10.0, tls: TLSFiles | None = None):
        self.address = address
        self.timeout = timeout
        self.channel = aio_channel(address, tls, _CHANNEL_OPTIONS)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def ready(self) -> bool:
        return (await self.stub.ServerReady(pb.ServerReadyRequest(), timeout=self.timeout)).ready

    async def metadata(self, model: str, version: str = "") -> pb.ModelMetadataResponse:
        return await self.stub.ModelMetadata(pb.ModelMetadataRequest(name=model, version=version), timeout=self.timeout)

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
                    parameters: Mapping[str, Any] | None = None, timeout: float | None = None,
                    **kw: Any) -> InferResult:
        req = build_request(model, inputs, outputs, parameters, **kw)
        return parse_response(await self.stub.ModelInfer(req, timeout=timeout or self.timeout))


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
