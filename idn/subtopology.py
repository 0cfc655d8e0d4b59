"""The live sub-topology: what the controller plans on while some nodes are down.

Dead nodes are removed with their links. A live node whose way to a repository went
through a dead one is re-attached, the way its data plane already routes around the
failure (:meth:`idn.node.router.RoutingTable.failover`):

1. over its backup links to live nodes, if that reaches a repository (the link's own
   delay and bandwidth);
2. else to the nearest live node on its old path that reaches one (its nearest live
   ancestor), by a link whose delay is the sum of the links in between and whose
   bandwidth is their narrowest (the bytes still cross those wires: the dead node was
   an overlay hop, not the network);
3. with no live repository at all, the live node nearest to a dead repository stands
   in as the repository (every node can load any catalog variant; the placement still
   respects its memory), and the rest re-attach to it as above.

Every change is reported in plain words, so an operator sees what the plan assumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from idn.topology import Link, Topology


def live_topology(topology: Topology, down: Iterable[str]) -> tuple[Topology, list[str]]:
    """(the topology without ``down`` nodes, re-attached; what was changed, in words)."""
    down = set(down) & set(topology.nodes)
    if not down:
        return topology, []
    notes: list[str] = []
    nodes = {nid: (dataclasses.replace(n, parent=None) if n.parent in down else n)
             for nid, n in topology.nodes.items() if nid not in down}
    if not nodes:
        raise ValueError("every node is down")
    links = [ln for ln in topology.links if ln.a in nodes and ln.b in nodes and not ln.backup]
    backups = [ln for ln in topology.links if ln.a in nodes and ln.b in nodes and ln.backup]
    if not any(n.repository for n in nodes.values()):
        dead_repos = [r for r in topology.repositories if r in down]
        stand_in = min(nodes, key=lambda n: (min(topology.delay_ms(n, r) for r in dead_repos), n))
        nodes[stand_in] = dataclasses.replace(nodes[stand_in], repository=True, parent=None)
        notes.append(f"no repository is up ({', '.join(dead_repos)} down): {stand_in} stands in as the repository")
    while True:
        reach = _reaching(nodes, links)
        stranded = sorted(n for n in nodes if n not in reach)
        if not stranded:
            break
        fixed = False
        for n in stranded:  # 1. backup links first
            for ln in backups:
                other = ln.b if ln.a == n else ln.a if ln.b == n else None
                if other is not None and other in reach:
                    links.append(dataclasses.replace(ln, backup=False))
                    backups.remove(ln)
                    nodes[n] = dataclasses.replace(nodes[n], parent=other)
                    notes.append(f"{n} re-attached to {other} over its backup link ({ln.delay_ms:g} ms)")
                    fixed = True
                    break
            if fixed:
                break
        if fixed:
            continue
        # 2. the stranded node closest to the connected part first (the others may then reach
        # through it), to its nearest live ancestor, or else the nearest node that reaches a repository
        n = min(stranded, key=lambda x: (min(topology.delay_ms(x, m) for m in reach), x))
        ancestors = [a for a in topology.path(n)[1:] if a in reach]
        target = ancestors[0] if ancestors else min(reach, key=lambda m: (topology.delay_ms(n, m), m))
        route = topology.route(n, target)
        delay = sum(topology.link_delay_ms(a, b) for a, b in zip(route, route[1:]))
        bws = [topology.link_bandwidth_mbps(a, b) for a, b in zip(route, route[1:])]
        known = [b for b in bws if b is not None]
        links.append(Link(n, target, delay, min(known) if known else None))
        skipped = route[1:-1]
        notes.append(f"{n} re-attached to {target} past {', '.join(skipped) or 'nothing'} ({delay:g} ms)")
        nodes[n] = dataclasses.replace(nodes[n], parent=target)
    for ln in backups:
        links.append(ln)
    return Topology(nodes=nodes, links=links, file=topology.file, hop_overhead_ms=topology.hop_overhead_ms), notes


def _reaching(nodes: dict, links: list[Link]) -> set[str]:
    """Nodes that reach a repository over ``links`` (normal links only)."""
    adj: dict[str, set[str]] = {n: set() for n in nodes}
    for ln in links:
        if not ln.backup:
            adj[ln.a].add(ln.b)
            adj[ln.b].add(ln.a)
    seen = {n for n, node in nodes.items() if node.repository}
    todo = list(seen)
    while todo:
        for m in adj[todo.pop()]:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen
