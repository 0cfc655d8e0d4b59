"""Adaptive batching: requests for one variant that queue up while a run of it is in
flight are merged into its next run.

Why: every ``session.run`` releases and re-takes the GIL, and under load grpc.aio's
poller thread takes it in between, so each call costs a thread hand-off on top of
the compute; and a model's weights stream through the cache once per run, not once
per sample. Merging the requests that are already waiting amortises both.

No added wait (Triton's dynamic batcher with max_queue_delay = 0, but without even a
loop turn when idle): a request that finds the variant idle runs at once, on the
caller's own task, exactly as without a batcher, so latency at one in flight does not
move. Only requests that arrive while a run is in flight wait, and they would have
waited anyway; when the run ends they go together, up to ``max_batch`` samples per
run. So the batch size follows the load: 1 when idle, larger as requests pile up.

``max_runs`` runs of one variant may be in flight at once (Triton's instance count):
with more than one, a request runs at once while a run slot is free, and requests merge
only once every slot is busy. The node sets it to its worker count so that a variant
can use every core (README, "Which multi-core option, and why").

Only requests with the same trailing shapes, dtypes and requested outputs are merged
(the caller batches only variants whose every input and output has a dynamic leading
dimension, and never int8-dynamic ones). If a merged run fails, its requests are re-run
one by one so that only the request at fault gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

# async (feeds, requested outputs or None, samples) -> one array per output
RunFn = Callable[[dict[str, np.ndarray], Sequence[str] | None, int], Awaitable[list[np.ndarray]]]
_Item = tuple[Any, dict[str, np.ndarray], Sequence[str] | None, int, "asyncio.Future[list[np.ndarray]]"]


class Batcher:
    def __init__(self, run: RunFn, max_batch: int, max_runs: int = 1):
        self._run = run
        self.max_batch = max_batch
        self.max_runs = max(1, max_runs)
        self._pending: list[_Item] = []
        self._running = 0  # runs (direct or batched) in flight
        self.batches = 0  # runs made (for stats and tests)
        self.merged = 0  # requests that shared a run with another
        self.sizes: dict[int, int] = {}  # requests per run -> runs (for tests and benchmarks)

    async def submit(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None, batch: int) -> list[np.ndarray]:
        if self._running < self.max_runs:
            # A run slot is free: run now, on this task, with nothing in between (no wait,
            # no extra turn).
            self._running += 1
            self._count(1)
            try:
                return await self._run(feeds, outputs, batch)
            finally:
                self._after_run()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[np.ndarray]] = loop.create_future()
        key = (tuple(outputs) if outputs else None,
               tuple((n, a.shape[1:], a.dtype.str) for n, a in feeds.items()))
        self._pending.append((key, feeds, outputs, batch, fut))
        return await fut

    def _count(self, n: int) -> None:
        self.batches += 1
        self.sizes[n] = self.sizes.get(n, 0) + 1
        if n > 1:
            self.merged += n

    def _after_run(self) -> None:
        """A run ended: its slot drains what queued meanwhile, or is freed."""
        if self._pending:
            asyncio.get_running_loop().create_task(self._drain())
        else:
            self._running -= 1

    def _take(self) -> list[_Item]:
        """The next batch: the oldest request and every later compatible one that fits."""
        key = self._pending[0][0]
        chunk: list[_Item] = []
        rest: list[_Item] = []
        size = 0
        for item in self._pending:
            if item[0] == key and (not chunk or size + item[3] <= self.max_batch):
                chunk.append(item)
                size += item[3]
            else:
                rest.append(item)
        self._pending = rest
        return chunk

    async def _drain(self) -> None:
        """One run at a time; whatever queued up meanwhile becomes the next batch."""
        try:
            while self._pending:
                chunk = self._take()
                self._count(len(chunk))
                await self._run_group(chunk)
        finally:
            self._running -= 1

    async def _run_group(self, items: list[_Item]) -> None:
        if len(items) == 1:
            await self._run_one(items[0])
            return
        _, first, outputs, _, _ = items[0]
        sizes = [it[3] for it in items]
        feeds = {n: np.concatenate([it[1][n] for it in items]) for n in first}
        try:
            results = await self._run(feeds, outputs, sum(sizes))
        except Exception:
            for it in items:  # isolate the request at fault
                await self._run_one(it)
            return
        cuts = np.cumsum(sizes)[:-1]
        parts = [np.split(r, cuts) for r in results]
        for i, it in enumerate(items):
            if not it[4].done():
                it[4].set_result([p[i] for p in parts])

    async def _run_one(self, item: _Item) -> None:
        _, feeds, outputs, batch, fut = item
        try:
            res = await self._run(feeds, outputs, batch)
        except Exception as e:
            if not fut.done():
                fut.set_exception(e)
            return
        if not fut.done():
            fut.set_result(res)
