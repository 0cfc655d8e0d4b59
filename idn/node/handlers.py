"""The error policy every gRPC handler of a node shares (data plane and control plane)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from idn.protocol.status import DataPlaneError, echo

log = logging.getLogger("idn.node")


class RateLimitedLog:
    """At most ``burst`` lines per ``interval_s`` per kind; the rest are counted and the count
    is logged with the next line that gets through. Kinds are fixed strings, so the table
    stays as small as the code that uses it."""

    def __init__(self, logger: logging.Logger, burst: int = 5, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.burst = burst
        self.interval_s = interval_s
        self.clock = clock
        self._windows: dict[str, _Window] = {}

    def log(self, kind: str, msg: str, *args: Any, level: int = logging.WARNING, exc_info: bool = False) -> bool:
        """Log unless this kind already used its lines in the current window; True if logged."""
        now = self.clock()
        w = self._windows.get(kind)
        if w is None or now - w.start >= self.interval_s:
            if w is not None and w.suppressed:
                self.logger.warning("%d more %s line(s) were not logged in the last %.0f s",
                                    w.suppressed, kind, now - w.start)
            w = self._windows[kind] = _Window(now)
        if w.lines >= self.burst:
            w.suppressed += 1
            return False
        w.lines += 1
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def suppressed(self, kind: str) -> int:
        w = self._windows.get(kind)
        return w.suppressed if w is not None else 0


@dataclass(slots=True)
class _Window:
    start: float
    lines: int = 0
    suppressed: int = 0


_unexpected = RateLimitedLog(log)

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def answers_errors(handler: Handler) -> Handler:
    """One error policy for every handler: a DataPlaneError becomes its gRPC status and
    message; anything unexpected is logged with its traceback and answered INTERNAL, and
    the server keeps serving.

    The status is set on the context and the handler returns, rather than raising through
    ``context.abort()``: grpc.aio keeps an abort's exception in the call's state, which the
    exception's own traceback reaches, so every aborted request stayed in memory (its
    frames, its message, however large) until the cyclic garbage collector ran."""
    @functools.wraps(handler)
    async def wrapped(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            if isinstance(err, grpc.aio.AbortError):  # context.abort() inside the handler
                raise
            code, message = error_status(err, handler.__name__)
        return fail(context, code, message)
    return wrapped  # type: ignore[return-value]  # same signature, wrapped


def error_status(err: Exception, where: str) -> tuple[grpc.StatusCode, str]:
    """The status and message a failed request is answered with: a DataPlaneError's own;
    anything else is INTERNAL, logged with its traceback (call it inside the ``except``).
    Shared by the unary handlers and the per-request answers on a stream."""
    if isinstance(err, DataPlaneError):
        return getattr(grpc.StatusCode, err.status.value), err.message
    # with its traceback, but not once per request if a client found a way to repeat it
    _unexpected.log("unexpected", "unexpected error in %s", where, level=logging.ERROR, exc_info=True)
    return grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {echo(str(err), 512)}"


def fail(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    """End the call with ``code`` and ``message`` (the handler returns what this returns: nothing)."""
    context.set_code(code)
    context.set_details(message)
    return None
