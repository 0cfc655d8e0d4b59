"""Forwarding a request one hop: pooled channels, deadline propagation, emulated links, failover.

The request travels as the protobuf it arrived as (tensors are never decoded on
intermediate nodes), with ``idn.target`` set once the ingress chose the serving
node and variant. The gRPC deadline is what remains of the caller's, minus the time
spent here; a caller without a deadline gets ``forward_timeout_s`` so that nothing
hangs. With link emulation on, the link's one-way delay is slept before sending and
again when the answer comes back, each time plus the transfer time of the bytes that
really cross the link (the serialized request on the way out, the response on the way
back: ``bytes x 8 / bandwidth_mbps``, for links that declare a bandwidth); if the
remaining deadline cannot cover it, the request fails with DEADLINE_EXCEEDED without
being sent.

Faults (README "Network behaviour"):

* Every node this one forwards to is health-checked (:mod:`idn.node.neighbours`); a
  request whose route crosses a node known to be down is never sent into it: it goes
  where :meth:`RoutingTable.failover` says (another route, backup links included; the
  next node up the path that serves the task), carrying ``idn.avoid`` so that the
  nodes after this one route around the same nodes, and comes back marked
  ``idn.rerouted``. A forward that finds its next hop unreachable marks it down and
  does the same, within what is left of the deadline. When nothing else is left, not
  even a local answer, the normal route is tried anyway before failing (health checks
  can mistake a node starved of CPU for a dead one; a dead one refuses at once).
* Requests in flight to a neighbour that goes down are failed over at once.
* With ``stream`` (the default; ``--no-forward-stream`` turns it off), every forward to a
  neighbour travels on a long-lived ``ModelStreamInfer`` stream to it
  (:class:`idn.protocol.stream.InferStream`) instead of a ``ModelInfer`` call of its own:
  measured the cheaper hop (README "Streaming"). The deadline travels as
  ``idn.timeout_us``, an error answer maps to the same status as a unary call's, a
  stream that breaks fails its requests as a dropped connection would (and the next
  forward opens a new one), and a health change replaces the streams with the channel.
  One difference: a forward given up on is not cancelled downstream (a stream cannot
  cancel one request); the next node finishes it, within its bound per stream.
* A hop that accepted a request but does not answer is given up on after
  ``hop_share`` of the remaining deadline when the caller has a local fallback (a unary
  forward is cancelled downstream), rather than after all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import grpc

from idn.node.neighbours import NeighbourHealth
from idn.node.pacing import Pacer
from idn.protocol import params as P
from idn.protocol.failures import RECONNECT_OPTIONS, unreachable
from idn.protocol.status import DataPlaneError, Status
from idn.protocol.stream import InferStream
from idn.protos import grpc_service_pb2 as pb
from idn.protos import grpc_service_pb2_grpc as pb_grpc
from idn.tls import TLSFiles, aio_channel
from idn.topology import Topology

if TYPE_CHECKING:
    from idn.node.router import Resolution, RoutingTable

log = logging.getLogger("idn.node")

# gRPC codes that mean "the next hop could not answer": the data plane may fall back.
HOP_FAILURES = {Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED}
MAX_REROUTES = 3  # alternatives tried for one request before giving up on forwarding it


class HopFailed(DataPlaneError):
    """The next hop was down or too slow (UNAVAILABLE / DEADLINE_EXCEEDED).

    ``unreachable``: the hop itself could not be reached (refused, connection lost,
    found down by health checks), as opposed to answering an error of its own."""

    def __init__(self, message: str, status: Status | None = None, hop: str | None = None,
                 unreachable: bool = False):
        super().__init__(message, status)
        self.hop = hop
        self.unreachable = unreachable


class _Flight:
    """One forwarded call, so that it can be abandoned (neighbour down, or too slow)."""

    __slots__ = ("call", "why", "down")

    def __init__(self, call: Any):
        self.call = call
        self.why: str | None = None
        self.down = False

    def abandon(self, why: str, down: bool = False) -> None:
        if self.why is None:
            self.why, self.down = why, down
            self.call.cancel()


class Forwarder:
    def __init__(self, node_id: str, topology: Topology, emulate_links: bool, default_timeout_s: float,
                 max_message_bytes: int, tls: TLSFiles | None = None, probe_interval_s: float = 0.2,
                 probe_timeout_s: float = 0.5, hop_share: float = 0.5, stream: bool = False,
                 stream_cap: int = 64):
        self.node_id = node_id
        self.topology = topology
        self.emulate_links = emulate_links
        self.tls = tls  # the node's own certificate doubles as its client certificate (mTLS)
        self.default_timeout_s = default_timeout_s
        self.hop_share = hop_share
        self._options = [("grpc.max_receive_message_length", max_message_bytes),
                         ("grpc.max_send_message_length", max_message_bytes), *RECONNECT_OPTIONS,
                         # this node's view of a neighbour is its own, even when several nodes share
                         # a process (tests): no connection state shared with other channels
                         ("grpc.use_local_subchannel_pool", 1)]
        self._stubs: dict[str, tuple[grpc.aio.Channel, pb_grpc.GRPCInferenceServiceStub]] = {}
        self._emulation: dict[str, tuple[float, float]] = {}
        self._inflight: dict[str, set[_Flight]] = {}
        # stream: one ModelStreamInfer stream per neighbour carries every forward to it
        # (requests carry idn.timeout_us for their deadline); else one ModelInfer call each.
        # A neighbour holds at most stream_cap requests per stream (it stops reading past it,
        # and would hold up every forward behind them): a stream that has that many in flight
        # gets a sibling instead.
        self.stream = stream
        self.stream_cap = stream_cap
        self._streams: dict[str, list[InferStream]] = {}
        self.unary_only: set[str] = set()  # neighbours found without ModelStreamInfer
        self.pacer = Pacer()
        self.health = NeighbourHealth(node_id, self.channel, self._new_channel, interval_s=probe_interval_s,
                                      timeout_s=probe_timeout_s)
        self.health.on_change(self._on_health)
        self._retiring: set[asyncio.Task] = set()
        self.rerouted = 0  # requests sent around a down node
        self.abandoned = 0  # calls given up on (neighbour went down, or no answer in time)

    def start(self) -> None:
        """Start health-checking the neighbours (needs the running event loop)."""
        self.health.watch(self.topology.neighbours(self.node_id, backup=True))

    def _new_channel(self, node: str) -> grpc.aio.Channel:
        return aio_channel(self.topology.node(node).address, self.tls, self._options)

    def channel(self, node: str) -> grpc.aio.Channel:
        entry = self._stubs.get(node)
        if entry is None:
            ch = self._new_channel(node)
            entry = self._stubs[node] = (ch, pb_grpc.GRPCInferenceServiceStub(ch))
            self.health.watch([node])  # a node reached directly while routing around a dead one
        return entry[0]

    def stub(self, node: str) -> pb_grpc.GRPCInferenceServiceStub:
        entry = self._stubs.get(node)
        if entry is None:
            self.channel(node)
            entry = self._stubs[node]
        return entry[1]

    def _stream(self, node: str) -> InferStream:
        """An open stream to ``node`` with room for one more request (a new one when none has)."""
        streams = self._streams.get(node)
        if streams is None:
            streams = self._streams[node] = []
        elif any(st.broken is not None for st in streams):
            streams[:] = [st for st in streams if st.broken is None]
        for st in streams:
            if st.in_flight < self.stream_cap:
                return st
        st = InferStream(self.channel(node))
        streams.append(st)
        return st

    def _link(self, node: str) -> tuple[float, float]:
        """Emulated (one-way delay s, seconds per byte) of a direct connection to ``node``."""
        e = self._emulation.get(node)
        if e is None:
            links = self.topology.emulated_links(self.node_id, node)
            e = self._emulation[node] = (sum(d for d, _ in links) / 1000.0,
                                         sum(8.0 / (bw * 1e6) for _, bw in links if bw))
        return e

    def link_delay_s(self, node: str) -> float:
        return self._link(node)[0] if self.emulate_links else 0.0

    def transfer_s(self, node: str, nbytes: int) -> float:
        """Emulated time for ``nbytes`` to cross the link to ``node`` (0 without emulation or bandwidth)."""
        return nbytes * self._link(node)[1] if self.emulate_links else 0.0

    # -- one hop ----------------------------------------------------------------------------

    async def forward(self, next_hop: str, request: pb.ModelInferRequest, deadline: float | None,
                      target: str | None, fallback: bool = False) -> pb.ModelInferResponse:
        """Send ``request`` to ``next_hop`` and return its answer. ``fallback``: the caller can
        answer locally, so a hop that does not answer is given up on after ``hop_share`` of
        the remaining deadline."""
        if deadline is None:
            deadline = time.monotonic() + self.default_timeout_s
        if target:
            request.parameters[P.TARGET].string_param = target
        request.parameters[P.VIA].string_param = self.node_id
        emulate = self.emulate_links
        if emulate:
            delay, per_byte = self._link(next_hop)
            await self._traverse(next_hop, delay + request.ByteSize() * per_byte, deadline, "towards")
        remaining = deadline - time.monotonic()
        call: Any
        streamed = self.stream and next_hop not in self.unary_only
        if streamed:
            request.parameters[P.TIMEOUT_US].int64_param = int(remaining * 1e6)
            call = asyncio.ensure_future(self._stream(next_hop).send(request, remaining))
        else:
            call = self.stub(next_hop).ModelInfer(request, timeout=remaining)
        flight = _Flight(call)
        flights = self._inflight.get(next_hop)
        if flights is None:
            flights = self._inflight[next_hop] = set()
        flights.add(flight)
        timer = None
        if fallback and self.hop_share < 1.0:
            give_up = remaining * self.hop_share
            timer = asyncio.get_running_loop().call_later(
                give_up, flight.abandon, f"no answer within {give_up * 1000:.0f} ms "
                                         f"({self.hop_share:.0%} of the {remaining * 1000:.0f} ms left)")
        try:
            resp = await call
        except asyncio.CancelledError:
            if flight.why is None:
                raise  # this request itself was cancelled
            self.abandoned += 1
            raise HopFailed(f"via {next_hop}: {flight.why}",
                            Status.UNAVAILABLE if flight.down else Status.DEADLINE_EXCEEDED,
                            next_hop, flight.down) from None
        except grpc.RpcError as e:  # AioRpcError, or StreamAnswerError: the same code() and details()
            if streamed and e.code() == grpc.StatusCode.UNIMPLEMENTED and not getattr(e, "answered", False):
                # A neighbour without ModelStreamInfer (an older node, mid-upgrade): unary calls
                # to it from now on (until it restarts), and this request again that way.
                self.unary_only.add(next_hop)
                log.warning("%s does not serve ModelStreamInfer (%s): forwarding to it with ModelInfer calls",
                            next_hop, e.details())
                request.parameters.pop(P.TIMEOUT_US, None)
                return await self.forward(next_hop, request, deadline, target, fallback)
            name = e.code().name
            status = Status[name] if name in Status.__members__ else Status.INTERNAL
            details = e.details() or name
            lost = status is Status.UNAVAILABLE and unreachable(details)
            if lost:
                self.health.mark_down(next_hop, f"{name}: {details}")
            cls = HopFailed if status in HOP_FAILURES else DataPlaneError
            err = cls(f"via {next_hop}: {details}", status)
            if isinstance(err, HopFailed):
                err.hop, err.unreachable = next_hop, lost
            raise err from None
        finally:
            flights.discard(flight)
            if timer is not None:
                timer.cancel()
        if emulate:
            await self._traverse(next_hop, delay + resp.ByteSize() * per_byte, deadline, "back from")
        hops = resp.parameters[P.HOPS]
        hops.int64_param = hops.int64_param + 1
        return resp

    def _on_health(self, node: str, up: bool, reason: str) -> None:
        self.unary_only.discard(node)  # it may come back as another version
        # The next forward opens a fresh stream (on the fresh channel); what was in flight on
        # the old ones is abandoned below (down) or there is none (up).
        for stream in self._streams.pop(node, ()):
            closing = asyncio.get_running_loop().create_task(stream.close())
            self._retiring.add(closing)
            closing.add_done_callback(self._retiring.discard)
        if not up:
            for f in list(self._inflight.get(node, ())):
                f.abandon(f"{node} went down while the request was there ({reason})", down=True)
            return
        # Back up: a fresh data channel, rather than one that may sit out gRPC's reconnect backoff.
        # (Nothing should be in flight on the old one — requests avoid a down node — but any
        # call that is gets the longest a forward may take to finish.)
        old = self._stubs.pop(node, None)
        self.channel(node)
        if old is not None:
            task = asyncio.get_running_loop().create_task(old[0].close(grace=self.default_timeout_s))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _traverse(self, node: str, delay: float, deadline: float, direction: str) -> None:
        if delay <= 0:
            return
        remaining = deadline - time.monotonic()
        if remaining <= delay:
            await asyncio.sleep(max(remaining, 0))
            raise HopFailed(f"deadline exceeded: the link {direction} {node} takes "
                            f"{delay * 1000:.1f} ms one way (delay + transfer), only "
                            f"{max(remaining, 0) * 1000:.1f} ms of the deadline remained", Status.DEADLINE_EXCEEDED)
        await self.pacer.sleep(delay)

    # -- routing around failures --------------------------------------------------------------

    async def send(self, request: pb.ModelInferRequest, decision: Resolution, router: RoutingTable, model: str,
                   deadline: float | None, fallback: bool = False) -> pb.ModelInferResponse:
        """Forward along ``decision``; if its route crosses a node that is down (known, carried
        in ``idn.avoid``, or found unreachable now), route around it (``router.failover``)."""
        assert decision.next_hop is not None
        if deadline is None:
            deadline = time.monotonic() + self.default_timeout_s
        if not self.health.down and P.AVOID not in request.parameters:
            try:
                return await self.forward(decision.next_hop, request, deadline, decision.target, fallback)
            except HopFailed as e:
                if not e.unreachable:
                    raise
        return await self._around(request, decision, router, model, deadline, fallback)

    def _crosses(self, decision: Resolution, avoid: frozenset[str]) -> str | None:
        """The first down node on the normal route of ``decision`` (None: the route is clear)."""
        if decision.next_hop in avoid:
            return decision.next_hop
        topo = self.topology
        route = topo.route(self.node_id, decision.node) if decision.node else topo.path(self.node_id)
        return next((n for n in route[1:] if n in avoid), None)

    async def _around(self, request: pb.ModelInferRequest, decision: Resolution, router: RoutingTable, model: str,
                      deadline: float, fallback: bool) -> pb.ModelInferResponse:
        carried = request.parameters[P.AVOID].string_param if P.AVOID in request.parameters else ""
        avoid = (set(self.health.down) | {n for n in carried.split(",") if n in self.topology.nodes})
        avoid.discard(self.node_id)
        current, dead, last = decision, None, None
        tried: set[str] = set()
        last_resort = False
        for _ in range(MAX_REROUTES + 1):
            frozen = frozenset(avoid)
            blocked = None if last_resort else self._crosses(current, frozen)
            if blocked is not None:
                dead = dead or blocked
                alternatives = [a for a in router.failover(model, decision, frozen) if a.next_hop not in tried]
                if alternatives:
                    current = alternatives[0]
                    request.parameters[P.AVOID].string_param = ",".join(sorted(avoid))
                elif not fallback and decision.next_hop not in tried:
                    # Nothing else, not even a local answer: try the normal route anyway. Health
                    # checks can be wrong (a node starved of CPU, not dead); a dead one refuses at once.
                    current, last_resort = decision, True
                else:
                    break
            assert current.next_hop is not None
            tried.add(current.next_hop)
            try:
                resp = await self.forward(current.next_hop, request, deadline, current.target, fallback)
            except HopFailed as e:
                if not e.unreachable:
                    raise
                last, last_resort = e, False
                avoid.add(current.next_hop)
                continue
            if current is not decision:
                self.rerouted += 1
                resp.parameters[P.REROUTED].string_param = dead or ""
            return resp
        dead = dead or (last.hop if last else decision.next_hop)
        why = self.health.reason.get(dead or "", last.message if last else "down")
        where = f"{decision.node}/{decision.variant}" if decision.node else "the repository"
        raise HopFailed(f"via {dead}: {dead} is down ({why}); no other route to {where} and no live node "
                        f"further up serves {model!r}", Status.UNAVAILABLE, dead, True)

    async def close(self) -> None:
        await self.health.stop()
        for t in list(self._retiring):  # shutting down: no grace left for old channels' calls
            t.cancel()
        for t in list(self._retiring):
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for streams in self._streams.values():
            for st in streams:
                await st.close()
        self._streams.clear()
        for ch, _ in self._stubs.values():
            await ch.close()
        self._stubs.clear()


def response_facts(resp: Any) -> tuple[str, str]:
    """(node, variant) that served a forwarded response, for the ingress's stats."""
    p = resp.parameters
    node = p[P.NODE].string_param if P.NODE in p else "?"
    variant = p[P.VARIANT].string_param if P.VARIANT in p else resp.model_name
    return node, variant
