"""The protocol-agnostic data plane: resolve, validate, decode, run, answer.

Transports (``grpc_service``) are thin adapters that turn wire messages into
``InferenceRequest`` and ``InferenceResponse`` back into wire messages; everything
that decides something lives here, so a second transport (HTTP/REST) or the
forwarding path reuses it unchanged. Tensor contents stay in their wire form in the
request (raw bytes or a typed ``contents`` object) until the target model is known:
unknown models are refused before any decoding work, and decoding happens once.

What a request may make this node load (DESIGN.md "Authority"): a request that resolves
to a variant this node has not loaded — an ingress on another plan chose it, a client
pinned it with ``idn.target`` or by name, the plan's load failed — is served by loading
it only on the repository node, and only within the node's memory (earlier on-demand
loads are evicted, planned ones never). Any other node sends it on towards the
repository with the target rewritten to the repository, so it never grows past its
plan, and during a plan change the request is still answered. What the data plane
remembers per request (stats, metrics) is keyed by names it knows and by bounded SLO
values, never by a string the client chose.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from idn import __version__
from idn.node.forwarder import Forwarder, HopFailed, response_facts
from idn.node.handlers import RateLimitedLog
from idn.node.metrics import NodeMetrics
from idn.node.router import Action, Resolution, RoutingTable
from idn.node.runtime import PLATFORM, VariantRuntime
from idn.node.settings import NodeSettings
from idn.node.stats import UNKNOWN, StatsBook
from idn.node.store import ModelState, VariantStore
from idn.protocol import params as P
from idn.protocol.status import DataPlaneError, InvalidInput, ModelNotFound, Overloaded, Status, echo
from idn.protocol.tensors import TensorMeta, decode_contents, decode_raw

log = logging.getLogger("idn.node")

SERVER_NAME = "idn"
EXTENSIONS = ("model_repository", "idn")
# Longest model name a request may carry (catalog names are a few dozen characters).
MAX_NAME_CHARS = 256


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


class NoRoom(Overloaded):
    """The repository cannot load a variant on demand within its memory."""


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]


def _slo_param(params: dict[str, Any], key: str, low: float, high: float, low_open: bool) -> float | None:
    """An SLO parameter as a finite number in its range (NaN, infinities and negative
    latencies are the caller's mistake, and would make every request its own class)."""
    v = params.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise InvalidInput(f"parameter '{key}' must be a number, got {echo(v)}")
    try:
        x = float(v)
    except ValueError:
        raise InvalidInput(f"parameter '{key}' must be a number, got {echo(v)}") from None
    if not (math.isfinite(x) and (low < x if low_open else low <= x) and x <= high):
        where = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
        raise InvalidInput(f"parameter '{key}' must be a finite number in {where}, got {echo(v)}")
    return x


def _target_param(params: dict[str, Any]) -> str | None:
    v = params.get(P.TARGET)
    if v is None or isinstance(v, str):
        return v
    raise InvalidInput(f"parameter '{P.TARGET}' must be a string '<node>/<variant>', got {echo(v)}")


class DataPlane:
    """Resolves each request (routing table), then runs it here or forwards it one hop.

    ``router`` is replaced wholesale when a plan is applied: a request resolves
    against one table from start to end, and the swap is a single assignment.
    """

    def __init__(self, store: VariantStore, settings: NodeSettings, node_id: str = "",
                 router: RoutingTable | None = None, forwarder: Forwarder | None = None,
                 memory_bytes: int | None = None):
        self.store = store
        self.settings = settings
        self.node_id = node_id
        self.router = router or RoutingTable(node_id, None, store.catalog)
        self.forwarder = forwarder
        # What the repository may hold when it loads on demand (None: it never does).
        self.memory_bytes = memory_bytes
        self.stats = StatsBook()
        self.metrics: NodeMetrics | None = None
        # Loads of a variant the plan does not put here (the repository's, for another plan's
        # targets or a client's pin), and requests sent on towards the repository for one:
        # plan changes that skipped the phases show up here.
        self.on_demand_loads = 0
        self.redirects = 0
        self.notes = RateLimitedLog(log)
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
            raise ModelNotFound(f"model '{name}' has no version '{echo(version)}'; available: ['{rt.version}']")
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
        """An operator's load (the repository API, authorized by the transport): kept until unloaded
        or a plan's cleanup, never evicted for an on-demand load. An upload may not take the name of
        a catalog task or variant: responses would carry that variant's catalog facts."""
        cat = self.store.catalog
        if source is not None and cat is not None and (name in cat.variants or name in cat.tasks):
            raise InvalidInput(f"model '{echo(name)}' is a catalog {'task' if name in cat.tasks else 'variant'}: "
                               "its file is the catalog's (sha256-checked); upload under another name")
        if source is not None and not 0 < len(name) <= MAX_NAME_CHARS:
            raise InvalidInput(f"model name has {len(name)} characters; use 1 to {MAX_NAME_CHARS}")
        await self.store.load(name, source)
        self.store.adopt((name,))

    async def unload(self, name: str) -> None:
        await self.store.unload(name)

    # -- inference ----------------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse | Forwarded:
        """Resolve, serve here or forward, and count the outcome (stats at the ingress, metrics always)."""
        t0 = time.perf_counter()
        params = request.parameters
        max_lat = min_acc = None
        try:
            if len(request.model_name) > MAX_NAME_CHARS:
                raise InvalidInput(f"model_name has {len(request.model_name)} characters; no model's name is "
                                   f"longer than {MAX_NAME_CHARS}")
            max_lat = _slo_param(params, P.MAX_LATENCY_MS, 0.0, math.inf, True)
            min_acc = _slo_param(params, P.MIN_ACCURACY, 0.0, 1.0, False)
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
                                           _target_param(request.parameters), max_lat, min_acc)
        except ValueError as e:
            raise InvalidInput(str(e)) from None
        variant = decision.variant or request.model_name
        try:
            if decision.action is Action.LOCAL and variant not in self.store.loaded:
                decision = await self._not_loaded(variant, decision)
            if decision.action is Action.FORWARD:
                return await self._forward(request, decision), False
            if decision.action is Action.BEST_LOCAL:
                variant = await self._best_local(request.model_name)
            elif self.store.on_demand:
                self.store.touch(variant)
            return await self._local(request, variant, t0, decision.slo_met), False
        except (HopFailed, NoRoom) as e:
            task = self.router.task_of(variant if isinstance(e, NoRoom) else request.model_name)
            fallback = self.router.best_local_variant(task or "", self.store.loaded)
            if fallback is None:
                raise
            self.notes.log("degraded", "%s; serving %s locally (degraded)", e, fallback)
            return await self._local(request, fallback, t0, decision.slo_met, degraded=True), True

    async def _not_loaded(self, variant: str, decision: Resolution) -> Resolution:
        """A request resolved to a variant of the catalog this node has not loaded. The repository
        loads it within its memory; any other node sends the request on towards the repository,
        naming the repository as the target (it never loads outside its plan, and the request
        cannot bounce back down). Anything else is answered NOT_FOUND by ``_local``."""
        cat = self.store.catalog
        if cat is None or variant not in cat.variants:
            return decision
        if self.router.is_repository():
            if self.memory_bytes is None:
                return decision
            if await self.store.load_on_demand(variant, self.memory_bytes) is None:
                raise NoRoom(f"variant '{variant}' does not fit in this node's memory: "
                             f"{self._memory_use()}", Status.RESOURCE_EXHAUSTED)
            self.on_demand_loads += 1
            self.notes.log("on-demand", "loaded %s on demand (not in this node's plan; %s)", variant,
                           self._memory_use())
            return decision
        repo, nxt = self.router.repository_id(), self.router.towards_repository()
        if self.forwarder is None or repo is None or nxt is None:
            return decision
        self.redirects += 1
        self.notes.log("redirect", "%s is not loaded here and not this node's to load: sending the request "
                       "on to the repository %s", variant, repo)
        return Resolution(Action.FORWARD, variant, repo, nxt, slo_met=decision.slo_met)

    def _memory_use(self) -> str:
        mib = 2 ** 20
        planned = sum(self.store.sizes.get(n, 0) for n in self.store.loaded if n not in self.store.on_demand)
        return (f"{planned / mib:.1f} MiB planned and {(self.store.bytes_loaded() - planned) / mib:.1f} MiB "
                f"loaded on demand of {(self.memory_bytes or 0) / mib:.1f} MiB")

    def _record(self, request: InferenceRequest, max_lat: float | None, min_acc: float | None, t0: float,
                outcome: str, served_by: str | None = None) -> None:
        """outcome: local, forwarded, degraded, or an error's status name. Counted under the model's
        name and task only when this node knows the name (else under ``UNKNOWN``): a client must not
        be able to grow the node's tables with names it makes up."""
        seconds = time.perf_counter() - t0
        model, task = self._labels(request.model_name)
        if self.metrics is not None:
            self.metrics.observe(model, outcome, seconds)
        if P.VIA in request.parameters:
            return  # only the ingress counts a request class
        ok = outcome in ("local", "forwarded", "degraded")
        if task == UNKNOWN:
            max_lat = min_acc = None
        self.stats.record(self.node_id, task, max_lat, min_acc, seconds * 1e3, ok, served_by,
                          outcome == "degraded")

    def _labels(self, name: str) -> tuple[str, str]:
        """(model, task) to count a request under: the name and its task if known here, else UNKNOWN."""
        cat = self.store.catalog
        if cat is not None:
            if name in cat.tasks:
                return name, name
            v = cat.variants.get(name)
            if v is not None:
                return name, v.task
        if self.store.is_known(name):
            return name, name
        return UNKNOWN, UNKNOWN

    async def _forward(self, request: InferenceRequest, decision: Resolution) -> Forwarded:
        if self.forwarder is None or decision.next_hop is None or request.wire is None:
            raise DataPlaneError(f"model '{echo(request.model_name)}' is not served here and this node has no "
                                 "route onwards", Status.NOT_FOUND)
        wire = await self.forwarder.send(request.wire, decision, self.router, request.model_name, request.deadline,
                                         fallback=self.router.has_local(request.model_name, self.store.loaded))
        if not decision.slo_met:
            wire.parameters[P.SLO_MET].bool_param = False
        return Forwarded(wire)

    async def _best_local(self, task: str) -> str:
        """The repository's answer for a task nothing closer serves: its most accurate loaded
        variant, else the most accurate one that fits in its memory (loaded on demand)."""
        best = self.router.best_local_variant(task, self.store.loaded)
        if best is not None:
            return best
        cat = self.store.catalog
        if cat is None or task not in cat.tasks:
            raise ModelNotFound(f"model '{echo(task)}' is neither a task nor a variant this network knows")
        if self.memory_bytes is None:
            raise ModelNotFound(f"no variant of task '{task}' is loaded on this node, and it loads none on demand "
                                "(it has no memory figure: give it --topology and --id, or --mem-mb)")
        for v in sorted(cat.tasks[task].variants.values(), key=lambda v: -v.accuracy):
            if self.store.fits(v.name, self.memory_bytes) and \
                    await self.store.load_on_demand(v.name, self.memory_bytes) is not None:
                self.notes.log("on-demand", "loaded %s on demand for task %s (%s)", v.name, task, self._memory_use())
                return v.name
        raise Overloaded(f"no variant of task '{task}' fits in this node's memory: {self._memory_use()}")

    async def _local(self, request: InferenceRequest, variant: str, t0: float, slo_met: bool = True,
                     degraded: bool = False) -> InferenceResponse:
        rt = self.runtime(variant, request.model_version if variant == request.model_name else "")
        feeds, batch = self.decode_inputs(rt, request.inputs)
        if request.outputs:
            rt.check_outputs(request.outputs)
        arrays = await rt.run(feeds, request.outputs, batch, deadline=request.deadline)
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
                raise InvalidInput(f"model '{rt.name}': input '{echo(t.name)}' given more than once")
            if t.raw is not None:
                arr = decode_raw(t.name, t.datatype, t.shape, t.raw, self.settings.max_elements)
            elif t.contents is not None:
                arr = decode_contents(t.name, t.datatype, t.shape, t.contents, self.settings.max_elements)
            else:
                raise InvalidInput(f"input '{echo(t.name)}': no data (neither raw_input_contents nor contents)")
            feeds[t.name] = arr
            if t.shape:
                batch = max(batch, t.shape[0])
        rt.check_complete(list(feeds))
        return feeds, batch
