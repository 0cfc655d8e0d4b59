"""`idn solve`: compute a placement plan (or a latency/accuracy Pareto sweep) from files.

    idn solve --topology deploy/topologies/demo.yaml --demand deploy/demands/demo.yaml -o plan.yaml
    idn solve ... --solver greedy            # or cbc, lp-round, repository, smallest
    idn solve ... --sweep-alpha 0,100,1000 --sweep-out pareto   # pareto.csv + pareto.png

The plan records the sha256 of its three inputs and the solver's facts. Its version is
one more than the plan already at ``-o`` (so re-solving never produces a stale version),
or ``--plan-version``.

Exit status: 0 a plan (checked by the evaluator: it breaks no memory, compute, budget or
SLO constraint; the repository-only reference may miss SLOs, and says so); 1 a bad file;
2 a bad option, or no feasible plan (proven, and explained); 3 no plan found, which does
not mean none exists (a time limit reached without a plan, or a heuristic that failed).
No plan file is written unless the exit status is 0.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from idn.catalog import default_catalog_path, load_catalog
from idn.cli.app import app, report
from idn.cli.common import choice, console, fail, float_list, number
from idn.config import ConfigError, sha256_file
from idn.demand import load_demand
from idn.placement import METHODS, NoPlan, PlacementOptions, SolverOptions, solve
from idn.placement.backends import SolverUnavailable
from idn.placement.solve import Outcome
from idn.plan import MAX_VERSION, load_plan, save_plan
from idn.topology import load_topology

MAX_CLASS_ROWS = 25


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def _next_version(out: Path | None, given: int | None) -> int:
    if given is not None:
        return given
    if out is not None and out.is_file():
        try:
            return min(load_plan(out).version + 1, MAX_VERSION)
        except ConfigError:
            return 1
    return 1


def render(console: Console, outcome: Outcome, topology) -> None:
    """Compact tables: classes (where served, latency, accuracy), nodes, totals and solver facts."""
    plan, ev, facts = outcome.plan, outcome.evaluation, outcome.solution.facts
    ct = Table(title="request classes", show_edge=False, pad_edge=False)
    for col in ("class", "rate/s", "served by", "lat ms", "acc", "SLO"):
        ct.add_column(col, justify="right" if col in ("rate/s", "lat ms", "acc") else "left", overflow="fold")
    routes = sorted(plan.routes.values(), key=lambda r: -r.rate)
    for r in routes[:MAX_CLASS_ROWS]:
        where = ", ".join(f"{t.variant}@{t.node}" + (f" {t.share:.0%}" if t.share < 0.9995 else "") for t in r.targets)
        s = ev.classes.get(r.class_id)
        slo = " ".join(x for x in (f"<={r.max_latency_ms:g}ms" if r.max_latency_ms is not None else "",
                                   f">={r.min_accuracy:g}" if r.min_accuracy is not None else "") if x) or "-"
        ct.add_row(r.class_id, f"{r.rate:g}", where, _fmt(s.latency_ms if s else None, ".1f"),
                   _fmt(s.accuracy if s else None, ".3f"), slo)
    if len(routes) > MAX_CLASS_ROWS:
        ct.add_row(f"... {len(routes) - MAX_CLASS_ROWS} more (see the plan file)", "", "", "", "", "")
    console.print(ct)
    nt = Table(title="nodes", show_edge=False, pad_edge=False)
    for col in ("node", "tier", "variants", "mem MiB", "util"):
        nt.add_column(col, justify="right" if col in ("mem MiB", "util") else "left", overflow="fold")
    used = [(nid, ns) for nid, ns in ev.nodes.items() if ns.variants or ns.busy_cores > 0]
    for nid, ns in used[:MAX_CLASS_ROWS]:
        nt.add_row(nid, topology.nodes[nid].tier, ", ".join(ns.variants) or "-", f"{ns.mem_mb:.1f}/{ns.mem_cap_mb:g}",
                   f"{ns.utilisation:.0%}")
    if len(used) > MAX_CLASS_ROWS:
        nt.add_row(f"... {len(used) - MAX_CLASS_ROWS} more", "", "", "", "")
    console.print(nt)
    gap = "-" if facts.gap is None else f"{facts.gap:.3%}"
    console.print(
        f"[bold]{facts.name}[/]: status [bold]{facts.status}[/], objective {_fmt(facts.objective, '.6g')}, "
        f"bound {_fmt(facts.bound, '.6g')}, gap {gap}, {facts.time_s or 0:.2f} s "
        f"({outcome.problem.n_triples} triples, {outcome.problem.n_pairs} placements considered)")
    gain = "-" if ev.gain_vs_repository is None else f"{ev.gain_vs_repository:.1%}"
    console.print(
        f"mean latency {ev.mean_latency_ms:.1f} ms, p95 by class {ev.p95_class_latency_ms:.1f} ms, accuracy "
        f"{ev.accuracy:.4f}, deployment cost {ev.deployment_cost:.1f}, gain vs repository-only {gain} "
        f"(repository-only: {outcome.reference.mean_latency_ms:.1f} ms, "
        f"{len(outcome.reference.violations)} violations)")
    for note in outcome.solution.notes:
        console.print(f"[yellow]note[/]: {escape(note)}")
    for v in ev.violations:
        console.print(f"[red]violation[/]: {escape(v)}")


def write_sweep(rows: list[dict[str, float | str]], prefix: Path) -> tuple[Path, Path | None]:
    """Pareto CSV and PNG (mean latency vs accuracy, one point per alpha); no PNG without
    matplotlib (the `plot` extra)."""
    csv_path, png_path = prefix.with_suffix(".csv"), prefix.with_suffix(".png")
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    try:
        import matplotlib
    except ImportError:
        return csv_path, None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if isinstance(r["mean_latency_ms"], float) and r["mean_latency_ms"] == r["mean_latency_ms"]]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([r["mean_latency_ms"] for r in ok], [r["accuracy"] for r in ok], "o-")
    for r in ok:
        ax.annotate(f"α={r['alpha']:g}", (r["mean_latency_ms"], r["accuracy"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=8)
    ax.set_xlabel("mean latency (ms)")
    ax.set_ylabel("rate-weighted accuracy")
    ax.set_title("latency / accuracy trade-off (alpha sweep)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return csv_path, png_path


@app.command("solve")
def solve_cmd(
    topology: Annotated[Path, typer.Option(help="topology YAML (nodes, links)")],
    demand: Annotated[Path, typer.Option(help="demand YAML (request classes with rates and SLOs)")],
    catalog: Annotated[Optional[Path], typer.Option(help="catalog YAML [default: models/catalog.yaml]")] = None,
    alpha: Annotated[float, typer.Option(help="ms charged per unit of inaccuracy, a finite number >= 0 "
                                              "(1000: 1 point = 10 ms)", callback=number(0))] = 1000.0,
    budget: Annotated[Optional[float], typer.Option(help="max deployment cost, sum of price x MiB placed",
                                                    callback=number(0))] = None,
    rho: Annotated[float, typer.Option(help="utilisation cap per node (compute <= rho x cores), (0, 1]",
                                       callback=number(0, 1, strict_min=True))] = 0.8,
    solver: Annotated[str, typer.Option(help=f"one of {', '.join(METHODS)}", callback=choice(METHODS))] = "highs",
    time_limit: Annotated[Optional[float], typer.Option(help="solver time limit in seconds",
                                                        callback=number(0, strict_min=True))] = None,
    gap: Annotated[Optional[float], typer.Option(help="relative MIP gap to stop at (default 1e-4)",
                                                 callback=number(0, 1))] = None,
    threads: Annotated[Optional[int], typer.Option(help="solver threads", callback=number(1, 1024))] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write the plan (.yaml or .json)")] = None,
    plan_version: Annotated[Optional[int], typer.Option(help="plan version [default: previous plan at -o + 1]",
                                                        callback=number(1, MAX_VERSION))] = None,
    sweep_alpha: Annotated[Optional[str], typer.Option(help="comma list of alphas (finite, >= 0): write the "
                                                       "Pareto frontier", callback=float_list(0.0))] = None,
    sweep_out: Annotated[Path, typer.Option(help="prefix of the sweep's .csv and .png")] = Path("pareto"),
    verbose: Annotated[bool, typer.Option(help="show the solver's log")] = False,
) -> None:
    """Place variants on nodes and split each request class over them (ILP; baselines on request)."""
    out = console()
    err = console(stderr=True)
    try:
        with err.status("loading inputs"):
            cat_path = catalog or default_catalog_path()
            topo = load_topology(topology)
            cat = load_catalog(cat_path, verify_hashes=False)
            dem = load_demand(demand, topo, cat)
            inputs = {"topology": sha256_file(topology), "catalog": sha256_file(cat_path),
                      "demand": sha256_file(demand)}
    except ConfigError as e:
        raise fail(str(e)) from None
    sopts = SolverOptions(solver if solver in ("highs", "cbc") else "highs", time_limit, gap, threads, verbose)
    try:
        if sweep_alpha is not None:
            alphas: list[float] = sweep_alpha  # type: ignore[assignment]  # float_list parsed the option
            _sweep(out, err, topo, cat, dem, alphas, rho, budget, solver, sopts, sweep_out)
            return
        with err.status(f"building and solving ({solver})"):
            outcome = solve(topo, cat, dem, PlacementOptions(alpha, rho, budget), solver, sopts,
                            version=_next_version(output, plan_version), inputs=inputs)
    except ConfigError as e:  # e.g. a node whose hardware class the catalog never profiled
        raise fail(str(e)) from None
    except SolverUnavailable as e:
        raise fail(str(e), 2) from None
    except NoPlan as e:
        raise typer.Exit(report(e)) from None
    render(out, outcome, topo)
    if output is not None:
        save_plan(outcome.plan, output)
        out.print(f"wrote plan v{outcome.plan.version} to {escape(str(output))}", highlight=False)


def _sweep(out: Console, err: Console, topo, cat, dem, alphas: list[float], rho: float, budget: float | None,
           solver: str, sopts: SolverOptions, prefix: Path) -> None:
    rows: list[dict[str, float | str]] = []
    nan = float("nan")
    for a in alphas:
        with err.status(f"solving with alpha={a:g} ({solver})"):
            try:
                o = solve(topo, cat, dem, PlacementOptions(a, rho, budget), solver, sopts)
                ev, f = o.evaluation, o.solution.facts
                rows.append({"alpha": a, "status": f.status, "objective": ev.objective,
                             "mean_latency_ms": ev.mean_latency_ms,
                             "p95_class_latency_ms": ev.p95_class_latency_ms,
                             "accuracy": ev.accuracy, "deployment_cost": ev.deployment_cost,
                             "gap": f.gap if f.gap is not None else nan})
            except NoPlan as e:
                rows.append({"alpha": a, "status": str(e.status), "objective": nan, "mean_latency_ms": nan,
                             "p95_class_latency_ms": nan, "accuracy": nan, "deployment_cost": nan, "gap": nan})
    t = Table(title="alpha sweep", show_edge=False)
    for col in ("alpha", "status", "mean lat ms", "p95 ms", "accuracy", "cost"):
        t.add_column(col)
    for r in rows:
        t.add_row(f"{r['alpha']:g}", str(r["status"]), f"{r['mean_latency_ms']:.2f}",
                  f"{r['p95_class_latency_ms']:.2f}", f"{r['accuracy']:.4f}", f"{r['deployment_cost']:.1f}")
    out.print(t)
    c, p = write_sweep(rows, prefix)
    out.print(f"wrote {escape(str(c))} and {escape(str(p))}" if p else
              f"wrote {escape(str(c))} (no PNG: pip install 'idn[plot]')", highlight=False)
