"""`idn demo --trace NAME`: the table and files of :mod:`idn.demo_trace` (kept out of demo_cmd.py on purpose:
the scenario demo and the trace demo change for different reasons)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from idn.demo_trace import (
    DEMO_TOPOLOGY,
    RUNS,
    TraceDemoOptions,
    TraceDemoResult,
    draw,
    run_trace_demo,
    trace_path,
    verdict,
)

_WIDTH = shutil.get_terminal_size((160, 40)).columns
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def render(res: TraceDemoResult) -> Table:
    """Per period: offered load, then per run measured | predicted latency, accuracy, SLO, reconfigurations."""
    t = Table(title=f"{res.trace}: {res.periods} periods of {res.period_s:g} s at x{res.speed:g} "
                    f"({res.period_wall_s:.1f} s each); measured | predicted; cpu %: the machine's CPU busy (measured)")
    t.add_column("period", justify="right")
    t.add_column("req/s", justify="right")
    for name in RUNS:
        for col in ("ms", "acc %", "SLO", "reconf", "cpu %"):
            t.add_column(f"{name} {col}", justify="right")
    for k in range(res.periods):
        row = [str(k), f"{res.offered[k]:.0f}"]
        for name in RUNS:
            m, p = res.runs[name].periods[k], res.predicted[name][k]
            row += [f"{_f(m.mean_latency_ms)} | {_f(p['mean_latency_ms'])}",
                    f"{_f(m.accuracy and 100 * m.accuracy)} | {_f(p['accuracy'] and 100 * p['accuracy'])}",
                    f"{m.slo_violations} | {p['slo_violations']}",
                    f"{m.reconfigurations} | {p['plan_changes']}",
                    _f(m.cpu_busy and 100 * m.cpu_busy, "{:.0f}")]
        t.add_row(*row)
    return t


def run_trace_cmd(trace: str, *, speed: float, topology: Path | None, catalog: Path | None, static_on: str,
                  seed: int, calibrate: bool, warmup: float | None, json_out: Path | None,
                  png_out: Path | None) -> None:
    if speed <= 0 or static_on not in ("first", "mean"):
        err.print("[red]error:[/red] --speed must be > 0 and --static-on first|mean", highlight=False)
        raise typer.Exit(1)
    path = trace_path(trace)
    opts = TraceDemoOptions(trace=path, topology=topology or DEMO_TOPOLOGY, catalog=catalog, speed=speed, seed=seed,
                            static_on=static_on, calibrate=calibrate, warmup_s=1.0 if warmup is None else warmup)
    # errors (ConfigError, LaunchError, NoPlan, a node's RpcError) end in one line: idn.cli.app.report
    res = run_trace_demo(opts, say=lambda s: err.print(s, highlight=False))
    stem = f"results/demo-trace-{res.trace or path.stem}"
    png = png_out or Path(f"{stem}.png")
    try:
        res.png = str(draw(res, png))
    except ImportError:
        err.print("no PNG: matplotlib is not installed (pip install 'idn[plot]')", highlight=False)
    out.print(render(res))
    for line in verdict(res):
        out.print(line, highlight=False)
    js = json_out or Path(f"{stem}.json")
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(res.to_dict(), indent=1) + "\n", encoding="utf-8")
    out.print(f"per period: {js} · time series: {res.png} · total {res.wall_s:.0f} s", highlight=False)
