"""Open-loop load from a demand: Poisson arrivals per request class, measured at the client.

Each request class of a demand sends to its ingress node's address with its own SLO as
request parameters (``idn.max_latency_ms``, ``idn.min_accuracy``) and inputs drawn from
the task's held-out samples, so measured accuracy can be checked against the labels.

Open loop: arrival times are drawn up front from the class's rate (exponential
inter-arrival gaps on an absolute schedule, so a slow response never delays the next
send). A bound on outstanding requests keeps a collapsing network from growing the
client without limit; arrivals over the bound are counted as ``dropped`` (never silently
skipped). The first ``warmup_s`` seconds of arrivals are sent but not counted.

Failover (``plan_load(..., failover=N)``, ``idn loadgen --failover N``): each class also
knows the N nodes nearest its ingress, and a request its ingress could not take (refused
before it was sent) goes to the next of them within its deadline, as ``idn.Client``
does (``retry_sent`` also retries requests lost after they were sent).

The generator shares the CPU with the nodes on one machine, so the hot path is lean:
request messages are serialized once per (class, sample) before the clock starts and
sent as bytes over one channel per ingress; per request only the response is parsed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import grpc
import numpy as np

from idn.catalog import Catalog, Task
from idn.client import Failover, build_request, channel_options, ingress_addresses, parse_response
from idn.config import ConfigError
from idn.demand import Demand, RequestClass
from idn.protocol import params as P
from idn.protos import grpc_service_pb2 as pb
from idn.topology import Topology
from idn.zoo.samples import INPUTS_KEY, LABELS_KEY  # the sample file format has one owner

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MAX_PREBUILT = 512  # distinct prebuilt messages per class: enough variety, bounded memory


# -- samples and answers -------------------------------------------------------------------

@dataclass(frozen=True)
class Samples:
    """Held-out inputs of one task ([n, ...] batch-first) and their labels (class indices)."""
    task: str
    input_name: str
    inputs: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.inputs)

    def one(self, i: int) -> np.ndarray:
        """Sample ``i`` as a batch of one, in the task's input dtype layout."""
        return self.inputs[i:i + 1]


def load_samples(task: Task) -> Samples:
    """The task's held-out samples (``catalog.tasks.<task>.samples``, an .npz)."""
    if task.samples is None:
        raise ConfigError(None, f"tasks.{task.name}.samples", "the task has no held-out samples",
                          "build the zoo (`idn models build`) or give the catalog a samples .npz")
    if not task.samples.is_file():
        raise ConfigError(None, f"tasks.{task.name}.samples", f"{task.samples} does not exist",
                          "build the zoo (`idn models build`) or fix the path in the catalog")
    input_name = task.inputs[0].name
    with np.load(task.samples, allow_pickle=False) as z:
        if INPUTS_KEY not in z.files:
            raise ConfigError(task.samples, INPUTS_KEY, f"no array named {INPUTS_KEY!r} (has {z.files})",
                              f"store the inputs (batch-first) under {INPUTS_KEY!r}, as `idn models build` does")
        inputs = z[INPUTS_KEY]
        labels = z[LABELS_KEY] if LABELS_KEY in z.files else None
    if labels is not None and len(labels) != len(inputs):
        raise ConfigError(task.samples, LABELS_KEY, f"{len(labels)} labels for {len(inputs)} inputs",
                          "store one label per input")
    if not len(inputs):
        raise ConfigError(task.samples, INPUTS_KEY, "no samples", "store at least one input")
    return Samples(task.name, input_name, inputs, labels)


def answer_output(task: Task) -> str:
    """The output that carries the answer: the task's first output (e.g. ``probabilities``)."""
    return task.outputs[0].name


def top_class(output: np.ndarray) -> int:
    """Class index answered for a batch of one: argmax of scores, or the label itself."""
    if output.ndim >= 2:
        return int(np.argmax(output[0]))
    return int(output.reshape(-1)[0])


