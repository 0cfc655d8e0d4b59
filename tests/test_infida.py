"""INFIDA: rounding never breaks memory, the fractional state stays feasible, the gradient is the gain's."""

from __future__ import annotations

import numpy as np
import pytest

from idn.demand import parse_demand
from idn.online.infida import (
    Infida,
    InfidaOptions,
    class_reference_cost,
    coupled_round,
    depround,
    project,
)
from idn.placement.problem import MIB, PlacementOptions, build_problem
from idn.placement.synthetic import random_catalog, random_demand_doc, tree_topology_doc
from idn.topology import parse_topology


def random_node(rng: np.random.Generator, n: int = 12):
    size = rng.uniform(0.05, 3.0, n)
    budget = float(rng.uniform(0.5, 0.7) * size.sum())
    allowed = np.ones((1, n), dtype=bool)
    y = project(rng.uniform(0.01, 3.0, (1, n)), size, np.array([budget]), allowed, 1e-6)[0]
    return size, budget, y


def test_depround_respects_memory_and_keeps_marginals():
    rng = np.random.default_rng(0)
    for _ in range(300):  # random instances: memory always holds
        size, budget, y = random_node(rng)
        assert np.dot(size, y) <= budget * (1 + 1e-9)
        x = depround(y, size, budget, rng)
        assert set(np.unique(x)) <= {0.0, 1.0}
        assert np.dot(size, x) <= budget * (1 + 1e-9)
        assert np.all(x[y >= 1 - 1e-12] == 1.0) and np.all(x[y <= 1e-12] == 0.0)
    # room for one more variant: E[x] = y exactly (within sampling noise: 6,000 draws, sd <= 0.0065)
    size, budget, y = random_node(np.random.default_rng(7), 8)
    roomy = float(np.dot(size, y) + size.max())
    draws = np.array([depround(y, size, roomy, rng) for _ in range(6000)])
    assert np.abs(draws.mean(axis=0) - y).max() < 0.03, (draws.mean(axis=0), y)
    # a binding budget: never over it, and on average at most about one variant's mass is lost
    draws = np.array([depround(y, size, budget, rng) for _ in range(3000)])
    mass = draws @ size
    assert mass.max() <= budget * (1 + 1e-9)
    assert mass.mean() >= np.dot(size, y) - size.max()


def test_coupled_rounding_respects_memory_and_moves_little():
    rng = np.random.default_rng(1)
    for _ in range(200):
        size, budget, y = random_node(rng)
        u = rng.random(len(y))
        x = coupled_round(y, u, size, budget)
        assert np.dot(size, x) <= budget * (1 + 1e-9)
        y2 = np.clip(y + rng.normal(0, 0.01, len(y)), 1e-6, 1)  # a small step moves few variants
        x2 = coupled_round(y2, u, size, 10 * budget)
        assert np.abs(x2 - (u < y2)).sum() == 0


def test_projection_stays_in_the_feasible_set():
    rng = np.random.default_rng(2)
    for _ in range(100):
        nodes, n = 5, 9
        size = rng.uniform(0.01, 2.0, n)
        mem = rng.uniform(0.5, 6.0, nodes)
        allowed = size[None, :] <= mem[:, None]
        z = np.exp(rng.normal(0, 3, (nodes, n)))
        y = project(z, size, mem, allowed, 1e-6)
        assert np.all(y[~allowed] == 0) and np.all(y[allowed] >= 1e-6 - 1e-15) and np.all(y <= 1.0)
        assert np.all((y * size).sum(axis=1) <= mem * (1 + 1e-9))
        # the Bregman projection of this mirror map is a common scale factor, capped at 1
        for k in range(nodes):
            free = allowed[k] & (y[k] < 1.0) & (y[k] > 1e-6)
            if free.sum() >= 2:
                ratio = y[k, free] / z[k, free]
                assert np.allclose(ratio, ratio[0], rtol=1e-6)


def small_instance(seed: int = 0):
    """Edges with 8-32 MiB for variants of 1-70 MB: memory binds."""
    topo = parse_topology(tree_topology_doc(2, 3, seed, edge_mem=(8, 16, 32)), "<t>")
    cat = random_catalog(2, 4, seed)
    dem = parse_demand(random_demand_doc(topo, list(cat.tasks), 24, seed), "<d>", topo, cat)
    return topo, cat, dem, build_problem(topo, cat, dem, PlacementOptions())


