"""Hostile-key benchmark: does a node's memory stay flat whatever strings clients send?

Starts one real node (a subprocess: its RSS is read from /proc/<pid>/status) as the
repository of a one-node topology with the model zoo's catalog, a plan that splits
`digits` over three variants, 2 MiB of memory for on-demand loads and Prometheus
metrics on; then, after a warm-up, sends distinct hostile keys as fast as it can:

  - model names nobody serves (8-128 characters; plus a few of 3-4 MiB);
  - SLO values: each request to `digits` carries its own idn.max_latency_ms and
    idn.min_accuracy (two distinct values per request), plus NaN, inf, negatives, junk;
  - parameter names: requests to `digits` carrying 50 made-up parameters each;
  - idn.target=<node>/<variant> for every catalog variant (on-demand loads at the
    repository, which must stay within its memory).

It prints RSS before and after, what each kind of request was answered, and how many
request classes (GetStats) and metric series (/metrics) the node ended up with.

    python benchmarks/hostile.py [--keys 100000] [--tree PATH] [--json out.json]

``--tree`` runs the node from another checkout (e.g. the commit before a fix), with
this checkout's client: the numbers before and after a change come from one script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from idn.client import build_request  # noqa: E402
from idn.protos import control_pb2 as cpb  # noqa: E402
from idn.protos import control_pb2_grpc as cpb_grpc  # noqa: E402
from idn.protos import grpc_service_pb2 as pb  # noqa: E402

TOKEN = "hostile-bench"
CATALOG = ROOT / "models" / "catalog.yaml"
MIB = 2 ** 20
EXTRA_ENV: dict[str, str] = {}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_network(d: Path, port: int, mem_mb: float) -> tuple[Path, Path]:
    topo = {"hardware_class": "cpu-x86_64-2c",
            "nodes": [{"id": "solo", "tier": "cloud", "address": f"127.0.0.1:{port}", "mem_mb": mem_mb, "cores": 2,
                       "repository": True}], "links": []}
    targets = [("digits-linear", 0.3), ("digits-mlp-s", 0.3), ("digits-cnn-s", 0.4)]
    plan = {"version": 1,
            "placements": {"solo": ["digits-linear", "digits-mlp-s", "digits-cnn-s", "waveforms-cnn-s"]},
            "routes": {"solo/digits": {"ingress": "solo", "task": "digits", "rate": 10.0,
                                       "targets": [{"node": "solo", "variant": v, "share": s} for v, s in targets]},
                       "solo/waveforms": {"ingress": "solo", "task": "waveforms", "rate": 1.0,
                                          "targets": [{"node": "solo", "variant": "waveforms-cnn-s", "share": 1.0}]}},
            "solver": {"name": "hand", "status": "heuristic"}}
    (d / "topology.yaml").write_text(yaml.safe_dump(topo))
    (d / "plan.yaml").write_text(yaml.safe_dump(plan))
    return d / "topology.yaml", d / "plan.yaml"


def start_node(tree: Path, d: Path, port: int, metrics_port: int, mem_mb: float) -> subprocess.Popen:
    topo, plan = write_network(d, port, mem_mb)
    cmd = [sys.executable, "-m", "idn.cli", "node", "--topology", str(topo), "--id", "solo", "--plan", str(plan),
           "--catalog", str(CATALOG), "--control-token", TOKEN, "--metrics-port", str(metrics_port),
           "--log-level", "WARNING"]
    log = open(d / "node.log", "w")
    proc = subprocess.Popen(cmd, cwd=tree, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree), **EXTRA_ENV})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited: {(d / 'node.log').read_text()[-2000:]}")
        try:
            ch = grpc.insecure_channel(f"127.0.0.1:{port}")
            from idn.protos import grpc_service_pb2_grpc as pb_grpc

            if pb_grpc.GRPCInferenceServiceStub(ch).ServerReady(pb.ServerReadyRequest(), timeout=1).ready:
                ch.close()
                return proc
            ch.close()
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("node did not become ready")


def rss_mib(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def requests(keys: int, seed: int = 0):
    """(kind, request, distinct keys it carries) for ``keys`` distinct hostile keys in all:
    40% model names, 40% SLO values (two per request), 20% parameter names (50 per request)."""
    rng = np.random.default_rng(seed)
    x = np.random.default_rng(1).random((1, 64), dtype=np.float32)
    base = build_request("digits", {"input": x})
    n_names, n_slo, n_params = int(keys * 0.4), int(keys * 0.4) // 2, int(keys * 0.2) // 50
    kinds = ["name"] * n_names + ["slo"] * n_slo + ["params"] * n_params
    rng.shuffle(kinds)
    counters = Counter()
    for kind in kinds:
        i = counters[kind]
        counters[kind] += 1
        r = pb.ModelInferRequest()
        r.CopyFrom(base)
        if kind == "name":
            r.model_name = f"h{i:07d}-" + "x" * int(rng.integers(0, 120))
            yield kind, r, 1
        elif kind == "slo":
            r.parameters["idn.max_latency_ms"].double_param = 0.5 + i * 0.0137
            r.parameters["idn.min_accuracy"].double_param = (i * 7919 % 1_000_003) / 1_000_003
            yield kind, r, 2
        else:
            for j in range(50):
                r.parameters[f"p{i:05d}-{j:02d}-" + "q" * int(rng.integers(0, 40))].int64_param = j
            yield kind, r, 50


def extra_requests():
    """Invalid SLO values and huge names (3-4 MiB)."""
    x = np.random.default_rng(1).random((1, 64), dtype=np.float32)
    for bad in (float("nan"), float("inf"), -1.0, 0.0):
        yield "bad_slo", build_request("digits", {"input": x}, parameters={"idn.max_latency_ms": bad}), 1
    yield "bad_slo", build_request("digits", {"input": x}, parameters={"idn.max_latency_ms": "9" * 400_000}), 1
    yield "bad_slo", build_request("digits", {"input": x}, parameters={"idn.min_accuracy": 1.5}), 1
    for k in range(10):
        yield "huge_name", build_request("n" * (3 * MIB + k * 100_000), {"input": x}), 1


def target_requests(variants: list[str]):
    """idn.target=solo/<variant> for every catalog variant, three times each."""
    x = np.random.default_rng(1).random((1, 64), dtype=np.float32)
    for v in variants:
        for _ in range(3):
            inp = {"input": x} if v.startswith("digits") else {"input": np.zeros((1, 128), np.float32)}
            yield "target", build_request(v.split("-")[0], inp, parameters={"idn.target": f"solo/{v}"}), 1


async def send(address: str, reqs, concurrency: int) -> tuple[Counter, int, int]:
    """Send all requests, ``concurrency`` at a time; (kind/outcome counts, keys, longest error details)."""
    outcomes: Counter = Counter()
    keys = longest = 0
    it = iter(reqs)
    opts = [("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 64 * MIB)]
    async with grpc.aio.insecure_channel(address, options=opts) as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                              request_serializer=pb.ModelInferRequest.SerializeToString,
                              response_deserializer=pb.ModelInferResponse.FromString)

        async def worker() -> None:
            nonlocal keys, longest
            for kind, req, k in it:
                keys += k
                try:
                    resp = await call(req, timeout=30)
                    degraded = "idn.degraded" in resp.parameters
                    outcomes[(kind, "OK (degraded)" if degraded else "OK")] += 1
                except grpc.aio.AioRpcError as e:
                    outcomes[(kind, e.code().name)] += 1
                    longest = max(longest, len(e.details() or ""))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes, keys, longest


def node_facts(address: str, metrics_port: int) -> dict:
    ch = grpc.insecure_channel(address)
    stub = cpb_grpc.NodeControlStub(ch)
    md = [("authorization", f"Bearer {TOKEN}")]
    classes: int | str
    try:
        classes = len(stub.GetStats(cpb.GetStatsRequest(), metadata=md, timeout=60).classes)
    except grpc.RpcError as e:  # e.g. a node whose tables grew past the message limit
        classes = f"{e.code().name}"
    info = stub.GetNodeInfo(cpb.GetNodeInfoRequest(), metadata=md, timeout=30)
    ch.close()
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).read().decode()
    series = sum(1 for line in text.splitlines() if line.startswith("idn_requests_total{"))
    cat = yaml.safe_load(CATALOG.read_text())
    sizes = {v: spec["bytes"] for t in cat["tasks"].values() for v, spec in t["variants"].items()}
    return {"stats_classes": classes, "metric_series": series, "variants": list(info.variants),
            "variant_bytes": sum(sizes.get(v, 0) for v in info.variants)}


def run(keys: int, tree: Path, concurrency: int = 32, mem_mb: float = 2.0, warmup: int = 3000,
        settle_s: float = 2.5) -> dict:
    """Start a node from ``tree``, warm it up, send ``keys`` distinct hostile keys, then huge
    names, then every target; RSS (MiB) after each step. ``growth_mib``: settled after the keys
    and huge names, minus warm (the on-demand loads of the targets are reported apart: they are
    memory the node may use)."""
    d = Path(tempfile.mkdtemp(prefix="idn-hostile-"))
    port, metrics_port = free_port(), free_port()
    proc = start_node(tree, d, port, metrics_port, mem_mb)
    address = f"127.0.0.1:{port}"
    cat = yaml.safe_load(CATALOG.read_text())
    variants = [v for t in cat["tasks"].values() for v in t["variants"]]
    try:
        res: dict = {"keys": keys, "tree": str(tree), "mem_mb": mem_mb, "rss_mib": {"ready": rss_mib(proc.pid)}}
        # Warm-up: the same kinds of requests (other keys), so allocator and code paths are warm.
        asyncio.run(send(address, requests(warmup, seed=99), concurrency))
        time.sleep(settle_s)
        res["rss_mib"]["warm"] = rss_mib(proc.pid)
        t0 = time.perf_counter()
        outcomes, sent_keys, longest = asyncio.run(send(address, requests(keys), concurrency))
        res["seconds"] = time.perf_counter() - t0
        res["rss_mib"]["keys"] = rss_mib(proc.pid)
        extra, _, longest2 = asyncio.run(send(address, extra_requests(), 4))
        res["rss_mib"]["huge"] = rss_mib(proc.pid)
        time.sleep(settle_s)  # the node trims malloc's free memory every 2 s after a large message
        res["rss_mib"]["settled"] = rss_mib(proc.pid)
        targets, _, longest3 = asyncio.run(send(address, target_requests(variants), 4))
        time.sleep(settle_s)
        res["rss_mib"]["targets"] = rss_mib(proc.pid)
        outcomes.update(extra)
        outcomes.update(targets)
        res["requests"] = sum(outcomes.values())
        res["distinct_keys"] = sent_keys
        res["outcomes"] = {f"{k}: {c}": n for (k, c), n in sorted(outcomes.items())}
        res["longest_error_details"] = max(longest, longest2, longest3)
        res.update(node_facts(address, metrics_port))
        res["node_alive"] = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    res["growth_mib"] = res["rss_mib"]["settled"] - res["rss_mib"]["warm"]
    return res


def print_table(results: list[dict]) -> None:
    print("RSS of the node process, MiB: ready, after warm-up, after the keys, after 10 huge names (+2.5 s), "
          "after the targets' on-demand loads")
    print(f"{'tree':32}{'keys':>8}{'reqs':>8}{'s':>5}{'ready':>7}{'warm':>6}{'keys':>6}{'huge':>6}{'growth':>8}"
          f"{'targets':>8}{'classes':>8}{'series':>7}{'err len':>8}")
    for r in results:
        m = r["rss_mib"]
        print(f"{r['tree'][-32:]:32}{r['distinct_keys']:>8}{r['requests']:>8}{r['seconds']:>5.0f}{m['ready']:>7.0f}"
              f"{m['warm']:>6.0f}{m['keys']:>6.0f}{m['settled']:>6.0f}{r['growth_mib']:>+8.1f}{m['targets']:>8.0f}"
              f"{str(r['stats_classes'])[:7]:>8}{r['metric_series']:>7}{r['longest_error_details']:>8}")
    for r in results:
        print(f"\n{r['tree']}: loaded at the end {r['variants']} ({r['variant_bytes'] / MIB:.2f} MiB of "
              f"{r['mem_mb']:g} MiB)")
        for k, n in r["outcomes"].items():
            print(f"  {k:40}{n:>8}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000, help="distinct hostile keys to send")
    ap.add_argument("--tree", type=Path, action="append",
                    help="checkout to run the node from (repeatable; default: this one)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--mem-mb", type=float, default=2.0, help="the node's memory (topology mem_mb)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    results = [run(args.keys, t.resolve(), args.concurrency, args.mem_mb) for t in (args.tree or [ROOT])]
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