def scale_demand(demand: Demand, factor: float) -> Demand:
    """The same classes at ``factor`` times their rates (load sweeps without editing files)."""
    if factor == 1.0:
        return demand
    return Demand(tuple(replace(c, rate=c.rate * factor) for c in demand.classes), demand.file)


def slo_parameters(max_latency_ms: float | None, min_accuracy: float | None) -> dict[str, float]:
    params: dict[str, float] = {}
    if max_latency_ms is not None:
        params[P.MAX_LATENCY_MS] = float(max_latency_ms)
    if min_accuracy is not None:
        params[P.MIN_ACCURACY] = float(min_accuracy)
    return params


# -- the run ---------------------------------------------------------------------------------

@dataclass
class ClassLoad:
    """One request class ready to send: where, how often, and its prebuilt messages."""
    cls: RequestClass
    address: str
    messages: list[bytes]
    labels: list[int | None]
    output: str
    fallbacks: list[str] = field(default_factory=list)  # other ingresses, nearest first (failover)

    @classmethod
    def build(cls, rc: RequestClass, address: str, task: Task, samples: Samples,
              rng: np.random.Generator) -> ClassLoad:
        idx = rng.permutation(len(samples))[:MAX_PREBUILT]
        out = answer_output(task)
        params = slo_parameters(rc.max_latency_ms, rc.min_accuracy)
        msgs = [build_request(rc.task, {samples.input_name: samples.one(int(i))}, [out], params).SerializeToString()
                for i in idx]
        labels = [int(samples.labels[i]) if samples.labels is not None else None for i in idx]
        return cls(rc, address, msgs, labels, out)


@dataclass
class _Outcome:
    latency_ms: float
    code: str            # "OK" or the gRPC status name
    served_by: str = ""  # "<node>/<variant>"
    degraded: bool = False
    correct: bool | None = None
    server_us: float = 0.0  # time inside the serving node (idn.server_us)
    sent_at: float = 0.0  # time.monotonic() when sent
    via: str = ""  # the ingress that answered, when it was not the class's own (failover)
    rerouted: str = ""  # idn.rerouted: a dead node the network routed around
    detail: str = ""  # the error's message


@dataclass
class LatencySummary:
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None

    @classmethod
    def of(cls, values: list[float]) -> LatencySummary:
        if not values:
            return cls(None, None, None, None)
        a = np.asarray(values)
        p50, p95, p99 = np.percentile(a, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), float(a.mean()))


@dataclass
class ClassReport:
    class_id: str
    ingress: str
    task: str
    address: str
    rate: float
    max_latency_ms: float | None
    min_accuracy: float | None
    sent: int
    ok: int
    dropped: int                # arrivals over the outstanding bound: never sent
    errors: dict[str, int]      # gRPC status name -> count
    latency: LatencySummary     # successful requests, client-side, in ms
    server_ms: float | None     # mean time inside the serving node (the rest is network + transport)
    accuracy: float | None      # share of labelled OK answers that were right
    labelled: int
    slo_met: float | None       # share of OK answers within max_latency_ms (None without that SLO)
    degraded: int
    served_by: dict[str, float]  # "<node>/<variant>" -> share of OK answers
    achieved_rps: float

    @classmethod
    def of(cls, load: ClassLoad, outcomes: list[_Outcome], dropped: int, duration_s: float) -> ClassReport:
        rc = load.cls
        ok = [o for o in outcomes if o.code == "OK"]
        labelled = [o.correct for o in ok if o.correct is not None]
        served = Counter(o.served_by for o in ok)
        slo = None
        if rc.max_latency_ms is not None and ok:
            slo = sum(o.latency_ms <= rc.max_latency_ms for o in ok) / len(ok)
        return cls(
            class_id=rc.id, ingress=rc.ingress, task=rc.task, address=load.address, rate=rc.rate,
            max_latency_ms=rc.max_latency_ms, min_accuracy=rc.min_accuracy, sent=len(outcomes), ok=len(ok),
            dropped=dropped, errors=dict(Counter(o.code for o in outcomes if o.code != "OK")),
            latency=LatencySummary.of([o.latency_ms for o in ok]),
            server_ms=(sum(o.server_us for o in ok) / len(ok) / 1e3) if ok else None,
            accuracy=(sum(labelled) / len(labelled)) if labelled else None, labelled=len(labelled),
            slo_met=slo, degraded=sum(o.degraded for o in ok),
            served_by={k: v / len(ok) for k, v in sorted(served.items())},
            achieved_rps=len(outcomes) / duration_s if duration_s > 0 else 0.0)


