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

**Traces** (``--trace``, :mod:`idn.trace`): each class's rate changes with time, so its
arrivals are a non-homogeneous Poisson process, drawn up front by time rescaling: unit-rate
Poisson arrivals on the class's expected-arrivals curve ``Lambda(t)`` (the integral of its
rate, exact for piecewise rates) mapped back through its inverse. A trace is replayed
over a bounded window (``start_s``, ``duration_s``) and may be sped up (``speed`` trace
seconds per wall second: the rates stay as written, so each period is shorter and holds
``speed`` times fewer requests). Every arrival is counted in its trace period, so the
report has per class and period the requests sent and answered and the expected count,
to compare with what a controller measured.

The generator shares the CPU with the nodes on one machine, so the hot path is lean:
request messages are serialized once per (class, sample) before the clock starts and
sent as bytes over one channel per ingress; per request only the response is parsed.
"""

from __future__ import annotations

import asyncio
import math
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from idn.catalog import Catalog, Task
from idn.client import Failover, build_request, channel_options, ingress_addresses, parse_response
from idn.config import ConfigError
from idn.demand import Demand, RequestClass
from idn.protocol import params as P
from idn.protos import grpc_service_pb2 as pb
from idn.tls import TLSFiles, aio_channel
from idn.topology import Topology
from idn.trace import Trace, cumulative
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


def load_samples(task: Task, catalog_file: str | Path | None = None) -> Samples:
    """The task's held-out samples (``catalog.tasks.<task>.samples``, an .npz); errors name the catalog
    (``catalog_file``) when the entry is wrong, the .npz when its contents are."""
    if task.samples is None:
        raise ConfigError(catalog_file, f"tasks.{task.name}.samples", "the task has no held-out samples",
                          "build the zoo (`idn models build`) or give the catalog a samples .npz")
    if not task.samples.is_file():
        raise ConfigError(catalog_file, f"tasks.{task.name}.samples", f"{task.samples} does not exist",
                          "build the zoo (`idn models build`) or fix the path in the catalog")
    input_name = task.inputs[0].name
    try:
        z = np.load(task.samples, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ConfigError(task.samples, "<file>", f"not a NumPy .npz archive ({e})",
                          "point the catalog's samples at the .npz `idn models build` wrote") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ConfigError(task.samples, "<file>", "a single array, not an .npz archive",
                          f"store the inputs under {INPUTS_KEY!r} and labels under {LABELS_KEY!r} in an .npz")
    with z:
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
    # trace replay: arrival times (seconds from the start of the counted window) and the
    # trace period of each; None: homogeneous Poisson at cls.rate
    schedule: np.ndarray | None = None
    periods: np.ndarray | None = None

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
    period: int = -1  # trace replay: the trace period the request was sent in (-1: none)


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
    # trace replay only: per trace period, requests sent, answered OK, and expected
    periods_sent: list[int] | None = None
    periods_ok: list[int] | None = None
    periods_expected: list[float] | None = None

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
    trace: dict[str, Any] | None = None  # trace replay: name, window, speed, period starts

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["trace"] is None:  # a plain demand run: no trace fields at all
            del d["trace"]
            for c in [*d["classes"], d["overall"]]:
                for k in ("periods_sent", "periods_ok", "periods_expected"):
                    del c[k]
        return d


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
            samples[rc.task] = load_samples(task, catalog.path)
        addr = (addresses or {}).get(rc.ingress) or topology.node(rc.ingress).address
        ld = ClassLoad.build(rc, addr, task, samples[rc.task], rng)
        if failover > 0:
            by_address = {n.address: nid for nid, n in topology.nodes.items()}
            ld.fallbacks = [(addresses or {}).get(by_address[a]) or a
                            for a in ingress_addresses(topology, rc.ingress, failover + 1)[1:]]
        loads.append(ld)
    return loads


class IngressUnavailable(ConnectionError):
    """Ingresses that did not accept a connection in time: ``down`` maps each address to its classes."""

    def __init__(self, down: dict[str, list[RequestClass]], timeout_s: float):
        self.down, self.timeout_s = down, timeout_s
        names = "; ".join(f"{cs[0].ingress} ({addr})" for addr, cs in down.items())
        super().__init__(f"ingress(es) not accepting connections within {timeout_s:g} s: {names}")


@dataclass(frozen=True)
class TraceWindow:
    """Which part of a trace to replay and how fast."""
    trace: Trace
    start_s: float = 0.0
    duration_s: float | None = None  # trace seconds; None: to the end of the trace
    speed: float = 1.0               # trace seconds per wall-clock second

    @property
    def end_s(self) -> float:
        end = self.trace.duration_s if self.duration_s is None else self.start_s + self.duration_s
        return min(end, self.trace.duration_s)

    @property
    def wall_s(self) -> float:
        return (self.end_s - self.start_s) / self.speed

    def period_edges(self) -> np.ndarray:
        """Edges of the trace periods that overlap the window, clipped to it."""
        p = self.trace.period_s
        first = math.floor(self.start_s / p + 1e-9)
        edges = np.arange(first, math.ceil(self.end_s / p - 1e-9) + 1) * p
        return np.clip(edges, self.start_s, self.end_s)

    def first_period(self) -> int:
        return math.floor(self.start_s / self.trace.period_s + 1e-9)

    def describe(self) -> dict[str, Any]:
        edges = self.period_edges()
        return {"name": self.trace.name, "file": self.trace.file, "period_s": self.trace.period_s,
                "start_s": self.start_s, "end_s": self.end_s, "speed": self.speed,
                "first_period": self.first_period(), "period_starts_s": [float(x) for x in edges[:-1]]}


def arrival_times(rate_cumulative: np.ndarray, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Non-homogeneous Poisson arrivals on ``grid`` by time rescaling: unit-rate arrivals on the
    expected-arrivals axis ``rate_cumulative`` (increasing, from 0 at grid[0]) mapped back to time."""
    total = float(rate_cumulative[-1])
    n = int(rng.poisson(total))
    if n == 0:
        return np.zeros(0)
    # given the count, arrival "masses" are uniform order statistics on [0, total]
    u = np.sort(rng.uniform(0.0, total, size=n))
    # invert Lambda: a flat part (rate 0) never receives an arrival
    return np.interp(u, rate_cumulative, grid)


