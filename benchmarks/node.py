"""Data-plane benchmark: one node serving a small model, against its two floors.

Side by side in one run, on the same input:
  - compute floor:   ONNX Runtime called in-process (session.run), no transport;
  - transport floor: a bare grpc.aio server that echoes the request bytes back;
  - idn node:        the real node (subprocess), answering ModelInfer.

Clients send the same pre-serialized ModelInferRequest bytes to both servers and do
not parse the answers, so client cost is identical and the difference is the
server. Servers run in subprocesses so the client does not share their GIL.
Rounds alternate echo and node to spread machine noise evenly.

Targets (issue #2): p50 at concurrency 1 <= 1.1 x (echo p50 + ORT p50);
throughput at concurrency 32 >= 0.9 x echo's.

    python benchmarks/node.py [--model PATH.onnx | --heavy] [--duration 3] [--rounds 3]
                              [--config 'LABEL=NODE ARGS' ...] [--no-pin] [--out results/bench_node.json]

``--config`` replaces the default node configurations with your own, all measured in
the same run, alternating (e.g. ``--config 'no batching=--max-batch 1' --config
'default='``), so that before/after comparisons share the machine's noise.
``--config 'LABEL=x2: ARGS'`` starts two node processes on one port (SO_REUSEPORT,
the multi-process prototype; the kernel spreads connections over them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from idn.client import build_request  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"

ECHO_SERVER = r"""
import asyncio, sys, grpc
async def main(port):
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    async def echo(request, context):
        return request
    handler = grpc.unary_unary_rpc_method_handler(echo, request_deserializer=None, response_serializer=None)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()
