"""The pacer's emulated delays are right on average although the timer overshoots.

Driven by a simulated epoll-like timer (wakes at the next whole millisecond after the
request, plus 0.15 ms), so the test checks the algorithm, not this machine's load.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from idn.node.pacing import Pacer


class EpollLikeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        ms = max(1, math.ceil(seconds * 1000 - 1e-9))
        # the wake-up lands on the next whole ms after the request, then ~0.15 ms of scheduling
        self.now += ms / 1000 + 0.00015


@pytest.mark.parametrize("delay_ms", [0.05, 0.3, 2.5, 7.3, 12.5])
def test_average_delay_matches_request(delay_ms):
    clock = EpollLikeClock()
    p = Pacer(clock=clock, timer_sleep=clock.sleep)

    async def run():
        for _ in range(50):  # learn the overshoot
            await p.sleep(delay_ms / 1000)
        t0 = clock.now
        for _ in range(400):
            await p.sleep(delay_ms / 1000)
        return (clock.now - t0) / 400 * 1000

    naive = EpollLikeClock()
    asyncio.run(naive.sleep(delay_ms / 1000))
    mean_ms = asyncio.run(run())
    assert mean_ms == pytest.approx(delay_ms, rel=0.1, abs=0.05)
    assert naive.now * 1000 - delay_ms > 0.1  # what a plain timer sleep would have added
