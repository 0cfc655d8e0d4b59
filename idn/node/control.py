"""gRPC adapter for ``idn.v1.NodeControl``: node info, plan application, stats.

Every call must carry the node's control token (``authorization: Bearer <token>``);
a node started without a token refuses control calls rather than running open.
The comparison is constant-time; refusals are logged, rate-limited (``Authority``).
"""

from __future__ import annotations

import json
import logging

import grpc

from idn.node.authority import Authority
from idn.node.deployment import Deployment, Phase
from idn.node.handlers import answers_errors
from idn.node.stats import BOUNDS_MS
from idn.plan import plan_to_dict
from idn.protocol.status import InvalidInput
from idn.protos import control_pb2 as cpb
from idn.protos import control_pb2_grpc as cpb_grpc
from idn.topology import Node

log = logging.getLogger("idn.node")


class ControlServicer(cpb_grpc.NodeControlServicer):
    def __init__(self, deployment: Deployment, node: Node | None, address: str, authority: Authority):
        self.deployment = deployment
        self.node = node
        self.address = address
        self.authority = authority

    def _authorize(self, context: grpc.aio.ServicerContext, method: str) -> None:
        """Raises UNAUTHENTICATED (answered by ``answers_errors``) unless the call carries the token."""
        self.authority.check_control(method, context.invocation_metadata(), context.peer())

    @answers_errors
    async def GetNodeInfo(self, request, context):
        self._authorize(context, "GetNodeInfo")
        dp = self.deployment.dataplane
        n = self.node
        return cpb.NodeInfo(
            id=dp.node_id, tier=n.tier if n else "", address=self.address,
            mem_mb=n.mem_mb if n else 0.0, cores=n.cores if n else 0.0,
            variants=sorted(dp.store.loaded), plan_version=self.deployment.version, ready=dp.ready(),
            hardware_class=(n.hardware_class or "") if n else "", slowdown=dp.settings.slowdown,
            repository=bool(n.repository) if n else True)

    @answers_errors
    async def ApplyPlan(self, request, context):
        self._authorize(context, "ApplyPlan")
        try:
            phase = Phase(request.phase)
        except ValueError:
            raise InvalidInput(f"unknown apply phase {request.phase}; use one of "
                               f"{', '.join(f'{p.value} ({p.name})' for p in Phase)}") from None
        res = await self.deployment.apply(self.deployment.parse(request.plan_json), phase=phase)
        return cpb.ApplyPlanResponse(version=res.version, loaded=res.loaded, unloaded=res.unloaded, kept=res.kept)

    @answers_errors
    async def GetPlan(self, request, context):
        self._authorize(context, "GetPlan")
        plan = self.deployment.plan
        if plan is None:
            return cpb.PlanState(version=0, plan_json="")
        return cpb.PlanState(version=plan.version, plan_json=json.dumps(plan_to_dict(plan)))

    @answers_errors
    async def GetStats(self, request, context):
        self._authorize(context, "GetStats")
        w = self.deployment.dataplane.stats.window(request.since)
        out = cpb.Stats(cursor=w.cursor, window_s=w.window_s, plan_version=self.deployment.version)
        for key, c in sorted(w.classes.items()):
            ok = c.requests - c.errors
            out.classes.add(class_key=key, ingress=c.ingress, task=c.task, requests=c.requests, errors=c.errors,
                            degraded=c.degraded, rate_rps=c.requests / w.window_s,
                            mean_ms=c.sum_ms / ok if ok else 0.0, bounds_ms=[b if b != float("inf") else 1e300
                                                                             for b in BOUNDS_MS],
                            counts=c.counts, served_by=dict(c.served_by), max_latency_ms=c.max_latency_ms,
                            min_accuracy=c.min_accuracy)
        return out