asyncio.run(main(int(sys.argv[1])))
"""


CONFIGS = {"echo": [], "node": [], "node_nobatch": ["--max-batch", "1"], "node_metrics": ["--metrics-port", "0"]}
LABELS = {"echo": "grpc.aio echo", "node": "idn node (defaults)", "node_nobatch": "idn node, --max-batch 1",
          "node_metrics": "idn node, /metrics on"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_mlp(path: Path) -> Path:
    """64 -> 128 -> 10 MLP with softmax: a realistic 'small and fast' variant."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("W1", rng.standard_normal((64, 128)) * 0.1), ("B1", np.zeros(128)),
        ("W2", rng.standard_normal((128, 10)) * 0.1), ("B2", np.zeros(10))]]
    nodes = [helper.make_node("Gemm", ["input", "W1", "B1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "B2"], ["z"]), helper.make_node("Softmax", ["z"], ["probabilities"])]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
                          [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def heavy_mlp(path: Path) -> Path:
    """1024-2560x3-16 MLP (~1.5 ms per batch-1 run on one ORT thread), as benchmarks/peers.py."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dims = (1024, 2560, 2560, 2560, 16)
    rng = np.random.default_rng(0)
    inits, nodes, prev = [], [], "input"
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"B{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"B{i}"], [f"g{i}"]))
        prev = f"g{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["probabilities"]))
    g = helper.make_graph(nodes, "heavy", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", dims[0]])],
                          [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", dims[-1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def start(cmd: list[str], needle: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"server did not start: {cmd}")


def ort_floor(model: Path, x: np.ndarray, n: int) -> list[float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    s = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    feeds = {s.get_inputs()[0].name: x}
    for _ in range(200):
        s.run(None, feeds)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        s.run(None, feeds)
        out.append(time.perf_counter() - t0)
    return out


def latency_c1(address: str, payload: bytes, duration: float) -> list[float]:
    ch = grpc.insecure_channel(address)
    call = ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    for _ in range(200):
        call(payload, timeout=10)
    out, end = [], time.perf_counter() + duration
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        call(payload, timeout=10)
        out.append(time.perf_counter() - t0)
    ch.close()
    return out


async def _throughput(address: str, payload: bytes, concurrency: int, duration: float) -> float:
    async with grpc.aio.insecure_channel(address) as ch:
        call = ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        for _ in range(100):
            await call(payload, timeout=10)
        done = 0
        stop = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await call(payload, timeout=10)
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - t0)


def throughput(address: str, payload: bytes, concurrency: int, duration: float) -> float:
    return asyncio.run(_throughput(address, payload, concurrency, duration))


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e6, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="ONNX model with one FP32 [N, F] input (default: a 64-128-10 MLP)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="alternating echo/node rounds (median is reported)")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--no-pin", action="store_true",
                    help="do not pin servers to the last CPU and the client to the others")
    ap.add_argument("--heavy", action="store_true",
                    help="a 1024-2560x3-16 MLP (~1.5 ms per run) instead of the tiny one")
    ap.add_argument("--config", action="append", default=[], metavar="'LABEL=ARGS'",
                    help="a node configuration to measure (repeatable; replaces the defaults): LABEL=idn node "
                         "arguments, 'LABEL=x2: ARGS' for two processes sharing the port")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench_node.json")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="idn-bench-"))
    model = args.model or (heavy_mlp(tmp / "heavy.onnx") if args.heavy else small_mlp(tmp / "mlp.onnx"))
    configs, labels = dict(CONFIGS), dict(LABELS)
    replicas: dict[str, int] = {}
    if args.config:
        configs, labels = {"echo": []}, {"echo": LABELS["echo"]}
        for spec in args.config:
            label, _, rest = spec.partition("=")
            key = f"c{len(configs)}"
            if rest.startswith("x") and ":" in rest:
                n, _, rest = rest.partition(":")
                replicas[key] = int(n[1:])
            configs[key], labels[key] = rest.split(), label
    import onnxruntime as ort

    inp = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0]
    x = np.random.default_rng(0).standard_normal((1, inp.shape[1])).astype(np.float32)
    payload = build_request("m", {inp.name: x}).SerializeToString()

    # Pinning keeps client and server off each other's core: without it, on a 2-core
    # machine every request pays for cache and GIL hand-offs between the two processes.
    cpus = sorted(os.sched_getaffinity(0))
    pin = [] if args.no_pin or len(cpus) < 2 else ["taskset", "-c", str(cpus[-1])]
    if pin:
        os.sched_setaffinity(0, set(cpus[:-1]))
    load0 = os.getloadavg()
    ports = {k: free_port() for k in configs}
    procs = [start([*pin, sys.executable, "-c", ECHO_SERVER, str(ports["echo"])], "ready")]
    for k, extra in configs.items():
        if k != "echo":
            for _ in range(replicas.get(k, 1)):
                env = {"IDN_SO_REUSEPORT": "1"} if k in replicas else None
                procs.append(start([*pin, sys.executable, "-m", "idn.cli", "node", "--listen",
                                    f"127.0.0.1:{ports[k]}", "--model", f"m={model}", *extra], "listening on", env))
    servers = {k: f"127.0.0.1:{p}" for k, p in ports.items()}
    try:
        ort_s = ort_floor(model, x, 20000)
        lat: dict[str, list[float]] = {k: [] for k in servers}
        tput: dict[str, dict[int, list[float]]] = {k: {c: [] for c in levels} for k in servers}
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                lat[name] += latency_c1(servers[name], payload, args.duration)
                for c in levels:
                    tput[name][c].append(throughput(servers[name], payload, c, args.duration))
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)

    load = os.getloadavg()
    res: dict = {"model": str(model.name), "payload_bytes": len(payload), "rounds": args.rounds,
                 "loadavg_start": load0, "loadavg_end": load, "configs": {labels[k]: configs[k] for k in configs},
                 "duration_s": args.duration, "pinned": bool(pin),
                 "ort_inprocess": {"p50_us": pct(ort_s, 50), "p99_us": pct(ort_s, 99)}}
    for k in servers:
        res[k] = {"p50_us": pct(lat[k], 50), "p99_us": pct(lat[k], 99),
                  "rps": {c: statistics.median(v) for c, v in tput[k].items()}}
    floor = res["echo"]["p50_us"] + res["ort_inprocess"]["p50_us"]
    for k in servers:
        if k != "echo":
            res[k]["p50_ratio_vs_floor"] = res[k]["p50_us"] / floor
            res[k]["rps_ratio_vs_echo"] = {c: res[k]["rps"][c] / res["echo"]["rps"][c] for c in levels}

    print(f"model {res['model']}, request {len(payload)} B, {args.rounds} rounds x {args.duration:.0f} s, "
          f"{'server pinned to CPU ' + pin[-1] if pin else 'unpinned'}, load average {load0[0]:.2f} -> {load[0]:.2f}")
    w = max(24, *(len(v) + 2 for v in labels.values()))
    print(f"{'':{w}}{'p50 us':>9}{'p99 us':>9}" + "".join(f"{'rps c=' + str(c):>11}" for c in levels)
          + f"{'p50/floor':>11}{'rps/echo c=' + str(levels[-1]):>16}")
    print(f"{'ORT in-process':{w}}{res['ort_inprocess']['p50_us']:>9.1f}{res['ort_inprocess']['p99_us']:>9.1f}")
    for k in servers:
        r = res[k]
        extra = "" if k == "echo" else f"{r['p50_ratio_vs_floor']:>11.3f}{r['rps_ratio_vs_echo'][levels[-1]]:>16.3f}"
        print(f"{labels[k]:{w}}{r['p50_us']:>9.1f}{r['p99_us']:>9.1f}"
              + "".join(f"{r['rps'][c]:>11.0f}" for c in levels) + extra)
    print("targets: p50/floor <= 1.1 (floor = echo p50 + ORT p50); rps/echo at c=32 >= 0.9")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
