"""An emulated slower box stretches a run to slowdown × its CPU time, not its wall time.

On a shared machine a run's wall time includes waiting for a core; stretching that
would emulate a box slower than the topology says. The run's CPU time is measured on
the thread ORT computes on (one intra-op thread), and the stretch pads the run to
slowdown × that. Each run is checked against its own CPU time, so a busy machine
(which inflates wall and CPU time alike) cannot make the check pass or fail by luck.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from idn.node.runtime import VariantRuntime
from idn.node.settings import NodeSettings
from tests.onnx_models import slow_model

SLOWDOWN = 4.0


def test_each_stretched_run_lasts_slowdown_times_its_own_cpu_time(tmp_path):
    path = slow_model(tmp_path / "slow.onnx", size=1024, repeats=8)
    pool = ThreadPoolExecutor(1)
    rt = VariantRuntime("slow", path, NodeSettings(slowdown=SLOWDOWN, workers=1), pool)
    feeds = {"x": np.ones([1, 1024], dtype=np.float32)}

    async def runs() -> list[tuple[float, float]]:
        out = []
        for _ in range(8):
            t0 = time.perf_counter()
            await rt.run(feeds, None, 1)
            out.append((time.perf_counter() - t0, rt.last_work_s))
        return out

    measured = asyncio.run(runs())[2:]  # the pacer learns the timer's overshoot first
    for took, cpu in measured:
        assert cpu > 0.0005, f"the model should take ~ms of CPU, took {cpu * 1e3:.3f} ms"
        # the pacer shaves its learnt timer overshoot (well under a millisecond)
        assert took >= SLOWDOWN * cpu - 0.0015, (took, cpu)
    pool.shutdown()


def test_no_slowdown_runs_without_stretch(tmp_path):
    path = slow_model(tmp_path / "slow.onnx", size=256, repeats=2)
    pool = ThreadPoolExecutor(1)
    rt = VariantRuntime("slow", path, NodeSettings(workers=1), pool)
    out = asyncio.run(rt.run({"x": np.ones([2, 256], dtype=np.float32)}, None, 2))
    assert out[0].shape == (2, 256) and rt.last_work_s == 0.0
    pool.shutdown()
