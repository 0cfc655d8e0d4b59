"""`idn up` / `down` / `apply` / `status` / `control`: run a topology on this machine and operate a network.

`up` and `down` manage local processes (:mod:`idn.launcher`); `apply`, `status` and
`control` work on any running network, local or not (:mod:`idn.network`, :mod:`idn.controller`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from idn.catalog import Catalog, default_catalog_path, load_catalog
from idn.cli.app import app
from idn.cli.common import TlsCaOpt, TlsCertOpt, TlsKeyOpt, choice, console, fail, number, say, table, tls_files
from idn.config import ConfigError
from idn.latency import check_profiles
from idn.launcher import (
    RUN_ROOT,
    TOKEN_ENV,
    LaunchError,
    RunState,
    default_state_path,
    find_node_pid,
    load_state,
    persisted_plans,
    start_network,
    stop_nodes,
)
from idn.network import NetworkError, node_statuses, push_plan
from idn.placement import METHODS, NoPlan, PlacementOptions
from idn.plan import check_plan, load_plan
from idn.topology import Topology, load_topology

CONTROL_METHODS = tuple(m for m in METHODS if m not in ("repository", "smallest"))
StateOpt = Annotated[Optional[Path], typer.Option("--state", help="state file of `idn up` "
                                                  "(default .idn/run/<topology>/state.json)")]
TokenOpt = Annotated[Optional[str], typer.Option("--token", envvar=TOKEN_ENV,
                                                 help="control token (default: the one in the state file)")]


def _topology(path: Path) -> Topology:
    try:
        return load_topology(path)
    except ConfigError as e:
        raise fail(str(e)) from None


def _catalog(path: Path | None) -> Catalog:
    try:
        return load_catalog(path or default_catalog_path())
    except ConfigError as e:
        raise fail(str(e)) from None


def _control_target(topology_path: Path, state: Path | None, token: str | None
                    ) -> tuple[Topology, dict[str, str], str]:
    """Topology, node addresses and token: from the state file, overridden by --token."""
    topo = _topology(topology_path)
    state_path = state or default_state_path(topology_path)
    if state_path.is_file():
        try:
            st = load_state(state_path)
        except LaunchError as e:
            raise fail(str(e)) from None
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
    timeout: Annotated[float, typer.Option(help="seconds to wait for every node to be ready",
                                           callback=number(0, strict_min=True))] = 60.0,
    fresh: Annotated[bool, typer.Option("--fresh", help="forget the plans an earlier run left (nodes start with "
                                        "none, or with --plan)")] = False,
) -> None:
    """Start every node of a topology as local processes, wait until all are ready, write a state file.

    Nodes restore the plans an earlier run of this topology persisted (it says so);
    --fresh starts without them."""
    topo = _topology(topology)
    cat = _catalog(catalog)  # every node loads it: refuse a bad one here, naming it, not in six logs
    try:
        check_profiles(topo, cat)
        if plan is not None:
            check_plan(load_plan(plan), topo, cat, str(plan))
    except ConfigError as e:
        raise fail(str(e)) from None
    state_path = state or default_state_path(topology)
    if state_path.is_file():
        try:
            old = load_state(state_path)
        except LaunchError as e:
            raise fail(str(e)) from None
        running = [nid for nid, n in old.nodes.items() if find_node_pid(nid, n.address, n.pid) is not None]
        if running:
            raise fail(f"{state_path}: nodes {running} of this topology are already running; "
                       f"`idn down {topology}` first")
    err = console(stderr=True)
    restored = {} if fresh else persisted_plans(state_path.parent)
    if restored:
        versions = sorted({v for v in restored.values() if v is not None})
        vs = ", ".join(f"v{v}" for v in versions) or "unreadable"
        also = "; --plan applies only where none is restored" if plan else ""
        say(f"restoring the plans an earlier run left in {state_path.parent / 'state'} ({vs} on "
            f"{len(restored)} node(s): {', '.join(restored)}){also}; `idn up --fresh` starts without them",
            stderr=True)
    try:
        st, _ = start_network(topology, plan=plan, catalog=catalog, emulate=emulate, ready_timeout_s=timeout,
                              run_dir=state_path.parent, fresh=fresh,
                              on_wait=lambda nid: err.print(f"  {nid} ready", highlight=False, markup=False))
    except LaunchError as e:
        raise fail(str(e)) from None
    st.save(state_path)
    t = table(f"{st.name}: {len(st.nodes)} nodes up" + (" (emulated delays)" if emulate else ""),
              ["node", "tier", "address", "pid", "log"])
    for nid, n in st.nodes.items():
        t.add_row(nid, n.tier, n.address, str(n.pid), n.log)
    out = console()
    out.print(t)
    say(f"state: {state_path} (holds the control token; so does {Path(st.run_dir) / 'token'})  ·  "
        f"stop with `idn down {topology}`")


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
    timeout: Annotated[float, typer.Option(help="seconds nodes get to drain before SIGKILL",
                                           callback=number(0))] = 10.0,
) -> None:
    """Stop the nodes of a network started by `idn up` (SIGTERM, then SIGKILL after --timeout).

    A node the state names but that runs under another pid (restarted by hand from its
    logged command line) is found by its address and stopped too."""
    path = _find_state(topology, state)
    try:
        st: RunState = load_state(path)
    except LaunchError as e:
        raise fail(str(e)) from None
    outcome = stop_nodes(st.nodes, timeout_s=timeout)
    for nid, how in outcome.items():
        say(f"{nid}: {how}")
    path.unlink()
    say(f"{st.name}: down (logs kept in {st.run_dir})")


@app.command("apply")
def apply(
    topology: Annotated[Path, typer.Argument(help="topology of the running network")],
    plan: Annotated[Path, typer.Argument(help="plan (YAML/JSON) to push to every node")],
    state: StateOpt = None,
    token: TokenOpt = None,
    catalog: Annotated[Optional[Path], typer.Option(help="catalog.yaml to check the plan against")] = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    """Push a plan to every node, re-versioned to max(node versions)+1 so a freshly solved plan applies."""
    topo = _topology(topology)
    cat = _catalog(catalog)
    try:
        check_profiles(topo, cat)
        the_plan = load_plan(plan)
        check_plan(the_plan, topo, cat, str(plan))
    except ConfigError as e:
        raise fail(str(e)) from None
    tls = tls_files(tls_cert, tls_key, tls_ca)
    topo, addresses, tok = _control_target(topology, state, token)
    try:
        version, results = push_plan(the_plan, topo, addresses, tok, tls=tls)
    except NetworkError as e:
        raise fail(f"{plan} not applied: {e}") from None
    if version != the_plan.version:
        say(f"{plan}: version {the_plan.version} re-versioned to {version} (newer than every node's plan)")
    t = table(f"plan v{version} applied", ["node", "loaded", "unloaded", "kept"])
    for r in results:
        t.add_row(r.node, ", ".join(r.loaded) or "-", ", ".join(r.unloaded) or "-", ", ".join(r.kept) or "-")
    console().print(t)


@app.command("status")
def status(
    topology: Annotated[Path, typer.Argument(help="topology of the running network")],
    state: StateOpt = None,
    token: TokenOpt = None,
    window: Annotated[float, typer.Option(help="seconds over which request rates are measured",
                                          callback=number(0))] = 1.0,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    """Per node: tier, address, readiness, plan version, loaded variants, request rates (exit 1 if one is down)."""
    from rich.markup import escape

    tls = tls_files(tls_cert, tls_key, tls_ca)
    topo, addresses, tok = _control_target(topology, state, token)
    rows = node_statuses(topo, addresses, tok, window_s=window, tls=tls)
    t = table(f"{topology.stem}: rates over the last {window:g} s",
              ["node", "tier", "address", "ready", "plan", "variants", "req/s", "classes (req/s)"], right=("req/s",))
    for s in rows:
        if s.error:
            t.add_row(escape(s.node), s.tier, s.address, "[red]down[/red]", "-", "-", "-", escape(s.error))
            continue
        classes = ", ".join(f"{k} {v:.1f}" for k, v in sorted(s.classes.items())) or "-"
        t.add_row(escape(s.node), s.tier, s.address, "yes" if s.ready else "[yellow]no[/yellow]",
                  f"v{s.plan_version}" if s.plan_version else "none", escape(", ".join(s.variants) or "-"),
                  f"{s.rate_rps:.1f}", escape(classes))
    console().print(t)
    down = [s for s in rows if s.error]
    if down:
        raise fail(f"{len(down)} of {len(rows)} node(s) did not answer: "
                   + "; ".join(f"{s.node} ({s.address}): {s.error}" for s in down))


@app.command("control")
def control(
    topology: Annotated[Path, typer.Argument(help="topology of the running network")],
    interval: Annotated[float, typer.Option(help="seconds between measurements", callback=number(0))] = 10.0,
    rounds: Annotated[int, typer.Option(help="measure-solve-decide rounds (0 = until Ctrl-C)",
                                        callback=number(0))] = 0,
    min_gain: Annotated[float, typer.Option(help="re-plan only if the new plan is this much cheaper (0-1), "
                                            "after paying for its moves", callback=number(0, 1))] = 0.05,
    move_weight: Annotated[float, typer.Option(help="request-ms of latency one ms of moving a model "
                                               "(load + transfer) is worth; 0 = moves are free",
                                               callback=number(0))] = 1.0,
    hold_rounds: Annotated[int, typer.Option(help="rounds after a change that keep it unless it breaks "
                                             "(hysteresis)", callback=number(0))] = 1,
    keep_idle: Annotated[bool, typer.Option(help="keep the running plan's unused variants while they fit the "
                                            "node's memory, instead of unloading them")] = True,
    alpha: Annotated[float, typer.Option(help="ms charged per unit of inaccuracy (>= 0)",
                                         callback=number(0))] = PlacementOptions().alpha,
    rho: Annotated[float, typer.Option(help="utilisation cap per node, (0, 1]",
                                       callback=number(0, 1, strict_min=True))] = PlacementOptions().rho,
    method: Annotated[str, typer.Option(help=f"solver: {', '.join(CONTROL_METHODS)}",
                                        callback=choice(CONTROL_METHODS))] = "highs",
    catalog: Annotated[Optional[Path], typer.Option(help="catalog.yaml (default models/catalog.yaml)")] = None,
    state: StateOpt = None,
    token: TokenOpt = None,
    tls_ca: TlsCaOpt = None,
    tls_cert: TlsCertOpt = None,
    tls_key: TlsKeyOpt = None,
) -> None:
    """Measure the demand at the ingresses, re-solve, and apply the new plan when it pays.

    A node that does not answer is down (logged, not fatal): the round plans on the live
    nodes and pushes to them only; when the node answers again it is planned back in."""
    import time

    from idn.controller import Controller  # imports the solver: only this command needs it

    tls = tls_files(tls_cert, tls_key, tls_ca)
    topo, addresses, tok = _control_target(topology, state, token)
    cat = _catalog(catalog)
    try:
        check_profiles(topo, cat)
    except ConfigError as e:
        raise fail(str(e)) from None
    ctl = Controller(topo, cat, addresses, tok, PlacementOptions(alpha=alpha, rho=rho), method=method,
                     min_gain=min_gain, interval_s=interval, move_weight=move_weight, hold_rounds=hold_rounds,
                     keep_idle=keep_idle, tls=tls)
    n = 0
    try:
        ctl.prime()  # measure from now on, knowing the plan the network already runs
        running = f"v{ctl.plan.version}" if ctl.plan is not None else "none"
        say(f"measuring every {interval:g} s; the network runs plan {running}")
        while rounds == 0 or n < rounds:
            time.sleep(interval)
            n += 1
            try:
                res = ctl.step()
            except NoPlan as e:
                say(f"round {n}: {e.headline} for the measured demand ({e.status}): {'; '.join(e.reasons)}")
                continue
            except NetworkError as e:
                raise fail(f"round {n}: {e}") from None
            for nid in res.went_down:
                ago = f", {res.detect_s[nid]:.1f} s after it last answered" if nid in res.detect_s else ""
                say(f"round {n}: node {nid} down (detected{ago}); planning on the "
                    f"{len(topo.nodes) - len(res.down)} live node(s)")
            for nid in res.came_back:
                say(f"round {n}: node {nid} back; planning it back in")
            for note in res.notes if (res.went_down or res.came_back) else ():
                say(f"round {n}:   {note}")
            if res.version is not None and res.apply_s is not None and res.solve_s is not None:
                say(f"round {n}: re-planned in {res.solve_s + res.apply_s:.2f} s (solve {res.solve_s:.2f} s, "
                    f"apply {res.apply_s:.2f} s)")
            say(f"round {n}: {res.log_line()}")
    except KeyboardInterrupt:
        pass
