"""Forwarding-hop benchmark: what one IDN hop adds, against a bare gRPC hop.

Side by side in one run, same request bytes, same serving node (issue #5, item 8):
  - direct:      client -> cloud node (serves the variant);
  - idn hop (unary):  client -> edge node (no local variant; the plan routes the task to
                 the cloud, so the edge resolves it and forwards with idn.target) -> cloud,
                 one ModelInfer call per forward (--no-forward-stream);
  - idn hop (stream): the same through a second edge, edge-s, forwarding over a
                 ModelStreamInfer stream to the cloud (--forward-stream, the default;
                 issue #9, item 3);
  - bare hop:    client -> a grpc.aio proxy that forwards the request bytes unchanged
                 (no decoding, one pooled channel) -> cloud.

Topology: three nodes on loopback (cloud, edge, edge-s), links with delay 0, no emulation. Every server is
its own process (the client does not share their GIL); rounds rotate the path order
to spread machine noise evenly. Requests are sequential (concurrency 1), so the
numbers are latencies; ``--concurrency N`` (default 16) adds req/s per path with N in
flight from one grpc.aio client, which shows what a hop costs in CPU.

Target: idn hop overhead (idn hop - direct) <= 1.3 x bare hop overhead (bare - direct),
judged on the node's default forwarding mode ("ratio"); both modes are reported
("ratio_unary", "ratio_stream"), measured in one run on the same servers.

    python benchmarks/hop.py [--catalog models/catalog.yaml] [--task T] [--requests 300] [--rounds 5]
                             [--json results/hop.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from idn.catalog import Catalog, default_catalog_path, load_catalog  # noqa: E402
from idn.client import build_request  # noqa: E402
from idn.launcher import start_network, stop_nodes  # noqa: E402
from idn.loadgen import answer_output, load_samples  # noqa: E402
from idn.network import push_plan  # noqa: E402
from idn.node.settings import NodeSettings  # noqa: E402
from idn.plan import Plan, Route, SolverFacts, Target  # noqa: E402
from idn.protocol import params as P  # noqa: E402
from idn.protos import grpc_service_pb2 as pb  # noqa: E402
from idn.topology import load_topology  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"
TARGET_RATIO = 1.3
STREAM_EDGE = "edge-s"  # the edge started with --forward-stream
UNARY, STREAM = "idn hop (unary)", "idn hop (stream)"
HOPS = (UNARY, STREAM, "bare hop")

# A bare forwarding hop: grpc.aio, request bytes passed through untouched, one channel
# to the upstream reused for every call, the caller's deadline passed on.
PROXY_SERVER = r"""
import asyncio, sys, grpc
async def main(port, upstream):
    channel = grpc.aio.insecure_channel(upstream)
    forward = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                  request_serializer=None, response_deserializer=None)
    async def hop(request, context):
        return await forward(request, timeout=context.time_remaining())
    handler = grpc.unary_unary_rpc_method_handler(hop, request_deserializer=None, response_serializer=None)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await channel.channel_ready()
    print("ready", flush=True)
    await server.wait_for_termination()
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smallest_variant(catalog: Catalog, task: str) -> str:
    """The fastest-to-serve variant (fewest FLOPs, then bytes): the hop is what we measure."""
    vs = catalog.tasks[task].variants.values()
    return min(vs, key=lambda v: (v.flops_per_sample, v.bytes, v.name)).name


def two_node_topology(d: Path, hardware_class: str | None) -> Path:
    doc = {"nodes": [
        {"id": "cloud", "tier": "cloud", "address": f"127.0.0.1:{free_port()}", "mem_mb": 4096, "cores": 2,
         "repository": True},
        {"id": "edge", "tier": "edge", "address": f"127.0.0.1:{free_port()}", "mem_mb": 64, "cores": 1,
         "parent": "cloud"},
        {"id": STREAM_EDGE, "tier": "edge", "address": f"127.0.0.1:{free_port()}", "mem_mb": 64, "cores": 1,
         "parent": "cloud"}],
        "links": [{"a": "edge", "b": "cloud", "delay_ms": 0}, {"a": STREAM_EDGE, "b": "cloud", "delay_ms": 0}]}
    if hardware_class:
        doc["hardware_class"] = hardware_class
    p = d / "hop.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def edge_to_cloud_plan(task: str, variant: str) -> Plan:
    routes = [Route(class_id=f"{edge}/{task}", ingress=edge, task=task, rate=1.0,
                    targets=(Target("cloud", variant, 1.0),)) for edge in ("edge", STREAM_EDGE)]
    return Plan(version=1, placements={"cloud": (variant,)}, routes={r.class_id: r for r in routes},
                solver=SolverFacts("benchmarks/hop.py", "heuristic"))


