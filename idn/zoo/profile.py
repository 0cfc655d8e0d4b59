"""Latency profiles: p50/p95 of one ``session.run`` per batch size and threading mode.

The catalog keys profiles by hardware class so that an edge box or a GPU can be
profiled later and added beside this machine's. The default class name is derived
from the machine (``cpu-<arch>-<cores>c``); the placement engineer maps node tiers
onto these keys.

What is timed is one ``InferenceSession.run`` call on real held-out inputs, from
Python, after a warm-up: the time a node's data plane would spend in ORT for that
batch. Timings on a shared machine are noisy; p50 is robust to that, p95 is not.
Runs slower than ``SLOW_RUN_MS`` (the ImageNet CNNs at batch 8 and 32) are timed
``MIN_RUNS_SLOW`` times at least instead of ``MIN_RUNS``, after a warm-up cut to
``WARMUP_BUDGET_S``: their p50 is as good, their p95 rougher.

On a machine other jobs share, wall-clock time measures the queue for the CPU as much
as the model. ``clock="thread"`` times the single-threaded mode by the CPU time of the
calling thread instead: with one intra-op thread ONNX Runtime runs every kernel in the
caller's thread, so that CPU time is the run's wall time on an idle core (checked on
this machine when it was quiet: within ~5 % of the wall-clock p50). ORT's default
threading spreads a run over a pool, so that mode is always timed by the wall clock.

The load time (:func:`load_ms`) is what placing a variant on a node costs before it
can answer: read the file and create its ONNX Runtime session, as a node does (one
intra-op thread), p50 over ``LOAD_REPEATS`` loads with the file in the page cache.
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
WARMUP_BUDGET_S = 1.0  # stop warming up after this (at least 2 runs)
MIN_RUNS = 25
MIN_RUNS_SLOW = 10     # for runs slower than SLOW_RUN_MS
SLOW_RUN_MS = 40.0
MAX_RUNS = 400
TIME_BUDGET_S = 0.6  # per (variant, threading, batch): stop after this once the minimum runs are done
LOAD_REPEATS = 5


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


CLOCKS = ("wall", "thread")


def time_runs(session: ort.InferenceSession, feed: dict[str, np.ndarray], clock: str = "wall") -> list[float]:
    """Milliseconds of repeated ``run`` calls on ``feed`` after a warm-up: wall-clock, or
    (``clock="thread"``) CPU time of the calling thread."""
    now = time.thread_time if clock == "thread" else time.perf_counter
    warm: list[float] = []
    start = time.perf_counter()
    while len(warm) < WARMUP_RUNS and (len(warm) < 2 or time.perf_counter() - start < WARMUP_BUDGET_S):
        t0 = time.perf_counter()
        session.run(None, feed)
        warm.append((time.perf_counter() - t0) * 1e3)
    min_runs = MIN_RUNS_SLOW if float(np.median(warm)) > SLOW_RUN_MS else MIN_RUNS
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < MAX_RUNS and (len(out) < min_runs or time.perf_counter() - start < TIME_BUDGET_S):
        t0 = now()
        session.run(None, feed)
        out.append((now() - t0) * 1e3)
    return out


@dataclass(frozen=True)
class Profile:
    """threading mode -> batch size -> latency."""

    points: dict[str, dict[int, LatencyPoint]]


def profile_variant(path: Path, inputs: np.ndarray, batch_sizes: Iterable[int] = BATCH_SIZES,
                    modes: Iterable[str] = THREADING_MODES, clock: str = "wall") -> Profile:
    """Profile the ONNX file at ``path`` on real ``inputs`` (rows reused cyclically to fill a batch).

    ``clock="thread"`` times the single-threaded mode by thread CPU time (see the module doc)."""
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}: use one of {CLOCKS}")
    points: dict[str, dict[int, LatencyPoint]] = {}
    for mode in modes:
        session = make_session(path, mode)
        name = session.get_inputs()[0].name
        mode_clock = clock if mode == "single_thread" else "wall"
        points[mode] = {}
        for b in batch_sizes:
            batch = np.ascontiguousarray(np.resize(inputs, (b,) + inputs.shape[1:]), dtype=inputs.dtype)
            points[mode][b] = percentile_point(time_runs(session, {name: batch}, mode_clock))
    return Profile(points)


def load_ms(path: Path, repeats: int = LOAD_REPEATS, clock: str = "wall") -> float:
    """p50 milliseconds to read the ONNX file at ``path`` and create its session as a node does
    (``clock="thread"``: the thread's CPU time, user + system, the read from the page cache included)."""
    now = time.thread_time if clock == "thread" else time.perf_counter
    make_session(path, "single_thread")  # first load: page cache, ORT's one-time set-up
    times = []
    for _ in range(repeats):
        t0 = now()
        data = Path(path).read_bytes()
        make_session(data, "single_thread")
        times.append((now() - t0) * 1e3)
    return float(np.percentile(times, 50))
