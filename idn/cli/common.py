"""What every command shares: consoles that never cut ids, one way to fail, option checks
made at parse time, TLS and token options, and the messages for a node that did not answer.

Errors are one line, ``error: <what> (fix: <how>)``, on stderr. Exit status: 0 done,
1 an error (a bad file, a node that failed, a network that is not up), 2 a usage error
(a bad option, click's convention; ``idn solve``: proven no feasible plan), 3 (``idn
solve``) no plan found, which does not mean none exists. An uncaught exception is one
line too, with a hint to run ``idn --debug ...`` for the traceback.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from idn.config import ConfigError
from idn.tls import TLSFiles
from idn.topology import address_ok

# Piped or redirected output is read by programs and by people with wide windows: never
# wrap or cut it at an assumed 80 columns. A terminal keeps its own width (and tables
# fold long cells there rather than cut them).
WIDE = 4096


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return Console(stderr=stderr, width=None if tty else WIDE, soft_wrap=not tty)


def table(title: str, columns: list[str], right: tuple[str, ...] = ()) -> Table:
    """A table whose cells fold instead of ending in '...': ids are never cut."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c, overflow="fold", justify="right" if c in right else "left")
    return t


def say(message: str, stderr: bool = False) -> None:
    """Plain text (no markup interpretation: ids like ``nodes[edge]`` stay as written)."""
    console(stderr).print(escape(message), highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr; ``raise fail(...)`` ends the command with ``code``."""
    console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


# -- option checks (click callbacks: a bad value is a usage error, exit 2, at parse time) ----

def _bad(message: str) -> typer.BadParameter:
    return typer.BadParameter(message)


def number(minimum: float | None = None, maximum: float | None = None, strict_min: bool = False,
           what: str = "") -> Callable[[Any], Any]:
    """A finite number within bounds (None passes: the option was not given)."""
    def check(value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, float) and not math.isfinite(value):
            raise _bad(f"{value}: must be a finite number{what}")
        if minimum is not None and (value <= minimum if strict_min else value < minimum):
            raise _bad(f"{value}: must be {'>' if strict_min else '>='} {minimum:g}{what}")
        if maximum is not None and value > maximum:
            raise _bad(f"{value}: must be <= {maximum:g}{what}")
        return value
    return check


def choice(options: tuple[str, ...], upper: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is None:
            return value
        v = value.upper() if upper else value
        if v not in options:
            raise _bad(f"{value!r}: use one of {', '.join(options)}")
        return v
    return check


def address(value: Any) -> Any:
    if value is not None and not address_ok(value):
        raise _bad(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:8001 (port 1-65535; 0 where allowed)")
    return value


def listen_address(value: Any) -> Any:
    """HOST:PORT to serve on; port 0 picks a free one."""
    if value is None:
        return value
    host, sep, port = value.rpartition(":")
    address(f"{host}:1" if sep and port == "0" else value)
    return value


def float_list(minimum: float = 0.0) -> Callable[[Any], Any]:
    """A comma list of finite numbers >= minimum, e.g. ``--sweep-alpha 0,100,1000``."""
    def check(value: Any) -> Any:
        if value is None:
            return value
        out = []
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            try:
                x = float(part)
            except ValueError:
                raise _bad(f"{part!r} is not a number (write a comma list, e.g. 0,100,1000)") from None
            if not math.isfinite(x) or x < minimum:
                raise _bad(f"{part}: every value must be a finite number >= {minimum:g}")
            out.append(x)
        if not out:
            raise _bad(f"{value!r}: no numbers (write a comma list, e.g. 0,100,1000)")
        return out
    return check


# -- TLS and the control token ------------------------------------------------------------

TlsCaOpt = Annotated[Optional[Path], typer.Option("--tls-ca", help="PEM CA that signed the nodes' certificates "
                                                  "(talk TLS to them)")]
TlsCertOpt = Annotated[Optional[Path], typer.Option("--tls-cert", help="PEM client certificate (mutual TLS)")]
TlsKeyOpt = Annotated[Optional[Path], typer.Option("--tls-key", help="PEM private key of --tls-cert")]


def tls_files(cert: Path | None, key: Path | None, ca: Path | None) -> TLSFiles | None:
    try:
        return TLSFiles.load(cert, key, ca)
    except ConfigError as e:
        raise fail(str(e)) from None


def read_token_file(path: Path) -> str:
    """The control token in a file (first line, whitespace stripped); errors name the file."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(path, "<file>", "token file not found", "check --control-token-file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, "<file>", f"cannot read the token: {e}", "check the file and its permissions") from None
    if not token or any(c.isspace() for c in token):
        raise ConfigError(path, "<file>", "not a token (empty, or more than one word)",
                          "write the token alone on the first line")
    return token
