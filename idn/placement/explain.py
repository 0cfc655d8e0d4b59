"""Why a placement problem has no solution, in words a user can act on.

Checks, cheapest first:

1. a class with no useful triple: no variant on any node of its path meets its SLO
   (says the best latency / accuracy that *is* reachable, and where) or fits memory;
2. a node that cannot hold even the smallest variant of a task routed through it (a
   warning: the class may still be served further up its path);
3. a budget below the cheapest feasible plan: the ILP that minimises deployment cost
   with every other constraint kept gives that cheapest cost;
4. compute: the elastic model (cpu rows may overflow, minimise the overflow) names the
   nodes that would need more cores than ``rho * cores``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from idn.catalog import Catalog
from idn.demand import Demand
from idn.latency import LatencyModel
from idn.placement.backends import SolverOptions, run_model
from idn.placement.model import build_model
from idn.placement.problem import MIB, Problem
from idn.topology import Topology


class InfeasibleProblem(Exception):
    """No plan satisfies every constraint; ``reasons`` say which and what to change."""

    def __init__(self, reasons: list[str], warnings: list[str] | None = None):
        self.reasons = reasons
        self.warnings = warnings or []
        super().__init__("no feasible plan:\n  - " + "\n  - ".join(reasons))


@dataclass
class Diagnosis:
    reasons: list[str] = field(default_factory=list)   # each one alone makes the problem infeasible
    warnings: list[str] = field(default_factory=list)  # worth knowing, not fatal by themselves


def unservable_reasons(problem: Problem, topology: Topology, catalog: Catalog) -> list[str]:
    """Explain every class that has no useful triple."""
    out = []
    model = LatencyModel(topology, catalog)
    for r in problem.unservable:
        c = problem.classes[r]
        pd = [(h.node, h.delay_ms) for h in model.path(c.ingress)]
        slo = []
        if c.max_latency_ms is not None:
            slo.append(f"max_latency_ms={c.max_latency_ms:g}")
        if c.min_accuracy is not None:
            slo.append(f"min_accuracy={c.min_accuracy:g}")
        head = (f"class {c.id!r} (ingress {c.ingress}, task {c.task}, {', '.join(slo) or 'no SLO'}) "
                f"cannot be served on its path {' -> '.join(n for n, _ in pd)}")
        fits = [(n, d, v) for n, d in pd for v in catalog.tasks[c.task].variants.values()
                if v.bytes / MIB <= topology.nodes[n].mem_mb]
        if not fits:
            smallest = min(catalog.tasks[c.task].variants.values(), key=lambda v: v.bytes)
            biggest = max(topology.nodes[n].mem_mb for n, _ in pd)
            out.append(f"{head}: no node on it can hold any variant of {c.task} (smallest, {smallest.name}, "
                       f"needs {smallest.bytes / MIB:.1f} MiB; the largest node has {biggest:g} MiB)")
            continue
        budget = problem.options.budget
        if budget is not None:
            cheapest = min(topology.nodes[n].price * v.bytes / MIB for n, _, v in fits)
            if cheapest > budget:
                out.append(f"{head}: budget {budget:g} is below the cheapest feasible plan: any placement "
                           f"serving it costs at least {cheapest:.1f} (price x MiB); raise --budget")
                continue
        acc_ok = [f for f in fits if c.min_accuracy is None or f[2].accuracy >= c.min_accuracy]
        if not acc_ok:
            best = max(fits, key=lambda f: f[2].accuracy)
            out.append(f"{head}: the most accurate variant that fits is {best[2].name} "
                       f"({best[2].accuracy:.4f} < {c.min_accuracy:g}); lower min_accuracy or add a better variant")
            continue
        preds = [(model.predict(c.ingress, n, v, c.payload), n, v) for n, _, v in acc_ok]
        p, n, v = min(preds, key=lambda t: t[0].latency_p95_ms)
        transfer = f" + {p.transfer_ms:.1f} ms payload transfer" if p.transfer_ms else ""
        out.append(f"{head}: the fastest option is {v.name} at {n} with {p.latency_p95_ms:.1f} ms "
                   f"(p95 compute {p.compute_p95_ms:.1f} ms + 2 x {p.delay_ms:g} ms network{transfer}) "
                   f"> max_latency_ms={c.max_latency_ms}; relax the SLO or add a faster variant or a closer node")
    return out


def memory_warnings(problem: Problem, topology: Topology, catalog: Catalog, demand: Demand) -> list[str]:
    """Nodes on a class's path that cannot hold even the smallest variant of its task."""
    seen: set[tuple[str, str]] = set()
    out = []
    for c in demand.classes:
        smallest = min(catalog.tasks[c.task].variants.values(), key=lambda v: v.bytes)
        for n in topology.path(c.ingress):
            if (n, c.task) in seen:
                continue
            seen.add((n, c.task))
            if smallest.bytes / MIB > topology.nodes[n].mem_mb:
                out.append(f"node {n!r} ({topology.nodes[n].mem_mb:g} MiB) cannot hold even the smallest "
                           f"{c.task} variant ({smallest.name}, {smallest.bytes / MIB:.1f} MiB): "
                           f"{c.task} traffic entering there is served further up")
    return out


def diagnose(problem: Problem, topology: Topology, catalog: Catalog, demand: Demand,
             opts: SolverOptions = SolverOptions(), time_limit: float = 30.0) -> Diagnosis:
    """Find the reasons a problem is infeasible (run after the solver said so, or before)."""
    diag = Diagnosis(reasons=unservable_reasons(problem, topology, catalog),
                     warnings=memory_warnings(problem, topology, catalog, demand))
    if diag.reasons:
        return diag
    sub = SolverOptions(opts.solver, time_limit=time_limit, threads=opts.threads)
    if problem.options.budget is not None:
        m = build_model(problem, objective="deployment", with_budget=False)
        facts, _ = run_model(m, sub)
        if facts.objective is not None and facts.objective > problem.options.budget * (1 + 1e-9):
            exact = ("" if facts.status == "optimal"
                     else f" (at least {facts.bound:.1f}, solver stopped: {facts.status})")
            diag.reasons.append(f"budget {problem.options.budget:g} is below the cheapest feasible plan, which costs "
                                f"{facts.objective:.1f} (price x MiB){exact}; raise --budget")
            return diag
    m = build_model(problem, objective="overflow", with_budget=False)
    facts, _ = run_model(m, sub)
    if facts.status == "infeasible":
        diag.reasons.append("memory: the nodes cannot hold a variant for every class even with unlimited compute")
        return diag
    if facts.objective is not None and facts.objective > 1e-6:
        for n, o in m.overflow.items():
            v = float(o.varValue or 0.0)
            if v > 1e-6:
                node = topology.nodes[problem.node_ids[n]]
                diag.reasons.append(
                    f"compute: node {node.id!r} would need {problem.cap[n] + v:.2f} busy cores but may use "
                    f"rho x cores = {problem.options.rho:g} x {node.cores:g} = {problem.cap[n]:.2f}; "
                    f"add cores, raise --rho, or lower the demand routed through it")
    if not diag.reasons and problem.options.budget is not None:
        diag.reasons.append(f"budget {problem.options.budget:g} together with compute limits leaves no feasible plan; "
                            f"raise --budget or --rho")
    return diag