def gain(inf: Infida, problem, y: np.ndarray, ref: np.ndarray) -> float:
    """The concave gain of the module docstring, computed directly (class by class)."""
    node_of = {n: i for i, n in enumerate(inf.node_ids)}
    var_of = {v: i for i, v in enumerate(inf.variant_names)}
    total = 0.0
    for r in range(len(problem.classes)):
        lam = problem.rate[r]
        rows = []
        for i in problem.triples_of(r):
            p = problem.tri_pair[i]
            n, v = node_of[problem.node_ids[problem.pair_node[p]]], var_of[problem.variant_names[problem.pair_var[p]]]
            if problem.tri_cost[i] < ref[r] - 1e-12:
                per_req = problem.tri_load[i] / lam
                cap = inf.cap[n] / per_req if per_req > 0 else np.inf
                rows.append((problem.tri_cost[i], min(lam, cap), y[n, v]))
        rows.sort(key=lambda t: t[0])
        cum = 0.0
        for k, (c, ell, yy) in enumerate(rows):
            cum += ell * yy
            nxt = rows[k + 1][0] if k + 1 < len(rows) else ref[r]
            total += (nxt - c) * min(lam, cum)
    return total


def test_gradient_is_a_supergradient_of_the_gain():
    topo, cat, dem, problem = small_instance(3)
    inf = Infida(topo, cat, InfidaOptions(seed=3))
    ref = class_reference_cost(problem)
    rng = np.random.default_rng(3)
    for _ in range(5):
        y0 = inf.y.copy()
        g = inf.gradient(problem, ref)
        g0 = gain(inf, problem, y0, ref)
        assert g0 >= 0
        for _ in range(20):  # concavity: G(y') <= G(y) + g . (y' - y)
            y1 = np.where(inf.allowed, np.clip(y0 + rng.normal(0, 0.2, y0.shape), 0, 1), 0)
            assert gain(inf, problem, y1, ref) <= g0 + float(np.sum(g * (y1 - y0))) + 1e-6 * max(1.0, g0)
        # and along a small step on one coordinate it is the directional derivative
        k = tuple(np.argwhere(g > 0)[0])
        y1 = y0.copy()
        y1[k] = max(0.0, y0[k] - 1e-7)
        assert (g0 - gain(inf, problem, y1, ref)) / (y0[k] - y1[k]) == pytest.approx(g[k], rel=1e-4)
        inf.y = np.where(inf.allowed, rng.uniform(0, 1, y0.shape), 0)


def test_updates_keep_state_feasible_and_learn_the_demand():
    topo, cat, dem, problem = small_instance(5)
    for rounding in ("depround", "coupled"):
        inf = Infida(topo, cat, InfidaOptions(seed=5, rounding=rounding))
        ref = class_reference_cost(problem)
        start = gain(inf, problem, inf.y, ref)
        for _ in range(30):
            inf.update(problem, ref)
            assert np.all(inf.y >= 0) and np.all(inf.y <= 1) and np.all(inf.y[~inf.allowed] == 0)
            assert np.all(inf.fractional_memory() <= inf.mem * (1 + 1e-9))
            assert np.all(inf.memory_used() <= inf.mem * (1 + 1e-9))  # the integral allocation fits
            for n, vs in inf.placement().items():
                assert sum(cat.variant(v).bytes / MIB for v in vs) <= topo.node(n).mem_mb * (1 + 1e-9)
        assert gain(inf, problem, inf.y, ref) > start  # ascent on a fixed demand improves the gain
    # a repository that can hold everything holds everything (the paper's fixed allocation)
    repo = inf.node_ids.index(topo.repositories[0])
    assert inf.fixed[repo] and np.all(inf.x[repo][inf.allowed[repo]] == 1)


def test_bad_options_are_refused():
    topo, cat, _, _ = small_instance()
    for bad in (InfidaOptions(rounding="pipage"), InfidaOptions(eta=-1), InfidaOptions(round_every=0)):
        with pytest.raises(ValueError):
            Infida(topo, cat, bad)
