"""`idn demo --trace`: a tiny trace replayed through real nodes, static plan vs a live controller, beside
the simulator's prediction. Behaviour only (what was applied, what was recorded), no timing."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.test_demo import _node_processes
from tests.test_launcher import idn
from tests.test_loadgen import toy_world

# 3 periods of 2 s, played at x1: a plain class throughout; an accurate class (only toy-big
# meets it) appears in period 1, so the plan running in period 0 has no route for it
TINY = {"name": "tiny", "duration_s": 6, "period_s": 2, "interpolation": "step", "classes": [
    {"ingress": "edge", "task": "toy", "rate": 20},
    {"ingress": "edge", "task": "toy", "min_accuracy": 0.9, "rate": [[0, 0], [2, 25]]}]}


def test_demo_trace_static_vs_control_live_and_predicted(tmp_path: Path):
    toy_world(tmp_path)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    res = idn(tmp_path, "demo", "--trace", "tiny.yaml", "--topology", "line3.yaml", "--catalog", "catalog.yaml",
              "--speed", "1", "--warmup", "0.5", "--no-calibrate", "--json", "out/tiny.json", "--png", "out/tiny.png",
              timeout=240)
    doc = json.loads((tmp_path / "out/tiny.json").read_text())
    assert doc["periods"] == 3 and doc["offered"][0] == 20 and doc["offered"][2] == 45
    for name in ("static", "control"):
        run = doc["runs"][name]
        assert [p["index"] for p in run["periods"]] == [0, 1, 2]
        # every period was measured through the nodes, and predicted by the simulator
        for m, p in zip(run["periods"], doc["predicted"][name]):
            assert m["sent"] > 0 and m["ok"] > 0 and m["mean_latency_ms"] > 0 and m["accuracy"] is not None
            assert 0 <= m["cpu_busy"] <= 1  # how busy the machine was, read beside the latency
            assert p["mean_latency_ms"] > 0 and p["accuracy"] is not None
        assert {"latency_ratio_median", "reconfigurations", "plans_applied", "slo_violations"} <= set(
            doc["agreement"][name])
    # static never changes its plan; the live controller does when the accurate class shows up
    # (in the round that measured period 1, or already in the one before when it read the
    # ingress counters a few ms into period 1: which one is timing, not asserted)
    assert all(r["reconfigurations"] == 0 for r in doc["runs"]["static"]["periods"])
    rounds = doc["runs"]["control"]["rounds"]
    assert [r["period"] for r in rounds] == [1, 2]
    applied = [r for r in rounds if r["applied"]]
    assert applied and applied[0]["version"] is not None
    assert "constraint" in applied[0]["reason"]  # the running plan did not route the new class
    # the simulator's control policy predicts the same: a new plan for period 2, from the same decision round
    assert doc["agreement"]["control"]["plans_applied"]["predicted"] == [2]
    assert (tmp_path / "out/tiny.png").stat().st_size > 10_000
    assert "measured | predicted" in res.stdout and "why not closer" in res.stdout
    assert "network stopped" in res.stderr and _node_processes(tmp_path / "line3.yaml") == ""
