"""Telling transport failures from answers, and reconnecting fast: what clients and nodes share.

gRPC reports a peer it cannot reach as UNAVAILABLE, and so does a peer that answers
UNAVAILABLE itself (an IDN node whose next hop is down). The difference matters:

* **never sent** (:func:`never_sent`): the call failed before it reached the peer
  (connection refused, no address). Retrying elsewhere is always safe; gRPC's own
  *transparent retry* covers the same case within one channel.
* **unreachable** (:func:`unreachable`): never sent, or the connection died under the
  call (the peer crashed while it had the request): the peer is gone, but it may have
  started on the request. Inference is side-effect free, so running it again
  elsewhere is harmless; clients still do so only when the caller opted in.
* anything else: the peer answered. Its message never starts with gRPC's own words.

gRPC's default reconnect backoff (1 s, x1.6 per attempt, up to 120 s, with a 20 s
connection timeout) means a channel to a peer that was down for a while notices that
it is back only seconds later; :data:`RECONNECT_OPTIONS` caps it.
"""

from __future__ import annotations

RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 400),
    ("grpc.min_reconnect_backoff_ms", 1000),
]

_NEVER_SENT = ("failed to connect", "connections to all backends failing", "dns resolution failed",
               "connection refused", "name resolution")
_CONNECTION_LOST = ("stream removed", "socket closed", "connection reset", "broken pipe", "goaway",
                    "endpoint closing", "transport closed", "keepalive watchdog", "connection lost")


def never_sent(details: str | None) -> bool:
    """An UNAVAILABLE whose call never reached the peer: safe to send elsewhere."""
    return (details or "").lower().startswith(_NEVER_SENT)


def unreachable(details: str | None) -> bool:
    """An UNAVAILABLE from gRPC's transport (peer unreachable, or its connection died under
    the call), rather than the peer answering UNAVAILABLE itself."""
    d = (details or "").lower()
    return d.startswith(_NEVER_SENT) or d.startswith(_CONNECTION_LOST)
