"""One decision round of ``idn control``, as a pure function: measured demand + running plan -> decision.

Why its own module: the live controller (:mod:`idn.controller`) and the simulator's
``control`` policy (:mod:`idn.simulate`) must take *the same* decision from the same
inputs, so that the simulator predicts what the live controller does. Both call
:func:`decide_round`; nothing here does I/O, so the simulator can run it thousands of
times and tests can run it without a network.

A round:

1. solves the placement for the measured demand, with the running plan as the ILP's
   current state (:mod:`idn.placement.moves`: keeping a placement is free, a new one
   costs ``move_weight / interval_s`` per ms of moving, i.e. one ms of moving is worth
   ``move_weight`` request-ms of latency and a plan's gain per second counts over one
   interval);
2. keeps idle variants while they fit (``keep_idle``): a variant the running plan holds
   that the new plan does not use stays where it is as long as the node's memory (and
   the budget) still has room after the new plan's own placements. The ILP's horizon is
   one interval and a plan lists only what carries traffic, so without this a variant
   whose class pauses for one round is unloaded and bought again, at full move cost,
   when the class returns (a flash crowd that comes back to an edge). Keeping it costs
   nothing the model charges: memory it would not use otherwise, no compute;
3. decides (:func:`decide`): replace the running plan only if it breaks a constraint
   under the measured demand, or the new one is cheaper by ``min_gain`` after paying for
   its moves; after a change, ``hold_rounds`` rounds keep it unless it breaks
   (hysteresis), so two plans of near-equal cost cannot alternate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from idn.catalog import Catalog
from idn.demand import Demand
from idn.placement import solve
from idn.placement.backends import SolverOptions
from idn.placement.evaluate import Evaluation, evaluate
from idn.placement.moves import Moves
from idn.placement.problem import MIB, PlacementOptions
from idn.plan import Plan
from idn.topology import Topology


@dataclass(frozen=True)
class Decision:
    apply: bool
    reason: str
    current: Evaluation | None = None
    candidate: Evaluation | None = None


def decide(current: Evaluation | None, candidate: Evaluation, min_gain: float, held: bool = False) -> Decision:
    """Replace the running plan only if it cannot serve the demand or the new one is clearly cheaper.

    The candidate's gain is net of its move cost (``candidate.move_cost``, in the same
    units as the objective: what the moves cost, spread over one interval). ``held``:
    the last change is too recent (hysteresis); only a broken running plan is replaced."""
    if current is None:
        return Decision(True, "no plan yet", None, candidate)
    if current.violations:
        return Decision(True, f"the running plan breaks {len(current.violations)} constraint(s) under the "
                              f"measured demand (e.g. {current.violations[0]})", current, candidate)
    net = candidate.objective + candidate.move_cost
    gain = 1 - net / current.objective if current.objective > 0 else 0.0
    moves = f" after {len(candidate.moved)} move(s)" if candidate.moved else ""
    if held:
        return Decision(False, f"new plan {100 * gain:.1f}% cheaper{moves}, but the last change is too recent "
                               "(hysteresis): keep", current, candidate)
    if gain >= min_gain:
        return Decision(True, f"new plan {100 * gain:.1f}% cheaper{moves}", current, candidate)
    return Decision(False, f"new plan only {100 * gain:.1f}% cheaper{moves} (< {100 * min_gain:.0f}%): keep",
                    current, candidate)


@dataclass(frozen=True)
class RoundKnobs:
    """Everything a round's decision depends on besides its inputs: ``idn control``'s options."""
    options: PlacementOptions = field(default_factory=PlacementOptions)
    method: str = "highs"
    solver: SolverOptions = field(default_factory=SolverOptions)
    min_gain: float = 0.05
    interval_s: float = 10.0    # how long a plan is expected to run: gains per second count this long
    move_weight: float = 1.0    # request-ms of latency one ms of moving is worth (0: moves are free)
    hold_rounds: int = 1        # rounds after a change during which only a broken plan is replaced
    keep_idle: bool = True      # keep the running plan's unused variants while they fit

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "min_gain": self.min_gain, "interval_s": self.interval_s,
                "move_weight": self.move_weight, "hold_rounds": self.hold_rounds, "keep_idle": self.keep_idle,
                "placement": self.options.as_dict()}


@dataclass(frozen=True)
class Round:
    """What a round decided, and the plan to apply when ``decision.apply``."""
    decision: Decision
    plan: Plan           # the candidate (with the kept idle variants)
    kept: tuple[str, ...]  # "<variant>@<node>" kept idle by keep_idle
    solve_s: float


def running_moves(running: Plan | None, topology: Topology, weight_per_ms: float) -> Moves | None:
    """The running plan's placements on the nodes of ``topology`` as the ILP's current state."""
    if running is None:
        return None
    held = {n: vs for n, vs in running.placements.items() if n in topology.nodes}
    return Moves.from_placements(held, weight_per_ms)


def keep_idle(plan: Plan, running: Plan | None, topology: Topology, catalog: Catalog,
              options: PlacementOptions) -> tuple[Plan, tuple[str, ...]]:
    """``plan`` plus the running plan's variants it dropped, where they still fit.

    Per node (in id order), the dropped variants are added back smallest first while the
    node's memory row (the ILP's: catalog sizes in MiB <= mem_mb) and the deployment budget
    hold. Routes are untouched: a kept variant carries no traffic until a later plan
    routes some to it, which the ILP with moves then gets for free."""
    if running is None:
        return plan, ()
    placements = {n: list(vs) for n, vs in plan.placements.items()}
    deployment = sum(topology.nodes[n].price * sum(catalog.variant(v).bytes for v in vs) / MIB
                     for n, vs in placements.items() if n in topology.nodes)
    kept: list[str] = []
    for nid in sorted(running.placements):
        if nid not in topology.nodes:
            continue
        node = topology.nodes[nid]
        have = placements.setdefault(nid, [])
        used = sum(catalog.variant(v).bytes for v in have) / MIB
        dropped = sorted((v for v in running.placements[nid] if v not in have and v in catalog.variants),
                         key=lambda v: (catalog.variant(v).bytes, v))
        for v in dropped:
            mib = catalog.variant(v).bytes / MIB
            if used + mib > node.mem_mb:
                continue
            if options.budget is not None and deployment + node.price * mib > options.budget:
                continue
            have.append(v)
            used += mib
            deployment += node.price * mib
            kept.append(f"{v}@{nid}")
    if not kept:
        return plan, ()
    new = {n: tuple(sorted(vs)) for n, vs in sorted(placements.items()) if vs}
    return replace(plan, placements=new), tuple(kept)


def decide_round(topology: Topology, catalog: Catalog, demand: Demand, running: Plan | None,
                 since_change: int, knobs: RoundKnobs, live_changed: str | None = None) -> Round:
    """Solve for ``demand`` given the ``running`` plan, keep idle variants, decide.

    ``since_change``: rounds since the last applied change, this one included (hysteresis
    holds while it is <= ``hold_rounds``). ``live_changed``: the set of live nodes differs
    from the one the running plan was made for (the controller's failure handling): apply,
    with that reason. Raises :class:`idn.placement.NoPlan` when no plan exists for the
    demand (the caller keeps what runs)."""
    moves = running_moves(running, topology, knobs.move_weight / max(knobs.interval_s, 1e-9))
    t0 = time.monotonic()
    outcome = solve(topology, catalog, demand, knobs.options, method=knobs.method, solver=knobs.solver,
                    moves=moves)
    solve_s = time.monotonic() - t0
    plan, candidate = outcome.plan, outcome.evaluation
    kept: tuple[str, ...] = ()
    if knobs.keep_idle:
        plan, kept = keep_idle(plan, running, topology, catalog, knobs.options)
        if kept:  # same routes, so the same objective; re-scored so the books show what it holds
            candidate = evaluate(plan, topology, catalog, demand, knobs.options,
                                 reference_objective=outcome.reference.objective, moves=moves)
    if running is not None and live_changed is not None:
        return Round(Decision(True, live_changed, None, candidate), plan, kept, solve_s)
    current = evaluate(running, topology, catalog, demand, knobs.options) if running is not None else None
    d = decide(current, candidate, knobs.min_gain, held=since_change <= knobs.hold_rounds)
    return Round(d, plan, kept, solve_s)
