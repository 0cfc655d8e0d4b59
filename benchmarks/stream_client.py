"""Client side of ModelStreamInfer: ``idn.AsyncClient`` unary calls against ``stream=True``.

One node (its own process) serving a small MLP; one asyncio client process. Side by side
in one run, rounds alternating the two modes to spread machine noise: the same
requests, N in flight, through ``AsyncClient.infer`` (so client-side building and
parsing is included: what a user of the client sees). Prints a table and writes JSON.

    python benchmarks/stream_client.py [--concurrency 1,16] [--requests 2000] [--rounds 3]
                                       [--json results/stream_client.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.node import free_port, small_mlp, start  # noqa: E402
from idn.client import AsyncClient  # noqa: E402

MODES = ("unary", "stream")


async def measure(address: str, stream: bool, concurrency: int, total: int) -> tuple[float, list[float]]:
    """(req/s, per-request latencies in µs) for ``total`` requests with ``concurrency`` in flight."""
    x = np.random.default_rng(0).random((1, 64), dtype=np.float32)
    lat: list[float] = []
    async with AsyncClient(address, timeout=30, stream=stream) as c:
        for _ in range(50):  # warm-up: channel, stream, the node's first runs
            await c.infer("mlp", {"input": x})
        left = total

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t = time.perf_counter()
                await c.infer("mlp", {"input": x})
                lat.append((time.perf_counter() - t) * 1e6)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - t0), lat


def run(concurrencies: list[int], requests: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="idn-stream-") as tmp:
        model = small_mlp(Path(tmp) / "mlp.onnx")
        port = free_port()
        node = start([sys.executable, "-m", "idn.cli", "node", "--listen", f"127.0.0.1:{port}", "--model",
                      f"mlp={model}"], "listening")
        try:
            out: dict[str, dict[str, dict[str, float]]] = {}
            for c in concurrencies:
                rps: dict[str, list[float]] = {m: [] for m in MODES}
                lat: dict[str, list[float]] = {m: [] for m in MODES}
                for r in range(rounds):
                    for m in (MODES if r % 2 == 0 else MODES[::-1]):
                        got, us = asyncio.run(measure(f"127.0.0.1:{port}", m == "stream", c, requests))
                        rps[m].append(got)
                        lat[m].extend(us)
                out[str(c)] = {m: {"rps": statistics.median(rps[m]), "p50_us": float(np.percentile(lat[m], 50)),
                                   "p99_us": float(np.percentile(lat[m], 99))} for m in MODES}
        finally:
            node.terminate()
            node.wait(10)
    return {"requests": requests, "rounds": rounds, "results": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", default="1,16", help="requests in flight, comma-separated")
    ap.add_argument("--requests", type=int, default=2000, help="requests per mode per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "stream_client.json")
    args = ap.parse_args()
    res = run([int(c) for c in args.concurrency.split(",")], args.requests, args.rounds)
    t = Table(title=f"idn.AsyncClient against one node: unary ModelInfer vs ModelStreamInfer "
                    f"({res['rounds']} rounds x {res['requests']} requests)")
    for col in ("in flight", "mode", "req/s (median)", "p50 us", "p99 us"):
        t.add_column(col, justify="right")
    for c, modes in res["results"].items():
        for m, s in modes.items():
            t.add_row(c, m, f"{s['rps']:.0f}", f"{s['p50_us']:.0f}", f"{s['p99_us']:.0f}")
    con = Console(width=140)
    con.print(t)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    con.print(f"written: {args.json}", highlight=False)


if __name__ == "__main__":
    main()
