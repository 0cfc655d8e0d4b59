"""The `idn` command's root. Each command group lives in its own module and registers here."""

import typer

app = typer.Typer(
    name="idn",
    help="Inference delivery network: serve ONNX variants over gRPC nodes, place them with an ILP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Keep `idn` a command group even while only one command is registered."""
