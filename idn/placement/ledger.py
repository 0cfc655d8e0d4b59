"""Memory and budget while a heuristic places (node, variant) pairs.

Every heuristic (smallest, greedy, LP rounding, the repairs) asks the same question
before placing a pair — does the variant still fit the node's memory, and the
deployment cost the budget? — with the same tolerance; this is the one place that
answers it and keeps the books.
"""

from __future__ import annotations

import numpy as np

from idn.placement.problem import Problem

TOL = 1e-9


class Ledger:
    def __init__(self, problem: Problem, placed: np.ndarray | None = None):
        self.node, self.size, self.cost = problem.pair_node, problem.pair_size, problem.pair_cost
        self.mem = problem.mem
        self.budget = problem.options.budget
        if placed is None:
            self.used = np.zeros(len(problem.node_ids))
            self.spent = 0.0
        else:
            # float explicitly: numpy's bincount returns int64 for an empty selection even with
            # float weights, and later `used[n] += size` would then truncate (a ledger that forgets).
            self.used = np.bincount(self.node[placed], weights=self.size[placed],
                                    minlength=len(problem.node_ids)).astype(float)
            self.spent = float(self.cost[placed].sum())

    def fits(self, p: int) -> bool:
        n = self.node[p]
        return (self.used[n] + self.size[p] <= self.mem[n] + TOL
                and (self.budget is None or self.spent + self.cost[p] <= self.budget + TOL))

    def add(self, p: int) -> None:
        self.used[self.node[p]] += self.size[p]
        self.spent += float(self.cost[p])

    def remove(self, p: int) -> None:
        self.used[self.node[p]] -= self.size[p]
        self.spent -= float(self.cost[p])

    def place_if_fits(self, p: int) -> bool:
        if not self.fits(p):
            return False
        self.add(p)
        return True