def plan_trace_load(topology: Topology, catalog: Catalog, window: TraceWindow, seed: int = 0,
                    addresses: dict[str, str] | None = None, warmup_s: float = 0.0,
                    grid_step_s: float = 0.01, failover: int = 0) -> list[ClassLoad]:
    """Prebuild every class of a trace with its arrival schedule over the window.

    Schedules are in wall seconds from the start of the counted window; warm-up arrivals
    (homogeneous at each class's rate at ``start_s``) have negative times."""
    rng = np.random.default_rng(seed)
    demand = Demand(tuple(tc.cls for tc in window.trace.classes), window.trace.file)
    loads = plan_load(topology, catalog, demand, seed=seed, addresses=addresses, failover=failover)
    a, b = window.start_s, window.end_s
    grid = np.linspace(a, b, max(2, int(math.ceil((b - a) / grid_step_s)) + 1))
    p = window.trace.period_s
    first = window.first_period()
    out = []
    for ld, tc in zip(loads, window.trace.classes):
        lam = cumulative(tc.rate, grid) / window.speed  # expected arrivals in wall time: rates as written
        t_trace = arrival_times(lam - lam[0], grid, rng)
        r0 = float(tc.rate.at(a)[0])
        n_warm = int(rng.poisson(r0 * warmup_s)) if warmup_s > 0 and r0 > 0 else 0
        warm = -np.sort(rng.uniform(0.0, warmup_s, size=n_warm))[::-1]
        sched = np.concatenate([warm, (t_trace - a) / window.speed])
        per = np.concatenate([np.full(n_warm, -1), np.floor(t_trace / p + 1e-12).astype(np.int64) - first])
        mean_rate = float((lam[-1] - lam[0]) * window.speed / (b - a))
        out.append(replace(ld, cls=replace(ld.cls, rate=mean_rate), schedule=sched,
                           periods=per))
    return out


async def run_load(loads: list[ClassLoad], options: LoadOptions, tls: TLSFiles | None = None,
                   window: TraceWindow | None = None,
                   on_outcome: Callable[[ClassLoad, _Outcome], None] | None = None,
                   on_start: Callable[[float], None] | None = None) -> LoadReport:
    """Drive every class open-loop for warmup + duration seconds (or a trace window), then wait for
    stragglers. ``on_outcome`` sees every counted request as it ends (time series, e.g.
    benchmarks/chaos.py). ``on_start`` is told, once the ingresses answer, the
    ``time.monotonic()`` at which the counted window (trace period 0) starts, so that
    something running beside the load (a controller, idn.demo_trace) can keep in step with
    the trace periods.

    Raises IngressUnavailable, naming every ingress without failover that does not accept
    a connection within the request timeout, before any load is sent."""
    channels: dict[str, grpc.aio.Channel] = {}
    calls = {}
    for addr in {a for ld in loads for a in (ld.address, *ld.fallbacks)}:
        channels[addr] = ch = aio_channel(addr, tls, channel_options(options.retry_sent))
        calls[addr] = ch.unary_unary(MODEL_INFER, request_serializer=None,
                                     response_deserializer=pb.ModelInferResponse.FromString)

    async def ready(ch: grpc.aio.Channel) -> bool:
        try:
            await asyncio.wait_for(ch.channel_ready(), options.timeout_s)
            return True
        except TimeoutError:
            return False

    try:
        primaries = {ld.address for ld in loads if not ld.fallbacks}  # failover classes go around the dead
        ok = await asyncio.gather(*(ready(channels[a]) for a in primaries))
        down = [addr for addr, up in zip(primaries, ok) if not up]
        if down:
            raise IngressUnavailable({a: [ld.cls for ld in loads if ld.address == a] for a in down}, options.timeout_s)
        driver = _Driver(loads, calls, options, window, on_outcome, on_start)
        return await driver.run()
    finally:
        for ch in channels.values():
            await ch.close()


