"""`idn solve` end to end on files: plan written and versioned, sweep outputs, explained infeasibility."""

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from idn.cli import app
from idn.placement.synthetic import catalog_doc, variant_doc
from idn.plan import load_plan

ROOT = Path(__file__).resolve().parent.parent
LINE3 = ROOT / "deploy/topologies/line3.yaml"


def files(tmp_path: Path, slo: dict | None = None) -> list[str]:
    cat = tmp_path / "catalog.yaml"
    cat.write_text(yaml.safe_dump(catalog_doc({
        "digits": [variant_doc("digits-s", 200_000, 0.90, 0.2), variant_doc("digits-l", 3_000_000, 0.98, 1.5)],
        "waveforms": [variant_doc("wave-s", 500_000, 0.85, 0.5), variant_doc("wave-l", 8_000_000, 0.93, 3.0)]})))
    dem = tmp_path / "demand.yaml"
    dem.write_text(yaml.safe_dump({"classes": [
        {"ingress": "edge", "task": "digits", "rate": 50, **(slo or {})},
        {"ingress": "edge", "task": "waveforms", "rate": 20},
        {"ingress": "regional", "task": "digits", "rate": 10, "min_accuracy": 0.95}]}))
    return ["solve", "--topology", str(LINE3), "--catalog", str(cat), "--demand", str(dem)]


def test_solve_writes_an_auditable_versioned_plan(tmp_path):
    args = files(tmp_path)
    out = tmp_path / "plan.yaml"
    r = CliRunner().invoke(app, [*args, "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "status optimal" in r.output and "gain vs repository-only" in r.output
    plan = load_plan(out)
    assert plan.version == 1 and plan.solver.status == "optimal" and plan.solver.gap <= 1e-4
    assert set(plan.inputs) == {"topology", "catalog", "demand"} and all(len(h) == 64 for h in plan.inputs.values())
    assert plan.predicted["objective"] == pytest.approx(plan.solver.objective, rel=1e-6)
    r = CliRunner().invoke(app, [*args, "--solver", "greedy", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert load_plan(out).version == 2 and load_plan(out).solver.name == "greedy"


def test_every_method_runs(tmp_path):
    args = files(tmp_path)
    for m in ("cbc", "lp-round", "repository", "smallest"):
        r = CliRunner().invoke(app, [*args, "--solver", m, "-o", str(tmp_path / f"{m}.json")])
        assert r.exit_code == 0, (m, r.output)
        assert load_plan(tmp_path / f"{m}.json").solver.name == m


def test_sweep_writes_csv_and_png(tmp_path):
    r = CliRunner().invoke(app, [*files(tmp_path), "--sweep-alpha", "0,100,10000", "--sweep-out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].startswith("alpha,status") and len(rows) == 4
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_infeasible_input_is_explained_not_a_traceback(tmp_path):
    r = CliRunner().invoke(app, files(tmp_path, {"max_latency_ms": 0.1}))
    text = " ".join(r.output.split())  # rich wraps long lines
    assert r.exit_code == 2
    assert "no feasible plan" in text and "edge/digits/lat0.1" in text and "fastest option is" in text
    assert "Traceback" not in text
    r = CliRunner().invoke(app, [*files(tmp_path), "--budget", "0.1"])
    assert r.exit_code == 2 and "budget 0.1 is below the cheapest feasible plan" in " ".join(r.output.split())


def test_bad_file_names_field(tmp_path):
    args = files(tmp_path)
    (tmp_path / "demand.yaml").write_text("classes: [{ingress: nowhere, task: digits, rate: 1}]\n")
    r = CliRunner().invoke(app, args)
    text = " ".join(r.output.split())
    assert r.exit_code == 1 and "classes[0].ingress" in text and "unknown node" in text
