"""The error policy every gRPC handler of a node shares (data plane and control plane)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from idn.protocol.status import DataPlaneError

log = logging.getLogger("idn.node")

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def answers_errors(handler: Handler) -> Handler:
    """One error policy for every handler: a DataPlaneError becomes its gRPC status and
    message; anything unexpected is logged with its traceback and answered INTERNAL, and
    the server keeps serving."""
    @functools.wraps(handler)
    async def wrapped(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except DataPlaneError as err:
            await context.abort(getattr(grpc.StatusCode, err.status.value), err.message)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            if isinstance(err, grpc.aio.AbortError):  # context.abort() inside the handler
                raise
            log.exception("unexpected error in %s", handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(err).__name__}: {err}")
    return wrapped  # type: ignore[return-value]  # same signature, wrapped
