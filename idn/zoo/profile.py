"""Latency profiles: p50/p95 of one ``session.run`` per batch size and threading mode.

The catalog keys profiles by hardware class so that an edge box or a GPU can be
profiled later and added beside this machine's. The default class name is derived
from the machine (``cpu-<arch>-<cores>c``); the placement engineer maps node tiers
onto these keys.

What is timed is one ``InferenceSession.run`` call on real held-out inputs, from
Python, after a warm-up: the time a node's data plane would spend in ORT for that
batch. Timings on a shared machine are noisy; p50 is robust to that, p95 is not.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from idn.catalog import THREADING_MODES, LatencyPoint
from idn.zoo.sessions import make_session

BATCH_SIZES = (1, 8, 32)
WARMUP_RUNS = 10
MIN_RUNS = 25
MAX_RUNS = 400
TIME_BUDGET_S = 0.6  # per (variant, threading, batch): stop after this once MIN_RUNS are done


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_hardware_class() -> str:
    """E.g. ``cpu-x86_64-2c``: architecture and cores this process may use."""
    return f"cpu-{platform.machine().lower() or 'unknown'}-{available_cores()}c"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def hardware_description() -> dict[str, object]:
    """What the catalog records about the class profiled on this machine."""
    return {
        "description": f"{cpu_model()}, {available_cores()} cores, ONNX Runtime CPU provider",
        "cpu": cpu_model(),
        "cores": available_cores(),
        "onnxruntime": ort.__version__,
    }


def percentile_point(samples_ms: Iterable[float]) -> LatencyPoint:
    """p50/p95 (linear interpolation) of latency samples in milliseconds."""
    arr = np.asarray(list(samples_ms), dtype=np.float64)
    return LatencyPoint(float(np.percentile(arr, 50)), float(np.percentile(arr, 95)))


def time_runs(session: ort.InferenceSession, feed: dict[str, np.ndarray]) -> list[float]:
    """Wall-clock milliseconds of repeated ``run`` calls on ``feed`` after a warm-up."""
    for _ in range(WARMUP_RUNS):
        session.run(None, feed)
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < MAX_RUNS and (len(out) < MIN_RUNS or time.perf_counter() - start < TIME_BUDGET_S):
        t0 = time.perf_counter()
        session.run(None, feed)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


@dataclass(frozen=True)
class Profile:
    """threading mode -> batch size -> latency."""

    points: dict[str, dict[int, LatencyPoint]]


def profile_variant(path: Path, inputs: np.ndarray, batch_sizes: Iterable[int] = BATCH_SIZES,
                    modes: Iterable[str] = THREADING_MODES) -> Profile:
    """Profile the ONNX file at ``path`` on real ``inputs`` (rows reused cyclically to fill a batch)."""
    points: dict[str, dict[int, LatencyPoint]] = {}
    for mode in modes:
        session = make_session(path, mode)
        name = session.get_inputs()[0].name
        points[mode] = {}
        for b in batch_sizes:
            batch = np.ascontiguousarray(np.resize(inputs, (b,) + inputs.shape[1:]), dtype=np.float32)
            points[mode][b] = percentile_point(time_runs(session, {name: batch}))
    return Profile(points)