class _Driver:
    def __init__(self, loads: list[ClassLoad], calls: dict[str, Any], options: LoadOptions,
                 window: TraceWindow | None = None,
                 on_outcome: Callable[[ClassLoad, _Outcome], None] | None = None,
                 on_start: Callable[[float], None] | None = None):
        self.on_start = on_start
        self.loads = loads
        self.calls = calls
        self.opt = options
        self.window = window
        self.on_outcome = on_outcome
        self.failover = [Failover([ld.address, *ld.fallbacks], options.retry_sent) if ld.fallbacks else None
                         for ld in loads]
        self.duration_s = window.wall_s if window is not None else options.duration_s
        self.outcomes: list[list[_Outcome]] = [[] for _ in loads]
        self.dropped = [0] * len(loads)
        self.outstanding = 0
        self.inflight: set[asyncio.Task] = set()
        n_periods = len(window.period_edges()) - 1 if window is not None else 0
        self.period_sent = np.zeros((len(loads), n_periods), dtype=np.int64)
        self.period_ok = np.zeros((len(loads), n_periods), dtype=np.int64)

    async def run(self) -> LoadReport:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05
        counted_from = t0 + self.opt.warmup_s
        t_end = counted_from + self.duration_s
        if self.on_start is not None:  # loop.time() is time.monotonic() on asyncio's default loop
            self.on_start(counted_from - loop.time() + time.monotonic())
        rng = np.random.default_rng(self.opt.seed)
        seeds = rng.integers(0, 2**63, size=len(self.loads))
        await asyncio.gather(*(self._arrivals(i, np.random.default_rng(int(s)), t0, counted_from, t_end)
                               if self.loads[i].schedule is None else self._scheduled(i, counted_from)
                               for i, s in enumerate(seeds)))
        if self.inflight:
            await asyncio.wait(self.inflight, timeout=self.opt.timeout_s + 1.0)
        reports = [ClassReport.of(ld, self.outcomes[i], self.dropped[i], self.duration_s)
                   for i, ld in enumerate(self.loads)]
        trace = None
        if self.window is not None:
            expected = self.window.trace.expected_counts(self.window.period_edges()) / self.window.speed
            for i, r in enumerate(reports):  # loads are in trace class order (plan_trace_load)
                r.periods_sent = self.period_sent[i].tolist()
                r.periods_ok = self.period_ok[i].tolist()
                r.periods_expected = [round(float(x), 3) for x in expected[i]]
            trace = self.window.describe()
        overall = self._overall()
        if self.window is not None:
            overall.periods_sent = self.period_sent.sum(axis=0).tolist()
            overall.periods_ok = self.period_ok.sum(axis=0).tolist()
            overall.periods_expected = [round(sum(x), 3) for x in zip(*(r.periods_expected or [] for r in reports))]
        return LoadReport(self.duration_s, self.opt.warmup_s, self.opt.seed, reports, overall, trace=trace)

    def _overall(self) -> ClassReport:
        all_out = [o for outs in self.outcomes for o in outs]
        pooled = ClassLoad(RequestClass("all", "*", "*", sum(ld.cls.rate for ld in self.loads)), "*", [], [], "")
        return ClassReport.of(pooled, all_out, sum(self.dropped), self.duration_s)

    async def _scheduled(self, i: int, counted_from: float) -> None:
        """Replay one class's precomputed arrival schedule (trace replay)."""
        loop = asyncio.get_running_loop()
        ld = self.loads[i]
        assert ld.schedule is not None and ld.periods is not None
        n_msgs = len(ld.messages)
        for k, (offset, period) in enumerate(zip(ld.schedule.tolist(), ld.periods.tolist())):
            wait = counted_from + offset - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            counted = offset >= 0
            if self.outstanding >= self.opt.max_outstanding:
                if counted:
                    self.dropped[i] += 1
                continue
            if counted and 0 <= period < self.period_sent.shape[1]:
                self.period_sent[i, period] += 1
            task = asyncio.create_task(self._send(i, k % n_msgs, counted, period if counted else -1))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

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

    async def _send(self, i: int, j: int, counted: bool, period: int = -1) -> None:
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
                self._done(i, _Outcome(ms, e.code().name, sent_at=sent_at, detail=e.details() or "", period=period))
            return
        finally:
            self.outstanding -= 1
        ms = (time.perf_counter() - start) * 1e3
        if not counted:
            return
        if 0 <= period < self.period_ok.shape[1]:
            self.period_ok[i, period] += 1
        res = parse_response(resp)
        label = ld.labels[j]
        correct = None
        if label is not None and ld.output in res.outputs:
            correct = top_class(res.outputs[ld.output]) == label
        self._done(i, _Outcome(ms, "OK", f"{res.node}/{res.variant}", res.degraded, correct,
                               float(res.server_us or 0), sent_at, via if via != ld.address else "",
                               str(res.parameters.get(P.REROUTED, "")), period=period))

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

