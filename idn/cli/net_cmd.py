"""`idn up` / `down` / `apply` / `status` / `control`: run a topology on this machine and operate a network.

`up` and `down` manage local processes (:mod:`idn.launcher`); `apply`, `status` and
`control` work on any running network, local or not (:mod:`idn.network`, :mod:`idn.controller`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import grpc
import typer
from rich.console import Console
from rich.table import Table

from idn.catalog import default_catalog_path, load_catalog
from idn.cli.app import app
from idn.config import ConfigError
from idn.launcher import (
    RUN_ROOT,
    TOKEN_ENV,
    LaunchError,
    RunState,
    default_state_path,
    load_state,
    pid_runs_node,
    start_network,
    stop_nodes,
)
from idn.network import node_statuses, push_plan
from idn.placement import InfeasibleProblem, PlacementOptions
from idn.plan import check_plan_against, load_plan
from idn.topology import Topology, load_topology

# Wide tables when piped (rich would assume 80 columns); a terminal keeps its own width.
_WIDTH = shutil.get_terminal_size((160, 40)).columns
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)

StateOpt = Annotated[Optional[Path], typer.Option("--state", help="state file of `idn up` "
                                                  "(default .idn/run/<topology>/state.json)")]
TokenOpt = Annotated[Optional[str], typer.Option("--token", envvar=TOKEN_ENV,
                                                 help="control token (default: the one in the state file)")]


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def _topology(path: Path) -> Topology:
    try:
        return load_topology(path)
    except ConfigError as e:
        raise fail(str(e)) from None


def _control_target(topology_path: Path, state: Path | None, token: str | None
                    ) -> tuple[Topology, dict[str, str], str]:
    """Topology, node addresses and token: from the state file, overridden by --token."""
    topo = _topology(topology_path)
    state_path = state or default_state_path(topology_path)
    if state_path.is_file():
        st = load_state(state_path)
        return topo, st.addresses, token or st.token
    if token is None:
        raise fail(f"no state file at {state_path} and no token: pass --token or set {TOKEN_ENV} "
                   f"(or start the network with `idn up {topology_path}`)")
    return topo, {nid: n.address for nid, n in topo.nodes.items()}, token


@app.command("up")
def up(
    topology: Annotated[Path, typer.Argument(help="topology YAML: one node process per node")],
    plan: Annotated[Optional[Path], typer.Option(help="plan every node applies at start")] = None,
    state: StateOpt = None,
    catalog: Annotated[Optional[Path], typer.Option(help="catalog.yaml (default models/catalog.yaml)")] = None,
    emulate: Annotated[bool, typer.Option(help="EMULATION: sleep link delays and apply node slowdowns")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for every node to be ready")] = 60.0,
) -> None:
    """Start every node of a topology as local processes, wait until all are ready, write a state file."""
    topo = _topology(topology)
    if plan is not None:
        try:
            check_plan_against(load_plan(plan), set(topo.nodes), _variant_names(catalog), str(plan))
        except ConfigError as e:
            raise fail(str(e)) from None
    state_path = state or default_state_path(topology)
    if state_path.is_file():
        old = load_state(state_path)
        running = [nid for nid, n in old.nodes.items() if pid_runs_node(n.pid, nid)]
        if running:
            raise fail(f"{state_path}: nodes {running} of this topology are already running; "
                       f"`idn down {topology}` first")
    try:
        st, _ = start_network(topology, plan=plan, catalog=catalog, emulate=emulate, ready_timeout_s=timeout,
                              run_dir=state_path.parent,
                              on_wait=lambda nid: err.print(f"  {nid} ready", highlight=False))
    except LaunchError as e:
        raise fail(str(e)) from None
    st.save(state_path)
    t = Table(title=f"{st.name}: {len(st.nodes)} nodes up" + (" (emulated delays)" if emulate else ""))
    for col in ("node", "tier", "address", "pid", "log"):
        t.add_column(col)
    for nid, n in st.nodes.items():
        t.add_row(nid, n.tier, n.address, str(n.pid), n.log)
    out.print(t)
    out.print(f"state: {state_path} (holds the control token)  ·  stop with `idn down {topology}`",
              highlight=False)


def _variant_names(catalog: Path | None) -> set[str]:
    return set(load_catalog(catalog or default_catalog_path()).variants)


def _find_state(topology: Path | None, state: Path | None) -> Path:
    if state is not None:
        return state
    if topology is not None:
        return default_state_path(topology)
    found = sorted(RUN_ROOT.glob("*/state.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise fail(f"no network is up (no {RUN_ROOT}/*/state.json)")
    raise fail(f"several networks are up ({', '.join(str(p) for p in found)}): name the topology")


@app.command("down")
def down(
    topology: Annotated[Optional[Path], typer.Argument(help="topology started by `idn up` "
                                                       "(optional when only one is up)")] = None,
    state: StateOpt = None,
    timeout: Annotated[float, typer.Option(help="seconds nodes get to drain before SIGKILL")] = 10.0,
) -> None:
    """Stop the nodes of a network started by `idn up` (SIGTERM, then SIGKILL after --timeout)."""
    path = _find_state(topology, state)
    try:
        st: RunState = load_state(path)
    except LaunchError as e:
        raise fail(str(e)) from None
    outcome = stop_nodes(st.nodes, timeout_s=timeout)
    for nid, how in outcome.items():
        out.print(f"{nid}: {how}", highlight=False)
    path.unlink()
    out.print(f"{st.name}: down (logs kept in {st.run_dir})", highlight=False)


@app.command("apply")
def apply(
    topology: Annotated[Path, typer.Argument(help="topology of the running network")],
    plan: Annotated[Path, typer.Argument(help="plan (YAML/JSON) to push to every node")],
    state: StateOpt = None,
    token: TokenOpt = None,
    catalog: Annotated[Optional[Path], typer.Option(help="catalog.yaml to check the plan against")] = None,
) -> None:
    """Push a plan to every node, re-versioned to max(node versions)+1 so a freshly solved plan applies."""
    topo, addresses, tok = _control_target(topology, state, token)
    try:
        the_plan = load_plan(plan)
        check_plan_against(the_plan, set(topo.nodes), _variant_names(catalog), str(plan))
    except ConfigError as e:
        raise fail(str(e)) from None
    try:
        version, results = push_plan(the_plan, topo, addresses, tok)
    except grpc.RpcError as e:
        raise fail(f"{e.code().name}: {e.details()}") from None
    if version != the_plan.version:
        out.print(f"{plan}: version {the_plan.version} re-versioned to {version} "
                  f"(newer than every node's plan)", highlight=False)
    t = Table(title=f"plan v{version} applied")
    for col in ("node", "loaded", "unloaded", "kept"):
        t.add_column(col)
    for r in results:
        t.add_row(r.node, ", ".join(r.loaded) or "-", ", ".join(r.unloaded) or "-", ", ".join(r.kept) or "-")
    out.print(t)


@app.command("status")
def status(
    topology: Annotated[Path, typer.Argument(help="topology of the running network")],
    state: StateOpt = None,
    token: TokenOpt = None,
    window: Annotated[float, typer.Option(help="seconds over which request rates are measured")] = 1.0,
) -> None:
    """Per node: tier, address, readiness, plan version, loaded variants, request rates."""
    topo, addresses, tok = _control_target(topology, state, token)
    rows = node_statuses(topo, addresses, tok, window_s=window)
    t = Table(title=f"{topology.stem}: rates over the last {window:g} s")
    for col in ("node", "tier", "address", "ready", "plan", "variants", "req/s", "classes (req/s)"):
        t.add_column(col)
    for s in rows:
        if s.error:
            t.add_row(s.node, s.tier, s.address, "[red]down[/red]", "-", "-", "-", s.error)
            continue
        classes = ", ".join(f"{k} {v:.1f}" for k, v in sorted(s.classes.items())) or "-"
        t.add_row(s.node, s.tier, s.address, "yes" if s.ready else "[yellow]no[/yellow]",
                  f"v{s.plan_version}" if s.plan_version else "none", ", ".join(s.variants) or "-",
                  f"{s.rate_rps:.1f}", classes)
    out.print(t)
    if any(s.error for s in rows):
        raise typer.Exit(1)


@app.command("control")
def control(
    topology: Annotated[Path, typer.Argument(help="topology of the running network")],
    interval: Annotated[float, typer.Option(help="seconds between measurements")] = 10.0,
    rounds: Annotated[int, typer.Option(help="measure-solve-decide rounds (0 = until Ctrl-C)")] = 0,
    min_gain: Annotated[float, typer.Option(help="re-plan only if the new plan is this much cheaper, "
                                            "after paying for its moves")] = 0.05,
    move_weight: Annotated[float, typer.Option(help="request-ms of latency one ms of moving a model "
                                               "(load + transfer) is worth; 0 = moves are free")] = 1.0,
    hold_rounds: Annotated[int, typer.Option(help="rounds after a change that keep it unless it breaks "
                                             "(hysteresis)")] = 1,
    alpha: Annotated[float, typer.Option(help="ms charged per unit of inaccuracy")] = PlacementOptions().alpha,
    method: Annotated[str, typer.Option(help="solver: highs, cbc, greedy, lp-round")] = "highs",
    catalog: Annotated[Optional[Path], typer.Option(help="catalog.yaml (default models/catalog.yaml)")] = None,
    state: StateOpt = None,
    token: TokenOpt = None,
) -> None:
    """Measure the demand at the ingresses, re-solve, and apply the new plan when it pays.

    A node that does not answer is down (logged, not fatal): the round plans on the live
    nodes and pushes to them only; when the node answers again it is planned back in."""
    import time

    from idn.controller import Controller  # imports the solver: only this command needs it

    topo, addresses, tok = _control_target(topology, state, token)
    try:
        cat = load_catalog(catalog or default_catalog_path())
    except ConfigError as e:
        raise fail(str(e)) from None
    ctl = Controller(topo, cat, addresses, tok, PlacementOptions(alpha=alpha), method=method, min_gain=min_gain,
                     interval_s=interval, move_weight=move_weight, hold_rounds=hold_rounds)
    n = 0
    try:
        ctl.prime()  # measure from now on, knowing the plan the network already runs
        running = f"v{ctl.plan.version}" if ctl.plan is not None else "none"
        out.print(f"measuring every {interval:g} s; the network runs plan {running}", highlight=False)
        while rounds == 0 or n < rounds:
            time.sleep(interval)
            n += 1
            try:
                res = ctl.step()
            except InfeasibleProblem as e:
                out.print(f"round {n}: the measured demand has no feasible plan: {'; '.join(e.reasons)}",
                          highlight=False)
                continue
            except grpc.RpcError as e:
                raise fail(f"{e.code().name}: {e.details()}") from None
            for nid in res.went_down:
                ago = f", {res.detect_s[nid]:.1f} s after it last answered" if nid in res.detect_s else ""
                out.print(f"round {n}: [red]node {nid} down[/red] (detected{ago}); planning on the "
                          f"{len(topo.nodes) - len(res.down)} live node(s)", highlight=False)
            for nid in res.came_back:
                out.print(f"round {n}: [green]node {nid} back[/green]; planning it back in", highlight=False)
            for note in res.notes if (res.went_down or res.came_back) else ():
                out.print(f"round {n}:   {note}", highlight=False)
            if res.version is not None and res.apply_s is not None and res.solve_s is not None:
                out.print(f"round {n}: re-planned in {res.solve_s + res.apply_s:.2f} s (solve {res.solve_s:.2f} s, "
                          f"apply {res.apply_s:.2f} s)", highlight=False)
            out.print(f"round {n}: {res.log_line()}", highlight=False)
    except KeyboardInterrupt:
        pass
