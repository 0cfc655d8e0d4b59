"""`idn infer` (one request, who served it) and `idn loadgen` (a demand's open-loop workload)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Optional

import grpc
import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from idn.catalog import Catalog, default_catalog_path, load_catalog
from idn.cli.app import app
from idn.cli.common import TlsCaOpt, TlsCertOpt, TlsKeyOpt, address, console, fail, number, tls_files
from idn.client import Client, ingress_addresses
from idn.config import ConfigError
from idn.demand import load_demand
from idn.loadgen import (
    IngressUnavailable,
    LoadOptions,
    LoadReport,
    TraceWindow,
    answer_output,
    load_samples,
    plan_load,
    plan_trace_load,
    run_load,
    scale_demand,
    slo_parameters,
    top_class,
)
from idn.network import rpc_hint, speaks_tls
from idn.protocol import params as P
from idn.topology import load_topology
from idn.trace import load_trace

CatalogOpt = Annotated[Optional[Path], typer.Option(help="catalog.yaml (default models/catalog.yaml)")]


def _catalog(path: Path | None) -> Catalog:
    try:
        return load_catalog(path or default_catalog_path())
    except ConfigError as e:
        raise fail(str(e)) from None


def _label(task_labels: tuple[str, ...], k: int | None) -> str:
    if k is None:
        return "?"
    return f"{k} ({task_labels[k]})" if 0 <= k < len(task_labels) and task_labels[k] != str(k) else str(k)


@app.command("infer")
def infer(
    task: Annotated[str, typer.Option(help="task (or a variant name, to pin it)")],
    to: Annotated[Optional[list[str]], typer.Option(
        "--to", help="HOST:PORT of the node to send to (normally an edge); repeat it (or give A,B) for "
                     "addresses to fail over to, best first")] = None,
    topology: Annotated[Optional[Path], typer.Option(
        help="with --ingress: send to that node, failing over to the others nearest first")] = None,
    ingress: Annotated[Optional[str], typer.Option(help="node of --topology to send to")] = None,
    retry_sent: Annotated[bool, typer.Option(
        help="also fail over when the request was lost after it was sent (inference is side-effect "
             "free; it may run twice)")] = False,
    sample: Annotated[Optional[int], typer.Option(help="index into the task's held-out samples",
                                                  callback=number(0))] = None,
    input: Annotated[Optional[Path], typer.Option("--input", help=".npy input, one sample or a batch of one")] = None,
    max_latency_ms: Annotated[Optional[float], typer.Option(help="request SLO: latency bound",
                                                            callback=number(0, strict_min=True))] = None,
    min_accuracy: Annotated[Optional[float], typer.Option(help="request SLO: accuracy floor",
                                                          callback=number(0, 1))] = None,
    timeout: Annotated[float, typer.Option(help="gRPC deadline, seconds", callback=number(0, strict_min=True))] = 10.0,
    catalog: CatalogOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    """Send one request; print the answer, the true label when known, and who served it.

    Several addresses (--to A --to B, or --topology T --ingress N) fail over: a request the
    first could not take (unreachable, before it was sent) goes to the next, within --timeout."""
    out = console()
    cat = _catalog(catalog)
    addresses = _addresses(to, topology, ingress)
    for a in addresses:
        address(a)  # the same check as a single --to: host:port, or a clear error
    tls = tls_files(tls_cert, tls_key, tls_ca)
    task_name = task if task in cat.tasks else cat.variants[task].task if task in cat.variants else None
    if task_name is None:
        raise fail(f"--task {task!r}: not a task or variant of the catalog (tasks: {', '.join(cat.tasks)})")
    t = cat.tasks[task_name]
    if (sample is None) == (input is None):
        raise fail("give exactly one of --sample K or --input FILE.npy")
    truth: int | None = None
    if input is not None:
        try:
            x = np.load(input, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise fail(f"--input {input}: {e}") from None
        spec = t.inputs[0]
        if x.ndim == len(spec.shape) - 1:
            x = x[None]
        x = x.astype(np.float32) if spec.datatype == "FP32" and x.dtype != np.float32 else x
        name = spec.name
        where = str(input)
    else:
        try:
            s = load_samples(t, cat.path)
        except ConfigError as e:
            raise fail(str(e)) from None
        assert sample is not None  # either --input or --sample, checked above
        if not 0 <= sample < len(s):
            raise fail(f"--sample {sample}: the task has {len(s)} held-out samples (0..{len(s) - 1})")
        x, name = s.one(sample), s.input_name
        truth = int(s.labels[sample]) if s.labels is not None else None
        where = f"held-out sample {sample} of {task_name}"
    output = answer_output(t)
    try:
        with Client(addresses, timeout=timeout, tls=tls, retry_sent=retry_sent) as c:
            res = c.infer(task, {name: x}, [output], parameters=slo_parameters(max_latency_ms, min_accuracy))
            failed_over = c.failover.failovers > 0
    except grpc.RpcError as e:
        hint = rpc_hint(e.code(), e.details() or "", addresses[0], tls is not None)
        fix = f" (fix: {hint})" if hint else ""
        raise fail(f"{', '.join(addresses)}: {e.code().name}: {e.details()}{fix}") from None
    answer = top_class(res.outputs[output])
    right = "" if truth is None else ("  [green]correct[/green]" if answer == truth else "  [red]wrong[/red]")
    out.print(f"input:    {escape(where)}", highlight=False)
    out.print(f"answer:   {_label(t.labels, answer)}{right}", highlight=False)
    out.print(f"label:    {_label(t.labels, truth) if truth is not None else 'unknown'}", highlight=False)
    acc = f"{res.accuracy:.3f}" if res.accuracy is not None else "?"
    out.print(f"served:   node {res.node} · variant {res.variant} (held-out accuracy {acc}) · "
              f"{res.hops} hop(s) · {res.server_us} us in the server"
              + (" · [yellow]DEGRADED[/yellow] (fallback)" if res.degraded else ""), highlight=False)
    if failed_over:
        out.print(f"[yellow]note:[/yellow] {addresses[0]} was unreachable; another ingress answered")
    if res.parameters.get(P.REROUTED):
        out.print(f"[yellow]note:[/yellow] routed around {res.parameters[P.REROUTED]} (down)")
    if res.parameters.get(P.SLO_MET) is False:
        out.print("[yellow]note:[/yellow] no target met this request's SLO; the plan's best was used")


def _addresses(to: list[str] | None, topology: Path | None, ingress: str | None) -> list[str]:
    """--to (repeatable, or comma-separated), or --topology with --ingress (nearest first)."""
    if to and (topology or ingress):
        raise fail("give --to, or --topology with --ingress, not both")
    if to:
        return [a.strip() for item in to for a in item.split(",") if a.strip()]
    if topology is None or ingress is None:
        raise fail("say where to send: --to HOST:PORT, or --topology T --ingress NODE")
    try:
        topo = load_topology(topology)
    except ConfigError as e:
        raise fail(str(e)) from None
    if ingress not in topo.nodes:
        raise fail(f"--ingress {ingress!r}: not a node of {topology} (nodes: {', '.join(topo.nodes)})")
    return ingress_addresses(topo, ingress)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def render_load_report(report: LoadReport, title: str) -> Table:
    t = Table(title=title)
    for col in ("class", "sent", "ok", "errors", "p50 ms", "p95 ms", "p99 ms", "mean ms", "accuracy", "SLO met",
                "served by"):
        t.add_column(col, justify="right" if col not in ("class", "served by", "errors") else "left", overflow="fold")
    for c in [*report.classes, report.overall]:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(c.errors.items()))
        if c.dropped:
            errors = (errors + ", " if errors else "") + f"dropped {c.dropped}"
        served = ", ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(c.served_by.items(), key=lambda kv: -kv[1]))
        name = escape(c.class_id) if c.class_id != "all" else "[bold]all[/bold]"
        t.add_row(name, str(c.sent), str(c.ok), escape(errors) or "-", _ms(c.latency.p50_ms), _ms(c.latency.p95_ms),
                  _ms(c.latency.p99_ms), _ms(c.latency.mean_ms), _pct(c.accuracy), _pct(c.slo_met),
                  escape(served) if c.class_id != "all" else "")
    return t


@app.command("loadgen")
def loadgen(
    topology: Annotated[Path, typer.Option(help="topology: where each class's ingress listens")],
    demand: Annotated[Optional[Path], typer.Option(help="demand: request classes and their rates")] = None,
    trace: Annotated[Optional[Path], typer.Option(help="trace (instead of --demand): rates that change over "
                                                  "time, replayed as non-homogeneous Poisson arrivals")] = None,
    duration: Annotated[Optional[float], typer.Option(help="seconds of counted load after the warm-up (default 10; "
                                                      "with --trace: trace seconds to replay, default to its end)",
                                                      callback=number(0, strict_min=True))] = None,
    warmup: Annotated[float, typer.Option(help="seconds of load sent first and not counted",
                                          callback=number(0))] = 1.0,
    start: Annotated[float, typer.Option(help="--trace: trace second to start the replay at",
                                         callback=number(0))] = 0.0,
    speed: Annotated[float, typer.Option(help="--trace: trace seconds per wall-clock second (rates as "
                                         "written, periods shorter)", callback=number(0, strict_min=True))] = 1.0,
    seed: Annotated[int, typer.Option(help="seed of arrivals and sample order", callback=number(0, 2**32 - 1))] = 0,
    max_outstanding: Annotated[int, typer.Option(help="bound on requests in flight; arrivals over it are "
                                                 "counted as dropped", callback=number(1))] = 256,
    timeout: Annotated[float, typer.Option(help="gRPC deadline of each request, seconds",
                                           callback=number(0, strict_min=True))] = 5.0,
    scale: Annotated[float, typer.Option(help="multiply every class's rate (--demand only)",
                                         callback=number(0, strict_min=True))] = 1.0,
    failover: Annotated[int, typer.Option(
        help="each class may fail over to this many other nodes, nearest its ingress first, when the "
             "ingress cannot take a request (0 = off)", callback=number(0))] = 0,
    retry_sent: Annotated[bool, typer.Option(
        help="with --failover, also retry requests lost after they were sent (side-effect free)")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the report as JSON here")] = None,
    catalog: CatalogOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    """Open-loop Poisson load per request class; per class latency percentiles, accuracy, who served.

    With --trace, each class's arrivals follow its rate over time (non-homogeneous Poisson),
    and the report counts, per class and trace period, the requests sent and answered
    next to the expected count: what a controller measuring the ingresses should see."""
    out, err = console(), console(stderr=True)
    cat = _catalog(catalog)
    tls = tls_files(tls_cert, tls_key, tls_ca)
    if (demand is None) == (trace is None):
        raise fail("give exactly one of --demand and --trace")
    window = None
    try:
        topo = load_topology(topology)
        if trace is not None:
            tr = load_trace(trace, topo, cat)
            if start >= tr.duration_s:
                raise fail(f"--start {start:g} is past the end of the trace ({tr.duration_s:g} s)")
            window = TraceWindow(tr, start, duration, speed)
            loads = plan_trace_load(topo, cat, window, seed=seed, warmup_s=warmup, failover=failover)
            source, what = trace, (f"trace {tr.name}: t={window.start_s:g}..{window.end_s:g} s at x{speed:g} "
                                   f"({window.wall_s:g} s)")
        else:
            assert demand is not None
            dem = scale_demand(load_demand(demand, topo, cat), scale)
            loads = plan_load(topo, cat, dem, seed=seed, failover=failover)
            source, what = demand, f"{dem.total_rate:.1f} req/s total, {duration or 10.0:g} s"
    except ConfigError as e:
        raise fail(str(e)) from None
    opts = LoadOptions(duration_s=duration or 10.0, warmup_s=warmup, seed=seed, max_outstanding=max_outstanding,
                       timeout_s=timeout, retry_sent=retry_sent)
    err.print(f"loadgen: {len(loads)} classes, {what}, {warmup:g} s warm-up", highlight=False, markup=False)
    try:
        report = asyncio.run(run_load(loads, opts, tls, window))
    except IngressUnavailable as e:
        lines = []
        for addr, classes in e.down.items():
            tls_there = speaks_tls(addr)
            why = ("it serves TLS: pass --tls-ca" if tls_there and tls is None else
                   "it serves plaintext: drop the --tls-* options" if tls_there is False and tls is not None else
                   "nothing answers there" if tls_there is None else "it does not complete the handshake")
            lines.append(f"{classes[0].ingress} ({addr}, classes {', '.join(c.id for c in classes)}): {why}")
        raise fail(f"{len(e.down)} ingress(es) of {topology} did not accept a connection within {timeout:g} s, "
                   f"so no load was sent: {'; '.join(lines)} (fix: start them, `idn up {topology}` / "
                   f"`idn status {topology}`, or leave their classes out of {source})") from None
    out.print(render_load_report(report, f"loadgen {escape(source.name)}: {report.duration_s:g} s, seed {seed}"))
    if report.trace is not None:
        out.print(render_periods(report))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
        out.print(f"report: {escape(str(json_out))}", highlight=False)


def render_periods(report: LoadReport) -> Table:
    """Per trace period: requests expected, sent and answered (all classes together)."""
    assert report.trace is not None
    t = Table(title=f"per period of {report.trace['period_s']:g} s (trace time)")
    for col in ("period", "from s", "expected", "sent", "ok", "sent / expected"):
        t.add_column(col, justify="right")
    o = report.overall
    first = report.trace["first_period"]
    for k, t0 in enumerate(report.trace["period_starts_s"]):
        exp, sent, ok = (o.periods_expected or [])[k], (o.periods_sent or [])[k], (o.periods_ok or [])[k]
        t.add_row(str(first + k), f"{t0:g}", f"{exp:.1f}", str(sent), str(ok), f"{sent / exp:.2f}" if exp else "-")
    return t
