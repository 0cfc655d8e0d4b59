"""Who may change what a node holds (DESIGN.md "Authority").

Inference is open to any client that reaches the data port. Changing what a node
holds is not:

* The repository RPCs of the data plane (``RepositoryModelLoad``,
  ``RepositoryModelUnload``) follow Triton's ``--model-control-mode``: ``none`` (the
  default) refuses them for everyone with PERMISSION_DENIED; ``explicit`` allows them
  to callers that present the control token (``authorization: Bearer <token>``), and
  a node refuses to start in ``explicit`` mode without one. A missing or wrong token is
  UNAUTHENTICATED. ``RepositoryIndex`` stays open (it only reads).
* Inference requests never make a node load outside its plan, token or not: only the
  repository node loads on demand, within its memory (see ``DataPlane``).
* Control calls (``idn.v1.NodeControl``) need the same token.

Every refusal is logged with the caller's address and the call, at most a few lines
per minute per kind (the rest are counted and summarised), so that refused calls
cannot be used to flood the log. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from enum import Enum
from typing import Any

from idn.node.handlers import RateLimitedLog
from idn.protocol.status import DataPlaneError, Status, echo

log = logging.getLogger("idn.node.authority")


class ModelControl(Enum):
    """Triton's ``--model-control-mode`` (IDN has no POLL: plans change what a node holds)."""

    NONE = "none"
    EXPLICIT = "explicit"


def bearer(metadata: Iterable[Any] | None) -> str:
    """The ``authorization`` header of a call's metadata ('' if none)."""
    for item in metadata or ():
        key, value = item[0], item[1]
        if key == "authorization":
            return value if isinstance(value, str) else ""
    return ""


class Authority:
    """The node's rules for calls that change what it holds, and its audit log of refusals."""

    def __init__(self, token: str | None, model_control: ModelControl = ModelControl.NONE,
                 audit: RateLimitedLog | None = None):
        if model_control is ModelControl.EXPLICIT and not token:
            raise ValueError("--model-control-mode explicit needs a control token (--control-token or "
                             "IDN_CONTROL_TOKEN): repository calls are never open")
        self.token = token
        self.model_control = model_control
        self.audit = audit or RateLimitedLog(log)
        self._expected = f"Bearer {token}".encode() if token else b""

    def token_ok(self, metadata: Iterable[Any] | None) -> bool:
        if not self._expected:
            return False
        return hmac.compare_digest(bearer(metadata).encode(), self._expected)

    def refuse(self, kind: str, peer: str, what: str, why: str, status: Status) -> DataPlaneError:
        """Log a refusal (rate-limited) and build the error the caller gets."""
        self.audit.log(kind, "refused %s from %s: %s", what, echo(peer), why)
        return DataPlaneError(why, status)

    def check_control(self, method: str, metadata: Iterable[Any] | None, peer: str) -> None:
        """Control calls: the token, always. Raises UNAUTHENTICATED."""
        if not self.token:
            raise self.refuse("control", peer, method, "control calls are disabled: start the node with "
                              "--control-token (or IDN_CONTROL_TOKEN)", Status.UNAUTHENTICATED)
        if not self.token_ok(metadata):
            raise self.refuse("control", peer, method, "missing or wrong control token (metadata "
                              "'authorization: Bearer <token>')", Status.UNAUTHENTICATED)

    def check_repository(self, action: str, model: str, metadata: Iterable[Any] | None, peer: str) -> None:
        """RepositoryModelLoad / RepositoryModelUnload. Raises PERMISSION_DENIED (mode none) or
        UNAUTHENTICATED (explicit mode, missing or wrong token)."""
        what = f"repository {action} of model '{echo(model)}'"
        if self.model_control is ModelControl.NONE:
            raise self.refuse("repository", peer, what,
                              f"{what} refused: repository control is off on this node "
                              "(--model-control-mode none); plans change what it holds (idn apply)",
                              Status.PERMISSION_DENIED)
        if not self.token_ok(metadata):
            raise self.refuse("repository", peer, what,
                              f"{what} refused: repository calls need the control token (metadata "
                              "'authorization: Bearer <token>')", Status.UNAUTHENTICATED)
        log.info("%s by %s (control token)", what, echo(peer))
