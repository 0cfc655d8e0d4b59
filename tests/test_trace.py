"""Demand traces: the shipped files, rates over time, and errors that name the field and the fix."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from idn.catalog import load_catalog
from idn.config import ConfigError
from idn.topology import load_topology
from idn.trace import FormulaError, compile_formula, cumulative, load_trace, parse_trace

ROOT = Path(__file__).resolve().parent.parent
CAT = load_catalog(ROOT / "models/catalog.yaml")
TOPO = load_topology(ROOT / "deploy/topologies/demo.yaml")
TRACES = sorted((ROOT / "deploy/traces").glob("*.yaml"))


def parse(doc: dict):
    return parse_trace(doc, "t.yaml", TOPO, CAT)


def base(**over) -> dict:
    doc = {"duration_s": 100, "period_s": 10, "classes": [{"ingress": "edge-1", "task": "digits", "rate": 5}]}
    doc.update(over)
    return doc


def with_class(**cls) -> dict:
    return base(classes=[{"ingress": "edge-1", "task": "digits", **cls}])


def test_shipped_traces_load_and_cover_every_task():
    assert {p.stem for p in TRACES} >= {"diurnal", "flash-crowd", "task-mix"}
    for p in TRACES:
        tr = load_trace(p, TOPO, CAT)
        periods = tr.periods()
        assert len(periods) == math.ceil(tr.duration_s / tr.period_s)
        assert all(0 < p.demand.total_rate < 400 for p in periods)  # replayable live on 2 cores
        assert {c.task for p in periods for c in p.demand.classes} == {"digits", "waveforms", "imagenet"}
        # expected arrivals per period add up to the whole trace's
        total = tr.expected_counts(np.array([0.0, tr.duration_s])).sum()
        assert sum(p.demand.total_rate * p.length_s for p in periods) == pytest.approx(total, rel=1e-9)


def test_piecewise_linear_step_constant_and_formula_rates():
    tr = parse(base(classes=[
        {"ingress": "edge-1", "task": "digits", "rate": [[10, 0], [20, 10], [30, 10]]},
        {"ingress": "edge-2", "task": "digits", "rate": [[10, 4], [20, 8]], "interpolation": "step"},
        {"ingress": "edge-3", "task": "digits", "rate": 3},
        {"ingress": "edge-4", "task": "waveforms", "rate": "5 + 5*sin(2*pi*t/period)"},
    ], constants={"period": 100}))
    assert tr.rates_at(0.0)[:3].tolist() == [0.0, 4.0, 3.0]       # before the first point: held
    assert tr.rates_at(15.0)[:2].tolist() == [5.0, 4.0]           # linear / step
    assert tr.rates_at(25.0)[:2].tolist() == [10.0, 8.0]
    assert tr.rates_at(25.0)[3] == pytest.approx(5 + 5 * math.sin(math.pi / 2))
    d = tr.demand_at(5.0)
    assert [c.ingress for c in d.classes] == ["edge-2", "edge-3", "edge-4"]  # rate 0: absent
    # exact integrals: linear ramp 10..20 s is 50 arrivals; step holds 4 until 20 s, then 8
    assert cumulative(tr.classes[0].rate, np.array([0.0, 20.0, 30.0])).tolist() == pytest.approx([0, 50, 150])
    assert cumulative(tr.classes[1].rate, np.array([0.0, 20.0, 25.0])).tolist() == pytest.approx([0, 80, 120])
    # a sine over whole periods averages to its base
    assert tr.expected_counts(np.array([0.0, 100.0]))[3, 0] == pytest.approx(500.0, rel=1e-6)
    ps = tr.periods()
    assert [round(p.demand.by_id()["edge-3/digits"].rate, 9) for p in ps] == [3.0] * 10
    assert ps[1].demand.by_id()["edge-1/digits"].rate == pytest.approx(5.0)  # mean of the ramp over [10, 20)
    assert tr.classes[2].cls.rate == 3.0  # a class's rate field is its mean over the trace
    assert len(tr.periods(30.0)) == 4 and tr.periods(30.0)[-1].length_s == 10.0


def test_formula_language():
    t = np.array([0.0, 1.0, 2.0])
    f = compile_formula("max(0, 2^3^0 - t) + clip(t, 0.5, 1.5) + pulse(t, 1, 2) + step(t - 2) + gauss(t, 1, 1) * 0",
                        {})
    # 2^3^0 = 2^(3^0) = 2 (right-associative)
    assert f(t).tolist() == pytest.approx([2 + 0.5, 1 + 1 + 1, 0 + 1.5 + 0 + 1])
    assert compile_formula("-t % 3 + 1e1 * .5", {})(np.array([1.0]))[0] == pytest.approx(2 + 5)
    for bad, col in (("t +", 4), ("2 * (t", 7), ("foo(t)", 1), ("t $ 2", 3), ("sin(t, 2)", 1), ("sin", 1),
                     ("__import__('os')", 12), ("t.real", 2), ("lambda: 1", 7)):
        with pytest.raises(FormulaError) as e:
            compile_formula(bad, {})
        assert e.value.column == col, (bad, str(e.value))
    with pytest.raises(FormulaError, match="nested"):
        compile_formula("(" * 100 + "t" + ")" * 100, {})


@pytest.mark.parametrize("doc, field, words", [
    (base(classes=[{"ingress": "edge-1", "task": "digits", "rate": 5, "colour": 1}]), "classes[0].colour",
     "unknown field"),
    (base(classes=[{"ingress": "edge-9", "task": "digits", "rate": 5}]), "classes[0].ingress", "unknown node"),
    (base(classes=[{"ingress": "edge-1", "task": "speech", "rate": 5}]), "classes[0].task", "unknown task"),
    (with_class(rate=[[0, 1], [0, 2]]), "classes[0].rate[1][0]", "does not increase"),
    (with_class(rate=[[0, 1], [200, 2]]), "classes[0].rate[1][0]", "outside the trace"),
    (with_class(rate=[[0, float("nan")]]), "classes[0].rate[0][1]", "finite"),
    (with_class(rate=[[0, -1]]), "classes[0].rate[0][1]", ">= 0"),
    (with_class(rate=[[0]]), "classes[0].rate[0]", "[t_s, rate] pair"),
    (with_class(rate=float("inf")), "classes[0].rate", "finite"),
    (with_class(rate=-2), "classes[0].rate", ">= 0"),
    (with_class(rate=[]), "classes[0].rate", "no points"),
    (with_class(rate=True), "classes[0].rate", "expected"),
    (with_class(), "classes[0].rate", "missing"),
    (with_class(rate="5 - t"), "classes[0].rate", "negative"),
    (with_class(rate="log(t - 50)"), "classes[0].rate", "not finite"),
    (with_class(rate="1/(t-t)"), "classes[0].rate", "not finite"),
    (with_class(rate="5 + x"), "classes[0].rate", "unknown name 'x'"),
    (with_class(rate="exec(1)"), "classes[0].rate", "unknown function"),
    (with_class(rate=5, interpolation="cubic"), "classes[0].interpolation", "unknown interpolation"),
    (base(period_s=500), "period_s", "longer than the trace"),
    (base(duration_s=float("nan")), "duration_s", "finite"),
    (base(duration_s=0), "duration_s", "> 0"),
    (base(constants={"sin": 1}), "constants.sin", "not a usable constant name"),
    (base(constants={"k": float("inf")}), "constants.k", "finite"),
    (base(classes=[]), "classes", "no request classes"),
    (base(classes=[{"ingress": "edge-1", "task": "digits", "rate": 0}]), "classes", "no class has any traffic"),
    (base(speed=2), "speed", "unknown field"),
    (base(classes=[{"ingress": "edge-1", "task": "digits", "rate": 1},
                   {"ingress": "edge-1", "task": "digits", "rate": 2}]), "classes[1].id", "already used"),
])
def test_errors_name_file_field_and_fix(doc, field, words):
    with pytest.raises(ConfigError) as e:
        parse(doc)
    assert e.value.file == "t.yaml" and e.value.field == field, str(e.value)
    assert words in e.value.problem, str(e.value)


def test_formula_error_says_where(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(with_class(rate="10 + 3*sin(2*pi*t/)")))
    with pytest.raises(ConfigError) as e:
        load_trace(p, TOPO, CAT)
    msg = str(e.value)
    assert msg.startswith(f"{p}: classes[0].rate: formula") and "column 19" in msg and "fix:" in msg


def test_yaml_nan_and_inf_are_refused(tmp_path):
    for text in ("rate: .nan", "rate: .inf", "rate: [[0, .nan]]"):
        p = tmp_path / "t.yaml"
        p.write_text(f"duration_s: 10\nperiod_s: 5\nclasses:\n  - ingress: edge-1\n    task: digits\n    {text}\n")
        with pytest.raises(ConfigError, match="finite"):
            load_trace(p, TOPO, CAT)
