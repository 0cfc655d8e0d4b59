"""Operating a running network, wherever it runs: apply a plan in phases, read status and stats.

The launcher starts and stops local processes; everything here works on any network
whose nodes' control addresses and token are known (local, in containers, on a cluster),
so the controller, the demo, ``idn apply``/``idn status`` and the benchmarks share it.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from idn.client import ControlClient
from idn.plan import MAX_VERSION, ApplyResult, Plan, plan_to_dict
from idn.protos import control_pb2 as cpb
from idn.tls import TLSFiles
from idn.topology import Topology

R = TypeVar("R")


class NetworkError(RuntimeError):
    """An operation on a running network failed; the message says where and what to do."""


class NodeCallError(NetworkError):
    """A call to one node failed: names the node, its address, the gRPC status and, where it can
    be told, what to do (a TLS mismatch, a token that is not the node's, a node that is down)."""

    def __init__(self, node: str, address: str, code: grpc.StatusCode, details: str, hint: str = "",
                 doing: str = ""):
        self.node, self.address, self.code, self.details, self.hint = node, address, code, details, hint
        msg = f"node {node} ({address}){f' {doing}' if doing else ''}: {code.name}: {details}"
        super().__init__(msg + (f" (fix: {hint})" if hint else ""))


def speaks_tls(address: str, timeout: float = 1.0) -> bool | None:
    """Whether a server completes (or refuses only for want of a certificate) a TLS handshake:
    True; answers in something that is not TLS: False; cannot tell (nothing there): None."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host):
                return True
    except ssl.SSLError as e:
        text = f"{e.reason or ''} {e}".lower()
        if "alert" in text or "certificate" in text:
            return True  # a TLS server that wants a client certificate
        return False  # wrong version number, record layer failure, ...: not TLS
    except (ConnectionResetError, ssl.SSLEOFError, EOFError):
        return False
    except (OSError, ValueError):
        return None


def rpc_hint(code: grpc.StatusCode, details: str, address: str, tls: bool) -> str:
    """What to do about a failed call, where it can be told."""
    if code == grpc.StatusCode.UNAVAILABLE:
        serving_tls = speaks_tls(address)
        if serving_tls and not tls:
            return "the node serves TLS and this command spoke plaintext: pass --tls-ca (and --tls-cert/--tls-key)"
        if serving_tls is False and tls:
            return "the node serves plaintext and this command spoke TLS: drop --tls-ca/--tls-cert/--tls-key"
        if serving_tls is None:
            return "nothing answers at that address: is the node up? (`idn up`, or restart it from its log's command)"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return ("this control token is not the node's: pass the node's with --token (or IDN_CONTROL_TOKEN), or "
                "restart the node from the command line its log starts with (it reads the run's token file)")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "the node did not answer in time: is it overloaded or stopped?"
    return ""


def call(node: str, address: str, tls: TLSFiles | None, fn: Callable[[], R], doing: str = "") -> R:
    """``fn()``, with a gRPC failure turned into a NodeCallError that names the node."""
    try:
        return fn()
    except grpc.RpcError as e:
        code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
        details = (e.details() if callable(getattr(e, "details", None)) else str(e)) or ""
        raise NodeCallError(node, address, code, details, rpc_hint(code, details, address, tls is not None),
                            doing) from None


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
              timeout_s: float | None = 30.0, tls: TLSFiles | None = None) -> tuple[int, list[ApplyResult]]:
    """Apply ``plan`` to every node, re-versioned to ``version`` or max(node versions) + 1.

    Re-versioning makes a freshly solved plan (which always starts at version 1) newer
    than whatever the nodes run; the caller reports the version it got. The change runs
    in three passes over all nodes — PREPARE (load), COMMIT (switch routing), CLEANUP
    (unload) — so that no ingress routes by the old plan to a variant already unloaded
    and no node routes by the new plan to a variant not yet loaded.

    ``down`` (the controller's way): nodes in it are skipped, and a node that stops
    answering in any phase (UNAVAILABLE, DEADLINE_EXCEEDED) is added to it and skipped
    from then on instead of failing the change: the live nodes still get the plan, and
    the caller re-plans without the dead one. Without ``down``, a node that fails raises
    NodeCallError naming it (and the phase), before any later phase runs anywhere.
    """
    phase = cpb.ApplyPlanRequest
    addr = {nid: addresses.get(nid, n.address) for nid, n in topology.nodes.items()}
    order = [nid for nid in apply_order(topology) if down is None or nid not in down]
    clients = {nid: ControlClient(addr[nid], token, timeout=timeout_s, tls=tls) for nid in order}

    def each(doing: str, fn: Callable[[ControlClient], R], nodes: list[str]) -> dict[str, R]:
        out: dict[str, R] = {}
        for nid in nodes:
            if down is not None and nid in down:
                continue
            try:
                out[nid] = call(nid, addr[nid], tls, lambda: fn(clients[nid]), doing)  # noqa: B023 (called at once)
            except NodeCallError as e:
                if down is None or e.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                down.add(nid)
        return out

    try:
        if version is None:
            versions = each("reading its plan version", lambda c: c.info().plan_version, order)
            version = max(versions.values(), default=0) + 1
        if not 1 <= version <= MAX_VERSION:
            raise NetworkError(f"plan version {version} is outside 1..{MAX_VERSION}: a node reports a version no "
                               f"plan can follow; restart it with a fresh state folder (`idn up --fresh`)")
        doc = json.dumps(plan_to_dict(plan.with_version(version)))
        prepared = each("in PREPARE (loading)", lambda c: c.apply_plan(doc, phase.PREPARE), order)
        each("in COMMIT (switching routes)", lambda c: c.apply_plan(doc, phase.COMMIT), list(prepared))
        cleaned = each("in CLEANUP (unloading)", lambda c: c.apply_plan(doc, phase.CLEANUP), list(prepared))
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
                  timeout_s: float = 3.0, tls: TLSFiles | None = None) -> list[NodeStatus]:
    """Per node: readiness, plan version, loaded variants and request rates over the last ``window_s``.

    Rates come from two GetStats calls ``window_s`` apart (one sleep for all nodes), so
    they show the load now rather than the average since the node started. A node that
    does not answer is reported with its gRPC status, not skipped.
    """
    clients = {nid: ControlClient(addresses.get(nid, n.address), token, timeout=timeout_s, tls=tls)
               for nid, n in topology.nodes.items()}

    def problem(nid: str, e: grpc.RpcError) -> str:
        code, details = e.code(), e.details() or ""
        hint = rpc_hint(code, details, clients[nid].address, tls is not None)
        return f"{code.name}: {details}" + (f" (fix: {hint})" if hint else "")

    try:
        cursors: dict[str, int] = {}
        errors: dict[str, str] = {}
        for nid, c in clients.items():
            try:
                cursors[nid] = c.stats(0).cursor
            except grpc.RpcError as e:
                errors[nid] = problem(nid, e)
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
                out.append(NodeStatus(nid, node.tier, c.address, False, None, (), 0.0, {}, problem(nid, e)))
                continue
            classes = {cs.class_key: cs.rate_rps for cs in stats.classes}
            out.append(NodeStatus(nid, info.tier or node.tier, c.address, info.ready, info.plan_version,
                                  tuple(info.variants), sum(classes.values()), classes))
        return out
    finally:
        for c in clients.values():
            c.close()
