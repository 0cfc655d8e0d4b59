"""Is the next hop up? Per-neighbour health from probes and from forwarding errors.

A node must not learn that a neighbour died by letting each request time out. Every
node it forwards to (its topology neighbours, backup links included, and any node it
reached directly while routing around a dead one) is probed with the standard gRPC
health check (``grpc.health.v1.Health/Check``) every ``interval_s`` over the same
pooled channel the data travels on, with a ``timeout_s`` deadline:

* SERVING: up. A neighbour that was down is used again from this moment.
* refused, reset, NOT_SERVING (starting or draining): down at once.
* no answer within ``timeout_s`` (a hung process: the kernel still accepts the
  connection, nothing answers): down after ``misses`` probes in a row.

Forwarding errors that say the neighbour itself is unreachable mark it down at once
(``mark_down``), between probes. Listeners (the forwarder) hear every change, so
requests in flight to a neighbour that goes down are failed over immediately instead
of waiting for their deadline.

Coming back: gRPC waits between reconnection attempts with an exponential backoff
(1 s growing to 120 s by default), so a channel to a node that was down for a while
would notice it is back only seconds later. While a node is down it is therefore
probed over a fresh channel each time (no backoff to wait out), and when a probe
succeeds the forwarder replaces its data channel with a fresh one too: a neighbour
is used again within ``interval_s`` (plus one connection) of being ready. The data
channels also cap their own backoff (:data:`idn.protocol.failures.RECONNECT_OPTIONS`)
for blips between probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

log = logging.getLogger("idn.node")

Listener = Callable[[str, bool, str], None]  # (node, up, reason)


class NeighbourHealth:
    """Up/down per neighbour. ``down`` is read on the request path (a set lookup)."""

    def __init__(self, node_id: str, channel: Callable[[str], grpc.aio.Channel],
                 fresh: Callable[[str], grpc.aio.Channel] | None = None, interval_s: float = 0.2,
                 timeout_s: float = 0.5, misses: int = 2, clock: Callable[[], float] = time.monotonic):
        self.node_id = node_id
        self.channel = channel  # the pooled data channel to a node (created on first use)
        self.fresh = fresh  # a new channel, for probing a node that is down (closed after the probe)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.misses = misses
        self.clock = clock
        self.down: set[str] = set()
        self.since: dict[str, float] = {}  # node -> when its current state began
        self.reason: dict[str, str] = {}
        self.changes = 0
        self.seen_up: set[str] = set()  # answered at least once: only losing one of those is news
        self._listeners: list[Listener] = []
        self._missed: dict[str, int] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._stopping = False

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def is_up(self, node: str) -> bool:
        return node not in self.down

    # -- state changes --------------------------------------------------------------------

    def mark_down(self, node: str, reason: str) -> None:
        if node in self.down:
            return
        now = self.clock()
        up_for = now - self.since.get(node, now)
        self.down.add(node)
        self.since[node] = now
        self.reason[node] = reason
        self.changes += 1
        if node in self.seen_up:
            log.warning("neighbour %s down (%s); routing around it (it was up for %.1f s)", node, reason, up_for)
        else:  # at start-up, neighbours come up in any order (DNS may not even know them yet)
            log.info("neighbour %s not reachable yet (%s); routing around it until it answers", node, reason)
        self._notify(node, False, reason)
        self.watch([node])

    def mark_up(self, node: str) -> None:
        self._missed[node] = 0
        first = node not in self.seen_up
        self.seen_up.add(node)
        if node not in self.down:
            self.since.setdefault(node, self.clock())
            return
        now = self.clock()
        self.down.discard(node)
        if first:
            log.info("neighbour %s answered after %.2f s; routing through it", node,
                     now - self.since.get(node, now))
        else:
            log.warning("neighbour %s back up after %.2f s down; routing through it again", node,
                        now - self.since.get(node, now))
        self.since[node] = now
        self.reason.pop(node, None)
        self.changes += 1
        self._notify(node, True, "health check SERVING")

    def _notify(self, node: str, up: bool, reason: str) -> None:
        for fn in self._listeners:
            try:
                fn(node, up, reason)
            except Exception:  # a listener's bug must not stop health tracking
                log.exception("neighbour listener failed")

    # -- probing --------------------------------------------------------------------------

    def watch(self, nodes: Iterable[str]) -> None:
        """Probe these nodes from now on (idempotent; needs a running event loop)."""
        if self.interval_s <= 0 or self._stopping:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for n in nodes:
            if n != self.node_id and n not in self._tasks:
                self._tasks[n] = loop.create_task(self._probe_loop(n), name=f"idn-probe-{n}")

    async def probe(self, node: str) -> None:
        """One health check: SERVING marks the node up, anything else counts against it."""
        throwaway = self.fresh(node) if (node in self.down and self.fresh is not None) else None
        stub = health_pb2_grpc.HealthStub(throwaway or self.channel(node))
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(), timeout=self.timeout_s)
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                self._missed[node] = self._missed.get(node, 0) + 1
                if self._missed[node] >= self.misses:
                    self.mark_down(node, f"no answer to {self._missed[node]} health checks of "
                                         f"{self.timeout_s * 1000:.0f} ms")
                return
            self.mark_down(node, f"{code.name}: {e.details()}")
            return
        finally:
            if throwaway is not None:
                await throwaway.close()
        if resp.status == health_pb2.HealthCheckResponse.SERVING:
            self.mark_up(node)
        else:
            self.mark_down(node, f"health {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}")

    async def _probe_loop(self, node: str) -> None:
        while not self._stopping:
            t0 = self.clock()
            try:
                await self.probe(node)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep probing whatever one probe did
                log.exception("health probe of %s failed", node)
            await asyncio.sleep(max(self.interval_s - (self.clock() - t0), 0.0))

    async def stop(self) -> None:
        self._stopping = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
