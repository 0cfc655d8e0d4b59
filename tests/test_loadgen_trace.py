"""`idn loadgen --trace`: a trace replayed live against a real 3-node network on loopback.

The rates sent in each trace period follow the trace (Poisson counts around the expected
ones), and what the ingress node measured (GetStats, what `idn control` reads) matches
what was sent."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import yaml

from idn.client import ControlClient
from idn.loadgen import LoadOptions, TraceWindow, arrival_times, plan_trace_load, run_load
from idn.network import push_plan
from idn.trace import Rate, cumulative, parse_trace
from tests.network import Network
from tests.test_loadgen import SPLIT, toy_world

# edge/toy: 30 req/s, then 90, then silent; the accuracy class: only in the last two periods
TRACE = {"name": "steps", "duration_s": 3, "period_s": 1, "interpolation": "step", "classes": [
    {"ingress": "edge", "task": "toy", "rate": [[0, 30], [1, 90], [2, 0]]},
    {"ingress": "edge", "task": "toy", "min_accuracy": 0.9, "rate": "40 * pulse(t, 1, 3)"}]}


def test_arrival_times_follow_the_rate():
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 10, 1001)
    rate = Rate("piecewise", ((0.0, 0.0), (5.0, 200.0), (10.0, 0.0)), "linear")  # a triangle: 1000 expected
    lam = cumulative(rate, grid)
    counts = np.array([np.histogram(arrival_times(lam, grid, rng), bins=[0, 2.5, 5, 7.5, 10])[0]
                       for _ in range(40)]).mean(axis=0)
    assert counts == pytest.approx([125, 375, 375, 125], rel=0.05)
    t = arrival_times(lam, grid, rng)
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() <= 10


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    d = tmp_path_factory.mktemp("trace-net")
    toy_world(d)
    (d / "steps.yaml").write_text(yaml.safe_dump(TRACE))
    n = Network(d / "line3.yaml", d / "catalog.yaml")
    push_plan(SPLIT, n.topology, {nid: n.address(nid) for nid in n.topology.nodes}, n.token)
    yield d, n
    n.close()


def test_replayed_rates_per_period_match_the_trace_and_the_ingress(net):
    d, n = net
    trace = parse_trace(TRACE, "steps.yaml", n.topology, n.catalog)
    window = TraceWindow(trace)
    before = ControlClient(n.address("edge"), n.token).stats(0).cursor
    loads = plan_trace_load(n.topology, n.catalog, window, seed=3)
    report = asyncio.run(run_load(loads, LoadOptions(warmup_s=0.0, seed=3), window=window))
    plain, gold = report.classes
    assert plain.periods_expected == pytest.approx([30, 90, 0])
    assert gold.periods_expected == pytest.approx([0, 40, 40], abs=0.01)  # a formula: integrated numerically
    for c in (plain, gold):
        for sent, exp in zip(c.periods_sent, c.periods_expected):
            assert abs(sent - exp) <= 5 * exp ** 0.5 + 1e-9  # Poisson counts, +-5 sigma (0 when silent)
        assert c.periods_ok == c.periods_sent and c.sent == sum(c.periods_sent) and not c.errors
    assert report.overall.periods_sent == [a + b for a, b in zip(plain.periods_sent, gold.periods_sent)]
    # what the ingress counted per class (GetStats: what `idn control` measures) is what was sent
    w = ControlClient(n.address("edge"), n.token).stats(before)
    seen = {(cs.task, cs.HasField("min_accuracy")): cs.requests for cs in w.classes}
    assert seen == {("toy", False): plain.sent, ("toy", True): gold.sent}
    assert report.trace is not None and report.trace["period_starts_s"] == [0.0, 1.0, 2.0]


def test_loadgen_cli_replays_a_window_sped_up(net, monkeypatch):
    from typer.testing import CliRunner

    from idn.cli import app

    d, _ = net
    monkeypatch.chdir(d)
    monkeypatch.setenv("COLUMNS", "200")
    res = CliRunner().invoke(app, ["loadgen", "--topology", "line3.yaml", "--trace", "steps.yaml", "--start", "1",
                                   "--speed", "2", "--warmup", "0", "--json", "out/lg.json",
                                   "--catalog", "catalog.yaml"])
    assert res.exit_code == 0, res.output
    assert "per period of 1 s" in res.output
    doc = json.loads((d / "out/lg.json").read_text())
    assert doc["trace"]["start_s"] == 1 and doc["trace"]["speed"] == 2 and doc["trace"]["first_period"] == 1
    assert doc["duration_s"] == pytest.approx(1.0)  # trace seconds 1..3 at x2
    plain = doc["classes"][0]
    # x2: the rates as written, each period half as long, so half the requests
    assert plain["periods_expected"] == pytest.approx([45, 0]) and len(plain["periods_sent"]) == 2
    assert abs(plain["periods_sent"][0] - 45) <= 5 * 45 ** 0.5 and plain["periods_sent"][1] == 0
    assert plain["rate"] == pytest.approx(45.0)  # mean rate over the window's wall time
    both = CliRunner().invoke(app, ["loadgen", "--topology", "line3.yaml", "--trace", "steps.yaml",
                                    "--demand", "demand.yaml", "--catalog", "catalog.yaml"])
    assert both.exit_code == 1 and "exactly one of --demand and --trace" in both.output
