"""Per request class counters at the ingress: the demand a controller measures.

Counters only grow; ``GetStats(since=cursor)`` answers with the difference between
now and the snapshot taken when that cursor was handed out, so several readers can
poll at their own pace. A bounded number of snapshots is kept; an unknown or
expired cursor reads as "since the node started".

Bounded whatever clients send: requests for names this node does not know are counted
under one ``UNKNOWN`` task (the data plane's job), SLO values are quantised to a
bounded set — max latency floored to two significant digits within
[``LATENCY_RANGE_MS``], min accuracy ceiled to three decimals, both the stricter
way — and past ``MAX_CLASSES`` classes a new (task, SLO) is counted in its task's
overflow class (``<ingress>/<task>/other-slo``, no SLO fields; the controller reads it
as the task's demand without SLO). ``served_by`` keeps at most ``MAX_SERVED_BY``
targets per class.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from idn.demand import class_id

BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, float("inf"))
MAX_SNAPSHOTS = 64
MAX_CLASSES = 256  # distinct (task, SLO) classes per node; more go to their task's overflow class
MAX_SERVED_BY = 64  # distinct serving targets per class; more are counted under OTHER
LATENCY_RANGE_MS = (0.01, 1e6)
UNKNOWN = "(unknown)"  # the task of requests for names this node does not know
OTHER = "other"
OVERFLOW = "other-slo"


def quantise_slo(max_latency_ms: float | None, min_accuracy: float | None) -> tuple[float | None, float | None]:
    """SLO values as a bounded set: latency floored to 2 significant digits (12.34 -> 12,
    0.0567 -> 0.056) and clamped to LATENCY_RANGE_MS; accuracy ceiled to 0.001 in [0, 1].
    Values that are already on the grid (the ones a demand file holds) are unchanged."""
    lat = acc = None
    if max_latency_ms is not None:
        lo, hi = LATENCY_RANGE_MS
        x = min(max(float(max_latency_ms), lo), hi)
        step = 10.0 ** (math.floor(math.log10(x)) - 1)
        lat = float(f"{math.floor(x / step + 1e-9) * step:.2g}")
    if min_accuracy is not None:
        a = min(max(float(min_accuracy), 0.0), 1.0)
        acc = math.ceil(a * 1000 - 1e-6) / 1000
    return lat, acc


@dataclass
class ClassCounters:
    ingress: str
    task: str
    max_latency_ms: float | None = None
    min_accuracy: float | None = None
    requests: int = 0
    errors: int = 0
    degraded: int = 0
    sum_ms: float = 0.0
    counts: list[int] = field(default_factory=lambda: [0] * len(BOUNDS_MS))
    served_by: Counter = field(default_factory=Counter)

    def copy(self) -> ClassCounters:
        return ClassCounters(self.ingress, self.task, self.max_latency_ms, self.min_accuracy, self.requests,
                             self.errors, self.degraded, self.sum_ms, list(self.counts), Counter(self.served_by))

    def minus(self, old: ClassCounters | None) -> ClassCounters:
        if old is None:
            return self.copy()
        served = Counter(self.served_by)
        served.subtract(old.served_by)
        return ClassCounters(self.ingress, self.task, self.max_latency_ms, self.min_accuracy,
                             self.requests - old.requests, self.errors - old.errors,
                             self.degraded - old.degraded, self.sum_ms - old.sum_ms,
                             [a - b for a, b in zip(self.counts, old.counts)], +served)


@dataclass(frozen=True)
class StatsWindow:
    cursor: int
    window_s: float
    classes: dict[str, ClassCounters]


class StatsBook:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.started = clock()
        # keyed by (task, max_latency_ms, min_accuracy): no string formatting on the hot path
        self.classes: dict[tuple, ClassCounters] = {}
        self._ids: dict[tuple, str] = {}
        self._snapshots: OrderedDict[int, tuple[float, dict[tuple, ClassCounters]]] = OrderedDict()
        self._next_cursor = 1

    def record(self, ingress: str, task: str, max_latency_ms: float | None, min_accuracy: float | None,
               latency_ms: float, ok: bool, served_by: str | None = None, degraded: bool = False) -> None:
        """Count one request. ``task`` must come from a bounded set (the data plane passes the
        catalog's tasks, its own model names, or UNKNOWN); SLO values may be anything finite."""
        if max_latency_ms is not None or min_accuracy is not None:
            max_latency_ms, min_accuracy = quantise_slo(max_latency_ms, min_accuracy)
        key = (ingress, task, max_latency_ms, min_accuracy)
        c = self.classes.get(key)
        if c is None:
            c = self._new_class(key)
        c.requests += 1
        if not ok:
            c.errors += 1
            return
        c.degraded += degraded
        c.sum_ms += latency_ms
        c.counts[bisect.bisect_left(BOUNDS_MS, latency_ms)] += 1
        if served_by:
            sb = c.served_by
            if served_by not in sb and len(sb) >= MAX_SERVED_BY:
                served_by = OTHER
            sb[served_by] += 1

    def _new_class(self, key: tuple) -> ClassCounters:
        ingress, task, lat, acc = key
        if len(self.classes) >= 2 * MAX_CLASSES:  # a caller broke the bounded-task contract: one bucket
            task = UNKNOWN
        if len(self.classes) >= MAX_CLASSES and (lat is not None or acc is not None or task == UNKNOWN):
            key = (ingress, task, OVERFLOW)
            c = self.classes.get(key)
            if c is not None:
                return c
            self._ids[key] = f"{class_id(ingress, task)}/{OVERFLOW}"
            c = self.classes[key] = ClassCounters(ingress, task)
            return c
        c = self.classes[key] = ClassCounters(ingress, task, lat, acc)
        self._ids[key] = class_id(ingress, task, lat, acc)
        return c

    def window(self, since: int = 0) -> StatsWindow:
        now = self.clock()
        base_t, base = self._snapshots.get(since, (self.started, {}))
        out = {self._ids[k]: c.minus(base.get(k)) for k, c in self.classes.items()}
        cursor = self._next_cursor
        self._next_cursor += 1
        self._snapshots[cursor] = (now, {k: c.copy() for k, c in self.classes.items()})
        while len(self._snapshots) > MAX_SNAPSHOTS:
            self._snapshots.popitem(last=False)
        return StatsWindow(cursor, max(now - base_t, 1e-9), out)
