"""Reading a solver's outcome honestly: a proven optimum, a limit, infeasibility or nothing.

Honest status: PuLP maps a HiGHS time limit to "Optimal" in ``prob.status``; this module
reads ``prob.sol_status`` and HiGHS' own model status and info (``mip_dual_bound``,
``mip_gap``), or CBC's log, and reports ``optimal`` only for a proven optimum
(within the solver's default tolerance), ``gap-limit`` when it stopped at a requested
gap, ``time-limit`` when it stopped on time with an incumbent, ``infeasible`` or
``no-solution`` otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pulp

from idn.plan import SolveStatus

PROVEN_GAP = 1e-4  # HiGHS' and CBC's default relative gap: below it we call a result optimal


@dataclass(frozen=True)
class RunFacts:
    status: SolveStatus
    objective: float | None
    bound: float | None
    gap: float | None
    message: str


def _rel_gap(obj: float | None, bound: float | None) -> float | None:
    if obj is None or bound is None or not (math.isfinite(obj) and math.isfinite(bound)):
        return None
    return max(0.0, obj - bound) / max(abs(obj), 1e-9)


def highs_facts(prob: pulp.LpProblem, mip: bool) -> RunFacts:
    import highspy
    h = prob.solverModel
    ms = h.getModelStatus()
    info = h.getInfo()
    S = highspy.HighsModelStatus
    name = h.modelStatusToString(ms)
    has_sol = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    obj = float(info.objective_function_value) if has_sol else None
    bound = None
    if mip and int(info.mip_node_count) >= 0 and math.isfinite(info.mip_dual_bound):
        bound = float(info.mip_dual_bound)
    elif not mip and ms == S.kOptimal:
        bound = obj
    gap = _rel_gap(obj, bound)
    if ms in (S.kInfeasible, S.kUnboundedOrInfeasible):
        return RunFacts(SolveStatus.INFEASIBLE, None, None, None, name)
    if not has_sol:
        return RunFacts(SolveStatus.NO_SOLUTION, None, bound, None, name)
    if ms == S.kOptimal:
        status = SolveStatus.OPTIMAL if (gap is None or gap <= PROVEN_GAP * 1.0001) else SolveStatus.GAP_LIMIT
        if bound is None and mip:
            bound, gap = obj, 0.0
        return RunFacts(status, obj, bound, gap, name)
    if ms == S.kTimeLimit:
        return RunFacts(SolveStatus.TIME_LIMIT, obj, bound, gap, name)
    return RunFacts(SolveStatus.FEASIBLE, obj, bound, gap, name)


_CBC_NUM = r"([-+0-9.eE]+|-?inf(?:inity)?)"


def cbc_facts(prob: pulp.LpProblem, log: str) -> RunFacts:
    result = re.search(r"Result - (.*)", log)
    msg = result.group(1).strip() if result else pulp.LpStatus[prob.status]
    if not result and re.search(r"^Optimal objective", log, re.M):
        # presolve left no integer variable: CBC ran its LP solver, whose log has no "Result -" line
        msg = "Optimal solution found (LP: no integer variables left)"
    has_sol = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    if prob.status == pulp.LpStatusInfeasible or SolveStatus.INFEASIBLE in msg.lower():
        return RunFacts(SolveStatus.INFEASIBLE, None, None, None, msg)
    obj = float(pulp.value(prob.objective) or 0.0) if has_sol else None
    m = re.search(r"Lower bound:\s*" + _CBC_NUM, log)
    bound = float(m.group(1)) if m else None
    if bound is None and "Optimal solution found" in msg and obj is not None:
        bound = obj
    gap = _rel_gap(obj, bound)
    if not has_sol:
        return RunFacts(SolveStatus.NO_SOLUTION, None, bound, None, msg)
    if "Optimal solution found" in msg:
        proven = gap is None or gap <= PROVEN_GAP * 1.0001
        return RunFacts(SolveStatus.OPTIMAL if proven else SolveStatus.GAP_LIMIT, obj, bound, gap, msg)
    if "time" in msg.lower():
        return RunFacts(SolveStatus.TIME_LIMIT, obj, bound, gap, msg)
    return RunFacts(SolveStatus.FEASIBLE, obj, bound, gap, msg)


