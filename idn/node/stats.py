"""Per request class counters at the ingress: the demand a controller measures.

Counters only grow; ``GetStats(since=cursor)`` answers with the difference between
now and the snapshot taken when that cursor was handed out, so several readers can
poll at their own pace. A bounded number of snapshots is kept; an unknown or
expired cursor reads as "since the node started".
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from idn.demand import class_id

BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, float("inf"))
MAX_SNAPSHOTS = 64


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
        key = (ingress, task, max_latency_ms, min_accuracy)
        c = self.classes.get(key)
        if c is None:
            c = self.classes[key] = ClassCounters(ingress, task, max_latency_ms, min_accuracy)
            self._ids[key] = class_id(ingress, task, max_latency_ms, min_accuracy)
        c.requests += 1
        if not ok:
            c.errors += 1
            return
        c.degraded += degraded
        c.sum_ms += latency_ms
        c.counts[bisect.bisect_left(BOUNDS_MS, latency_ms)] += 1
        if served_by:
            c.served_by[served_by] += 1

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
