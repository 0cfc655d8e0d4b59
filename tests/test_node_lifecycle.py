"""Lifecycle and concurrency: the real `idn node` process, signals, readiness, admission control."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest

from idn.client import AsyncClient, Client
from tests.conftest import TOKEN, start_node


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_node(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "idn.cli", "node", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_line(proc: subprocess.Popen, needle: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not seen; output: {''.join(lines)}")


def test_cli_node_serves_logs_and_drains_on_sigterm(model_dir):
    port = free_port()
    proc = spawn_node(["--listen", f"127.0.0.1:{port}", "--model", f"linear={model_dir / 'linear.onnx'}",
                       "--model", f"slow={model_dir / 'slow.onnx'}", "--id", "n1", "--grace", "10"])
    try:
        line = wait_line(proc, "listening on")
        assert f"127.0.0.1:{port}" in line and "linear" in line and "slow" in line
        addr = f"127.0.0.1:{port}"
        with Client(addr) as c:
            assert c.ready()
            assert c.infer("linear", {"input": np.ones((1, 4), np.float32)}).node == "n1"

        async def in_flight_then_sigterm():
            async with AsyncClient(addr, timeout=30) as ac:
                x = np.ones((256, 384), np.float32)  # ~0.1-1 s of matmuls
                task = asyncio.ensure_future(ac.infer("slow", {"x": x}))
                await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                return await task

        res = asyncio.run(in_flight_then_sigterm())
        assert res.output().shape == (256, 384)  # the in-flight request finished
        assert proc.wait(20) == 0
        assert "SIGTERM" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_rejects_bad_model_spec(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "idn.cli", "node", "--model", "no-equals-sign"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "NAME=PATH" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "idn.cli", "node", "--model", f"m={tmp_path / 'missing.onnx'}"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "no such file" in proc.stderr


def test_readiness_waits_for_every_configured_model(model_dir):
    n = start_node(model_dir, ["linear"], admin=True)
    try:
        with Client(n.address) as c:
            assert c.ready()
            c.unload("linear", token=TOKEN)
            assert not c.ready()  # a configured model is missing
            c.load("linear", token=TOKEN)
            assert c.ready()
    finally:
        n.stop()


def test_overload_is_refused_fast_and_slow_model_does_not_stall_others(model_dir):
    n = start_node(model_dir, ["linear", "slow"], max_queue=2, workers=2)
    try:
        async def scenario():
            async with AsyncClient(n.address, timeout=30) as ac:
                x = np.ones((512, 384), np.float32)  # ~0.1 s per run: the 8 arrive while 2 run
                slow = [asyncio.ensure_future(ac.infer("slow", {"x": x})) for _ in range(8)]
                await asyncio.sleep(0.02)
                t0 = time.perf_counter()
                fast = await ac.infer("linear", {"input": np.ones((1, 4), np.float32)})
                fast_s = time.perf_counter() - t0
                results = await asyncio.gather(*slow, return_exceptions=True)
                return fast, fast_s, results

        fast, fast_s, results = asyncio.run(scenario())
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        served = [r for r in results if not isinstance(r, Exception)]
        assert len(served) >= 2 and len(refused) >= 1 and len(served) + len(refused) == 8
        assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit 2" in r.details() for r in refused)
        assert fast.outputs["label"].shape == (1,)
    finally:
        n.stop()


def test_upload_model_bytes_over_the_repository_api(model_dir):
    from idn.protos import grpc_service_pb2 as pb

    n = start_node(model_dir, [], admin=True)
    md = [("authorization", f"Bearer {TOKEN}")]
    try:
        with Client(n.address) as c:
            req = pb.RepositoryModelLoadRequest(model_name="uploaded")
            req.parameters["file:1/model.onnx"].bytes_param = (model_dir / "linear.onnx").read_bytes()
            c.stub.RepositoryModelLoad(req, timeout=10, metadata=md)
            assert c.infer("uploaded", {"input": np.ones((1, 4), np.float32)}).outputs["logits"].shape == (1, 3)
            bad = pb.RepositoryModelLoadRequest(model_name="broken")
            bad.parameters["file:1/model.onnx"].bytes_param = b"not an onnx model"
            with pytest.raises(grpc.RpcError) as e:
                c.stub.RepositoryModelLoad(bad, timeout=10, metadata=md)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "broken" in e.value.details()
            assert {m.name: m.state for m in c.index()}["broken"] == "UNAVAILABLE"
    finally:
        n.stop()


def _wait_for(cond, what: str, limit_s: float = 30.0) -> None:
    """Wait until ``cond()`` holds (a state the test needs, not a timing claim)."""
    end = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < end, f"never reached: {what}"
        time.sleep(0.005)


def test_dynamic_batching_merges_waiting_requests_and_splits_answers(model_dir):
    """Deterministic: the one worker is held busy by a gate until all 12 requests are admitted,
    so the first runs alone (it found the variant idle) and the 11 that queued behind it
    merge into runs of at most 16 samples: 23 rows at most, 14 or more per full run -> 2 runs."""
    import threading

    n = start_node(model_dir, ["slow", "linear"], max_batch=16, workers=1, inline_max_us=0)
    gate = threading.Event()
    try:
        rt = n.server.store.get("slow")
        n.server.executor.submit(gate.wait, 60)  # the only worker thread waits for the gate

        async def scenario():
            async with AsyncClient(n.address, timeout=60) as ac:
                xs = [np.full((1 + i % 3, 384), i, np.float32) for i in range(12)]
                calls = [asyncio.ensure_future(ac.infer("slow", {"x": x})) for x in xs]
                await asyncio.get_running_loop().run_in_executor(
                    None, _wait_for, lambda: rt.inflight == 12, "12 requests admitted")
                gate.set()
                return xs, await asyncio.gather(*calls)

        xs, res = asyncio.run(scenario())
        for x, r in zip(xs, res):
            assert r.output().shape == x.shape
        # Each answer is that request's own rows: rows of request i all derive from the value i.
        vals = [r.output()[:, 0] for r in res]
        assert all(np.allclose(v, v[0]) for v in vals) and len({round(float(v[0]), 3) for v in vals}) == 12
        b = rt.batcher
        assert b.batches == 3 and b.merged == 11 and b.sizes[1] == 1 and sum(b.sizes.values()) == 3
        assert n.server.store.get("linear").batcher is not None
    finally:
        gate.set()
        n.stop()


def test_runs_per_variant_runs_in_parallel_first_then_merges(model_dir):
    """With two run slots per variant the first two requests run at once, one per worker;
    only the ones that arrive while both are busy merge (both workers held by a gate until
    all 12 are admitted: exactly 2 single runs, then one run of the other 10)."""
    import threading

    n = start_node(model_dir, ["slow"], max_batch=16, workers=2, runs_per_variant=2, inline_max_us=0)
    gate = threading.Event()
    try:
        rt = n.server.store.get("slow")
        for _ in range(2):
            n.server.executor.submit(gate.wait, 60)

        async def scenario():
            async with AsyncClient(n.address, timeout=60) as ac:
                xs = [np.full((1, 384), i, np.float32) for i in range(12)]
                calls = [asyncio.ensure_future(ac.infer("slow", {"x": x})) for x in xs]
                await asyncio.get_running_loop().run_in_executor(
                    None, _wait_for, lambda: rt.inflight == 12, "12 requests admitted")
                gate.set()
                return xs, await asyncio.gather(*calls)

        xs, res = asyncio.run(scenario())
        vals = [float(r.output()[0, 0]) for r in res]  # the model is linear: request i answers i * y(1)
        assert vals == pytest.approx([i * vals[1] for i in range(12)], rel=1e-4, abs=1e-6)
        assert rt.batcher.sizes == {1: 2, 10: 1}
    finally:
        gate.set()
        n.stop()


def test_batching_is_on_by_default_and_idle_requests_run_alone(model_dir):
    """Default settings batch every batchable variant; a request that finds the variant idle
    runs at once on its own (no merge, no added wait), and --max-batch 1 turns batching off."""
    n = start_node(model_dir, ["slow", "linear", "fixed"])
    try:
        rt = n.server.store.get("slow")
        assert rt.batcher is not None and rt.max_batch == 32
        assert n.server.store.get("fixed").batcher is None  # fixed leading dimension
        with Client(n.address) as c:
            for i in range(5):
                x = np.full((2, 384), i, np.float32)
                assert c.infer("slow", {"x": x}).output().shape == (2, 384)
        assert rt.batcher.sizes == {1: 5} and rt.batcher.merged == 0
    finally:
        n.stop()
    off = start_node(model_dir, ["slow"], max_batch=1)
    try:
        assert off.server.store.get("slow").batcher is None
    finally:
        off.stop()


def test_models_without_dynamic_leading_dims_are_not_batched(model_dir):
    n = start_node(model_dir, ["fixed", "failing"], max_batch=16)
    try:
        assert n.server.store.get("fixed").batcher is None
        assert n.server.store.get("failing").batcher is None
    finally:
        n.stop()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_default_workers_follow_the_cpu_affinity():
    """A node pinned to one CPU starts one worker, not one per core of the machine (two
    workers would only time-slice the one CPU)."""
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from idn.node.settings import NodeSettings; print(NodeSettings().workers)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
