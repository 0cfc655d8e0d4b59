"""Why a placement problem has no solution, in words a user can act on.

Checks, cheapest first:

1. a class with no useful triple: no (node, variant) on its path passes memory, the
   budget and its SLO at once. It says which constraint (or which combination) rules
   every option out and the closest miss: the best latency or accuracy that *is*
   reachable and where, the cheapest deployment that would serve it;
2. a node that cannot hold even the smallest variant of a task routed through it (a
   warning: the class may still be served further up its path);
3. a budget below the cheapest feasible plan: the ILP that minimises deployment cost
   with every other constraint kept gives that cheapest cost (proven by its bound);
4. compute: the elastic model (cpu rows may overflow, minimise the overflow) names the
   nodes that would need more cores than ``rho * cores``.

Every reason is a proof that no plan exists (a class with no option at all, a bound
above the budget, a minimum overflow above zero). When the ILP proved infeasibility and
none of these names a single cause, the combination is the cause and is said so.

Three outcomes without a plan, kept apart (:class:`NoPlan`): :class:`InfeasibleProblem`
(proven: no plan exists) and :class:`NoPlanFound` (a solver stopped without a plan, or
a heuristic failed: a plan may well exist).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from idn.catalog import Catalog, Variant
from idn.demand import Demand, RequestClass
from idn.latency import LatencyModel, Prediction, meets_latency
from idn.placement.backends import SolverOptions, run_model
from idn.placement.model import build_model
from idn.placement.problem import MIB, Problem
from idn.plan import SolveStatus
from idn.topology import Topology


class NoPlan(Exception):
    """No plan to write: ``status`` says whether none exists (INFEASIBLE) or none was found."""

    status: SolveStatus = SolveStatus.INFEASIBLE
    headline = "no plan"

    def __init__(self, reasons: list[str], warnings: list[str] | None = None):
        self.reasons = reasons or ["no reason could be given"]
        self.warnings = warnings or []
        super().__init__(f"{self.headline}:\n  - " + "\n  - ".join(self.reasons))


class InfeasibleProblem(NoPlan):
    """Proven: no plan satisfies every constraint; ``reasons`` say which and what to change."""

    status = SolveStatus.INFEASIBLE
    headline = "no feasible plan"


class NoPlanFound(NoPlan):
    """No plan was found, which does not mean none exists: a solver stopped (a time limit)
    before finding one (NO_SOLUTION), or a heuristic failed (FAILED)."""

    headline = "no plan found (this does not mean none exists)"

    def __init__(self, status: SolveStatus, reasons: list[str], warnings: list[str] | None = None):
        self.status = status
        super().__init__(reasons, warnings)


@dataclass
class Diagnosis:
    reasons: list[str] = field(default_factory=list)   # each one alone makes the problem infeasible
    warnings: list[str] = field(default_factory=list)  # worth knowing, not fatal by themselves


@dataclass
class _Option:
    """One (node, variant) of a class's path and the constraints it breaks on its own."""
    node: str
    variant: Variant
    prediction: Prediction
    cost: float  # price x MiB
    fails: frozenset[str]


def _options(c: RequestClass, problem: Problem, topology: Topology, catalog: Catalog,
             model: LatencyModel) -> list[_Option]:
    """Every (node on the path, variant of the task), judged with ``build_problem``'s own tests."""
    budget = problem.options.budget
    out = []
    for h in model.path(c.ingress):
        node = topology.nodes[h.node]
        for v in catalog.tasks[c.task].variants.values():
            size = v.bytes / MIB  # the same expressions as build_problem: same verdicts
            fails = set()
            if size > node.mem_mb:
                fails.add("memory")
            if budget is not None and node.price * size > budget:
                fails.add("budget")
            if c.min_accuracy is not None and not v.accuracy >= c.min_accuracy:
                fails.add("accuracy")
            p = model.predict(c.ingress, h.node, v, c.payload)
            if not meets_latency(p, c.max_latency_ms):
                fails.add("latency")
            out.append(_Option(h.node, v, p, node.price * size, frozenset(fails)))
    return out