@dataclass
class LoadReport:
    """Per class and pooled over all classes (pooled = weighted by the classes' rates)."""
    duration_s: float
    warmup_s: float
    seed: int
    classes: list[ClassReport]
    overall: ClassReport
    started: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoadOptions:
    duration_s: float = 10.0
    warmup_s: float = 1.0
    seed: int = 0
    max_outstanding: int = 256  # all classes together
    timeout_s: float = 5.0      # gRPC deadline of each request
    retry_sent: bool = False    # failover also for requests lost after they were sent (side-effect free)


def plan_load(topology: Topology, catalog: Catalog, demand: Demand, seed: int = 0,
              addresses: dict[str, str] | None = None, failover: int = 0) -> list[ClassLoad]:
    """Prebuild every class's messages (before any clock starts); ``failover``: how many other
    nodes, nearest the ingress first, each class may fail over to."""
    rng = np.random.default_rng(seed)
    samples: dict[str, Samples] = {}
    loads = []
    for rc in demand.classes:
        task = catalog.tasks[rc.task]
        if rc.task not in samples:
            samples[rc.task] = load_samples(task)
        addr = (addresses or {}).get(rc.ingress) or topology.node(rc.ingress).address
        ld = ClassLoad.build(rc, addr, task, samples[rc.task], rng)
        if failover > 0:
            by_address = {n.address: nid for nid, n in topology.nodes.items()}
            ld.fallbacks = [(addresses or {}).get(by_address[a]) or a
                            for a in ingress_addresses(topology, rc.ingress, failover + 1)[1:]]
        loads.append(ld)
    return loads


async def run_load(loads: list[ClassLoad], options: LoadOptions,
                   on_outcome: Callable[[ClassLoad, _Outcome], None] | None = None) -> LoadReport:
    """Drive every class open-loop for warmup + duration seconds, then wait for stragglers.
    ``on_outcome`` sees every counted request as it ends (time series, e.g. benchmarks/chaos.py)."""
    channels: dict[str, grpc.aio.Channel] = {}
    calls = {}
    for addr in {a for ld in loads for a in (ld.address, *ld.fallbacks)}:
        channels[addr] = ch = grpc.aio.insecure_channel(addr, options=channel_options(options.retry_sent))
        calls[addr] = ch.unary_unary(MODEL_INFER, request_serializer=None,
                                     response_deserializer=pb.ModelInferResponse.FromString)
    try:
        primaries = [channels[a] for a in {ld.address for ld in loads if not ld.fallbacks}]
        await asyncio.gather(*(asyncio.wait_for(ch.channel_ready(), options.timeout_s) for ch in primaries))
        driver = _Driver(loads, calls, options, on_outcome)
        return await driver.run()
    finally:
        for ch in channels.values():
            await ch.close()


