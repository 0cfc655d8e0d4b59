"""`idn k8s`: render Kubernetes manifests for a topology."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from idn.cli.app import app
from idn.cli.common import fail
from idn.config import ConfigError
from idn.k8s import render


@app.command("k8s")
def k8s(
    topology: Annotated[Path, typer.Argument(help="topology.yaml to deploy")],
    image: Annotated[str, typer.Option(help="container image built from deploy/Dockerfile")],
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace")] = "idn",
    catalog: Annotated[str, typer.Option(help="catalog path inside the image")] = "/opt/idn/models/catalog.yaml",
    token_secret: Annotated[str, typer.Option(help="Secret whose `token` key is the control token")] = "idn-control",
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write here (default: stdout)")] = None,
    topology_out: Annotated[Optional[Path], typer.Option(help="also write the topology with in-cluster "
                                                         "addresses (for idn solve / idn apply)")] = None,
) -> None:
    """Render one Deployment + Service per node, and the topology as a ConfigMap."""
    try:
        objects = render(topology, image, namespace, catalog, token_secret)
    except ConfigError as e:
        raise fail(str(e)) from None
    text = yaml.safe_dump_all(objects, sort_keys=False)
    if topology_out is not None:
        topology_out.write_text(objects[0]["data"]["topology.yaml"])
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {len(objects)} objects to {output}")
