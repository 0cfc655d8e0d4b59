"""`idn demo` (= `make run`): the ILP at three alphas and the heuristics, predicted and live, on the demo network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from idn.cli.app import app
from idn.demo import AGREEMENT, DEMO_SCENARIO, DemoOptions, DemoResult, draw_pareto, explain, load_scenario, run_demo

_WIDTH = shutil.get_terminal_size((160, 40)).columns
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def render_comparison(res: DemoResult) -> Table:
    budget = "no budget" if res.budget is None else f"budget {res.budget:g}"
    t = Table(title=f"predicted (evaluator) vs measured (live, {res.duration_s:g} s per plan) — "
                    f"{Path(res.topology).name} / {Path(res.demand).name}, {budget}")
    cols = ("plan", "solver", "gain", "cost", "mean ms pred", "mean ms live", "Δ mean", "p95(class) pred",
            "p95(class) live", "acc pred", "acc live", "acc* pred", "acc* live", "ok / sent", "errors")
    for c in cols:
        t.add_column(c, justify="left" if c in ("plan", "solver", "errors") else "right")
    for p in res.plans:
        ratio = p.latency_ratio
        delta = "-" if ratio is None else f"{100 * (ratio - 1):+.0f}%"
        if ratio is not None and abs(ratio - 1) > AGREEMENT:
            delta = f"[yellow]{delta}[/yellow]"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(p.errors.items()))
        if p.dropped:
            errors = (errors + ", " if errors else "") + f"dropped {p.dropped}"
        t.add_row(p.label, p.solver_status, _pct(p.gain_vs_repository), f"{p.deployment_cost:.0f}",
                  _ms(p.predicted.mean_latency_ms), _ms(p.measured.mean_latency_ms), delta,
                  _ms(p.predicted.p95_class_latency_ms), _ms(p.measured.p95_class_latency_ms),
                  _pct(p.predicted.accuracy), _pct(p.measured.accuracy), _pct(p.predicted.accuracy_measured_tasks),
                  _pct(p.measured.accuracy_measured_tasks), f"{p.ok} / {p.sent}", errors or "-")
    for label, _why in res.failed:
        t.add_row(label, "no plan", *["-"] * 12, "see below")
    return t


@app.command("demo")
def demo(
    scenario: Annotated[Path, typer.Option(help="scenario file: topology, demand, alphas, budget")] = DEMO_SCENARIO,
    duration: Annotated[Optional[float], typer.Option(help="seconds of counted load per plan (default: the "
                                                      "scenario's)")] = None,
    warmup: Annotated[Optional[float], typer.Option(help="seconds of load per plan before counting")] = None,
    seed: Annotated[int, typer.Option(help="seed of arrivals and sample order (the same for every plan)")] = 0,
    json_out: Annotated[Path, typer.Option("--json", help="write the comparison here")] = Path("results/demo.json"),
    png_out: Annotated[Path, typer.Option("--png", help="the measured Pareto frontier")] = Path(
        "results/demo-pareto.png"),
    calibrate: Annotated[bool, typer.Option(help="time a few variants first and predict with the catalog's "
                                                 "profiles rescaled to this machine's speed now")] = True,
    trace: Annotated[Optional[str], typer.Option(
        help="instead of the scenario: replay this demand trace (a name in deploy/traces, e.g. flash-crowd, or a "
             "path) live, static plan vs idn control, beside idn simulate's prediction (idn.demo_trace)")] = None,
    speed: Annotated[float, typer.Option(help="--trace: trace seconds per wall-clock second (x12: a 900 s trace "
                                              "in 75 s per run)")] = 12.0,
    topology: Annotated[Optional[Path], typer.Option(help="--trace: topology (default deploy/topologies/demo.yaml)")]
    = None,
    catalog: Annotated[Optional[Path], typer.Option(help="--trace: catalog.yaml (default models/catalog.yaml)")]
    = None,
    static_on: Annotated[str, typer.Option(help="--trace: the static plan is solved on the 'first' period or the "
                                                "trace's 'mean' demand")] = "first",
) -> None:
    """Start the demo network; play the ILP at three alphas and the heuristics at the middle one; compare.

    With --trace: replay a demand trace live twice (static plan, then idn control) and set
    each period's measured latency, accuracy, SLO violations and reconfigurations against
    idn simulate's prediction."""
    if trace is not None:
        from idn.cli.demo_trace_cmd import run_trace_cmd  # the solver and matplotlib: only this path needs them

        run_trace_cmd(trace, speed=speed, topology=topology, catalog=catalog, static_on=static_on, seed=seed,
                      calibrate=calibrate, warmup=warmup,
                      json_out=None if json_out == Path("results/demo.json") else json_out,
                      png_out=None if png_out == Path("results/demo-pareto.png") else png_out)
        return
    # errors (ConfigError, LaunchError, NoPlan, a node's RpcError) end in one line: idn.cli.app.report
    opts = DemoOptions(scenario=load_scenario(scenario), duration_s=duration, warmup_s=warmup, seed=seed,
                       calibrate=calibrate)
    res = run_demo(opts, say=lambda s: err.print(s, highlight=False))
    try:
        res.pareto_png = str(draw_pareto(res, png_out))
    except ImportError:  # matplotlib is the `plot` extra (make run installs it)
        err.print("no Pareto PNG: matplotlib is not installed (pip install 'idn[plot]')", highlight=False)
    out.print(render_comparison(res))
    out.print("acc: rate-weighted accuracy of every class (live: right answers on the measured tasks, the "
              "catalog accuracy of the variant that answered on cited/estimated ones); acc*: measured tasks only",
              highlight=False)
    for p in res.plans:
        out.print(explain(p), highlight=False)
    for label, why in res.failed:
        out.print(f"{label} found no plan: {why}", highlight=False)
    for heuristic, ilp in res.ties():
        out.print(f"{heuristic} places exactly what {ilp} places (a tie)", highlight=False)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(res.to_dict(), indent=1) + "\n", encoding="utf-8")
    out.print(f"comparison: {json_out} · Pareto frontier: {res.pareto_png} · total {res.wall_s:.0f} s",
              highlight=False)
