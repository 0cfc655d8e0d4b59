"""A container health check: is the node at HOST:PORT serving? (gRPC health service)

    python -m idn.probe 127.0.0.1:8001 [--timeout 3]

Exit 0 when the node reports SERVING (it does only after its persisted plan is loaded
again), 1 otherwise, with one line saying why. Imports only grpc, so that a check every
few seconds costs ~0.3 s of CPU rather than the full CLI's start-up. Used by the Swarm
stack file (``idn swarm``); Kubernetes probes gRPC health itself.
"""

from __future__ import annotations

import argparse
import sys


def check(address: str, timeout_s: float = 3.0) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
    except grpc.RpcError as e:
        return False, f"{address}: {e.code().name}: {e.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{address}: {status}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m idn.probe", description=__doc__.splitlines()[0])
    ap.add_argument("address", help="HOST:PORT of the node")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = ap.parse_args(argv)
    ok, line = check(args.address, args.timeout)
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
