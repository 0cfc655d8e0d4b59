"""The variants a node knows how to load, and those it has loaded.

A node knows models from two sources: explicit ``NAME=PATH`` pairs and the catalog
(every catalog variant is loadable by name, hash-checked). ``configured`` is the set
that must be loaded before the node reports ready. Loading builds the new session
off the event loop and then swaps it in, so a reload never interrupts requests;
unloading removes the variant from the table first and drops the session only after
its in-flight requests drained.

Memory: the store knows the size of what it loaded (the catalog's bytes, the file's,
or the upload's), so a load that nobody planned — the repository serving a variant on
demand — can be kept within the node's memory (``load_on_demand``): it evicts earlier
on-demand loads, least recently used first, and never a planned or configured variant.
Nothing here is keyed by a name the store does not know.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from idn.catalog import Catalog
from idn.config import sha256_file
from idn.node.runtime import VariantRuntime
from idn.node.settings import NodeSettings
from idn.protocol.status import DataPlaneError, ModelNotFound, Status, echo

log = logging.getLogger("idn.node")


@dataclass
class ModelState:
    name: str
    state: str  # READY, LOADING, UNLOADING, UNAVAILABLE (the repository extension's words)
    reason: str = ""


class VariantStore:
    """This node's variants: loadable ones and loaded ones (Triton calls it the model repository;
    IDN keeps "repository" for the node that serves every task)."""

    def __init__(self, settings: NodeSettings, executor: Executor | None = None,
                 sources: dict[str, Path] | None = None, catalog: Catalog | None = None,
                 hardware_class: str | None = None):
        self.settings = settings
        self.hardware_class = hardware_class  # the node's, to read the catalog's profiles
        self.executor = executor
        self.catalog = catalog
        self.sources: dict[str, Path] = dict(sources or {})
        self.loaded: dict[str, VariantRuntime] = {}
        self.states: dict[str, ModelState] = {}
        self.configured: set[str] = set()
        self.sizes: dict[str, int] = {}  # bytes of each loaded variant
        self.planned: set[str] = set()  # what the current plan (or the one being prepared) puts here
        # Variants loaded on demand (not planned, not configured), least recently used first.
        self.on_demand: OrderedDict[str, None] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._on_demand_lock = asyncio.Lock()

    def known(self) -> list[str]:
        names = set(self.sources) | set(self.loaded) | set(self.states)
        if self.catalog is not None:
            names |= set(self.catalog.variants)
        return sorted(names)

    def is_known(self, name: str) -> bool:
        """A name this node could serve or load (no client-chosen string ever becomes a key otherwise)."""
        return (name in self.loaded or name in self.sources
                or (self.catalog is not None and name in self.catalog.variants))

    def source_of(self, name: str) -> Path:
        if name in self.sources:
            return self.sources[name]
        if self.catalog is not None and name in self.catalog.variants:
            return self.catalog.variants[name].path
        raise ModelNotFound(f"model '{echo(name)}' is not in this node's repository; known models: "
                            f"{_names(self.known())}")

    def profile_batch(self, name: str) -> int | None:
        """The batch limit the catalog's profile gives a variant on this node's hardware
        class (None: not in the catalog or not profiled, the node's default applies)."""
        if self.catalog is None or name not in self.catalog.variants:
            return None
        return self.catalog.variants[name].batch_limit(self.hardware_class)

    def get(self, name: str) -> VariantRuntime:
        rt = self.loaded.get(name)
        if rt is None:
            raise ModelNotFound(f"model '{echo(name)}' is not loaded on this node; loaded: {_names(self.loaded)}")
        return rt

    # -- memory ---------------------------------------------------------------------------

    def size_of(self, name: str) -> int:
        """Bytes a variant takes: the catalog's figure, else its file's size (as the placement counts)."""
        if name in self.sizes:
            return self.sizes[name]
        if self.catalog is not None and name in self.catalog.variants:
            return self.catalog.variants[name].bytes
        return self.source_of(name).stat().st_size

    def bytes_loaded(self) -> int:
        return sum(self.sizes.get(n, 0) for n in self.loaded)

    def fits(self, name: str, memory_bytes: int) -> bool:
        """Whether ``name`` could be loaded on demand within ``memory_bytes``, evicting only
        earlier on-demand loads."""
        if name in self.loaded:
            return True
        kept = sum(self.sizes.get(n, 0) for n in self.loaded if n not in self.on_demand)
        return kept + self.size_of(name) <= memory_bytes

    def adopt(self, names: Iterable[str]) -> None:
        """These variants are planned (or loaded on purpose by an operator): never evict them."""
        for n in names:
            self.planned.add(n)
            self.on_demand.pop(n, None)

    def touch(self, name: str) -> None:
        if name in self.on_demand:
            self.on_demand.move_to_end(name)

    async def load_on_demand(self, name: str, memory_bytes: int) -> VariantRuntime | None:
        """Load a known variant nobody planned here, keeping everything loaded within
        ``memory_bytes``: earlier on-demand loads are unloaded (least recently used first) to
        make room, planned and configured variants never. None when it cannot fit. One
        on-demand load at a time, so concurrent requests cannot overshoot the budget."""
        async with self._on_demand_lock:
            rt = self.loaded.get(name)
            if rt is not None:
                self.touch(name)
                return rt
            if not self.fits(name, memory_bytes):
                return None
            need = self.size_of(name)
            while self.bytes_loaded() + need > memory_bytes:
                if not self.on_demand:  # a plan's loads took the room meanwhile
                    return None
                victim = next(iter(self.on_demand))
                log.info("unloading %s (loaded on demand) to make room for %s", victim, name)
                await self.unload(victim)
            rt = await self.load(name)
            if name not in self.configured and name not in self.planned:
                self.on_demand[name] = None
            return rt

    def ready(self) -> bool:
        return all(n in self.loaded for n in self.configured)

    async def load(self, name: str, source: Path | bytes | None = None) -> VariantRuntime:
        """Load (or reload) a variant; the old session keeps serving until the new one is in."""
        if source is None:
            source = self.source_of(name)
        async with self._locks.setdefault(name, asyncio.Lock()):
            self.states[name] = ModelState(name, "LOADING")
            loop = asyncio.get_running_loop()
            try:
                if isinstance(source, Path) and self.catalog is not None and name in self.catalog.variants:
                    want = self.catalog.variants[name].sha256
                    got = await loop.run_in_executor(self.executor, sha256_file, source)
                    if got != want:
                        raise DataPlaneError(f"model '{name}': {source} hashes to {got}, the catalog says {want}",
                                             Status.FAILED_PRECONDITION)
                rt = await loop.run_in_executor(self.executor, VariantRuntime, name, source, self.settings,
                                                self.executor, "1", self.profile_batch(name))
            except DataPlaneError as e:
                self.states[name] = ModelState(name, "UNAVAILABLE", str(e))
                raise
            except Exception as e:  # ORT's load errors: bad file, unsupported op, ...
                self.states[name] = ModelState(name, "UNAVAILABLE", f"load failed: {e}")
                where = f"{len(source)} uploaded bytes" if isinstance(source, bytes) else str(source)
                raise DataPlaneError(f"model '{echo(name)}' failed to load from {where}: {str(e)[:500]}",
                                     Status.INVALID_ARGUMENT) from None
            old = self.loaded.get(name)
            self.loaded[name] = rt
            self.sizes[name] = len(source) if isinstance(source, bytes) else self.size_of(name)
            if isinstance(source, Path):
                self.sources.setdefault(name, source)
            self.states[name] = ModelState(name, "READY")
            if old is not None:
                await old.drained()
            log.debug("loaded %s from %s", name, source if isinstance(source, Path) else "<bytes>")
            return rt

    async def unload(self, name: str) -> None:
        """Stop routing to the variant, then drop it once its in-flight requests finished."""
        if name not in self.loaded:  # checked before a lock is made for the name
            raise ModelNotFound(f"model '{echo(name)}' is not loaded on this node; loaded: {_names(self.loaded)}")
        async with self._locks.setdefault(name, asyncio.Lock()):
            rt = self.loaded.pop(name, None)
            if rt is None:
                raise ModelNotFound(f"model '{echo(name)}' is not loaded on this node; loaded: {_names(self.loaded)}")
            self.on_demand.pop(name, None)
            self.sizes.pop(name, None)
            self.states[name] = ModelState(name, "UNLOADING")
            await rt.drained()
            self.states[name] = ModelState(name, "UNAVAILABLE", "unloaded")

    async def load_all(self, names: Iterable[str]) -> None:
        names = list(names)
        self.configured |= set(names)
        for n in names:
            await self.load(n)

    def index(self, ready_only: bool = False) -> list[ModelState]:
        out = []
        for n in self.known():
            st = self.states.get(n) or ModelState(n, "UNAVAILABLE", "not loaded")
            if st.state == "READY" or not ready_only:
                out.append(st)
        return out


def _names(names: Iterable[str], limit: int = 20) -> str:
    """A sorted list of names for an error message, the first ``limit`` of them."""
    ordered = sorted(names)
    shown = ", ".join(f"'{n}'" for n in ordered[:limit])
    return f"[{shown}{f', ... ({len(ordered)} in all)' if len(ordered) > limit else ''}]"
