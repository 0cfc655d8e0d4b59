"""`idn demo` on a small world: three plans solved, applied, replayed and compared; always shut down."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from idn.demo import DemoOptions, run_demo
from tests.test_launcher import idn
from tests.test_loadgen import toy_world


def _node_processes(topology: Path) -> str:
    return subprocess.run(["pgrep", "-f", "--", f"--topology {topology}"], capture_output=True,
                          text=True).stdout.strip()


def test_demo_compares_predicted_and_measured_for_three_plans(tmp_path: Path):
    toy_world(tmp_path)
    res = idn(tmp_path, "demo", "--topology", "line3.yaml", "--demand", "demand.yaml", "--catalog", "catalog.yaml",
              "--duration", "1", "--warmup", "0.3", "--json", "results/demo.json", timeout=90)
    assert "predicted (evaluator) vs measured" in res.stdout
    for label in ("ILP (highs)", "repository-only", "greedy"):
        assert label in res.stdout
    doc = json.loads((tmp_path / "results/demo.json").read_text())
    assert [p["method"] for p in doc["plans"]] == ["highs", "repository", "greedy"]
    assert [p["version"] for p in doc["plans"]] == [1, 2, 3]  # each applied over the last
    for p in doc["plans"]:
        assert p["sent"] > 40 and p["ok"] == p["sent"] and p["errors"] == {}
        for side in ("predicted", "measured"):
            assert {"mean_latency_ms", "p95_class_latency_ms", "accuracy", "network_ms", "rest_ms"} <= set(p[side])
        assert p["latency_ratio"] > 0 and p["measured"]["accuracy"] is not None
        assert 0 < p["measured"]["ingress_ms"] < p["measured"]["mean_latency_ms"]  # the client is outside
        # the plan was served as planned: measured served-by shares match the plan's targets
        for c in p["classes"]:
            assert set(c["served_by"]) == set(c["planned"])
    repo = doc["plans"][1]
    assert all(set(c["served_by"]) == {"cloud/toy-big"} for c in repo["classes"])
    # repository-only pays the 2 x (1 + 1) ms emulated round trip on every request
    assert repo["predicted"]["network_ms"] == pytest.approx(4.0)
    assert repo["measured"]["mean_latency_ms"] > 4.0
    assert "network stopped" in res.stderr and _node_processes(tmp_path / "line3.yaml") == ""


def test_demo_shuts_the_network_down_when_a_step_fails(tmp_path: Path):
    toy_world(tmp_path)
    opts = DemoOptions(topology=tmp_path / "line3.yaml", demand=tmp_path / "demand.yaml",
                       catalog=tmp_path / "catalog.yaml", plans=(("nonsense", "no-such-method"),),
                       run_dir=tmp_path / "run")
    lines: list[str] = []
    with pytest.raises(ValueError, match="no-such-method"):
        run_demo(opts, say=lines.append)
    assert lines[-1].startswith("network stopped") and "cloud stopped" in lines[-1]
    assert _node_processes(tmp_path / "line3.yaml") == ""
