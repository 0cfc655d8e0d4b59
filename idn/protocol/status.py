"""Data-plane errors, independent of the transport.

Each carries a canonical status (the gRPC code names, which the Open Inference
Protocol's HTTP binding maps to HTTP statuses too); the transport adapter translates.
"""

from __future__ import annotations

from enum import Enum


class Status(Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    INTERNAL = "INTERNAL"
    UNAUTHENTICATED = "UNAUTHENTICATED"


class DataPlaneError(Exception):
    status = Status.INTERNAL

    def __init__(self, message: str, status: Status | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(DataPlaneError):
    status = Status.INVALID_ARGUMENT


class ModelNotFound(DataPlaneError):
    status = Status.NOT_FOUND


class Overloaded(DataPlaneError):
    status = Status.RESOURCE_EXHAUSTED


class ModelFailed(DataPlaneError):
    """ONNX Runtime raised while running a model: INTERNAL, carrying ORT's message."""

    status = Status.INTERNAL
