"""The variants a node knows how to load, and those it has loaded.

A node knows models from two sources: explicit ``NAME=PATH`` pairs and the catalog
(every catalog variant is loadable by name, hash-checked). ``configured`` is the set
that must be loaded before the node reports ready. Loading builds the new session
off the event loop and then swaps it in, so a reload never interrupts requests;
unloading removes the variant from the table first and drops the session only after
its in-flight requests drained.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from idn.catalog import Catalog
from idn.config import sha256_file
from idn.node.runtime import VariantRuntime
from idn.node.settings import NodeSettings
from idn.protocol.status import DataPlaneError, ModelNotFound, Status

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
                 sources: dict[str, Path] | None = None, catalog: Catalog | None = None):
        self.settings = settings
        self.executor = executor
        self.catalog = catalog
        self.sources: dict[str, Path] = dict(sources or {})
        self.loaded: dict[str, VariantRuntime] = {}
        self.states: dict[str, ModelState] = {}
        self.configured: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def known(self) -> list[str]:
        names = set(self.sources) | set(self.loaded) | set(self.states)
        if self.catalog is not None:
            names |= set(self.catalog.variants)
        return sorted(names)

    def source_of(self, name: str) -> Path:
        if name in self.sources:
            return self.sources[name]
        if self.catalog is not None and name in self.catalog.variants:
            return self.catalog.variants[name].path
        raise ModelNotFound(f"model '{name}' is not in this node's repository; known models: {self.known()}")

    def get(self, name: str) -> VariantRuntime:
        rt = self.loaded.get(name)
        if rt is None:
            raise ModelNotFound(f"model '{name}' is not loaded on this node; loaded: {sorted(self.loaded)}")
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
                                                self.executor)
            except DataPlaneError as e:
                self.states[name] = ModelState(name, "UNAVAILABLE", str(e))
                raise
            except Exception as e:  # ORT's load errors: bad file, unsupported op, ...
                self.states[name] = ModelState(name, "UNAVAILABLE", f"load failed: {e}")
                where = f"{len(source)} uploaded bytes" if isinstance(source, bytes) else str(source)
                raise DataPlaneError(f"model '{name}' failed to load from {where}: {str(e)[:500]}",
                                     Status.INVALID_ARGUMENT) from None
            old = self.loaded.get(name)
            self.loaded[name] = rt
            if isinstance(source, Path):
                self.sources.setdefault(name, source)
            self.states[name] = ModelState(name, "READY")
            if old is not None:
                await old.drained()
            log.debug("loaded %s from %s", name, source if isinstance(source, Path) else "<bytes>")
            return rt

    async def unload(self, name: str) -> None:
        """Stop routing to the variant, then drop it once its in-flight requests finished."""
        async with self._locks.setdefault(name, asyncio.Lock()):
            rt = self.loaded.pop(name, None)
            if rt is None:
                raise ModelNotFound(f"model '{name}' is not loaded on this node; loaded: {sorted(self.loaded)}")
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