class _Driver:
    def __init__(self, loads: list[ClassLoad], calls: dict[str, Any], options: LoadOptions,
                 on_outcome: Callable[[ClassLoad, _Outcome], None] | None = None):
        self.loads = loads
        self.calls = calls
        self.opt = options
        self.on_outcome = on_outcome
        self.failover = [Failover([ld.address, *ld.fallbacks], options.retry_sent) if ld.fallbacks else None
                         for ld in loads]
        self.outcomes: list[list[_Outcome]] = [[] for _ in loads]
        self.dropped = [0] * len(loads)
        self.outstanding = 0
        self.inflight: set[asyncio.Task] = set()

    async def run(self) -> LoadReport:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05
        counted_from = t0 + self.opt.warmup_s
        t_end = counted_from + self.opt.duration_s
        rng = np.random.default_rng(self.opt.seed)
        seeds = rng.integers(0, 2**63, size=len(self.loads))
        await asyncio.gather(*(self._arrivals(i, np.random.default_rng(int(s)), t0, counted_from, t_end)
                               for i, s in enumerate(seeds)))
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=self.opt.timeout_s + 1.0)
        reports = [ClassReport.of(ld, self.outcomes[i], self.dropped[i], self.opt.duration_s)
                   for i, ld in enumerate(self.loads)]
        return LoadReport(self.opt.duration_s, self.opt.warmup_s, self.opt.seed, reports, self._overall())

    def _overall(self) -> ClassReport:
        all_out = [o for outs in self.outcomes for o in outs]
        pooled = ClassLoad(RequestClass("all", "*", "*", sum(ld.cls.rate for ld in self.loads)), "*", [], [], "")
        return ClassReport.of(pooled, all_out, sum(self.dropped), self.opt.duration_s)

    async def _arrivals(self, i: int, rng: np.random.Generator, t0: float, counted_from: float,
                        t_end: float) -> None:
        loop = asyncio.get_running_loop()
        ld = self.loads[i]
        gap = 1.0 / ld.cls.rate
        n_msgs = len(ld.messages)
        t, k = t0, 0
        while True:
            t += rng.exponential(gap)
            if t >= t_end:
                return
            wait = t - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            counted = t >= counted_from
            if self.outstanding >= self.opt.max_outstanding:
                if counted:
                    self.dropped[i] += 1
                continue
            j = k % n_msgs
            k += 1
            task = asyncio.create_task(self._send(i, j, counted))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    async def _send(self, i: int, j: int, counted: bool) -> None:
        ld = self.loads[i]
        self.outstanding += 1
        sent_at = time.monotonic()
        start = time.perf_counter()
        via = ""
        try:
            fo = self.failover[i]
            if fo is None:
                resp = await self.calls[ld.address](ld.messages[j], timeout=self.opt.timeout_s)
            else:
                resp, via = await self._failover(fo, ld.messages[j], start)
        except grpc.RpcError as e:
            ms = (time.perf_counter() - start) * 1e3
            if counted:
                self._done(i, _Outcome(ms, e.code().name, sent_at=sent_at, detail=e.details() or ""))
            return
        finally:
            self.outstanding -= 1
        ms = (time.perf_counter() - start) * 1e3
        if not counted:
            return
        res = parse_response(resp)
        label = ld.labels[j]
        correct = None
        if label is not None and ld.output in res.outputs:
            correct = top_class(res.outputs[ld.output]) == label
        self._done(i, _Outcome(ms, "OK", f"{res.node}/{res.variant}", res.degraded, correct,
                               float(res.server_us or 0), sent_at, via if via != ld.address else "",
                               str(res.parameters.get(P.REROUTED, ""))))

    async def _failover(self, fo: Failover, message: bytes, start: float) -> tuple[Any, str]:
        """Send to the first address that takes it, within one deadline (as idn.Client does)."""
        order = fo.order()
        for k, addr in enumerate(order):
            left = self.opt.timeout_s - (time.perf_counter() - start)
            try:
                resp = await self.calls[addr](message, timeout=max(left, 0.0))
            except grpc.RpcError as e:
                if k == len(order) - 1 or left <= 0 or not fo.should_retry(e):
                    raise
                fo.failed(addr)
                continue
            fo.answered(addr, k)
            return resp, addr
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _done(self, i: int, outcome: _Outcome) -> None:
        self.outcomes[i].append(outcome)
        if self.on_outcome is not None:
            self.on_outcome(self.loads[i], outcome)

