"""Handing memory back to the OS after large messages.

A request of several MiB (a big tensor, or a hostile 4 MiB model name) passes through
several buffers — gRPC's, the Python bytes, the parsed message — that are freed when
it is answered. glibc's malloc keeps freed memory of that size in its arenas, so a
node's RSS stays at the peak of whatever clients sent at once, long after: with ten
concurrent 3 MiB requests it stayed ~50 MiB up. After a message over ``threshold``
bytes, the node asks malloc to return free memory (``malloc_trim(0)``, in a worker
thread, at most once per ``interval_s``); nothing happens while messages are small.
On a libc without ``malloc_trim`` this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("idn.node")

LARGE_MESSAGE_BYTES = 1 << 20


def _malloc_trim() -> Callable[[], object] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class MemoryTrimmer:
    def __init__(self, threshold: int = LARGE_MESSAGE_BYTES, interval_s: float = 2.0):
        self.threshold = threshold
        self.interval_s = interval_s
        self.pending = False
        self.trims = 0
        self._trim = _malloc_trim()
        self._task: asyncio.Task | None = None

    def saw(self, nbytes: int) -> None:
        """Called with the size of every message the transport reads (one comparison)."""
        if nbytes > self.threshold:
            self.pending = True

    def start(self) -> None:
        if self._trim is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        assert self._trim is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            if self.pending:
                self.pending = False
                await loop.run_in_executor(None, self._trim)
                self.trims += 1
