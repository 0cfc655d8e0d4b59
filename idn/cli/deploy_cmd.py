"""`idn k8s` and `idn swarm`: render a topology for an orchestrator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from idn.cli.app import app
from idn.cli.common import fail
from idn.cluster import CATALOG_PATH, ClusterError, ResourcePolicy
from idn.config import ConfigError

QtyOpt = Optional[list[str]]
_QTY_HELP = "QTY for every node, or NODE=QTY / TIER=QTY (repeatable; a node's own entry wins; 'none' unsets)"


def _policy(cpu_request: QtyOpt, memory_request: QtyOpt, cpu_limit: QtyOpt, memory_limit: QtyOpt) -> ResourcePolicy:
    try:
        return ResourcePolicy.from_options(cpu_request=cpu_request, memory_request=memory_request,
                                           cpu_limit=cpu_limit, memory_limit=memory_limit)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@app.command("k8s")
def k8s(
    topology: Annotated[Path, typer.Argument(help="topology.yaml to deploy")],
    image: Annotated[str, typer.Option(help="container image built from deploy/Dockerfile")],
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace")] = "idn",
    catalog: Annotated[str, typer.Option(help="catalog path inside the image")] = CATALOG_PATH,
    token_secret: Annotated[str, typer.Option(help="Secret whose `token` key is the control token")] = "idn-control",
    cpu_request: Annotated[QtyOpt, typer.Option(help=f"CPU request (default 100m). {_QTY_HELP}")] = None,
    memory_request: Annotated[QtyOpt, typer.Option(help=f"memory request (default 192Mi). {_QTY_HELP}")] = None,
    cpu_limit: Annotated[QtyOpt, typer.Option(help=f"CPU limit (default none). {_QTY_HELP}")] = None,
    memory_limit: Annotated[QtyOpt, typer.Option(help=f"memory limit (default none). {_QTY_HELP}")] = None,
    state_volume: Annotated[str, typer.Option(help="where a node persists its plan: pvc (kept across pod "
                                              "restarts and moves) or emptydir (lost with the pod)")] = "pvc",
    storage_class: Annotated[Optional[str], typer.Option(help="StorageClass of the plan volume claims "
                                                         "(default: the cluster's default)")] = None,
    state_size: Annotated[str, typer.Option(help="size of each plan volume claim")] = "64Mi",
    check_schema: Annotated[Optional[list[str]], typer.Option(
        help="also validate against Kubernetes' schemas for this version, e.g. 1.30 (repeatable; "
             "needs the k8s extra: kubernetes-validate)")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write here (default: stdout)")] = None,
    topology_out: Annotated[Optional[Path], typer.Option(help="also write the topology with in-cluster "
                                                         "addresses (for idn solve / idn apply)")] = None,
) -> None:
    """Render per node a Deployment, a Service and a plan volume claim, and the topology as a ConfigMap."""
    from idn.k8s import render, schema_errors

    policy = _policy(cpu_request, memory_request, cpu_limit, memory_limit)
    try:
        objects = render(topology, image, namespace, catalog, token_secret, resources=policy,
                         state_volume=state_volume, storage_class=storage_class, state_size=state_size)
        errors = [e for v in check_schema or [] for e in schema_errors(objects, v)]
    except ConfigError as e:
        raise fail(str(e)) from None
    except ClusterError as e:
        raise fail(str(e)) from None
    if errors:
        raise fail("--check-schema: " + "; ".join(errors))
    text = yaml.safe_dump_all(objects, sort_keys=False)
    if topology_out is not None:
        topology_out.write_text(objects[0]["data"]["topology.yaml"])
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        checked = f", valid for Kubernetes {', '.join(check_schema)}" if check_schema else ""
        typer.echo(f"wrote {len(objects)} objects to {output}{checked}")


@app.command("swarm")
def swarm(
    topology: Annotated[Path, typer.Argument(help="topology.yaml to deploy")],
    image: Annotated[str, typer.Option(help="container image built from deploy/Dockerfile (present on every "
                                       "engine, or in a registry they reach)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="stack file to write; the in-network topology "
                                         "goes beside it as <name>.topology.yaml")] = Path("idn-stack.yaml"),
    network: Annotated[str, typer.Option(help="name of the attachable overlay network")] = "idn",
    token_secret: Annotated[str, typer.Option(help="external Swarm secret holding the control token")] = "idn-control",
    catalog: Annotated[str, typer.Option(help="catalog path inside the image")] = CATALOG_PATH,
    tier_label: Annotated[str, typer.Option(help="engine label that says its tier (docker node update "
                                            "--label-add idn.tier=edge NODE)")] = "idn.tier",
    cpu_request: Annotated[QtyOpt, typer.Option(help=f"CPU reservation (default 100m). {_QTY_HELP}")] = None,
    memory_request: Annotated[QtyOpt, typer.Option(help=f"memory reservation (default 192Mi). {_QTY_HELP}")] = None,
    cpu_limit: Annotated[QtyOpt, typer.Option(help=f"CPU limit (default none). {_QTY_HELP}")] = None,
    memory_limit: Annotated[QtyOpt, typer.Option(help=f"memory limit (default none). {_QTY_HELP}")] = None,
    volume_driver: Annotated[Optional[str], typer.Option(help="driver of the plan volumes (default local: a "
                                                         "replacement on the same engine keeps the plan)")] = None,
    volume_opt: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE driver option of the plan volumes, "
                                                            "e.g. type=nfs (repeatable)")] = None,
) -> None:
    """Render a Docker Swarm stack: one service per node, tier constraints, health checks, the token as a secret."""
    from idn.swarm import render_stack

    policy = _policy(cpu_request, memory_request, cpu_limit, memory_limit)
    opts: dict[str, str] = {}
    for o in volume_opt or []:
        k, sep, v = o.partition("=")
        if not sep or not k:
            raise typer.BadParameter(f"{o!r}: expected KEY=VALUE", param_hint="--volume-opt")
        opts[k] = v
    topo_file = output.with_name(output.stem + ".topology.yaml")
    try:
        stack, in_network = render_stack(topology, image, topology_file=topo_file.name, network=network,
                                         token_secret=token_secret, catalog=catalog, resources=policy,
                                         tier_label=tier_label, volume_driver=volume_driver, volume_opts=opts)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="TOPOLOGY") from None
    except ClusterError as e:
        raise typer.BadParameter(str(e)) from None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(yaml.safe_dump(stack, sort_keys=False))
    topo_file.write_text(yaml.safe_dump(in_network, sort_keys=False))
    tiers = sorted({s["labels"]["idn.tier"] for s in stack["services"].values()})
    typer.echo(f"wrote {output} ({len(stack['services'])} services) and {topo_file} (addresses on network "
               f"{network!r})\nthen: docker node update --label-add {tier_label}=TIER ENGINE   (tiers: "
               f"{', '.join(tiers)})\n      openssl rand -hex 16 | docker secret create {token_secret} -\n"
               f"      docker stack deploy -c {output} idn")
