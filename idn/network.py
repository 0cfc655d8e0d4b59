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
              version: int | None = None) -> tuple[int, list[ApplyResult]]:
    """Apply ``plan`` to every node, re-versioned to ``version`` or max(node versions) + 1.

    Re-versioning makes a freshly solved plan (which always starts at version 1) newer
    than whatever the nodes run; the caller reports the version it got. The change runs
    in three passes over all nodes — PREPARE (load), COMMIT (switch routing), CLEANUP
    (unload) — so that no ingress routes by the old plan to a variant already unloaded
    and no node routes by the new plan to a variant not yet loaded.
    """
    phase = cpb.ApplyPlanRequest
    clients = {nid: ControlClient(addresses[nid], token) for nid in topology.nodes}
    try:
        if version is None:
            version = max(c.info().plan_version for c in clients.values()) + 1
        doc = json.dumps(plan_to_dict(plan.with_version(version)))
        order = apply_order(topology)
        prepared = {nid: clients[nid].apply_plan(doc, phase.PREPARE) for nid in order}
        for nid in order:
            clients[nid].apply_plan(doc, phase.COMMIT)
        cleaned = {nid: clients[nid].apply_plan(doc, phase.CLEANUP) for nid in order}
        results = [ApplyResult(version, tuple(prepared[nid].loaded), tuple(cleaned[nid].unloaded),
                               tuple(prepared[nid].kept), node=nid) for nid in order]
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
