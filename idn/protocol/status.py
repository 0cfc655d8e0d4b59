"""Data-plane errors, independent of the transport.

Each carries a canonical status (the gRPC code names, which the Open Inference
Protocol's HTTP binding maps to HTTP statuses too); the transport adapter translates.

Messages may quote what the client sent (a model name, a parameter value) so that they
say what was wrong, but only through :func:`echo`, which cuts it short: an error's
message travels in the gRPC status details, a header, and a client that sends a
4 MiB model name must get NOT_FOUND or INVALID_ARGUMENT, not the transport's
RESOURCE_EXHAUSTED for an oversized header. ``DataPlaneError.message`` is capped too.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

# How many characters of a client-supplied value an error message quotes.
ECHO_CHARS = 64
# The longest message an error carries (gRPC's default header limit is 8-16 KiB).
MAX_MESSAGE_CHARS = 1024


def echo(value: Any, limit: int = ECHO_CHARS) -> str:
    """A client-supplied value as an error message may quote it: a str as is, anything else
    as its repr, cut to ``limit`` characters with the full length noted."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        n = len(value)
        text = repr(bytes(value[:limit]))
        return text if n <= limit else f"{text}... ({n} bytes)"
    if isinstance(value, (list, tuple)) and len(value) > limit:  # e.g. a shape with a million dimensions
        return f"{list(value[:8])!r}... ({len(value)} items)"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


class Status(Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    INTERNAL = "INTERNAL"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"


class DataPlaneError(Exception):
    status = Status.INTERNAL

    def __init__(self, message: str, status: Status | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        text = str(self)
        return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 3] + "..."


class InvalidInput(DataPlaneError):
    status = Status.INVALID_ARGUMENT


class ModelNotFound(DataPlaneError):
    status = Status.NOT_FOUND


class Overloaded(DataPlaneError):
    status = Status.RESOURCE_EXHAUSTED


class ModelFailed(DataPlaneError):
    """ONNX Runtime raised while running a model: INTERNAL, carrying ORT's message."""

    status = Status.INTERNAL
