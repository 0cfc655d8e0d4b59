"""The `idn` command's root. Each command group lives in its own module and registers here.

Every command runs inside :class:`IdnGroup`, which turns what escapes a command into one
line on stderr and an exit status instead of a traceback: a bad file (``ConfigError``),
a network that is not up or a node that failed (``LaunchError``, ``NetworkError``, a gRPC
error), a placement with no plan (``NoPlan``: exit 2 when proven infeasible, 3 when none
was found), Ctrl-C (130). Anything else is a bug: one line naming it, and
``idn --debug ...`` (or ``IDN_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from idn import __version__

# click's base of usage errors and friends, without importing click (typer may vendor it)
_CLICK_EXCEPTION: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
DEBUG_ENV = "IDN_DEBUG"


def _debug(ctx: Any) -> bool:
    root = ctx.find_root() if ctx is not None else None
    return bool((root is not None and (root.meta.get("idn.debug"))) or os.environ.get(DEBUG_ENV))


def report(e: BaseException) -> int:
    """Print the one-line account of an exception that ended a command; return the exit status."""
    import grpc

    from idn.cli.common import console, fail
    from idn.config import ConfigError
    from idn.launcher import LaunchError
    from idn.network import NetworkError
    from idn.placement.explain import InfeasibleProblem, NoPlan

    if isinstance(e, NoPlan):
        err = console(stderr=True)
        from rich.markup import escape
        err.print(f"[red]{escape(e.headline)}[/red] ({e.status}):", highlight=False)
        for reason in e.reasons:
            err.print(f"  - {escape(reason)}", highlight=False)
        for w in e.warnings:
            err.print(f"  [yellow]note[/yellow]: {escape(w)}", highlight=False)
        return 2 if isinstance(e, InfeasibleProblem) else 3
    if isinstance(e, (ConfigError, LaunchError, NetworkError)):
        return fail(str(e)).exit_code
    if isinstance(e, grpc.RpcError):
        code = e.code() if callable(getattr(e, "code", None)) else None
        details = e.details() if callable(getattr(e, "details", None)) else str(e)
        return fail(f"a node answered {getattr(code, 'name', code)}: {details}").exit_code
    return fail(f"internal error: {type(e).__name__}: {e} (run `idn --debug ...` or set {DEBUG_ENV}=1 for the "
                f"traceback, and please report it)").exit_code


class IdnGroup(TyperGroup):
    """Commands end in one line and an exit status, never a traceback (unless --debug)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, _CLICK_EXCEPTION):
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as e:
            if _debug(ctx):
                raise
            raise typer.Exit(report(e)) from None


app = typer.Typer(
    name="idn",
    cls=IdnGroup,
    help="Inference delivery network: serve ONNX variants over gRPC nodes, place them with an ILP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"idn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="print the version and exit", is_eager=True,
                                          callback=_version)] = False,
    debug: Annotated[bool, typer.Option("--debug", envvar=DEBUG_ENV,
                                        help="show the traceback of an unexpected error")] = False,
) -> None:
    """Inference delivery network: serve ONNX variants over gRPC nodes, place them with an ILP."""
    ctx.meta["idn.debug"] = debug
