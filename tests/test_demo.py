"""`idn demo` on a small world: seven plans solved, applied, replayed and compared; always shut down."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from idn.config import ConfigError
from idn.demo import DemoOptions, PlanSpec, load_scenario, run_demo
from tests.test_launcher import idn
from tests.test_loadgen import toy_world


def _node_processes(topology: Path) -> str:
    return subprocess.run(["pgrep", "-f", "--", f"--topology {topology}"], capture_output=True,
                          text=True).stdout.strip()


def toy_scenario(d: Path, **extra) -> Path:
    toy_world(d)
    doc = {"topology": "line3.yaml", "demand": "demand.yaml", "catalog": "catalog.yaml", "alphas": [0, 100, 10000],
           "duration_s": 1, "warmup_s": 0.3, **extra}
    (d / "scenario.yaml").write_text(yaml.safe_dump(doc))
    return d / "scenario.yaml"


def test_demo_compares_predicted_and_measured_for_every_plan(tmp_path: Path):
    toy_scenario(tmp_path)
    res = idn(tmp_path, "demo", "--scenario", "scenario.yaml", "--json", "results/demo.json",
              "--png", "results/pareto.png", timeout=150)
    assert "predicted (evaluator) vs measured" in res.stdout
    for label in ("ILP α=0", "ILP α=100", "ILP α=10000", "greedy α=100", "smallest α=100", "lp-round α=100",
                  "repository-only α=100"):
        assert label in res.stdout
    doc = json.loads((tmp_path / "results/demo.json").read_text())
    assert [p["method"] for p in doc["plans"]] == ["highs", "highs", "highs", "greedy", "smallest", "lp-round",
                                                   "repository"]
    assert [p["alpha"] for p in doc["plans"]] == [0, 100, 10000, 100, 100, 100, 100]
    assert [p["version"] for p in doc["plans"]] == [1, 2, 3, 4, 5, 6, 7]  # each applied over the last
    # The alphas pull the plans apart: the cheap variant at alpha 0, the accurate one at 10000.
    low, high = doc["plans"][0], doc["plans"][2]
    assert low["placements"] != high["placements"]
    assert low["predicted"]["accuracy"] < high["predicted"]["accuracy"]
    assert low["measured"]["accuracy"] < high["measured"]["accuracy"]
    assert (tmp_path / "results/pareto.png").stat().st_size > 5000
    for p in doc["plans"]:
        assert p["sent"] > 40 and p["ok"] == p["sent"] and p["errors"] == {}
        for side in ("predicted", "measured"):
            assert {"mean_latency_ms", "p95_class_latency_ms", "accuracy", "network_ms", "rest_ms"} <= set(p[side])
        assert p["latency_ratio"] > 0 and p["measured"]["accuracy"] is not None
        # the toy task's accuracy is measured: both sides are computed on it
        assert p["measured"]["accuracy_measured_tasks"] == pytest.approx(p["measured"]["accuracy"])
        # the ingress's own view is reported (comparing it with the client's is a timing
        # question for the benchmark, not this test: warm-up requests count on the node only)
        assert p["measured"]["ingress_ms"] > 0
        # the plan was served as planned: measured served-by shares match the plan's targets
        for c in p["classes"]:
            assert set(c["served_by"]) == set(c["planned"])
    repo = doc["plans"][6]
    assert all(set(c["served_by"]) == {"cloud/toy-big"} for c in repo["classes"])
    # repository-only pays the 2 x (1 + 1) ms emulated round trip on every request
    assert repo["predicted"]["network_ms"] == pytest.approx(4.0)
    assert repo["measured"]["mean_latency_ms"] > 4.0
    assert "network stopped" in res.stderr and _node_processes(tmp_path / "line3.yaml") == ""


def test_demo_shuts_the_network_down_when_a_step_fails(tmp_path: Path):
    opts = DemoOptions(scenario=load_scenario(toy_scenario(tmp_path)),
                       plans=(PlanSpec("nonsense", "no-such-method", 1.0),), run_dir=tmp_path / "run")
    lines: list[str] = []
    with pytest.raises(ValueError, match="no-such-method"):
        run_demo(opts, say=lines.append)
    assert lines[-1].startswith("network stopped") and "cloud stopped" in lines[-1]
    assert _node_processes(tmp_path / "line3.yaml") == ""


def test_scenario_errors_name_the_field(tmp_path: Path):
    for bad, field in (({"alphas": [1, 2]}, "alphas"), ({"alphas": [3, 2, 1]}, "alphas"),
                       ({"budget": -1}, "budget"), ({"rho": 2}, "rho"), ({"bogus": 1}, "bogus")):
        path = toy_scenario(tmp_path, **bad)
        with pytest.raises(ConfigError, match=rf"scenario\.yaml: {field}"):
            load_scenario(path)
