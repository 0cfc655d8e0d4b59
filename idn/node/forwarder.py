"""Forwarding a request one hop: pooled channels, deadline propagation, emulated links.

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
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from idn.node.pacing import Pacer
from idn.protocol import params as P
from idn.protocol.status import DataPlaneError, Status
from idn.protos import grpc_service_pb2 as pb
from idn.protos import grpc_service_pb2_grpc as pb_grpc
from idn.tls import TLSFiles, aio_channel
from idn.topology import Topology

# gRPC codes that mean "the next hop could not answer": the data plane may fall back.
HOP_FAILURES = {Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED}


class HopFailed(DataPlaneError):
    """The next hop was down or too slow (UNAVAILABLE / DEADLINE_EXCEEDED)."""


class Forwarder:
    def __init__(self, node_id: str, topology: Topology, emulate_links: bool, default_timeout_s: float,
                 max_message_bytes: int, tls: TLSFiles | None = None):
        self.node_id = node_id
        self.topology = topology
        self.emulate_links = emulate_links
        self.tls = tls  # the node's own certificate doubles as its client certificate (mTLS)
        self.default_timeout_s = default_timeout_s
        self._options = [("grpc.max_receive_message_length", max_message_bytes),
                         ("grpc.max_send_message_length", max_message_bytes)]
        self._stubs: dict[str, tuple[grpc.aio.Channel, pb_grpc.GRPCInferenceServiceStub]] = {}
        self.pacer = Pacer()

    def stub(self, node: str) -> pb_grpc.GRPCInferenceServiceStub:
        entry = self._stubs.get(node)
        if entry is None:
            ch = aio_channel(self.topology.node(node).address, self.tls, self._options)
            entry = self._stubs[node] = (ch, pb_grpc.GRPCInferenceServiceStub(ch))
        return entry[1]

    def link_delay_s(self, node: str) -> float:
        return self.topology.link_delay_ms(self.node_id, node) / 1000.0 if self.emulate_links else 0.0

    def transfer_s(self, node: str, nbytes: int) -> float:
        """Emulated time for ``nbytes`` to cross the link to ``node`` (0 without emulation or bandwidth)."""
        if not self.emulate_links:
            return 0.0
        bw = self.topology.link_bandwidth_mbps(self.node_id, node)
        return 0.0 if bw is None else nbytes * 8.0 / (bw * 1e6)

    async def forward(self, next_hop: str, request: pb.ModelInferRequest, deadline: float | None,
                      target: str | None) -> pb.ModelInferResponse:
        if deadline is None:
            deadline = time.monotonic() + self.default_timeout_s
        if target:
            request.parameters[P.TARGET].string_param = target
        request.parameters[P.VIA].string_param = self.node_id
        delay = self.link_delay_s(next_hop)
        out_s = delay + (self.transfer_s(next_hop, request.ByteSize()) if self.emulate_links else 0.0)
        await self._traverse(next_hop, out_s, deadline, "towards")
        remaining = deadline - time.monotonic()
        try:
            resp = await self.stub(next_hop).ModelInfer(request, timeout=remaining)
        except grpc.aio.AioRpcError as e:
            status = Status[e.code().name] if e.code().name in Status.__members__ else Status.INTERNAL
            cls = HopFailed if status in HOP_FAILURES else DataPlaneError
            raise cls(f"via {next_hop}: {e.details() or e.code().name}", status) from None
        back_s = delay + (self.transfer_s(next_hop, resp.ByteSize()) if self.emulate_links else 0.0)
        await self._traverse(next_hop, back_s, deadline, "back from")
        hops = resp.parameters[P.HOPS]
        hops.int64_param = hops.int64_param + 1
        return resp

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

    async def close(self) -> None:
        for ch, _ in self._stubs.values():
            await ch.close()
        self._stubs.clear()


def response_facts(resp: Any) -> tuple[str, str]:
    """(node, variant) that served a forwarded response, for the ingress's stats."""
    p = resp.parameters
    node = p[P.NODE].string_param if P.NODE in p else "?"
    variant = p[P.VARIANT].string_param if P.VARIANT in p else resp.model_name
    return node, variant
