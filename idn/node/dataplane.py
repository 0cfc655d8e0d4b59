"""The protocol-agnostic data plane: resolve, validate, decode, run, answer.

Transports (``grpc_service``) are thin adapters that turn wire messages into
``InferenceRequest`` and ``InferenceResponse`` back into wire messages; everything
that decides something lives here, so a second transport (HTTP/REST) or the
forwarding path reuses it unchanged. Tensor contents stay in their wire form in the
request (raw bytes or a typed ``contents`` object) until the target model is known:
unknown models are refused before any decoding work, and decoding happens once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from idn import __version__
from idn.node.forwarder import Forwarder, HopFailed, response_facts
from idn.node.metrics import NodeMetrics
from idn.node.pacing import Pacer
from idn.node.router import Action, Resolution, RoutingTable
from idn.node.runtime import PLATFORM, VariantRuntime
from idn.node.settings import NodeSettings
from idn.node.stats import StatsBook
from idn.node.store import ModelState, VariantStore
from idn.protocol import params as P
from idn.protocol.status import DataPlaneError, InvalidInput, ModelNotFound, Status
from idn.protocol.tensors import TensorMeta, decode_contents, decode_raw

log = logging.getLogger("idn.node")

SERVER_NAME = "idn"
EXTENSIONS = ("model_repository", "idn")


@dataclass(slots=True)
class InputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | None = None
    contents: Any = None  # an object with the InferTensorContents fields (e.g. the proto)


@dataclass(slots=True)
class InferenceRequest:
    model_name: str
    model_version: str = ""
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: list[InputTensor] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    deadline: float | None = None  # time.monotonic() by which the caller needs the answer
    wire: Any = None  # the message as received, forwarded unchanged (tensors never decoded en route)


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str
    data: np.ndarray


@dataclass(slots=True)
class InferenceResponse:
    model_name: str
    model_version: str
    id: str
    parameters: dict[str, Any]
    outputs: list[OutputTensor]


@dataclass(slots=True)
class Forwarded:
    """An answer that came back from another node, in its wire form (passed through as is)."""

    wire: Any


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]


def _float_param(params: dict[str, Any], key: str) -> float | None:
    v = params.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise InvalidInput(f"parameter '{key}' must be a number, got {v!r}")
    try:
        return float(v)
    except ValueError:
        raise InvalidInput(f"parameter '{key}' must be a number, got {v!r}") from None


class DataPlane:
    """Resolves each request (routing table), then runs it here or forwards it one hop.

    ``router`` is replaced wholesale when a plan is applied: a request resolves
    against one table from start to end, and the swap is a single assignment.
    """

    def __init__(self, store: VariantStore, settings: NodeSettings, node_id: str = "",
                 router: RoutingTable | None = None, forwarder: Forwarder | None = None, slowdown: float = 1.0):
        self.store = store
        self.settings = settings
        self.node_id = node_id
        self.router = router or RoutingTable(node_id, None, store.catalog)
        self.forwarder = forwarder
        self.slowdown = slowdown  # emulation: local compute takes this many times longer
        self.pacer = Pacer()
        self.stats = StatsBook()
        self.metrics: NodeMetrics | None = None
        self.on_demand_loads = 0  # plan changes that skipped the phases show up here
        self.accepting = True

    # -- health and metadata ------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.accepting and self.store.ready()

    def server_metadata(self) -> tuple[str, str, tuple[str, ...]]:
        return SERVER_NAME, __version__, EXTENSIONS

    def runtime(self, name: str, version: str = "") -> VariantRuntime:
        rt = self.store.get(name)
        if version and version != rt.version:
            raise ModelNotFound(f"model '{name}' has no version '{version}'; available: ['{rt.version}']")
        return rt

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.runtime(name, version)
            return True
        except ModelNotFound:
            return False

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        rt = self.runtime(name, version)
        return ModelMetadata(rt.name, (rt.version,), PLATFORM, rt.inputs, rt.outputs)

    # -- repository extension -----------------------------------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[ModelState]:
        return self.store.index(ready_only)

    async def load(self, name: str, source: bytes | None = None) -> None:
        await self.store.load(name, source)

    async def unload(self, name: str) -> None:
        await self.store.unload(name)

    # -- inference ----------------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse | Forwarded:
        """Resolve, serve here or forward, and count the outcome (stats at the ingress, metrics always)."""
        t0 = time.perf_counter()
        params = request.parameters
        max_lat = min_acc = None
        try:
            max_lat = _float_param(params, P.MAX_LATENCY_MS)
            min_acc = _float_param(params, P.MIN_ACCURACY)
            result, degraded = await self._serve(request, max_lat, min_acc, t0)
        except DataPlaneError as e:
            self._record(request, max_lat, min_acc, t0, e.status.value)
            raise
        if isinstance(result, Forwarded):
            self._record(request, max_lat, min_acc, t0, "forwarded", "/".join(response_facts(result.wire)))
        else:
            self._record(request, max_lat, min_acc, t0, "degraded" if degraded else "local",
                         f"{self.node_id}/{result.model_name}")
        return result

    async def _serve(self, request: InferenceRequest, max_lat: float | None, min_acc: float | None,
                     t0: float) -> tuple[InferenceResponse | Forwarded, bool]:
        if request.deadline is not None and request.deadline <= time.monotonic():
            raise DataPlaneError("deadline exceeded before this node could start on the request (it waited in "
                                 "the transport's queue); nothing was run", Status.DEADLINE_EXCEEDED)
        try:
            decision = self.router.resolve(request.model_name, self.store.loaded,
                                           request.parameters.get(P.TARGET), max_lat, min_acc)
        except ValueError as e:
            raise InvalidInput(str(e)) from None
        try:
            if decision.action is Action.FORWARD:
                return await self._forward(request, decision), False
            variant = decision.variant or request.model_name
            if decision.action is Action.BEST_LOCAL:
                variant = await self._best_local(request.model_name)
            return await self._local(request, variant, t0, decision.slo_met), False
        except HopFailed as e:
            fallback = self.router.best_local_variant(self.router.task_of(request.model_name) or "",
                                                      self.store.loaded)
            if fallback is None:
                raise
            log.warning("%s; serving %s locally (degraded)", e, fallback)
            return await self._local(request, fallback, t0, decision.slo_met, degraded=True), True

    def _record(self, request: InferenceRequest, max_lat: float | None, min_acc: float | None, t0: float,
                outcome: str, served_by: str | None = None) -> None:
        """outcome: local, forwarded, degraded, or an error's status name."""
        seconds = time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.observe(request.model_name, outcome, seconds)
        if P.VIA in request.parameters:
            return  # only the ingress counts a request class
        ok = outcome in ("local", "forwarded", "degraded")
        task = self.router.task_of(request.model_name) or request.model_name
        self.stats.record(self.node_id, task, max_lat, min_acc, seconds * 1e3, ok, served_by,
                          outcome == "degraded")

    async def _forward(self, request: InferenceRequest, decision: Resolution) -> Forwarded:
        if self.forwarder is None or decision.next_hop is None or request.wire is None:
            raise DataPlaneError(f"model '{request.model_name}' is not served here and this node has no "
                                 "route onwards", Status.NOT_FOUND)
        wire = await self.forwarder.send(request.wire, decision, self.router, request.model_name, request.deadline,
                                         fallback=self.router.has_local(request.model_name, self.store.loaded))
        if not decision.slo_met:
            wire.parameters[P.SLO_MET].bool_param = False
        return Forwarded(wire)

    async def _best_local(self, task: str) -> str:
        """The repository's answer for a task nothing closer serves: its most accurate variant."""
        best = self.router.best_local_variant(task, self.store.loaded)
        if best is not None:
            return best
        cat = self.store.catalog
        if cat is None or task not in cat.tasks:
            raise ModelNotFound(f"model '{task}' is neither a task nor a variant this network knows")
        best = max(cat.tasks[task].variants.values(), key=lambda v: v.accuracy).name
        await self.store.load(best)
        return best

    async def _local(self, request: InferenceRequest, variant: str, t0: float, slo_met: bool = True,
                     degraded: bool = False) -> InferenceResponse:
        if variant not in self.store.loaded and request.parameters.get(P.TARGET):
            # A peer routed here under a plan this node has not (or no longer) loaded for:
            # load it rather than lose the request while plans change.
            self.on_demand_loads += 1
            log.warning("loading %s on demand for a request routed by another plan", variant)
            await self.store.load(variant)
        rt = self.runtime(variant, request.model_version if variant == request.model_name else "")
        feeds, batch = self.decode_inputs(rt, request.inputs)
        if request.outputs:
            rt.check_outputs(request.outputs)
        t_run = time.perf_counter()
        arrays = await rt.run(feeds, request.outputs, batch, deadline=request.deadline, stretch=self.slowdown)
        if self.slowdown > 1.0:  # emulation of a slower box: stretch the measured compute time
            await self.pacer.sleep((time.perf_counter() - t_run) * (self.slowdown - 1.0))
        names = request.outputs or rt.output_names
        dt = rt.output_datatype
        outputs = [OutputTensor(n, dt[n], a) for n, a in zip(names, arrays)]
        params: dict[str, Any] = {P.VARIANT: rt.name, P.HOPS: 0,
                                  P.SERVER_US: int((time.perf_counter() - t0) * 1e6)}
        if self.node_id:
            params[P.NODE] = self.node_id
        cat = self.store.catalog
        if cat is not None and rt.name in cat.variants:
            params[P.ACCURACY] = cat.variants[rt.name].accuracy
        if degraded:
            params[P.DEGRADED] = True
        if not slo_met:
            params[P.SLO_MET] = False
        return InferenceResponse(rt.name, rt.version, request.id, params, outputs)

    def decode_inputs(self, rt: VariantRuntime, inputs: list[InputTensor]) -> tuple[dict[str, np.ndarray], int]:
        """Validate against the model's signature and decode; returns feeds and the batch size."""
        if not inputs:
            raise InvalidInput(f"model '{rt.name}': the request has no inputs; expected {[m.name for m in rt.inputs]}")
        feeds: dict[str, np.ndarray] = {}
        batch = 1
        for t in inputs:
            rt.check_input(t.name, t.datatype, t.shape)
            if t.name in feeds:
                raise InvalidInput(f"model '{rt.name}': input '{t.name}' given more than once")
            if t.raw is not None:
                arr = decode_raw(t.name, t.datatype, t.shape, t.raw, self.settings.max_elements)
            elif t.contents is not None:
                arr = decode_contents(t.name, t.datatype, t.shape, t.contents, self.settings.max_elements)
            else:
                raise InvalidInput(f"input '{t.name}': no data (neither raw_input_contents nor contents)")
            feeds[t.name] = arr
            if t.shape:
                batch = max(batch, t.shape[0])
        rt.check_complete(list(feeds))
        return feeds, batch
