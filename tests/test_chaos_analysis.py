"""benchmarks/chaos.py's analysis on synthetic runs: causes of failure, recovery, memory, the schedule."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tests.test_failover_routing import topo

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("chaos", ROOT / "benchmarks" / "chaos.py")
chaos = importlib.util.module_from_spec(spec)
sys.modules["chaos"] = chaos  # its dataclasses look their module up
spec.loader.exec_module(chaos)
S, Fault = chaos.Sample, chaos.Fault


def test_failures_by_cause():
    paths = {"edge-1": ["edge-1", "regional", "cloud"], "edge-2": ["edge-2", "regional", "cloud"]}
    faults = [Fault("edge-1", 10.0, 20.0), Fault("regional", 30.0, 40.0)]
    samples = [S("a", "edge-1", 9.99, 20.0, "UNAVAILABLE", detail="Stream removed (Socket closed)"),  # in flight
               S("b", "edge-2", 9.99, 20.0, "UNAVAILABLE", detail="Stream removed"),  # not through edge-1
               S("a", "edge-1", 12.0, 1.0, "UNAVAILABLE", detail="failed to connect to all addresses"),
               S("b", "edge-2", 30.02, 5.0, "UNAVAILABLE", detail="via regional: ..."),  # before detection
               S("b", "edge-2", 50.0, 5.0, "INTERNAL"),
               *(S("b", "edge-2", 30.0 + i / 100, 5.0, "OK") for i in range(10))]
    by, reports = chaos.classify(samples, faults, paths, {1: 0.05})
    assert by == {"in flight at the dead node": 1, "ingress dead, no failover": 1, "during detection": 1,
                  "other": 2}
    assert (reports[0].in_flight_lost, reports[0].ingress_dead, reports[1].during_detection) == (1, 1, 1)
    assert reports[1].sent_during_detection == 6  # 5 OK + the failed one, sent in [30, 30.05)


def test_back_to_the_pre_fault_mean():
    samples = [S("a", "e", 100 + i / 10, 20.0 if i < 40 else 10.0, "OK") for i in range(200)]
    back = chaos.back_to_mean(samples, 100.0, 120.0, 10.0)
    assert 3.0 <= back <= 4.5  # the 20 ms requests end at 104 s; a 3 s window must hold no more than one
    assert chaos.back_to_mean(samples[:40], 100.0, 104.0, 10.0) is None


def test_rss_growth_per_process():
    rows = [(float(t), "edge-1", 1, 100.0 + t / 10) for t in range(0, 121, 10)]
    rows += [(200.0 + t, "edge-1", 2, 90.0) for t in range(0, 11)]  # a short-lived restart: no 30 s mark
    g = chaos.rss_growth(rows)["edge-1"]
    assert len(g["processes"]) == 2 and abs(g["max_growth"] - (112 / 103 - 1)) < 1e-3
    assert abs(g["max_drift"] - (112 / 108 - 1)) < 1e-3  # 30..120 s: the second half from 80 s


def test_schedule_kills_the_repository_once():
    plan = chaos.schedule(topo(), 300, 40, 10, seed=0)
    assert [t for t, _ in plan] == [40, 80, 120, 160, 200, 240]
    assert [n for _, n in plan].count("cloud") == 1 and plan[3][1] == "cloud"
