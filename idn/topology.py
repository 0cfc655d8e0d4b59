"""The topology: nodes (edge / regional / cloud) and the links between them.

File format (``deploy/topologies/*.yaml``)::

    nodes:
      - {id: cloud, tier: cloud, address: 127.0.0.1:18001, mem_mb: 8192, cores: 8,
         hardware_class: cpu-x86_64-2c, price: 1.0, repository: true}
      - {id: regional, tier: regional, address: 127.0.0.1:18002, mem_mb: 1024, cores: 2,
         parent: cloud, slowdown: 1.0}
      - {id: edge-1, tier: edge, address: 127.0.0.1:18011, mem_mb: 64, cores: 1,
         parent: regional, slowdown: 3.0}
    links:
      - {a: cloud, b: regional, delay_ms: 25, bandwidth_mbps: 1000}
      - {a: edge-1, b: regional, delay_ms: 5, bandwidth_mbps: 100}
    hardware_class: cpu-x86_64-2c     # optional default for nodes that do not name one

Node fields: ``id`` (unique), ``tier`` (edge|regional|cloud), ``address`` (host:port of
its gRPC server), ``mem_mb`` and ``cores`` (capacity the placement respects),
``hardware_class`` (key into the catalog's latency profiles), ``price`` (cost per MB
deployed there, default 1.0), ``repository`` (serves every task; at least one node must
be one), ``parent`` (informational tree structure; must be linked), ``slowdown``
(emulation knob, default 1.0: compute on this node takes ``slowdown`` times the profiled
latency, so one machine can emulate a slow edge box).

Fixed costs the latency model can carry (both default 0, both modelled only, never
emulated): ``overhead_ms`` (top level as a default, or per node) is a node's fixed
per-request serving cost — transport, decoding, encoding — added to every compute time
there (and so to its compute load); ``hop_overhead_ms`` (top level) is the one-way
processing cost of one forwarding hop, added to every link's delay for routing and
prediction. On one machine these are what gRPC and Python cost per request and per
hop (measure them with ``benchmarks/hop.py``); without them a plan whose network paths
are short is predicted faster than it can be served.

Link fields: ``a``, ``b`` (node ids; links are bidirectional), ``delay_ms`` (one-way
delay, also an emulation knob on one machine), ``bandwidth_mbps`` (optional: request
and response bytes cost ``bytes x 8 / bandwidth`` on every link they cross, see
:mod:`idn.latency`; a link without it adds no transfer time), ``backup`` (optional,
default false: a failover-only link, e.g. edge -> cloud)::

      - {a: edge-1, b: cloud, delay_ms: 35, bandwidth_mbps: 50, backup: true}

**Backup links** are invisible in normal operation: routing (``path``, ``route``,
``next_hop``, ``delay_ms``), the latency model, the placement and the reachability
check ignore them. They are used only when a node is down: ``route_avoiding`` (how a
node routes around a dead neighbour) and the controller's live sub-topology
(:mod:`idn.subtopology`) consider them, and emulation sleeps their delay like any
link's.

Routing is shortest-by-delay on the general graph (ties broken by node id, so every
node computes the same routes): ``path(ingress)`` is the node list from an ingress to
its nearest repository, ``next_hop(a, b)`` is where a node forwards a request bound
for ``b``, ``delay_ms(a, b)`` is the one-way delay along that route. How long a request
takes (network, transfer and compute) is :mod:`idn.latency`'s job, not this module's.
Failover routing: ``route_avoiding(a, b, down)`` is the shortest route over every link,
backup links included, that avoids the ``down`` nodes (None if there is none), and
``emulated_links(a, b)`` the links a direct connection a -> b crosses (the link itself,
or the normal route's links when a node skips a dead one to reach a node further up).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idn.config import ConfigError, Fields, read_document

TIERS = ("edge", "regional", "cloud")
MAX_MS = 1e6  # delays and overheads beyond 1000 s are a unit mistake, and ill-condition the solver
_NODE_KEYS = {"id", "tier", "address", "mem_mb", "cores", "hardware_class", "price", "repository", "overhead_ms",
              "parent", "slowdown"}
_LINK_KEYS = {"a", "b", "delay_ms", "bandwidth_mbps", "backup"}
_AVOIDING_CACHE = 1024  # failover routes remembered per topology (distinct (a, b, down) keys)


@dataclass(frozen=True)
class Node:
    id: str
    tier: str
    address: str
    mem_mb: float
    cores: float
    hardware_class: str | None = None
    price: float = 1.0
    repository: bool = False
    parent: str | None = None
    slowdown: float = 1.0
    overhead_ms: float = 0.0


@dataclass(frozen=True)
class Link:
    a: str
    b: str
    delay_ms: float
    bandwidth_mbps: float | None = None
    backup: bool = False  # failover only: ignored by routing and the latency model in normal operation


@dataclass
class Topology:
    """Validated nodes and links with shortest-by-delay routing (computed lazily, cached)."""
    nodes: dict[str, Node]
    links: list[Link]
    file: str | None = None
    # Modelled per-hop processing cost (one way), added to every link's delay for routing
    # and prediction but never emulated: see the module docstring.
    hop_overhead_ms: float = 0.0
    _adj: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)
    _link: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)
    _bw: dict[str, dict[str, float | None]] = field(default_factory=dict, repr=False)
    _to_repo: dict[str, tuple[float, str | None]] | None = field(default=None, repr=False)
    _towards: dict[str, dict[str, tuple[float, str | None]]] = field(default_factory=dict, repr=False)
    _all_adj: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)  # backup links too
    _avoiding: dict[tuple[str, str, frozenset[str]], list[str] | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._adj = {n: {} for n in self.nodes}
        self._all_adj = {n: {} for n in self.nodes}
        self._link = {n: {} for n in self.nodes}
        self._bw = {n: {} for n in self.nodes}
        for ln in self.links:
            self._bw[ln.a][ln.b] = self._bw[ln.b][ln.a] = ln.bandwidth_mbps
            self._link[ln.a][ln.b] = self._link[ln.b][ln.a] = ln.delay_ms
            self._all_adj[ln.a][ln.b] = self._all_adj[ln.b][ln.a] = ln.delay_ms + self.hop_overhead_ms
            if not ln.backup:
                self._adj[ln.a][ln.b] = self._adj[ln.b][ln.a] = ln.delay_ms + self.hop_overhead_ms

    # -- lookups -------------------------------------------------------------------------
    def node(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise KeyError(f"unknown node {node_id!r} (known: {', '.join(self.nodes)})") from None

    @property
    def repositories(self) -> list[str]:
        return [n.id for n in self.nodes.values() if n.repository]

    def neighbours(self, node_id: str, backup: bool = False) -> list[str]:
        """Nodes linked to ``node_id`` by normal links (and by backup links too with ``backup``)."""
        self.node(node_id)
        return sorted((self._all_adj if backup else self._adj)[node_id])

    def link_delay_ms(self, a: str, b: str) -> float:
        """The link a-b's own one-way delay, as written (what emulation sleeps; KeyError if not neighbours)."""
        return self._link[a][b]

    # -- routing -------------------------------------------------------------------------
    def _dijkstra(self, sources: list[str]) -> dict[str, tuple[float, str | None]]:
        """Multi-source shortest paths; returns node -> (distance, next node towards a source).

        Ties are broken by node id so that every node derives the same routes.
        """
        best: dict[str, tuple[float, str | None]] = {}
        heap: list[tuple[float, str, str | None]] = [(0.0, s, None) for s in sorted(sources)]
        heapq.heapify(heap)
        while heap:
            d, n, via = heapq.heappop(heap)
            if n in best:
                continue
            best[n] = (d, via)
            for m, w in self._adj[n].items():
                if m not in best:
                    heapq.heappush(heap, (d + w, m, n))
        return best

    def _repo_tree(self) -> dict[str, tuple[float, str | None]]:
        if self._to_repo is None:
            self._to_repo = self._dijkstra(self.repositories)
        return self._to_repo

    def _tree_towards(self, dest: str) -> dict[str, tuple[float, str | None]]:
        if dest not in self._towards:
            self.node(dest)
            self._towards[dest] = self._dijkstra([dest])
        return self._towards[dest]

    def path(self, ingress: str) -> list[str]:
        """Nodes from ``ingress`` to its nearest repository (by delay), both ends included."""
        self.node(ingress)
        tree = self._repo_tree()
        out = [ingress]
        while (nxt := tree[out[-1]][1]) is not None:
            out.append(nxt)
        return out

    def path_delays(self, ingress: str) -> list[tuple[str, float]]:
        """``path(ingress)`` with the cumulative modelled one-way delay from the ingress to each node."""
        p = self.path(ingress)
        out, acc = [(p[0], 0.0)], 0.0
        for a, b in zip(p, p[1:]):
            acc += self._adj[a][b]
            out.append((b, acc))
        return out

    def route(self, a: str, b: str) -> list[str]:
        """Shortest-by-delay node list from a to b."""
        tree = self._tree_towards(b)
        self.node(a)
        out = [a]
        while (nxt := tree[out[-1]][1]) is not None:
            out.append(nxt)
        return out

    def next_hop(self, frm: str, to: str) -> str | None:
        """The neighbour ``frm`` forwards to for a request bound for ``to`` (None if frm == to)."""
        self.node(frm)
        return self._tree_towards(to)[frm][1]

    def delay_ms(self, a: str, b: str) -> float:
        """Modelled one-way delay along the shortest route from a to b (links + hop overheads)."""
        self.node(a)
        return self._tree_towards(b)[a][0]

    def link_bandwidth_mbps(self, a: str, b: str) -> float | None:
        """The link a-b's bandwidth (None: not modelled, no transfer cost; KeyError if not neighbours)."""
        return self._bw[a][b]

    def hardware_class(self, node_id: str) -> str | None:
        return self.node(node_id).hardware_class

    # -- failover ------------------------------------------------------------------------
    def route_avoiding(self, a: str, b: str, down: frozenset[str]) -> list[str] | None:
        """Shortest-by-delay node list a -> b over every link, backup links included, through
        no node of ``down`` (a and b themselves excepted); None when ``down`` cuts them apart."""
        key = (a, b, down)
        if key in self._avoiding:
            return self._avoiding[key]
        self.node(a)
        self.node(b)
        best: dict[str, tuple[float, str | None]] = {}
        heap: list[tuple[float, str, str | None]] = [(0.0, b, None)]
        while heap:
            d, n, via = heapq.heappop(heap)
            if n in best:
                continue
            best[n] = (d, via)
            if n == a:
                break
            for m, w in self._all_adj[n].items():
                if m not in best and (m not in down or m == a):
                    heapq.heappush(heap, (d + w, m, n))
        out: list[str] | None = None
        if a in best:
            out = [a]
            while (nxt := best[out[-1]][1]) is not None:
                out.append(nxt)
        if len(self._avoiding) >= _AVOIDING_CACHE:
            self._avoiding.clear()
        self._avoiding[key] = out
        return out

    def emulated_links(self, a: str, b: str) -> list[tuple[float, float | None]]:
        """(delay_ms, bandwidth_mbps) of each link a direct connection a -> b crosses: the
        link a-b itself (backup or not), else the links of the normal route a -> b (a node
        skipping a dead one still sends its bytes over the same wires)."""
        if b in self._link[a]:
            return [(self._link[a][b], self._bw[a][b])]
        route = self.route(a, b)
        return [(self._link[x][y], self._bw[x][y]) for x, y in zip(route, route[1:])]