def _num(x: float) -> str:
    """1 decimal for costs of 10 and more, 4 significant digits below (a 0.03 budget is not 0.0)."""
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.4g}"


def _describe(o: _Option) -> str:
    p = o.prediction
    transfer = f" + {p.transfer_ms:.1f} ms payload transfer" if p.transfer_ms else ""
    return (f"{o.variant.name} at {o.node} with {p.latency_p95_ms:.1f} ms "
            f"(p95 compute {p.compute_p95_ms:.1f} ms + 2 x {p.delay_ms:g} ms network{transfer})")


def _class_reason(c: RequestClass, problem: Problem, topology: Topology, catalog: Catalog,
                  model: LatencyModel) -> str:
    pd = [h.node for h in model.path(c.ingress)]
    slo = []
    if c.max_latency_ms is not None:
        slo.append(f"max_latency_ms={c.max_latency_ms:g}")
    if c.min_accuracy is not None:
        slo.append(f"min_accuracy={c.min_accuracy:g}")
    head = (f"class {c.id!r} (ingress {c.ingress}, task {c.task}, {', '.join(slo) or 'no SLO'}) "
            f"cannot be served on its path {' -> '.join(pd)}")
    opts = _options(c, problem, topology, catalog, model)
    fits = [o for o in opts if "memory" not in o.fails]
    if not fits:
        smallest = min(catalog.tasks[c.task].variants.values(), key=lambda v: v.bytes)
        biggest = max(topology.nodes[n].mem_mb for n in pd)
        return (f"{head}: no node on it can hold any variant of {c.task} (smallest, {smallest.name}, "
                f"needs {smallest.bytes / MIB:.1f} MiB; the largest node has {biggest:g} MiB)")
    budget = problem.options.budget
    if budget is not None and all("budget" in o.fails for o in fits):
        cheapest = min(o.cost for o in fits)
        return (f"{head}: budget {budget:g} is below the cheapest feasible plan: any placement serving it "
                f"costs at least {_num(cheapest)} (price x MiB); raise --budget")
    if c.min_accuracy is not None and all("accuracy" in o.fails for o in fits):
        best = max(fits, key=lambda o: o.variant.accuracy)
        return (f"{head}: the most accurate variant that fits is {best.variant.name} "
                f"({best.variant.accuracy:.4f} < {c.min_accuracy:g}); lower min_accuracy or add a better variant")
    if c.max_latency_ms is not None and all("latency" in o.fails for o in fits):
        fastest = min(fits, key=lambda o: o.prediction.latency_p95_ms)
        return (f"{head}: the fastest option is {_describe(fastest)} > max_latency_ms={c.max_latency_ms:g}; "
                f"relax the SLO or add a faster variant or a closer node")
    clean = [o for o in fits if not o.fails]
    if clean:  # cannot happen while this check and build_problem's agree; say so rather than guess
        return f"{head}: (inconsistent pruning: {_describe(clean[0])} passes every test; please report this)"
    # each constraint alone leaves an option: it is their combination that rules every one out
    counts = {k: sum(k in o.fails for o in fits) for k in ("budget", "accuracy", "latency")}
    parts = [f"{counts['budget']} cost more than the budget {budget:g}" if budget is not None else "",
             f"{counts['accuracy']} are below min_accuracy" if c.min_accuracy is not None else "",
             f"{counts['latency']} miss max_latency_ms" if c.max_latency_ms is not None else ""]
    fixes = []
    for k, fix in (("budget", "raise --budget to {need:.4g}"), ("accuracy", "lower min_accuracy to {need:.4g}"),
                   ("latency", "relax max_latency_ms to {need:.1f}")):
        alone = [o for o in fits if o.fails == {k}]
        if not alone:
            continue
        need = {"budget": lambda o: o.cost, "accuracy": lambda o: o.variant.accuracy,
                "latency": lambda o: o.prediction.latency_p95_ms}[k]
        best = (max if k == "accuracy" else min)(alone, key=need)
        fixes.append(fix.format(need=need(best)) + f" ({best.variant.name} at {best.node})")
    return (f"{head}: of the {len(fits)} (node, variant) options that fit memory, "
            f"{', '.join(x for x in parts if x)}, and none meets all at once"
            + (f"; {' or '.join(fixes)}" if fixes else "; relax more than one of them"))


