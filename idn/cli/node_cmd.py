"""`idn node`: run one node daemon."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from idn.catalog import default_catalog_path, load_catalog
from idn.cli.app import app
from idn.config import ConfigError
from idn.plan import check_plan_against, load_plan
from idn.tls import TLSFiles
from idn.topology import load_topology


def parse_model_specs(specs: list[str]) -> dict[str, Path]:
    """``NAME=PATH.onnx`` pairs -> mapping, with an error that says how to write one."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"{spec!r}: expected NAME=PATH.onnx", param_hint="--model")
        if name in out:
            raise typer.BadParameter(f"model name {name!r} given twice", param_hint="--model")
        if not Path(path).is_file():
            raise typer.BadParameter(f"{path}: no such file", param_hint="--model")
        out[name] = Path(path)
    return out


@app.command("node")
def node(
    topology: Annotated[Optional[Path], typer.Option(help="topology.yaml: this node's address, tier, capacity "
                                                     "and neighbours come from it (with --id)")] = None,
    node_id: Annotated[str, typer.Option("--id", help="node id (in the topology; reported in responses)")] = "",
    plan: Annotated[Optional[Path], typer.Option(help="plan to apply at start when none was persisted")] = None,
    state_dir: Annotated[Optional[Path], typer.Option(help="persist the last applied plan here; restored on "
                                                      "restart")] = None,
    control_token: Annotated[Optional[str], typer.Option(envvar="IDN_CONTROL_TOKEN",
                                                         help="token control calls must carry")] = None,
    control_token_file: Annotated[Optional[Path], typer.Option(envvar="IDN_CONTROL_TOKEN_FILE",
                                                               help="read the control token from this file (a "
                                                               "Docker or Kubernetes secret)")] = None,
    model_control_mode: Annotated[str, typer.Option(
        help="repository load/unload over the data plane (Triton's flag): 'none' refuses them to everyone; "
             "'explicit' allows them to callers with the control token (needs --control-token)")] = "none",
    mem_mb: Annotated[Optional[float], typer.Option(
        help="memory (MiB) the node may fill when it loads variants on demand as the repository "
             "(default: the topology's mem_mb; without either it never loads on demand)")] = None,
    emulate: Annotated[bool, typer.Option(help="EMULATION on one machine: sleep each link's one-way delay on "
                                          "forwards and stretch compute by the node's slowdown")] = False,
    metrics_port: Annotated[Optional[int], typer.Option(help="serve Prometheus /metrics over HTTP on this port "
                                                        "(same host as --listen)")] = None,
    tls_cert: Annotated[Optional[Path], typer.Option(help="PEM certificate: serve (and forward) over TLS")] = None,
    tls_key: Annotated[Optional[Path], typer.Option(help="PEM private key of --tls-cert")] = None,
    tls_ca: Annotated[Optional[Path], typer.Option(help="PEM CA: require client certificates it signed "
                                                  "(mutual TLS) and trust peers it signed")] = None,
    listen: Annotated[Optional[str], typer.Option(help="HOST:PORT to serve on (default: the topology's address, "
                                                  "else 127.0.0.1:8001; port 0 picks a free one)")] = None,
    model: Annotated[Optional[list[str]], typer.Option(help="NAME=PATH.onnx to serve (repeatable)")] = None,
    catalog: Annotated[Optional[Path], typer.Option(help="catalog.yaml whose variants this node may load")] = None,
    variant: Annotated[Optional[list[str]], typer.Option(help="catalog variant to load at start (repeatable)")] = None,
    provider: Annotated[Optional[list[str]], typer.Option(help="ONNX Runtime execution provider, in priority order "
                                                         "(repeatable; default CPUExecutionProvider)")] = None,
    intra_op_threads: Annotated[int, typer.Option(help="ORT threads per model run (0 = all cores)")] = 1,
    workers: Annotated[int, typer.Option(help="worker threads running models (0 = one per core)")] = 0,
    max_queue: Annotated[int, typer.Option(help="requests admitted per variant before RESOURCE_EXHAUSTED")] = 64,
    max_message_mb: Annotated[float, typer.Option(help="largest gRPC message accepted, MiB")] = 64.0,
    inline_max_us: Annotated[float, typer.Option(
        help="runs predicted shorter than this stay on the event loop")] = 200.0,
    max_batch: Annotated[int, typer.Option(help="dynamic batching: merge waiting requests up to this many "
                                                "samples per run (1 = off)")] = 1,
    grace: Annotated[float, typer.Option(help="seconds in-flight requests get on SIGTERM")] = 5.0,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Start a node daemon serving ONNX variants over the Open Inference Protocol v2 (gRPC)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    models = parse_model_specs(model or [])
    if control_token_file is not None:
        if control_token:
            raise typer.BadParameter("give the token or a file that holds it, not both",
                                     param_hint="--control-token-file")
        try:
            control_token = control_token_file.read_text().strip()
        except OSError as e:
            raise typer.BadParameter(f"{control_token_file}: {e.strerror}",
                                     param_hint="--control-token-file") from None
        if not control_token:
            raise typer.BadParameter(f"{control_token_file} is empty", param_hint="--control-token-file")
    topo, the_plan, cat = None, None, None
    try:
        if topology is not None:
            topo = load_topology(topology)
            if node_id not in topo.nodes:
                raise typer.BadParameter(f"{node_id!r} is not a node of {topology}; nodes: {sorted(topo.nodes)}",
                                         param_hint="--id")
            listen = listen or topo.node(node_id).address
        if catalog is not None or variant or topo is not None:
            cat = load_catalog(catalog or default_catalog_path())
        if plan is not None:
            if topo is None:
                raise typer.BadParameter("a plan needs --topology and --id", param_hint="--plan")
            the_plan = load_plan(plan)
            check_plan_against(the_plan, set(topo.nodes), set(cat.variants) if cat else set(), str(plan))
        tls = TLSFiles.load(tls_cert, tls_key, tls_ca)
        if tls is not None and tls.cert is None:
            raise ConfigError(None, "--tls-ca", "a node serving TLS needs its own certificate",
                              "add --tls-cert and --tls-key")
    except ConfigError as e:
        raise typer.BadParameter(str(e)) from None
    if cat is not None:
        unknown = [v for v in variant or [] if v not in cat.variants]
        if unknown:
            raise typer.BadParameter(f"{unknown} not in the catalog; it has {sorted(cat.variants)}",
                                     param_hint="--variant")
    # The server (ONNX Runtime, prometheus-client) loads only when a node starts, so
    # `idn infer`, `idn solve` and the other commands stay light.
    from idn.node.authority import ModelControl
    from idn.node.server import NodeConfig, NodeServer

    try:
        mode = ModelControl(model_control_mode.lower())
    except ValueError:
        raise typer.BadParameter(f"{model_control_mode!r}: use one of {[m.value for m in ModelControl]}",
                                 param_hint="--model-control-mode") from None
    if mode is ModelControl.EXPLICIT and not control_token:
        raise typer.BadParameter("explicit repository control needs a control token: add --control-token "
                                 "or --control-token-file (or set IDN_CONTROL_TOKEN)",
                                 param_hint="--model-control-mode")
    if mem_mb is not None and not mem_mb > 0:
        raise typer.BadParameter(f"{mem_mb:g}: must be positive", param_hint="--mem-mb")
    from idn.node.settings import NodeSettings

    defaults = NodeSettings()
    settings = NodeSettings(
        providers=tuple(provider) if provider else defaults.providers,
        intra_op_threads=intra_op_threads, workers=workers or defaults.workers, max_queue=max_queue,
        max_message_bytes=int(max_message_mb * 1024 * 1024), inline_max_us=inline_max_us, max_batch=max_batch,
        grace_s=grace)
    config = NodeConfig(listen=listen or "127.0.0.1:8001", node_id=node_id, models=models, catalog=cat,
                        variants=list(variant or []), settings=settings, topology=topo, plan=the_plan,
                        state_dir=state_dir, control_token=control_token, emulate=emulate,
                        tls=tls, metrics_port=metrics_port, model_control=mode, mem_mb=mem_mb)
    asyncio.run(NodeServer(config).serve_forever())
