"""The node daemon (``idn node``): the server, its data plane and control plane.

Transport adapters (``grpc_service``, ``control``) sit over a protocol-agnostic data
plane (``dataplane``), which resolves a request with the ``router`` (the routing
table derived from the plan), runs it through the ``store``'s ONNX Runtime sessions
(``runtime``, ``batcher``) or forwards it (``forwarder``, ``pacing`` for emulation).
``deployment`` applies plans make-before-break; ``stats`` and ``metrics`` count.
Clients never import this package: they speak :mod:`idn.protocol`.
"""
