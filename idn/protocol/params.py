"""The ``idn.*`` parameters of the Open Inference Protocol's request and response maps.

Every name IDN reads or writes is defined here once; README.md ("Request and response
parameters") documents each. Stock clients may send the request ones and read the
response ones; nothing else is needed to talk to an IDN node.

Request (client -> ingress):

* ``idn.max_latency_ms`` (double): the request's own latency SLO; the ingress only
  picks targets whose predicted p95 latency meets it.
* ``idn.min_accuracy`` (double): the request's accuracy SLO (catalog top-1, in [0, 1]).

Request (node -> node, internal; a client has no reason to set them):

* ``idn.target`` (string ``<node>/<variant>``): the target the ingress chose;
  intermediate nodes only forward towards it. Anyone may send it, so it only selects:
  a node that has not loaded the variant sends the request on to the repository, the
  only node that loads outside its plan (within its memory).
* ``idn.via`` (string): the node that forwarded this request, so the receiver counts
  it as transit, not as demand entering there.
* ``idn.avoid`` (string, comma-separated node ids): nodes a node routing around a
  failure found down; every node after it routes around them too (no loops back).
* ``idn.timeout_us`` (int64): what remained of the caller's deadline when the request
  was sent, in µs. A node forwarding over a ``ModelStreamInfer`` stream sets it (a stream
  has one deadline for all its messages, none per request); the receiver serves the
  request by the earlier of it and the call's own deadline, so a stale value left in a
  message forwarded on by a unary call never extends anything.

Response (serving node -> client):

* ``idn.node`` (string): who served; ``idn.variant`` (string): which variant;
  ``idn.accuracy`` (double): its catalog accuracy; ``idn.hops`` (int64): forwarding
  hops taken; ``idn.server_us`` (int64): time inside the serving node, in µs;
  ``idn.degraded`` (bool, only when true): a fallback served it because the chosen
  target was unreachable; ``idn.slo_met`` (bool, only when false): no target met the
  request's own SLO, so the plan's split served it; ``idn.rerouted`` (string, only when
  set): the dead node a forwarding node routed around to reach the node that served.

Stream answers (``ModelStreamInfer``, node -> client):

* ``idn.status`` (string, only on an answer with ``error_message``): the gRPC status
  name the request would have failed with as a unary ``ModelInfer`` (e.g.
  ``INVALID_ARGUMENT``): a stream has one status for all its requests, so each failed
  request's own travels in its answer's ``infer_response``.
"""

from __future__ import annotations

from typing import Any

MAX_LATENCY_MS = "idn.max_latency_ms"
MIN_ACCURACY = "idn.min_accuracy"
TARGET = "idn.target"
VIA = "idn.via"
NODE = "idn.node"
VARIANT = "idn.variant"
ACCURACY = "idn.accuracy"
HOPS = "idn.hops"
SERVER_US = "idn.server_us"
DEGRADED = "idn.degraded"
SLO_MET = "idn.slo_met"
AVOID = "idn.avoid"
REROUTED = "idn.rerouted"
STATUS = "idn.status"
TIMEOUT_US = "idn.timeout_us"

REQUEST = (MAX_LATENCY_MS, MIN_ACCURACY)
INTERNAL = (TARGET, VIA, AVOID, TIMEOUT_US)
RESPONSE = (NODE, VARIANT, ACCURACY, HOPS, SERVER_US, DEGRADED, SLO_MET, REROUTED)


def param_value(p: Any) -> Any:
    """The Python value of an ``InferParameter`` (whichever of its oneof fields is set)."""
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def set_param(dst: Any, value: Any) -> None:
    """Set an ``InferParameter`` from a Python value (bool, int, float, else its string)."""
    if isinstance(value, bool):
        dst.bool_param = value
    elif isinstance(value, int):
        dst.int64_param = value
    elif isinstance(value, float):
        dst.double_param = value
    else:
        dst.string_param = str(value)
