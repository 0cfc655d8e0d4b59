"""Applying a plan to a running node, make-before-break, and remembering it.

Order matters so that no request is lost: (1) load every variant the plan puts here
that is not loaded yet — the old routing table keeps serving meanwhile; (2) persist
the plan and swap in the new routing table (one assignment: each request resolves
against exactly one table); (3) unload what the plan no longer needs, each variant
only after its admitted requests finished. Across a network the same holds only if
every node finishes (1) before any node does (2), and every node (2) before any (3):
otherwise an ingress still on the old plan may route to a variant its target already
unloaded. So the steps are also exposed one by one (``Phase``) and ``idn apply``
runs each across all nodes before the next. When phases are skipped (or a request
routed by the old plan arrives late), a node can receive a target it has not loaded:
it never loads outside its plan, it sends the request on to the repository, which
loads it on demand within its memory (``DataPlane``), so the request is still served.
Variants given explicitly at start-up (``--model``/``--variant``) are never unloaded by a
plan. A plan whose version is not newer than the current one is refused, so a late or replayed push cannot roll a
node back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from enum import IntEnum
from pathlib import Path

from idn.catalog import Catalog
from idn.config import ConfigError
from idn.node.dataplane import DataPlane
from idn.node.router import RoutingTable
from idn.plan import ApplyResult, Plan, check_plan, parse_plan, plan_to_dict
from idn.protocol.status import DataPlaneError, InvalidInput, Status
from idn.topology import Topology

log = logging.getLogger("idn.node")

PLAN_FILE = "plan.json"


class Phase(IntEnum):
    """ApplyPlanRequest.Phase: the three steps of a change, or all of them on one node."""

    APPLY = 0
    PREPARE = 1
    COMMIT = 2
    CLEANUP = 3


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
                check_plan(plan, self.topology, self.catalog, "<ApplyPlan request>")
            except ConfigError as e:
                raise InvalidInput(str(e)) from None
        return plan

    async def apply(self, plan: Plan, check_version: bool = True, phase: Phase = Phase.APPLY) -> ApplyResult:
        """One phase of a plan change (or all three). See the module docstring for why the order."""
        async with self._lock:
            if self.topology is None:
                raise DataPlaneError("this node was started without --topology: it cannot take a plan",
                                     Status.FAILED_PRECONDITION)
            if phase is Phase.CLEANUP:
                if plan.version != self.version:
                    raise DataPlaneError(f"CLEANUP names plan version {plan.version} but this node routes by "
                                         f"version {self.version}; COMMIT it first", Status.FAILED_PRECONDITION)
                return await self._break(plan, ())
            if check_version and plan.version <= self.version:
                raise DataPlaneError(f"plan version {plan.version} is not newer than this node's "
                                     f"version {self.version}; re-version it (idn apply does)",
                                     Status.FAILED_PRECONDITION)
            loaded = await self._make(plan)
            if phase is Phase.PREPARE:
                return ApplyResult(plan.version, loaded, (), self._kept(plan, loaded), self.node_id)
            self._switch(plan)
            if phase is Phase.COMMIT:
                return ApplyResult(plan.version, loaded, (), self._kept(plan, loaded), self.node_id)
            return await self._break(plan, loaded)

    async def _make(self, plan: Plan) -> tuple[str, ...]:
        """Load what the plan puts here; the current routing table keeps serving meanwhile."""
        repo = self.dataplane.store
        repo.adopt(plan.variants_on(self.node_id))  # loaded on demand earlier? planned now: never evicted
        new = [v for v in plan.variants_on(self.node_id) if v not in repo.loaded]
        for v in new:
            await repo.load(v)
        return tuple(sorted(new))

    def _switch(self, plan: Plan) -> None:
        """Persist, then route by the plan: one assignment, so each request sees one table."""
        self.dataplane.store.configured = set(plan.variants_on(self.node_id)) | self.pinned
        self._persist(plan)
        self.dataplane.router = RoutingTable(self.node_id, self.topology, self.catalog, plan)

    async def _break(self, plan: Plan, loaded: tuple[str, ...]) -> ApplyResult:
        """Unload what the plan does not need, each variant after its in-flight requests finished."""
        repo = self.dataplane.store
        wanted = set(plan.variants_on(self.node_id))
        repo.planned = set(wanted)
        stale = sorted(v for v in repo.loaded if v not in wanted and v not in self.pinned)
        for v in stale:
            await repo.unload(v)
        res = ApplyResult(plan.version, loaded, tuple(stale), self._kept(plan, loaded), self.node_id)
        log.info("plan v%d: loaded %s, unloaded %s, kept %s", plan.version, list(res.loaded),
                 list(res.unloaded), list(res.kept))
        return res

    def _kept(self, plan: Plan, loaded: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(plan.variants_on(self.node_id)) - set(loaded)))

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
