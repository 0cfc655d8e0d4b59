"""Operating a running network, wherever it runs: apply a plan in phases, read status and stats.

The launcher starts and stops local processes; everything here works on any network
whose nodes' control addresses and token are known (local, in containers, on a cluster),
so the controller, the demo, ``idn apply``/``idn status`` and the benchmarks share it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import grpc

from idn.client import ControlClient
from idn.plan import ApplyResult, Plan, plan_to_dict
from idn.protos import control_pb2 as cpb
from idn.topology import Topology


def apply_order(topology: Topology) -> list[str]:
    """Nodes farthest from the edge first: repositories, then regionals, then ingresses.

    Every node applies make-before-break on its own; pushing to the serving side first
    means that when an ingress switches its routes, the targets it now picks have already
    loaded their variants. (Old targets may unload a moment before the last ingress
    switches; the nodes have no cluster-wide two-phase commit.)
    """
    depth = {nid: max(len(topology.path(nid)) - 1, 0) for nid in topology.nodes}
    return sorted(topology.nodes, key=lambda nid: (depth[nid], nid))


def push_plan(plan: Plan, topology: Topology, addresses: dict[str, str], token: str,
              version: int | None = None, down: set[str] | None = None,
              timeout_s: float | None = 30.0) -> tuple[int, list[ApplyResult]]:
    """Apply ``plan`` to every node, re-versioned to ``version`` or max(node versions) + 1.

    Re-versioning makes a freshly solved plan (which always starts at version 1) newer
    than whatever the nodes run; the caller reports the version it got. The change runs
    in three passes over all nodes — PREPARE (load), COMMIT (switch routing), CLEANUP
    (unload) — so that no ingress routes by the old plan to a variant already unloaded
    and no node routes by the new plan to a variant not yet loaded.

    ``down`` (the controller's way): nodes in it are skipped, and a node that stops
    answering in any phase (UNAVAILABLE, DEADLINE_EXCEEDED) is added to it and skipped
    from then on instead of failing the change: the live nodes still get the plan, and
    the caller re-plans without the dead one. Without ``down`` any failure raises.
    """
    phase = cpb.ApplyPlanRequest
    order = [nid for nid in apply_order(topology) if down is None or nid not in down]
    clients = {nid: ControlClient(addresses[nid], token, timeout=timeout_s) for nid in order}

    def each(call, nodes: list[str]) -> dict:
        out = {}
        for nid in nodes:
            if down is not None and nid in down:
                continue
            try:
                out[nid] = call(clients[nid])
            except grpc.RpcError as e:
                if down is None or e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                down.add(nid)
        return out

    try:
        if version is None:
            versions = each(lambda c: c.info().plan_version, order)
            version = max(versions.values(), default=0) + 1
        doc = json.dumps(plan_to_dict(plan.with_version(version)))
        prepared = each(lambda c: c.apply_plan(doc, phase.PREPARE), order)
        each(lambda c: c.apply_plan(doc, phase.COMMIT), list(prepared))
        cleaned = each(lambda c: c.apply_plan(doc, phase.CLEANUP), list(prepared))
        results = [ApplyResult(version, tuple(prepared[nid].loaded),
                               tuple(cleaned[nid].unloaded) if nid in cleaned else (),
                               tuple(prepared[nid].kept), node=nid)
                   for nid in order if nid in prepared and (down is None or nid not in down)]
        return version, results
    finally:
        for c in clients.values():
            c.close()


@dataclass(frozen=True)
class NodeStatus:
    node: str
    tier: str
    address: str
    ready: bool
    plan_version: int | None
    variants: tuple[str, ...]
    rate_rps: float
    classes: dict[str, float]  # class key -> requests/s over the stats window
    error: str | None = None


def node_statuses(topology: Topology, addresses: dict[str, str], token: str, window_s: float = 1.0,
                  timeout_s: float = 3.0) -> list[NodeStatus]:
    """Per node: readiness, plan version, loaded variants and request rates over the last ``window_s``.

    Rates come from two GetStats calls ``window_s`` apart (one sleep for all nodes), so
    they show the load now rather than the average since the node started. A node that
    does not answer is reported with its gRPC status, not skipped.
    """
    clients = {nid: ControlClient(addresses.get(nid, n.address), token, timeout=timeout_s)
               for nid, n in topology.nodes.items()}
    try:
        cursors: dict[str, int] = {}
        errors: dict[str, str] = {}
        for nid, c in clients.items():
            try:
                cursors[nid] = c.stats(0).cursor
            except grpc.RpcError as e:
                errors[nid] = f"{e.code().name}: {e.details()}"
        if cursors:
            time.sleep(window_s)
        out = []
        for nid, node in topology.nodes.items():
            c = clients[nid]
            if nid in errors:
                out.append(NodeStatus(nid, node.tier, c.address, False, None, (), 0.0, {}, errors[nid]))
                continue
            try:
                info, stats = c.info(), c.stats(cursors[nid])
            except grpc.RpcError as e:
                out.append(NodeStatus(nid, node.tier, c.address, False, None, (), 0.0, {},
                                      f"{e.code().name}: {e.details()}"))
                continue
            classes = {cs.class_key: cs.rate_rps for cs in stats.classes}
            out.append(NodeStatus(nid, info.tier or node.tier, c.address, info.ready, info.plan_version,
                                  tuple(info.variants), sum(classes.values()), classes))
        return out
    finally:
        for c in clients.values():
            c.close()
