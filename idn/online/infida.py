"""INFIDA as a placement policy: per-node mirror ascent on observed gains, randomised rounding.

INFIDA (INFerence Intelligent Distributed Allocation) is the online algorithm of Si Salem,
Castellano, Neglia, Pianese, Araldo, "Toward Inference Delivery Networks: Distributing
Machine Learning with Optimality Guarantees", IEEE/ACM ToN 32(1), 2024 (arXiv 2105.02510).
Each node keeps a *fractional* allocation of the models it may hold, updates it from the
requests it just saw (plus a little information passed along the request's path), and
samples an *integral* allocation from it that fits its memory. Pure numpy, no solver.

What this module does, every period (``Infida.update`` then ``Infida.placement``):

1. **Gain and its supergradient.** For request class r (rate ``lam_r``) let its useful
   targets k = 1..K (the (node, variant) triples of :mod:`idn.placement.problem` on r's
   path, cheaper than the repository) be sorted by cost ``c_1 <= ... <= c_K`` and let
   ``c_{K+1} = c_ref_r``, the class's cost under repository-only (the paper's fixed
   repository allocation omega). With ``l_k = min(lam_r, L_k)`` the requests target k can
   take (``L_k`` its capacity in req/s) and y the fractional allocation, the gain is::

       G_r(y) = sum_k (c_{k+1} - c_k) * min(lam_r, sum_{j<=k} l_j y_j)

   (the cost saved against repository-only when requests go to the cheapest target with
   spare capacity first). It is concave in y; a supergradient for target j is
   ``l_j * sum_{k>=j} (c_{k+1} - c_k) * [sum_{i<=k} l_i y_i < lam_r]``. A node needs, per
   class crossing it, only the class's rate, the cost ranking and the prefix sums of
   ``l y`` of better-ranked targets: information that travels with the class's requests
   along its path. (Here it is computed for all nodes at once, vectorised; the numbers are
   the ones each node would compute from that local information.)
2. **Mirror ascent** with the size-weighted negative entropy ``sum_v s_v y_v log y_v`` as
   mirror map: ``y_v <- y_v * exp(eta * g_v / s_v)`` (g normalised, see departures).
3. **Bregman projection** onto the node's set ``{floor <= y_v <= 1, sum_v s_v y_v <= mem}``:
   for this mirror map it is a common scale factor, capped at 1 (found by bisection).
4. **Randomised rounding** of each node's y to an integral set that fits its memory:
   ``depround`` (default) is dependent rounding for a weighted budget: pairs of fractional
   variants exchange probability mass so that ``sum s y`` is unchanged and ``E[x] = y``,
   until at most one stays fractional (largest variants first, so it tends to be a small
   one); that one is rounded up with its probability if it still fits, else down. Memory
   is never exceeded. ``coupled`` keeps one uniform draw
   per (node, variant) for the whole run (``x = u < y``, then drops the least likely
   variants until memory fits): marginals are y up to that repair, and x only changes when
   y crosses u, so far fewer models move between periods.

Sources actually read (the paper's full text is not in the stored corpora; only its
abstract and introduction, arXiv 2105.02510 v1 and v4 abstract pages, were): the
abstract (per-node updates from recent requests plus limited exchange with neighbours,
adversarial guarantees, compared with greedy heuristics); a third-party summary of the
paper (bohrium.com paper page: nodes host pre-trained models, gain against the
repository, INFIDA vs greedy); Si Salem, Neglia, Ioannidis, "No-Regret Caching via
Online Mirror Descent" (arXiv 2101.12588, abstract and summaries: OMD with a negative
entropy map, randomised rounding that keeps the regret guarantee, coupled rounding to
bound update costs); Si Salem et al., "Online Submodular Maximization via Online Convex
Optimization" (abstract: weighted threshold potential gains have a concave relaxation,
so OCO plus rounding gives (1-1/e)-regret); the ISIPINK/online_caching README (online
gradient ascent and coupled online rounding with one shared random offset). The gain
formula, the weighted entropy and DepRound are written from our reading of those and
of the paper as we remember it, not copied from its text.

Departures from the paper (also in the README):

* **Time**: the paper updates per time slot of requests; here one update per control
  period on the period's measured rates (requests/s, not counts).
* **Capacity**: the paper gives each model at a node its own capacity. IDN's nodes share
  ``rho x cores`` among all their variants (and classes); the gradient uses for each
  target the whole node's capacity, ``L = rho*cores*1000/t[v,n]`` req/s, and does not
  split it between classes or variants (optimistic). Serving (scoring) in the simulator
  uses the true shared caps.
* **Serving**: the paper serves each request at the best-ranked target with spare
  capacity. The simulator scores every policy the same way: the optimal split over the
  placed variants (the routing LP, :func:`idn.placement.split.best_split`), which is the
  paper's rule whenever no cap binds; INFIDA's gradient uses the paper's rule.
* **Step size**: the gradient is divided by the period's repository-only cost (so one
  ``eta`` fits every trace and scale) and by the variant's share of the node's memory
  ``s_v / mem_n``. The default ``eta = 100`` was tuned on the shipped traces and the
  100-node benchmark (share of hindsight's gain at eta 0.5 / 10 / 100 / 1000: 97.2 /
  97.8 / 99.2 / 99.8% at 100 nodes), not set by the regret bound, whose step shrinks as
  1/sqrt(T): large steps track moving demand at the price of the adversarial guarantee.
* **Floor**: y is kept >= ``floor`` (1e-6) so that a multiplicative update can bring
  back a variant whose demand returns (the paper's state space is the closed set).
* **Repository**: a repository node holds every variant that fits it (the paper's fixed
  allocation omega), and does not learn; if they do not all fit it learns like any node.
* **Rounding**: DepRound's last fractional variant is rounded down when rounding it up
  would overflow memory (so memory holds exactly, and that one marginal is biased down);
  ``coupled`` is our addition in the spirit of the OMD-caching paper's coupled rounding,
  not the paper's; ``round_every`` re-samples only every N updates.
* **Budget**: IDN's optional global deployment budget is not part of INFIDA's
  constraints; the simulator refuses ``infida`` when a budget is set.
* **SLOs**: targets that break a class's SLO are never candidates (pruned when the
  problem is built), so the gain only counts SLO-meeting targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from idn.catalog import Catalog
from idn.placement.problem import MIB, PlacementOptions, Problem
from idn.topology import Topology

ROUNDINGS = ("depround", "coupled")
EPS = 1e-12


@dataclass(frozen=True)
class InfidaOptions:
    eta: float = 100.0             # step size (dimensionless: gradients are normalised; tuned, see README)
    floor: float = 1e-6            # lower bound of every fractional allocation
    rounding: str = "depround"     # depround | coupled
    round_every: int = 1           # re-sample the integral allocation every N updates
    seed: int = 0
    max_exponent: float = 50.0     # clip of one multiplicative step (numerical safety only)

    def as_dict(self) -> dict[str, float | int | str]:
        return {"eta": self.eta, "floor": self.floor, "rounding": self.rounding, "round_every": self.round_every,
                "seed": self.seed}


def project(z: np.ndarray, size: np.ndarray, mem: np.ndarray, allowed: np.ndarray, floor: float,
            iters: int = 100) -> np.ndarray:
    """Bregman projection (size-weighted negative entropy) of every node's row onto
    ``{floor <= y <= 1, sum_v size_v y_v <= mem_n}``, with ``y = 0`` where not ``allowed``.

    For this mirror map the projection is ``y = clip(c_n * z, floor, 1)`` with the largest
    ``c_n <= 1`` that meets the memory row (bisection on log c_n). z: [nodes, variants] > 0.
    """
    z = np.where(allowed, np.maximum(z, floor), 0.0)
    lo_mass = (allowed * size[None, :] * floor).sum(axis=1)

    def mass(c: np.ndarray) -> np.ndarray:
        y = np.where(allowed, np.clip(c[:, None] * z, floor, 1.0), 0.0)
        return (y * size[None, :]).sum(axis=1)

    ones = np.ones(len(mem))
    ok = mass(ones) <= mem * (1 + 1e-12)
    lo = np.full(len(mem), -60.0)   # log c: c = e^-60 brings every row to its floor
    hi = np.zeros(len(mem))
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        fits = mass(np.exp(mid)) <= mem
        lo = np.where(fits, mid, lo)
        hi = np.where(fits, hi, mid)
    c = np.where(ok, 1.0, np.exp(lo))
    y = np.where(allowed, np.clip(c[:, None] * z, floor, 1.0), 0.0)
    # a row whose floors alone do not fit (memory smaller than floor x sizes) keeps only floors
    y = np.where((lo_mass > mem)[:, None] & allowed, floor * mem[:, None] / np.maximum(lo_mass, EPS)[:, None], y)
    return y


def depround(y: np.ndarray, size: np.ndarray, budget: float, rng: np.random.Generator) -> np.ndarray:
    """Dependent rounding of one node's fractional allocation under a weighted budget.

    Each step takes two fractional entries i, j and moves mass (MiB) between them so that
    ``size_i y_i + size_j y_j`` is unchanged and one of them becomes 0 or 1; the direction
    is drawn so that the expected change of each entry is 0. Entries are taken largest
    first (the survivor of each step meets the next largest), so the one entry left
    fractional at the end tends to be a small variant: it is rounded up with its
    probability if that fits, else down. So ``sum size x <= budget`` always (given
    ``sum size y <= budget``), ``E[x] = y`` exactly when the budget has room for one more
    variant, and otherwise at most that last entry's mass (one variant) is lost.
    """
    y = y.astype(float).copy()
    y[y <= EPS] = 0.0
    y[y >= 1 - EPS] = 1.0
    order = [int(k) for k in np.argsort(-size, kind="stable") if 0.0 < y[k] < 1.0]
    cur = order[0] if order else -1
    for j in order[1:]:
        i = cur
        si, sj = size[i], size[j]
        up_i = min(si * (1 - y[i]), sj * y[j])    # mass i can take from j
        up_j = min(sj * (1 - y[j]), si * y[i])    # mass j can take from i
        if up_i + up_j > EPS:
            if rng.random() < up_j / (up_i + up_j):
                y[i] += up_i / si
                y[j] -= up_i / sj
            else:
                y[i] -= up_j / si
                y[j] += up_j / sj
        for k in (i, j):
            if y[k] <= 1e-9:
                y[k] = 0.0
            elif y[k] >= 1 - 1e-9:
                y[k] = 1.0
        cur = i if 0.0 < y[i] < 1.0 else j  # the one still fractional (if any) goes on
    x = (y >= 1.0).astype(float)
    if cur >= 0 and 0.0 < y[cur] < 1.0:
        if rng.random() < y[cur] and float(np.dot(size, x)) + size[cur] <= budget * (1 + 1e-12):
            x[cur] = 1.0
    return x


def coupled_round(y: np.ndarray, u: np.ndarray, size: np.ndarray, budget: float) -> np.ndarray:
    """``x = u < y`` with draws u fixed over time; over budget, drop the least likely first."""
    x = (u < y).astype(float)
    if float(np.dot(size, x)) > budget * (1 + 1e-12):
        for k in sorted(np.nonzero(x)[0], key=lambda k: -u[k] / max(y[k], EPS)):
            x[k] = 0.0
            if float(np.dot(size, x)) <= budget * (1 + 1e-12):
                break
    return x


def class_reference_cost(problem: Problem) -> np.ndarray:
    """Per class, its cheapest triple at a repository node (the paper's omega serves it there);
    a class with none there gets its dearest triple (a lower bound of repository-only's cost)."""
    tri_node = problem.pair_node[problem.tri_pair]
    at_repo = problem.repository[tri_node]
    ref = np.full(len(problem.classes), np.inf)
    np.minimum.at(ref, problem.tri_class[at_repo], problem.tri_cost[at_repo])
    worst = np.full(len(problem.classes), -np.inf)
    np.maximum.at(worst, problem.tri_class, problem.tri_cost)
    return np.where(np.isfinite(ref), ref, np.where(np.isfinite(worst), worst, 0.0))


def _segment_cumsum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each segment start (``starts``: bool, True at a segment's first)."""
    c = np.cumsum(values)
    seg = np.cumsum(starts) - 1
    first = np.nonzero(starts)[0]
    offset = np.concatenate([[0.0], c])[first]   # cumsum before each segment's first element
    return c - offset[seg]


class Infida:
    """The state of every node: fractional allocation y and integral allocation x over
    (node, variant) for every variant of the catalog (tasks not demanded yet included)."""

    def __init__(self, topology: Topology, catalog: Catalog, options: InfidaOptions = InfidaOptions(),
                 placement_options: PlacementOptions = PlacementOptions()):
        if options.rounding not in ROUNDINGS:
            raise ValueError(f"unknown rounding {options.rounding!r} (use one of {', '.join(ROUNDINGS)})")
        if options.eta < 0 or options.round_every < 1 or not 0 < options.floor < 1:
            raise ValueError("eta must be >= 0, round_every >= 1 and floor within (0, 1)")
        self.opt = options
        self.node_ids = list(topology.nodes)
        self.nidx = {n: i for i, n in enumerate(self.node_ids)}
        variants = [v for t in catalog.tasks.values() for v in t.variants.values()]
        self.variant_names = [v.name for v in variants]
        self.vidx = {v: i for i, v in enumerate(self.variant_names)}
        self.size = np.array([v.bytes / MIB for v in variants], dtype=float)
        nodes = [topology.nodes[n] for n in self.node_ids]
        self.mem = np.array([n.mem_mb for n in nodes], dtype=float)
        self.cap = np.array([placement_options.rho * n.cores for n in nodes], dtype=float)
        self.allowed = self.size[None, :] <= self.mem[:, None] + 1e-12
        repo = np.array([n.repository for n in nodes], dtype=bool)
        # the paper's omega: a repository holds everything that fits it, fixed
        self.fixed = repo & ((self.allowed * self.size[None, :]).sum(axis=1) <= self.mem + 1e-12)
        self.rng = np.random.default_rng(options.seed)
        self.u = self.rng.random(self.allowed.shape)  # coupled rounding's fixed draws
        self.y = project(np.ones(self.allowed.shape), self.size, self.mem, self.allowed, options.floor)
        self.y[self.fixed] = np.where(self.allowed[self.fixed], 1.0, 0.0)
        self.updates = 0
        self.x = self._round()
        self.last_gradient: np.ndarray | None = None

    # -- the three steps -------------------------------------------------------------------

    def gradient(self, problem: Problem, reference_cost: np.ndarray | None = None) -> np.ndarray:
        """Supergradient of the (concave) gain at the current y, on [nodes, variants] (ms x req/s)."""
        g = np.zeros(self.y.shape)
        if problem.n_triples == 0:
            return g
        ref = class_reference_cost(problem) if reference_cost is None else np.asarray(reference_cost, dtype=float)
        node_of = np.array([self.nidx[n] for n in problem.node_ids], dtype=np.int64)[problem.pair_node]
        var_of = np.array([self.vidx[v] for v in problem.variant_names], dtype=np.int64)[problem.pair_var]
        cls, pair, cost = problem.tri_class, problem.tri_pair, problem.tri_cost
        keep = cost < ref[cls] - 1e-12  # targets that beat the repository
        cls, pair, cost = cls[keep], pair[keep], cost[keep]
        if len(cls) == 0:
            return g
        lam = problem.rate[cls]
        per_req = problem.tri_load[keep] / np.maximum(problem.rate[cls], EPS)  # cores per (req/s)
        n_of, v_of = node_of[pair], var_of[pair]
        with np.errstate(divide="ignore"):
            capacity = np.where(per_req > 0, self.cap[n_of] / np.maximum(per_req, EPS), np.inf)
        ell = np.minimum(lam, capacity)
        yv = self.y[n_of, v_of]
        order = np.lexsort((cost, cls))
        cls, cost, ell, yv, lam, n_of, v_of = (a[order] for a in (cls, cost, ell, yv, lam, n_of, v_of))
        starts = np.ones(len(cls), dtype=bool)
        starts[1:] = cls[1:] != cls[:-1]
        last = np.ones(len(cls), dtype=bool)
        last[:-1] = starts[1:]
        nxt = np.where(last, ref[cls], np.roll(cost, -1))
        prefix = _segment_cumsum(ell * yv, starts)
        w = (nxt - cost) * (prefix < lam * (1 - 1e-9))
        # suffix sums within each class: reverse, segment-cumsum, reverse back
        suffix = _segment_cumsum(w[::-1], last[::-1])[::-1]
        np.add.at(g, (n_of, v_of), ell * suffix)
        return g

    def update(self, problem: Problem, reference_cost: np.ndarray | None = None) -> None:
        """One period: gradient on the demand just observed (``problem`` built from it),
        mirror step, projection, and (every ``round_every`` updates) a new integral allocation."""
        g = self.gradient(problem, reference_cost)
        self.last_gradient = g
        ref = class_reference_cost(problem) if reference_cost is None else np.asarray(reference_cost, dtype=float)
        scale = float(np.dot(problem.rate, ref)) if len(ref) else 0.0
        if scale > 0 and self.opt.eta > 0:
            rel_size = np.maximum(self.size[None, :] / self.mem[:, None], EPS)  # share of the node's memory
            step = np.minimum(self.opt.eta * (g / scale) / rel_size, self.opt.max_exponent)
            z = self.y * np.exp(np.where(self.allowed, step, 0.0))
            y = project(z, self.size, self.mem, self.allowed, self.opt.floor)
            self.y = np.where(self.fixed[:, None], self.y, y)
        self.updates += 1
        if self.updates % self.opt.round_every == 0:
            self.x = self._round()

    def _round(self) -> np.ndarray:
        x = np.zeros(self.y.shape)
        for n in range(len(self.node_ids)):
            cols = np.nonzero(self.allowed[n])[0]
            if self.fixed[n]:
                x[n, cols] = 1.0
                continue
            yn, sn = self.y[n, cols], self.size[cols]
            if self.opt.rounding == "depround":
                x[n, cols] = depround(yn, sn, float(self.mem[n]), self.rng)
            else:
                x[n, cols] = coupled_round(yn, self.u[n, cols], sn, float(self.mem[n]))
        return x

    # -- what the network holds --------------------------------------------------------------

    def placement(self) -> dict[str, set[str]]:
        """The integral allocation: variants held per node."""
        out: dict[str, set[str]] = {}
        for n, v in zip(*np.nonzero(self.x > 0.5)):
            out.setdefault(self.node_ids[int(n)], set()).add(self.variant_names[int(v)])
        return out

    def memory_used(self) -> np.ndarray:
        return (self.x * self.size[None, :]).sum(axis=1)

    def fractional_memory(self) -> np.ndarray:
        return (self.y * self.size[None, :]).sum(axis=1)