def unservable_reasons(problem: Problem, topology: Topology, catalog: Catalog) -> list[str]:
    """Explain every class that has no useful triple (never fails: every class gets a sentence)."""
    model = LatencyModel(topology, catalog)
    return [_class_reason(problem.classes[r], problem, topology, catalog, model) for r in problem.unservable]


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


def _floor(facts) -> float | None:
    """A proven lower bound of a minimisation: its bound, or its objective when proven optimal."""
    if facts.bound is not None:
        return float(facts.bound)
    if facts.status == SolveStatus.OPTIMAL and facts.objective is not None:
        return float(facts.objective)
    return None


def diagnose(problem: Problem, topology: Topology, catalog: Catalog, demand: Demand,
             opts: SolverOptions = SolverOptions(), time_limit: float = 30.0, proven: bool = False) -> Diagnosis:
    """The reasons a problem is infeasible; each one given is proven.

    ``proven``: the caller knows the problem is infeasible (the ILP said so); when no
    single cause is found the combination is then named. Without it, an empty list of
    reasons means "nothing proves infeasibility" (a plan may exist)."""
    diag = Diagnosis(reasons=unservable_reasons(problem, topology, catalog),
                     warnings=memory_warnings(problem, topology, catalog, demand))
    if diag.reasons:
        return diag
    sub = SolverOptions(opts.solver, time_limit=time_limit, threads=opts.threads)
    budget = problem.options.budget
    memory = "memory: the nodes cannot hold a variant for every class, even with unlimited compute and budget"
    if budget is not None:
        m = build_model(problem, objective="deployment", with_budget=False)
        facts, _ = run_model(m, sub)
        floor = _floor(facts)
        if facts.status == SolveStatus.INFEASIBLE:
            diag.reasons.append(memory)
            return diag
        if floor is not None and floor > budget * (1 + 1e-9):
            exact = ("" if facts.status == SolveStatus.OPTIMAL
                     else f" (at least {_num(floor)}; the solver stopped: {facts.status})")
            cost = facts.objective if facts.status == SolveStatus.OPTIMAL and facts.objective is not None else floor
            diag.reasons.append(f"budget {budget:g} is below the cheapest feasible plan, which costs "
                                f"{_num(cost)} (price x MiB){exact}; raise --budget")
            return diag
    m = build_model(problem, objective="overflow", with_budget=False)
    facts, _ = run_model(m, sub)
    if facts.status == SolveStatus.INFEASIBLE:
        diag.reasons.append(memory)
        return diag
    floor = _floor(facts)
    if floor is not None and floor > 1e-6 and facts.objective is not None:
        for n, o in m.overflow.items():
            v = float(o.varValue or 0.0)
            if v > 1e-6:
                node = topology.nodes[problem.node_ids[n]]
                diag.reasons.append(
                    f"compute: node {node.id!r} would need {problem.cap[n] + v:.2f} busy cores but may use "
                    f"rho x cores = {problem.options.rho:g} x {node.cores:g} = {problem.cap[n]:.2f}; "
                    f"add cores, raise --rho, or lower the demand routed through it")
        if not diag.reasons:
            diag.reasons.append(f"compute: the nodes lack {floor:.3g} busy cores in all; add cores or raise --rho")
    if not diag.reasons and proven:
        if budget is not None:
            diag.reasons.append(f"budget {budget:g} together with compute limits leaves no feasible plan (each "
                                f"alone can be met); raise --budget or --rho")
        else:
            diag.reasons.append("memory and compute limits together leave no feasible plan (each alone can be "
                                "met); add memory or cores, or raise --rho")
    return diag
