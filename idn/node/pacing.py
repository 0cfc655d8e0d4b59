"""Emulated delays that are right on average despite the event loop's coarse timer.

asyncio sleeps through epoll, whose timeout has millisecond granularity and rounds
up: ``asyncio.sleep(0.0001)`` takes ~1.1 ms and ``sleep(0.0125)`` ~14 ms here. An
emulated 5 ms link or a 0.3 ms slowdown would therefore be systematically too slow.
The pacer learns the overshoot (moving average of actual minus requested) and asks
for that much less; a delay too short to be compensated is paid as whole minimal
sleeps often enough that the average added delay equals the requested one.
"""

from __future__ import annotations

import asyncio
import time

_EWMA = 0.1
# The shortest sleep that really waits on the timer (shorter ones fall within the loop's
# clock resolution and return at once).
_SHORT = 0.0005


class Pacer:
    def __init__(self, overshoot_s: float = 0.0006, min_sleep_s: float = 0.0011,
                 clock=time.perf_counter, timer_sleep=asyncio.sleep):
        self.clock = clock
        self.timer_sleep = timer_sleep
        self.overshoot = overshoot_s  # expected (actual - requested) for a timer sleep
        self.min_sleep = min_sleep_s  # what the shortest timer sleep really takes
        self._credit = 0.0  # short delays owed, in units of min_sleep

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        want = seconds - self.overshoot
        if want > self.overshoot:
            t0 = self.clock()
            await self.timer_sleep(want)
            self.overshoot += _EWMA * ((self.clock() - t0 - want) - self.overshoot)
            return
        self._credit += seconds / self.min_sleep
        if self._credit >= 1.0:
            self._credit -= 1.0
            t0 = self.clock()
            await self.timer_sleep(_SHORT)
            self.min_sleep += _EWMA * ((self.clock() - t0) - self.min_sleep)
