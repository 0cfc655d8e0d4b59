"""`idn simulate`: placement policies on a demand trace, offline, against the per-period optimum.

    idn simulate --topology deploy/topologies/demo.yaml --trace deploy/traces/flash-crowd.yaml
    idn simulate ... --policy static --policy infida        # a subset (hindsight always runs: the bound)

Writes ``<out>/<trace>.json`` (per period and overall, every policy) and
``<out>/<trace>.png`` (gain per period and cumulative reconfigurations) and prints the
overall table. See :mod:`idn.simulate` for what each policy knows and how every policy
is scored.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from idn.catalog import default_catalog_path, load_catalog
from idn.cli.app import app
from idn.config import ConfigError
from idn.online.infida import ROUNDINGS, InfidaOptions
from idn.placement import PlacementOptions, SolverOptions
from idn.simulate import MEASUREMENTS, POLICIES, SimOptions, SimResult, Simulator, plot
from idn.topology import load_topology
from idn.trace import load_trace

_WIDTH = shutil.get_terminal_size((160, 40)).columns
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def render(result: SimResult) -> Table:
    t = Table(title=f"{result.trace}: {result.timing['periods']} periods, {result.timing['wall_s']:g} s "
                    f"({result.timing['periods_per_s']:g} periods/s)")
    for col in ("policy", "gain", "% of hindsight", "accuracy", "periods w/ violations", "SLO violations",
                "reconfigurations", "MiB moved", "move s (load + links)", "policy + scoring s"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, res in result.policies.items():
        s = res.summary
        of = "100% (bound)" if name == "hindsight" else _pct(s.get("gain_of_hindsight"))
        move_s = (s["move_load_ms"] + s["move_transfer_ms"]) / 1000.0
        t.add_row(name, _pct(s["gain"]), of, _pct(s["accuracy"]), str(s["periods_with_violations"]),
                  str(s["slo_violations"]), str(s["reconfigurations"]), f"{s['bytes_moved'] / 2**20:.1f}",
                  f"{move_s:.1f}", f"{s['decide_s'] + s['score_s']:.2f}")
    return t


def _policies(given: list[str] | None) -> list[str]:
    names: list[str] = []
    for item in given or list(POLICIES):
        for n in item.split(","):
            n = n.strip()
            if n and n not in POLICIES:
                raise fail(f"unknown policy {n!r} (use {', '.join(POLICIES)})")
            if n:
                names.append(n)
    return list(dict.fromkeys(names))


@app.command("simulate")
def simulate(
    topology: Annotated[Path, typer.Option(help="topology YAML")],
    trace: Annotated[Path, typer.Option(help="demand trace YAML (deploy/traces/)")],
    policy: Annotated[Optional[list[str]], typer.Option(
        help=f"policy to run (repeat, or a comma list; default all: {', '.join(POLICIES)}); "
             "hindsight, the bound, always runs")] = None,
    catalog: Annotated[Optional[Path], typer.Option(help="catalog.yaml (default models/catalog.yaml)")] = None,
    period: Annotated[Optional[float], typer.Option(help="control period in seconds (default: the trace's)")] = None,
    measurement: Annotated[str, typer.Option(help=f"what policies see of the past period: "
                                             f"{' | '.join(MEASUREMENTS)} (Poisson counts, or the true rates)")]
    = "poisson",
    static_on: Annotated[str, typer.Option(help="static solves on the 'first' period, or the trace's 'mean' "
                                           "(which peeks at the future)")] = "first",
    seed: Annotated[int, typer.Option(help="seed of measurements and of INFIDA's rounding")] = 0,
    alpha: Annotated[float, typer.Option(help="ms per unit of inaccuracy")] = PlacementOptions().alpha,
    rho: Annotated[float, typer.Option(help="utilisation cap per node")] = PlacementOptions().rho,
    budget: Annotated[Optional[float], typer.Option(help="deployment budget (price x MiB); not with infida")]
    = None,
    time_limit: Annotated[Optional[float], typer.Option(help="ILP time limit per solve, seconds")] = None,
    gap: Annotated[Optional[float], typer.Option(help="ILP relative gap to stop at")] = None,
    eta: Annotated[float, typer.Option(help="INFIDA's step size (normalised; see idn.online.infida)")]
    = InfidaOptions().eta,
    rounding: Annotated[str, typer.Option(help=f"INFIDA's rounding for the 'infida' policy: {' | '.join(ROUNDINGS)}")]
    = InfidaOptions().rounding,
    round_every: Annotated[int, typer.Option(help="INFIDA: draw a new integral allocation every N periods")] = 1,
    move_weight: Annotated[float, typer.Option(help="periodic-ilp-moves: request-ms of latency one ms of moving "
                                               "is worth, amortised over one period (idn control's default)")]
    = SimOptions().move_weight,
    min_gain: Annotated[float, typer.Option(help="control: idn control's --min-gain (0-1)")] = SimOptions().min_gain,
    hold_rounds: Annotated[int, typer.Option(help="control: idn control's --hold-rounds")] = SimOptions().hold_rounds,
    keep_idle: Annotated[bool, typer.Option(help="control: idn control's --keep-idle")] = SimOptions().keep_idle,
    out_dir: Annotated[Path, typer.Option("--out", help="folder for <trace>.json and <trace>.png")]
    = Path("results/simulate"),
    no_plot: Annotated[bool, typer.Option("--no-plot", help="skip the PNG")] = False,
) -> None:
    """Replay a demand trace offline: every policy's placements per period, scored like the live system."""
    names = _policies(policy)
    if measurement not in MEASUREMENTS or static_on not in ("first", "mean") or rounding not in ROUNDINGS:
        raise fail(f"--measurement is one of {', '.join(MEASUREMENTS)}, --static-on first|mean, "
                   f"--rounding one of {', '.join(ROUNDINGS)}")
    if (period is not None and period <= 0) or round_every < 1 or eta < 0 or move_weight < 0 or hold_rounds < 0 \
            or not 0 <= min_gain <= 1:
        raise fail("--period must be > 0, --round-every >= 1, --eta, --move-weight and --hold-rounds >= 0, "
                   "--min-gain in [0, 1]")
    try:
        cat = load_catalog(catalog or default_catalog_path())
        topo = load_topology(topology)
        tr = load_trace(trace, topo, cat)
    except ConfigError as e:
        raise fail(str(e)) from None
    opts = SimOptions(period_s=period, measurement=measurement, seed=seed, static_on=static_on,
                      solver=SolverOptions(time_limit=time_limit, gap=gap),
                      placement=PlacementOptions(alpha=alpha, rho=rho, budget=budget),
                      infida=InfidaOptions(eta=eta, rounding=rounding, round_every=round_every, seed=seed),
                      move_weight=move_weight, min_gain=min_gain, hold_rounds=hold_rounds, keep_idle=keep_idle)
    try:
        sim = Simulator(topo, cat, tr, opts)
        n = len(tr.periods(period))
        err.print(f"simulate: {tr.name}, {n} periods of {period or tr.period_s:g} s, {len(tr.classes)} classes, "
                  f"policies {', '.join(names)}", highlight=False)
        result = sim.run(names)
    except ValueError as e:
        raise fail(str(e)) from None
    out.print(render(result))
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = tr.name or trace.stem
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")
    out.print(f"per period: {path}", highlight=False)
    if not no_plot:
        out.print(f"plot: {plot(result, out_dir / f'{stem}.png')}", highlight=False)
    c = result.timing["problem_cache"]
    out.print(f"problems: {c['builds']} built, {c['restricted']} restricted, {c['rescaled']} rescaled; "
              f"{result.timing['periods_per_s']:g} periods/s", highlight=False)