def address_ok(addr: str) -> bool:
    """``host:port`` with a port in 1..65535 and a host without spaces (``[::1]:80`` for IPv6)."""
    host, sep, port = addr.rpartition(":")
    return bool(sep and host and host.isprintable() and not any(c.isspace() or c in "/\\" for c in host)
                and port.isascii() and port.isdigit() and 0 < int(port) < 65536)


def _hardware_class(f: Fields, default: str | None) -> str | None:
    hw = f.opt("hardware_class", str, default)
    if hw is not None and not hw.strip():
        raise f.error("hardware_class", "empty hardware class", "name a hardware class of the catalog, or omit it")
    return hw


def _check_parents(nodes: dict[str, Node], file: str | Path | None) -> None:
    """``parent`` links form a forest: following them from any node ends at a node without one."""
    index = {nid: i for i, nid in enumerate(nodes)}
    done: set[str] = set()
    for start in nodes:
        chain: list[str] = []
        n: str | None = start
        while n is not None and n not in done:
            if n in chain:
                cycle = chain[chain.index(n):] + [n]
                raise ConfigError(file, f"nodes[{index[n]}].parent", f"parent cycle: {' -> '.join(cycle)}",
                                  "parents point towards the repository; remove `parent:` from one of these nodes")
            chain.append(n)
            n = nodes[n].parent
        done.update(chain)


