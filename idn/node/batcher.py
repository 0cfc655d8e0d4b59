"""Dynamic batching: requests for one variant that arrive in the same event-loop turn
run as one ONNX Runtime call.

Why: every ``session.run`` releases and re-takes the GIL, and under load grpc.aio's
poller thread takes it in between, so each call costs a thread hand-off on top of
the compute. Merging the requests that are already waiting amortises that (and
ORT's per-call overhead) without adding delay: nothing waits for a timer, the batch
is whatever arrived while the loop was busy (Triton's dynamic batcher with
max_queue_delay = 0). Only variants whose every input and output has a dynamic
leading dimension are batched, and only requests with the same trailing shapes,
dtypes and requested outputs are merged. If a merged run fails, its requests are
re-run one by one so that only the request at fault gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

RunFn = Callable[[dict[str, np.ndarray], Sequence[str] | None, int], Any]  # may return an awaitable


class Batcher:
    def __init__(self, run: Callable[[dict[str, np.ndarray], Sequence[str] | None, int], Any], max_batch: int):
        self._run = run  # async (feeds, outputs, batch) -> list[np.ndarray]
        self.max_batch = max_batch
        self._pending: list[tuple[Any, dict[str, np.ndarray], Sequence[str] | None, int, asyncio.Future]] = []
        self._draining = False
        self.batches = 0  # runs made (for stats and tests)
        self.merged = 0  # requests that shared a run with another

    async def submit(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None, batch: int) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        key = (tuple(outputs) if outputs else None,
               tuple((n, a.shape[1:], a.dtype.str) for n, a in feeds.items()))
        self._pending.append((key, feeds, outputs, batch, fut))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        """One run at a time; whatever queued up meanwhile becomes the next batch."""
        try:
            while self._pending:
                # Yield once so that requests the transport has already delivered join this batch.
                await asyncio.sleep(0)
                key = self._pending[0][0]
                chunk: list[Any] = []
                rest: list[Any] = []
                size = 0
                for item in self._pending:
                    if item[0] == key and (not chunk or size + item[3] <= self.max_batch):
                        chunk.append(item)
                        size += item[3]
                    else:
                        rest.append(item)
                self._pending = rest
                await self._run_group(chunk)
        finally:
            self._draining = False
    async def _run_group(self, items: list) -> None:
        self.batches += 1
        if len(items) == 1:
            await self._run_one(items[0])
            return
        self.merged += len(items)
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

    async def _run_one(self, item: tuple) -> None:
        _, feeds, outputs, batch, fut = item
        try:
            res = await self._run(feeds, outputs, batch)
        except Exception as e:
            if not fut.done():
                fut.set_exception(e)
            return
        if not fut.done():
            fut.set_result(res)
