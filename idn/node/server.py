"""The node daemon: a grpc.aio server hosting the data plane, health and reflection.

Lifecycle: bind, load every configured variant (readiness and the health service
turn SERVING only when all are in), log one line with address and variants, serve.
On SIGTERM/SIGINT: stop accepting (readiness false, health NOT_SERVING), give
in-flight requests ``grace_s`` to finish, exit 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from idn.catalog import Catalog
from idn.node.authority import Authority, ModelControl
from idn.node.control import ControlServicer
from idn.node.dataplane import DataPlane
from idn.node.deployment import Deployment
from idn.node.forwarder import Forwarder
from idn.node.grpc_service import InferenceServicer, add_servicer
from idn.node.memory import MemoryTrimmer
from idn.node.metrics import NodeMetrics
from idn.node.router import RoutingTable
from idn.node.settings import NodeSettings
from idn.node.store import VariantStore
from idn.plan import Plan
from idn.protos import control_pb2 as cpb
from idn.protos import control_pb2_grpc as cpb_grpc
from idn.protos import grpc_service_pb2 as pb
from idn.tls import TLSFiles
from idn.topology import Node, Topology

log = logging.getLogger("idn.node")

INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
CONTROL_SERVICE = cpb.DESCRIPTOR.services_by_name["NodeControl"].full_name


@dataclass
class NodeConfig:
    listen: str = "127.0.0.1:0"
    node_id: str = ""
    models: dict[str, Path] = field(default_factory=dict)  # NAME -> PATH, loaded at start
    catalog: Catalog | None = None
    variants: list[str] = field(default_factory=list)  # catalog variants loaded at start
    settings: NodeSettings = field(default_factory=NodeSettings)
    topology: Topology | None = None  # with node_id: this node's place in the network
    plan: Plan | None = None  # applied at start when no persisted plan exists
    state_dir: Path | None = None  # where the last applied plan is persisted
    control_token: str | None = None
    # Triton's --model-control-mode: NONE refuses RepositoryModelLoad/Unload to everyone,
    # EXPLICIT allows them to callers with the control token (and needs one).
    model_control: ModelControl = ModelControl.NONE
    # Memory the repository may fill when it loads on demand; default: the topology's mem_mb.
    # A node without either never loads on demand.
    mem_mb: float | None = None
    emulate: bool = False  # emulation on one machine: link delays and the node's compute slowdown
    tls: TLSFiles | None = None  # serve over TLS (mutual when it has a CA); forwards use the same files
    metrics_port: int | None = None  # Prometheus /metrics over HTTP (0 = a free port; None = off)

    @property
    def node(self) -> Node | None:
        return self.topology.node(self.node_id) if self.topology is not None else None

    @property
    def memory_bytes(self) -> int | None:
        mb = self.mem_mb if self.mem_mb is not None else (self.node.mem_mb if self.node is not None else None)
        return int(mb * 2**20) if mb is not None else None


def grpc_options(settings: NodeSettings) -> list[tuple[str, int]]:
    """The transport reads messages up to twice the node's limit, so that the data plane can
    refuse the ones over the limit with INVALID_ARGUMENT naming it; past twice the limit
    gRPC itself refuses them (RESOURCE_EXHAUSTED) without reading them into memory.

    SO_REUSEPORT stays off: a second node on a busy port must fail, not silently split
    the traffic. ``IDN_SO_REUSEPORT=1`` turns it on for the multi-process prototype that
    ``benchmarks/node.py`` measures (README, "Which multi-core option, and why"): N
    processes on one port, each with its own plan, stats and admission bound, which is
    why it is not a supported mode."""
    return [
        ("grpc.max_receive_message_length", 2 * settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 1 if os.environ.get("IDN_SO_REUSEPORT") == "1" else 0),
    ]


class NodeServer:
    def __init__(self, config: NodeConfig):
        self.config = config
        self.authority = Authority(config.control_token, config.model_control)  # refuses explicit without a token
        node = config.node
        s = dataclasses.replace(config.settings, slowdown=node.slowdown if (node is not None and config.emulate)
                                else config.settings.slowdown)
        self.executor = ThreadPoolExecutor(max_workers=s.workers, thread_name_prefix="idn-ort")
        self.store = VariantStore(s, self.executor, sources=config.models, catalog=config.catalog,
                                  hardware_class=node.hardware_class if node is not None else None)
        forwarder = None
        if config.topology is not None:
            forwarder = Forwarder(config.node_id, config.topology, config.emulate, s.forward_timeout_s,
                                  s.max_message_bytes, tls=config.tls, probe_interval_s=s.probe_interval_s,
                                  probe_timeout_s=s.probe_timeout_s, hop_share=s.hop_share,
                                  stream=s.forward_stream, stream_cap=s.stream_max_in_flight)
        self.dataplane = DataPlane(
            self.store, s, node_id=config.node_id,
            router=RoutingTable(config.node_id, config.topology, config.catalog), forwarder=forwarder,
            memory_bytes=config.memory_bytes)
        self.deployment = Deployment(config.node_id, config.topology, config.catalog, self.dataplane,
                                     config.state_dir, pinned={*config.models, *config.variants})
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self.trimmer = MemoryTrimmer()
        self.server: grpc.aio.Server | None = None
        self.port: int = 0
        self.metrics_port: int | None = None
        self._stopped = asyncio.Event()

    @property
    def address(self) -> str:
        host = self.config.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        s = self.config.settings
        self.server = grpc.aio.server(options=grpc_options(s))
        add_servicer(InferenceServicer(self.dataplane, self.authority, s.stream_max_in_flight), self.server,
                     s.max_message_bytes, self.trimmer.saw)
        cpb_grpc.add_NodeControlServicer_to_server(
            ControlServicer(self.deployment, self.config.node, self.config.listen, self.authority), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (INFERENCE_SERVICE, CONTROL_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self.server)
        if self.config.tls is not None:
            self.port = self.server.add_secure_port(self.config.listen, self.config.tls.server_credentials())
        else:
            self.port = self.server.add_insecure_port(self.config.listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.listen}")
        if not self.dataplane.node_id:  # a standalone node is known by its address
            self.dataplane.node_id = self.address
        if self.config.metrics_port is not None:
            m = NodeMetrics(self.dataplane.node_id)
            m.plan_version.set_function(lambda: self.deployment.version)
            m.loaded.set_function(lambda: len(self.store.loaded))
            self.metrics_port = m.serve(self.config.metrics_port, self.config.listen.rsplit(":", 1)[0])
            self.dataplane.metrics = m
        await self._set_health(False)
        await self.server.start()
        self.trimmer.start()
        await self.store.load_all([*self.config.models, *self.config.variants])
        restored = await self.deployment.restore()
        if restored is None and self.config.plan is not None:
            await self.deployment.apply(self.config.plan, check_version=False)
        await self._set_health(self.dataplane.ready())
        if self.dataplane.forwarder is not None:
            self.dataplane.forwarder.start()
        log.info("idn node %s listening on %s serving %s (plan v%d)%s; repository control %s", self.dataplane.node_id,
                 self.address, sorted(self.store.loaded) or "no variants", self.deployment.version,
                 f", metrics on :{self.metrics_port}/metrics" if self.metrics_port else "",
                 "explicit (control token)" if self.config.model_control is ModelControl.EXPLICIT else "off")

    async def _set_health(self, serving: bool) -> None:
        st = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for svc in ("", INFERENCE_SERVICE):
            r = self.health.set(svc, st)
            if asyncio.iscoroutine(r):
                await r

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish within the grace period."""
        if self.server is None or self._stopped.is_set():
            return
        self.dataplane.accepting = False
        await self._set_health(False)
        await self.server.stop(self.config.settings.grace_s if grace is None else grace)
        await self.trimmer.stop()
        if self.dataplane.forwarder is not None:
            await self.dataplane.forwarder.close()
        if self.dataplane.metrics is not None:
            self.dataplane.metrics.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._stopped.set()

    async def wait(self) -> None:
        await self._stopped.wait()

    def _schedule_signal(self, sig: signal.Signals) -> None:
        asyncio.ensure_future(self._on_signal(sig))

    async def serve_forever(self) -> None:
        """Start, install SIGTERM/SIGINT handlers, and return after a clean shutdown."""
        loop = asyncio.get_running_loop()
        await self.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, functools.partial(self._schedule_signal, sig))
        await self.wait()

    async def _on_signal(self, sig: signal.Signals) -> None:
        log.info("received %s: draining in-flight requests (grace %.1fs)", sig.name, self.config.settings.grace_s)
        await self.stop()