def start_proxy(port: int, upstream: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", PROXY_SERVER, str(port), upstream], stdout=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline() if p.stdout else ""
    if line.strip() != "ready":
        p.kill()
        raise RuntimeError(f"bare gRPC proxy did not start (exit {p.poll()})")
    return p


def measure(call, message: bytes, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        call(message, timeout=10)
        out.append((time.perf_counter() - t) * 1e6)
    return out


def summary(us: list[float]) -> dict[str, float]:
    a = np.asarray(us)
    return {"p50_us": float(np.percentile(a, 50)), "p90_us": float(np.percentile(a, 90)),
            "p99_us": float(np.percentile(a, 99)), "mean_us": float(a.mean()), "n": int(a.size)}


async def _throughput(address: str, message: bytes, concurrency: int, total: int) -> float:
    """req/s through ``address`` with ``concurrency`` requests in flight (one grpc.aio channel)."""
    async with grpc.aio.insecure_channel(address) as ch:
        call = ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        left = total

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await call(message, timeout=30)

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - t)


def throughput(targets: dict[str, str], message: bytes, concurrency: int, total: int, rounds: int) -> dict:
    """Median req/s per path over ``rounds`` (paths rotated each round, like the latencies)."""
    out: dict[str, list[float]] = {k: [] for k in targets}
    order = list(targets)
    for r in range(rounds):
        for k in order[r % len(order):] + order[:r % len(order)]:
            out[k].append(asyncio.run(_throughput(targets[k], message, concurrency, total)))
    return {k: float(np.median(v)) for k, v in out.items()}


def run(catalog_path: Path, task: str | None, requests: int, rounds: int, warmup: int,
        concurrency: int = 0) -> dict:
    catalog = load_catalog(catalog_path)
    task = task or sorted(catalog.tasks)[0]
    if task not in catalog.tasks:
        raise SystemExit(f"--task {task!r}: not in {catalog_path} (tasks: {', '.join(catalog.tasks)})")
    variant = smallest_variant(catalog, task)
    t = catalog.tasks[task]
    samples = load_samples(t)
    message = build_request(task, {samples.input_name: samples.one(0)}, [answer_output(t)]).SerializeToString()
    hw = next(iter(catalog.variants[variant].latency), None)
    with tempfile.TemporaryDirectory(prefix="idn-hop-") as tmp:
        d = Path(tmp)
        topo_path = two_node_topology(d, hw)
        topo = load_topology(topo_path)
        state, procs = start_network(topo_path, catalog=catalog_path, run_dir=d / "run",
                                     own_args={"edge": ["--no-forward-stream"],
                                               STREAM_EDGE: ["--forward-stream"]})
        proxy = None
        try:
            push_plan(edge_to_cloud_plan(task, variant), topo, state.addresses, state.token)
            proxy_port = free_port()
            proxy = start_proxy(proxy_port, state.addresses["cloud"])
            targets = {"direct": state.addresses["cloud"], UNARY: state.addresses["edge"],
                       STREAM: state.addresses[STREAM_EDGE], "bare hop": f"127.0.0.1:{proxy_port}"}
            channels = {k: grpc.insecure_channel(a) for k, a in targets.items()}
            calls = {k: ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
                     for k, ch in channels.items()}
            served = pb.ModelInferResponse.FromString(calls[UNARY](message, timeout=10))
            hop_facts = {k: served.parameters[k].string_param or served.parameters[k].int64_param
                         for k in (P.NODE, P.VARIANT, P.HOPS) if k in served.parameters}
            if hop_facts.get(P.NODE) != "cloud":
                raise RuntimeError(f"the edge did not forward to the cloud: {hop_facts}")
            streamed = pb.ModelInferResponse.FromString(calls[STREAM](message, timeout=10))
            if streamed.parameters[P.NODE].string_param != "cloud":
                raise RuntimeError(f"{STREAM_EDGE} did not forward to the cloud: {streamed.parameters}")
            for call in calls.values():
                measure(call, message, warmup)
            lat: dict[str, list[float]] = {k: [] for k in calls}
            order = list(calls)
            for r in range(rounds):
                for k in order[r % len(order):] + order[:r % len(order)]:
                    lat[k].extend(measure(calls[k], message, requests))
            for ch in channels.values():
                ch.close()
            rps = throughput(targets, message, concurrency, max(requests * 2, 200), rounds) if concurrency else {}
        finally:
            if proxy is not None:
                proxy.terminate()
                proxy.wait(5)
            stop_nodes(state.nodes, procs=procs)
    stats = {k: summary(v) for k, v in lat.items()}
    base = stats["direct"]
    overhead = {k: {m: stats[k][m] - base[m] for m in ("p50_us", "mean_us")} for k in HOPS}

    def ratio_of(path: str) -> dict[str, float | None]:
        return {m: overhead[path][m] / overhead["bare hop"][m] if overhead["bare hop"][m] > 0 else None
                for m in ("p50_us", "mean_us")}
    ratio_unary, ratio_stream = ratio_of(UNARY), ratio_of(STREAM)
    default = STREAM if NodeSettings().forward_stream else UNARY
    ratio = ratio_of(default)
    return {"task": task, "variant": variant, "requests_per_round": requests, "rounds": rounds,
            "served": hop_facts, "latency": stats, "overhead_us": overhead, "default_mode": default,
            "ratio": ratio, "ratio_unary": ratio_unary, "ratio_stream": ratio_stream,
            "concurrency": concurrency, "throughput_rps": rps,
            "target_ratio": TARGET_RATIO,
            "meets_target": ratio["p50_us"] is not None and ratio["p50_us"] <= TARGET_RATIO}


def render(res: dict) -> Table:
    t = Table(title=f"one forwarding hop, {res['task']} served by {res['variant']} at the cloud "
                    f"({res['rounds']} x {res['requests_per_round']} sequential requests per path)")
    for col in ("path", "p50 us", "p90 us", "p99 us", "mean us", "hop overhead p50 us", "hop overhead mean us"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for k, s in res["latency"].items():
        o = res["overhead_us"].get(k)
        t.add_row(k, f"{s['p50_us']:.0f}", f"{s['p90_us']:.0f}", f"{s['p99_us']:.0f}", f"{s['mean_us']:.0f}",
                  f"{o['p50_us']:.0f}" if o else "-", f"{o['mean_us']:.0f}" if o else "-")
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--catalog", type=Path, default=None, help="catalog.yaml (default: the zoo)")
    ap.add_argument("--task", default=None, help="task to send (default: the catalog's first)")
    ap.add_argument("--requests", type=int, default=300, help="sequential requests per path per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=100, help="requests per path before measuring")
    ap.add_argument("--concurrency", type=int, default=16,
                    help="also req/s per path with this many requests in flight (0: skip)")
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "hop.json")
    args = ap.parse_args()
    res = run(args.catalog or default_catalog_path(), args.task, args.requests, args.rounds, args.warmup,
              args.concurrency)
    con = Console(width=160)
    con.print(render(res))
    r = res["ratio"]
    ru = res["ratio_unary"]
    con.print(f"idn hop (unary) overhead / bare gRPC hop overhead: p50 {ru['p50_us']:.2f}x, "
              f"mean {ru['mean_us']:.2f}x", highlight=False)
    if res["throughput_rps"]:
        con.print(f"throughput with {res['concurrency']} in flight (median of rounds): " + ", ".join(
            f"{k} {v:.0f} req/s" for k, v in res["throughput_rps"].items()), highlight=False)
    rs = res["ratio_stream"]
    con.print(f"idn hop (stream) overhead / bare gRPC hop overhead: p50 {rs['p50_us']:.2f}x, "
              f"mean {rs['mean_us']:.2f}x", highlight=False)
    con.print(f"default mode {res['default_mode']}: p50 {r['p50_us']:.2f}x (target <= {TARGET_RATIO}x: "
              f"{'met' if res['meets_target'] else 'NOT met'})", highlight=False)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    con.print(f"written: {args.json}", highlight=False)


if __name__ == "__main__":
    main()