def parse_topology(doc: Any, file: str | Path | None = None) -> Topology:
    """Validate a topology document; every error names the file, the field and the fix."""
    fname = str(file) if file is not None else None
    root = Fields(doc, file, "")
    root.check_keys({"nodes", "links", "hardware_class", "overhead_ms", "hop_overhead_ms", "name", "description"})
    default_hw = _hardware_class(root, None)
    default_overhead = root.positive("overhead_ms", float, default=0.0, allow_zero=True, maximum=MAX_MS)
    hop_overhead = root.positive("hop_overhead_ms", float, default=0.0, allow_zero=True, maximum=MAX_MS)
    raw_nodes = root.req("nodes", list)
    if not raw_nodes:
        raise root.error("nodes", "no nodes defined", "add at least one node with `repository: true`")
    nodes: dict[str, Node] = {}
    addresses: dict[str, str] = {}
    for i, item in enumerate(raw_nodes):
        f = Fields(item, file, f"nodes[{i}]")
        f.check_keys(_NODE_KEYS)
        nid = f.ident("id", "node id")  # ids name log files and state folders
        if nid in nodes:
            raise f.error("id", f"duplicate node id {nid!r}", "give every node a unique id")
        tier = f.req("tier", str)
        if tier not in TIERS:
            raise f.error("tier", f"unknown tier {tier!r}", f"use one of {', '.join(TIERS)}")
        addr = f.req("address", str)
        if not address_ok(addr):
            raise f.error("address", f"{addr!r} is not host:port", "write e.g. 127.0.0.1:18011")
        if addr in addresses:
            raise f.error("address", f"{addr} already used by node {addresses[addr]!r}", "use a distinct port")
        addresses[addr] = nid
        slowdown = f.positive("slowdown", float, default=1.0, maximum=1e6)
        price = f.positive("price", float, default=1.0, allow_zero=True, maximum=1e9)
        nodes[nid] = Node(
            id=nid, tier=tier, address=addr,
            mem_mb=f.positive("mem_mb", float, maximum=1e12), cores=f.positive("cores", float, maximum=1e6),
            hardware_class=_hardware_class(f, default_hw),
            price=price, repository=f.opt("repository", bool, False),
            parent=f.opt("parent", str, None),
            slowdown=slowdown, overhead_ms=f.positive("overhead_ms", float, default=default_overhead,
                                                      allow_zero=True, maximum=MAX_MS),
        )
    links: list[Link] = []
    seen: set[frozenset[str]] = set()
    for i, item in enumerate(root.opt("links", list, [])):
        f = Fields(item, file, f"links[{i}]")
        f.check_keys(_LINK_KEYS)
        a, b = f.req("a", str), f.req("b", str)
        for key, nid in (("a", a), ("b", b)):
            if nid not in nodes:
                raise f.error(key, f"unknown node {nid!r}", f"use one of the node ids: {', '.join(nodes)}")
        if a == b:
            raise f.error("b", f"link from {a!r} to itself", "a link joins two different nodes")
        pair = frozenset((a, b))
        if pair in seen:
            raise f.error("b", f"duplicate link between {a!r} and {b!r}", "keep one link per pair")
        seen.add(pair)
        delay = f.positive("delay_ms", float, allow_zero=True, maximum=MAX_MS)
        bw = f.opt("bandwidth_mbps", float, None)
        if bw is not None and bw > 1e9:
            raise f.error("bandwidth_mbps", f"must be <= 1e9 Mb/s, got {bw:g}", "bandwidth is in Mb/s")
        if bw is not None and bw <= 0:
            raise f.error("bandwidth_mbps", f"must be > 0, got {bw}", "omit it for a link with no transfer cost")
        links.append(Link(a, b, delay, bw, backup=f.opt("backup", bool, False)))
    for i, n in enumerate(nodes.values()):
        if n.parent is not None:
            if n.parent not in nodes:
                raise ConfigError(file, f"nodes[{i}].parent", f"unknown node {n.parent!r}",
                                  f"use one of the node ids: {', '.join(nodes)}")
            if frozenset((n.id, n.parent)) not in seen:
                raise ConfigError(file, f"nodes[{i}].parent", f"no link between {n.id!r} and its parent {n.parent!r}",
                                  f"add `- {{a: {n.id}, b: {n.parent}, delay_ms: <ms>}}` under links")
    _check_parents(nodes, file)
    topo = Topology(nodes=nodes, links=links, file=fname, hop_overhead_ms=hop_overhead)
    if not topo.repositories:
        raise ConfigError(file, "nodes", "no repository node", "mark one node (normally the cloud) `repository: true`")
    reach = topo._repo_tree()
    for i, n in enumerate(nodes.values()):
        if n.id not in reach:
            raise ConfigError(file, f"nodes[{i}]", f"node {n.id!r} cannot reach any repository",
                              "add a link connecting it to the rest of the topology")
    return topo


def load_topology(path: str | Path) -> Topology:
    """Load and validate a topology YAML/JSON file."""
    return parse_topology(read_document(path), path)
