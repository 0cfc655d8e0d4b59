"""An emulated slower box stretches a run to slowdown × its CPU time, not its wall time.

On a shared machine a run's wall time includes waiting for a core; stretching that
would emulate a box slower than the topology says. The run's CPU time is measured on
the thread ORT computes on (one intra-op thread), and the stretch pads the run to
slowdown × that.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from idn.node.runtime import VariantRuntime
from idn.node.settings import NodeSettings
from tests.onnx_models import slow_model


def _mean_run_s(rt: VariantRuntime, feeds: dict, n: int = 8) -> float:
    async def runs() -> float:
        await rt.run(feeds, None, 1)  # warm up
        t0 = time.perf_counter()
        for _ in range(n):
            await rt.run(feeds, None, 1)
        return (time.perf_counter() - t0) / n
    return asyncio.run(runs())


def test_stretched_run_lasts_slowdown_times_its_cpu_time(tmp_path):
    path = slow_model(tmp_path / "slow.onnx", size=768, repeats=8)
    pool = ThreadPoolExecutor(1)
    plain = VariantRuntime("slow", path, NodeSettings(workers=1), pool)
    slow = VariantRuntime("slow", path, NodeSettings(slowdown=4.0, workers=1), pool)
    feeds = {"x": np.ones([1, 768], dtype=np.float32)}
    cpu = sorted(plain._run_timed(feeds, None, 1)[2] for _ in range(9))[4]  # median CPU s per run
    assert cpu > 0.0005, f"the model should take ~ms of CPU, took {cpu * 1e3:.3f} ms"
    stretched = _mean_run_s(slow, feeds)
    # never shorter than the emulated box takes (the pacer may shave its learnt overshoot)
    assert stretched >= 0.85 * 4.0 * cpu, (stretched, cpu)
    assert _mean_run_s(plain, feeds) < stretched
    pool.shutdown()
