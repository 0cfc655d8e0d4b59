"""Applying a plan to a running node, make-before-break, and remembering it.

Order matters so that no request is lost: (1) load every variant the plan puts here
that is not loaded yet — the old routing table keeps serving meanwhile; (2) persist
the plan and swap in the new routing table (one assignment: each request resolves
against exactly one table); (3) unload what the plan no longer needs, each variant
only after its admitted requests finished. Variants given explicitly at start-up
(``--model``/``--variant``) are never unloaded by a plan. A plan whose version is not
newer than the current one is refused, so a late or replayed push cannot roll a
node back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from idn.catalog import Catalog
from idn.config import ConfigError
from idn.node.dataplane import DataPlane
from idn.node.errors import DataPlaneError, InvalidInput, Status
from idn.node.routing import RoutingTable
from idn.plan import Plan, check_plan_against, parse_plan, plan_to_dict
from idn.topology import Topology

log = logging.getLogger("idn.node")

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class ApplyResult:
    version: int
    loaded: tuple[str, ...]
    unloaded: tuple[str, ...]
    kept: tuple[str, ...]


class Deployment:
    def __init__(self, node_id: str, topology: Topology | None, catalog: Catalog | None, dataplane: DataPlane,
                 state_dir: Path | None = None, pinned: set[str] | None = None):
        self.node_id = node_id
        self.topology = topology
        self.catalog = catalog
        self.dataplane = dataplane
        self.state_dir = state_dir
        self.pinned = set(pinned or ())  # loaded at start-up by name: plans never unload them
        self._lock = asyncio.Lock()

    @property
    def plan(self) -> Plan | None:
        return self.dataplane.router.plan

    @property
    def version(self) -> int:
        return self.dataplane.router.version

    def parse(self, plan_json: str) -> Plan:
        try:
            plan = parse_plan(json.loads(plan_json), "<ApplyPlan request>")
        except json.JSONDecodeError as e:
            raise InvalidInput(f"plan_json is not valid JSON: {e}") from None
        except ConfigError as e:
            raise InvalidInput(str(e)) from None
        if self.topology is not None and self.catalog is not None:
            try:
                check_plan_against(plan, set(self.topology.nodes), set(self.catalog.variants), "<ApplyPlan request>")
            except ConfigError as e:
                raise InvalidInput(str(e)) from None
        return plan

    async def apply(self, plan: Plan, check_version: bool = True) -> ApplyResult:
        async with self._lock:
            if check_version and plan.version <= self.version:
                raise DataPlaneError(f"plan version {plan.version} is not newer than this node's "
                                     f"version {self.version}; re-version it (idn apply does)",
                                     Status.FAILED_PRECONDITION)
            if self.topology is None:
                raise DataPlaneError("this node was started without --topology: it cannot take a plan",
                                     Status.FAILED_PRECONDITION)
            repo = self.dataplane.repository
            wanted = plan.variants_on(self.node_id)
            before = set(repo.loaded)
            for v in wanted:  # make ...
                if v not in repo.loaded:
                    await repo.load(v)
            repo.configured = set(wanted) | self.pinned
            self._persist(plan)
            self.dataplane.router = RoutingTable(self.node_id, self.topology, self.catalog, plan)  # ... switch ...
            stale = [v for v in repo.loaded if v not in wanted and v not in self.pinned]
            for v in stale:  # ... break, each after its in-flight requests drained
                await repo.unload(v)
            res = ApplyResult(plan.version, tuple(sorted(set(wanted) - before)), tuple(sorted(stale)),
                              tuple(sorted(set(wanted) & before)))
            log.info("applied plan v%d: loaded %s, unloaded %s, kept %s", plan.version, list(res.loaded),
                     list(res.unloaded), list(res.kept))
            return res

    def _persist(self, plan: Plan) -> None:
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / (PLAN_FILE + ".tmp")
        tmp.write_text(json.dumps(plan_to_dict(plan)))
        os.replace(tmp, self.state_dir / PLAN_FILE)  # atomic: a crash leaves the old or the new plan

    async def restore(self) -> Plan | None:
        """Re-apply the plan persisted by an earlier run, if any."""
        if self.state_dir is None or not (self.state_dir / PLAN_FILE).is_file():
            return None
        path = self.state_dir / PLAN_FILE
        try:
            plan = self.parse(path.read_text())
        except (OSError, DataPlaneError) as e:
            log.error("ignoring persisted plan %s: %s", path, e)
            return None
        await self.apply(plan, check_version=False)
        return plan
