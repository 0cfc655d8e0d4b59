"""Overload: a node at twice its capacity sheds what it cannot serve in time (issue #12, item 4).

One node (a subprocess, one worker thread) serving a compute-bound model: a chain of
MatMuls, a few milliseconds per request here. Its capacity is what it completes in a
closed loop at concurrency 4. Then open-loop Poisson arrivals at ``--factor`` x that
capacity for ``--duration`` seconds, each request with a ``--deadline-ms`` gRPC
deadline. Reported: what it served (rate, share of capacity, p50/p99 latency of what it
accepted), what it refused at once (by status, and how fast), what ran late (the client
gave up at its deadline: the node ran it, or queued it, for nothing), and the node's RSS
over the run.

Targets: served >= 0.9 x capacity; p99 of accepted within the deadline; RSS growth
<= 10% between the first second of overload and the end.

    python benchmarks/overload.py [--factor 2] [--duration 10] [--deadline-ms 300] [--json results/overload.json]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from idn.client import build_request  # noqa: E402
from idn.protos import grpc_service_pb2 as pb  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"
SIZE = 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start_node(model: Path, port: int, workers: int = 1) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "idn.cli", "node", "--listen", f"127.0.0.1:{port}",
                             "--model", f"slow={model}", "--workers", str(workers), "--log-level", "WARNING",
                             # Batching off: with it a node's capacity grows with its queue (the
                             # more requests merge, the cheaper each), so "twice its capacity"
                             # would not be one number. Admission itself works the same either way.
                             "--max-batch", "1"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            try:
                stub = ch.unary_unary("/inference.GRPCInferenceService/ServerReady",
                                      request_serializer=pb.ServerReadyRequest.SerializeToString,
                                      response_deserializer=pb.ServerReadyResponse.FromString)
                if stub(pb.ServerReadyRequest(), timeout=0.5).ready:
                    return proc
            except grpc.RpcError:
                pass
        if proc.poll() is not None:
            raise RuntimeError(f"node exited with status {proc.returncode}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("node not ready within 60 s")


def build_model(d: Path, repeats: int = 96) -> Path:
    from tests import onnx_models  # needs onnx (the test extra)

    return onnx_models.slow_model(d / "slow.onnx", size=SIZE, repeats=repeats)


async def closed_loop(call, msg: bytes, seconds: float, concurrency: int = 4) -> float:
    """Requests/s completed back to back by ``concurrency`` callers."""
    done = 0
    end = time.monotonic() + seconds

    async def worker():
        nonlocal done
        while time.monotonic() < end:
            await call(msg, timeout=5)
            done += 1
    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.monotonic() - t0)


async def open_loop(call, msg: bytes, rate: float, seconds: float, deadline_s: float, pid: int,
                    seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    loop = asyncio.get_running_loop()
    ok: list[float] = []
    refused: dict[str, list[float]] = {}
    late: list[float] = []
    rss: list[tuple[float, float]] = []
    tasks: set[asyncio.Task] = set()

    async def one():
        t = time.perf_counter()
        try:
            await call(msg, timeout=deadline_s)
            ok.append(time.perf_counter() - t)
        except grpc.RpcError as e:
            took = time.perf_counter() - t
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and took >= 0.9 * deadline_s:
                late.append(took)  # the client gave up: the node had not answered in time
            else:
                refused.setdefault(e.code().name, []).append(took)

    async def sample():
        t0 = time.monotonic()
        while True:
            m = rss_mb(pid)
            if m is not None:
                rss.append((time.monotonic() - t0, m))
            await asyncio.sleep(0.25)

    sampler = loop.create_task(sample())
    t0 = loop.time()
    t, sent = t0, 0
    while True:
        t += rng.exponential(1.0 / rate)
        if t - t0 >= seconds:
            break
        if (w := t - loop.time()) > 0:
            await asyncio.sleep(w)
        task = loop.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    if tasks:
        await asyncio.wait(tasks, timeout=deadline_s + 2)
    sampler.cancel()
    ms = np.asarray(ok) * 1e3
    first = [m for s, m in rss if s >= 1.0] or [m for _, m in rss]
    return {
        "sent": sent, "offered_rps": sent / seconds, "served": len(ok), "served_rps": len(ok) / seconds,
        "accepted_p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "accepted_p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "refused": {k: len(v) for k, v in refused.items()},
        "refused_p99_ms": float(np.percentile(np.concatenate([np.asarray(v) for v in refused.values()]) * 1e3, 99))
        if refused else None,
        "late": len(late),
        "rss_mb": {"first": first[0] if first else None, "end": rss[-1][1] if rss else None,
                   "max": max((m for _, m in rss), default=None)},
        "rss_growth": (rss[-1][1] / first[0] - 1) if rss and first else None,
    }


async def measure(port: int, pid: int, factor: float, duration: float, deadline_ms: float,
                  calibrate_s: float = 2.0) -> dict:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        msg = build_request("slow", {"x": np.ones((1, SIZE), np.float32)}).SerializeToString()
        for _ in range(20):  # warm up (and let the node learn the model's cost)
            await call(msg, timeout=5)
        capacity = await closed_loop(call, msg, calibrate_s)
        res = await open_loop(call, msg, factor * capacity, duration, deadline_ms / 1000, pid)
    res.update(capacity_rps=capacity, factor=factor, deadline_ms=deadline_ms, duration_s=duration,
               served_share=res["served_rps"] / capacity)
    return res


def run(factor: float = 2.0, duration: float = 10.0, deadline_ms: float = 300.0, calibrate_s: float = 2.0) -> dict:
    with tempfile.TemporaryDirectory() as d:
        model = build_model(Path(d))
        port = free_port()
        node = start_node(model, port)
        try:
            return asyncio.run(measure(port, node.pid, factor, duration, deadline_ms, calibrate_s))
        finally:
            node.terminate()
            node.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factor", type=float, default=2.0, help="offered load, times the measured capacity")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--deadline-ms", type=float, default=300.0)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    r = run(a.factor, a.duration, a.deadline_ms)
    print(f"capacity {r['capacity_rps']:.0f} req/s (closed loop, concurrency 4); offered {r['offered_rps']:.0f} "
          f"req/s ({a.factor:g}x) for {a.duration:g} s, deadline {a.deadline_ms:g} ms")
    print(f"served   {r['served_rps']:.0f} req/s = {100 * r['served_share']:.0f}% of capacity; accepted p50 "
          f"{r['accepted_p50_ms']:.1f} ms, p99 {r['accepted_p99_ms']:.1f} ms")
    refused = ", ".join(f"{k} {v}" for k, v in r["refused"].items()) or "none"
    p99 = f" (p99 {r['refused_p99_ms']:.1f} ms to answer)" if r["refused_p99_ms"] is not None else ""
    print(f"refused  {refused}{p99}; ran late (client deadline hit) {r['late']} of {r['sent']}")
    m = r["rss_mb"]
    print(f"RSS      {m['first']:.1f} MiB after 1 s -> {m['end']:.1f} MiB at the end (max {m['max']:.1f}): "
          f"{100 * r['rss_growth']:+.1f}%")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(r, indent=1) + "\n")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
