"""IDN node against the Python serving peers: KServe, MLServer, Triton (via PyTriton).

One command, one load driver, every server side by side on the same machine:
  - echo:      a bare grpc.aio server answering each request with its pre-computed
               response bytes (a dict lookup: the transport floor);
  - idn:       `idn node --listen ... --model tiny=... --model heavy=...`, DEFAULT settings;
  - kserve:    kserve 0.21 `ModelServer` with a custom `kserve.Model` running ONNX Runtime;
  - mlserver:  MLServer 1.7.1 with a custom `MLModel` runtime running ONNX Runtime;
  - triton:    Triton Inference Server through nvidia-pytriton 0.7 (a Python function
               running ONNX Runtime; pytriton's default ModelConfig: dynamic batching on,
               max_batch_size 4, no queue delay).

Each peer is installed once, by this script, into its own virtual environment
(default ~/.cache/idn-peers/, --venvs to move it) with pinned versions; onnxruntime is
pinned in every venv to the version this venv runs, so every server runs the same kernels.
A peer that cannot be installed or started is reported missing; the others still run.

Models (built here with onnx.helper + numpy, seed 0; FP32, dynamic batch dimension):
  - tiny:  64-128-10 MLP (the data-plane benchmark's model, ~6 us per run);
  - heavy: 1024-2560-2560-2560-16 MLP (~1.5 ms per batch-1 run on one ORT thread).
Every server runs ONNX Runtime with 1 intra-op and 1 inter-op thread (--ort-threads; the
node's default is 1, so it is started without threading flags unless you change it).

The driver is this process: tritonclient's generated stubs (service_pb2, never
idn.protos: both register `inference.*` in protobuf's descriptor pool), grpc.aio, a
closed loop with K requests in flight (K = 1, 8, 32), a pool of 64 distinct inputs, and
every response checked against ONNX Runtime run in-process (byte-equal, else allclose),
so a server answering garbage fast does not win. Servers are pinned to the last
--cores CPUs, the driver to the others (on a 2-core box with --cores 2 they share).
Servers are measured in --rounds rounds, the order rotated each round.

    python benchmarks/peers.py                 # full run (~10 min; first run also installs the peers)
    python benchmarks/peers.py --quick         # smoke run (~1 min once the peers are installed)
    python benchmarks/peers.py --profile       # also py-spy the idn node at 32 in flight on both models
    python benchmarks/peers.py --servers echo,idn --cores 2

Writes results/peers.json (and results/peers-logs/, results/peers-profile-*.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import os
import pickle
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------- peers and their pins

PEERS = {
    "kserve": {"label": "KServe 0.21 ModelServer", "requirements": ["kserve==0.21.0"]},
    # uvloop 0.22+ raises in asyncio.get_event_loop() without a running loop, which MLServer
    # 1.7.1's inference worker calls at start (the worker dies, the model never loads).
    "mlserver": {"label": "MLServer 1.7.1", "requirements": ["mlserver==1.7.1", "uvloop==0.21.0"]},
    "triton": {"label": "Triton 2.51 via nvidia-pytriton 0.7 (dynamic batching on)",
               "requirements": ["nvidia-pytriton==0.7.0"]},
}
PY_SPY = "py-spy==0.4.1"
SERVERS = ["echo", "kserve", "mlserver", "triton", "idn"]
# Not in the default run, for diagnosis only: the node with dynamic batching on.
OPTIONAL = {"idn_batch": ["--max-batch", "8"]}
LABELS = {"echo": "bare grpc.aio echo (transport floor)", "idn": "idn node (defaults)",
          "idn_batch": "idn node --max-batch 8 (not default)",
          **{k: v["label"] for k, v in PEERS.items()}}
LEVELS = (1, 8, 32)
N_INPUTS = 64

# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dims: tuple[int, ...]
    what: str


MODELS = {
    "tiny": ModelSpec("tiny", (64, 128, 10), "64-128-10 MLP"),
    "heavy": ModelSpec("heavy", (1024, 2560, 2560, 2560, 16), "1024-2560x3-16 MLP (~1.5 ms at batch 1, 1 thread)"),
}


def build_mlp(dims: tuple[int, ...], path: Path, seed: int = 0) -> Path:
    """An MLP (Gemm+Relu layers, Softmax head) as ONNX: input FP32 [N, dims[0]] -> probabilities [N, dims[-1]]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "input"
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"W{i}"),
                  numpy_helper.from_array((rng.standard_normal(b) * 0.01).astype(np.float32), f"B{i}")]
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"B{i}"], [f"h{i}"]))
        prev = f"h{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    nodes.append(helper.make_node("Softmax", [prev], ["probabilities"]))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", dims[0]])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", dims[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return path


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_floor_us(path: Path, threads: int, n: int) -> dict:
    """ONNX Runtime in-process, batch 1: the compute floor."""
    s = ort_session(path, threads)
    x = np.random.default_rng(7).standard_normal((1, s.get_inputs()[0].shape[1])).astype(np.float32)
    for _ in range(50):
        s.run(None, {"input": x})
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        s.run(None, {"input": x})
        ts.append(time.perf_counter() - t0)
    a = np.asarray(ts) * 1e6
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99))}


# ---------------------------------------------------------------- server programs

ECHO_SERVER = r'''
import asyncio, pickle, sys, grpc
async def main(port, pairs_file):
    with open(pairs_file, "rb") as f:
        answers = pickle.load(f)          # request bytes -> pre-computed response bytes
    async def infer(request, context):
        answer = answers.get(request)
        if answer is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown request")
        return answer
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handler = grpc.unary_unary_rpc_method_handler(infer, request_deserializer=None, response_serializer=None)
    ready = grpc.unary_unary_rpc_method_handler(lambda r, c: b"\x08\x01", request_deserializer=None,
                                                response_serializer=None)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {"ModelInfer": handler, "ServerReady": ready, "ModelReady": ready}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("echo ready", flush=True)
    await server.wait_for_termination()
asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
'''

# A custom KServe model, as KServe's docs write one: load() builds the session, a sync
# predict() takes the v2 InferRequest and returns an InferResponse.
KSERVE_SERVER = r'''
import json, os
import numpy as np, onnxruntime as ort
from kserve import Model, ModelServer, InferRequest, InferResponse, InferOutput

CONF = json.loads(os.environ["IDN_PEER_CONF"])

class OrtModel(Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = CONF["ort_threads"]
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        y = self.session.run([self.output_name], {self.input_name: x})[0]
        out = InferOutput(name=self.output_name, shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=True)
        return InferResponse(model_name=self.name, infer_outputs=[out], response_id=payload.id)

if __name__ == "__main__":
    models = [OrtModel(name, path) for name, path in CONF["models"].items()]
    ModelServer(grpc_port=CONF["grpc_port"], http_port=CONF["http_port"]).start(models)
'''

# A custom MLServer runtime, as MLServer's docs write one.
MLSERVER_RUNTIME = r'''
import json, os
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri

class OrtRuntime(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ["IDN_ORT_THREADS"])
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(await get_model_uri(self._settings), opts,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        y = self.session.run([self.output_name], {self.input_name: x})[0]
        return InferenceResponse(model_name=self.name, id=payload.id,
                                 outputs=[NumpyCodec.encode_output(self.output_name, y)])
'''

# Triton via PyTriton, as PyTriton's docs write it: a @batch function bound with the
# default ModelConfig (batching on, DynamicBatcher()).
TRITON_SERVER = r'''
import json, os, pathlib, signal
import numpy as np, onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

CONF = json.loads(os.environ["IDN_PEER_CONF"])

def make_infer(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = CONF["ort_threads"]
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    inp, out = session.get_inputs()[0].name, session.get_outputs()[0].name

    @batch
    def infer(input):
        return {out: session.run([out], {inp: input})[0]}
    return infer

config = TritonConfig(grpc_address="127.0.0.1", grpc_port=CONF["grpc_port"], http_address="127.0.0.1",
                      http_port=CONF["http_port"], metrics_port=CONF["metrics_port"], allow_metrics=False,
                      log_file=pathlib.Path(CONF["log_file"]), log_verbose=0)
def _stop(*_):
    raise KeyboardInterrupt   # SIGTERM: leave the `with` so PyTriton stops Triton and cleans up

signal.signal(signal.SIGTERM, _stop)
# the workspace (a copy of tritonserver, the model store) lives in the run's temp dir
with Triton(config=config, workspace=CONF["workspace"]) as triton:
    for name, path in CONF["models"].items():
        n_in = int(CONF["dims"][name][0]); n_out = int(CONF["dims"][name][1])
        mc = ModelConfig() if CONF["max_batch"] is None else ModelConfig(max_batch_size=CONF["max_batch"])
        triton.bind(model_name=name, infer_func=make_infer(path),
                    inputs=[Tensor(name="input", dtype=np.float32, shape=(n_in,))],
                    outputs=[Tensor(name="probabilities", dtype=np.float32, shape=(n_out,))],
                    config=mc, strict=False)
    print("triton ready", flush=True)
    triton.serve()
'''


# ---------------------------------------------------------------- venvs


def ensure_venv(root: Path, name: str, requirements: list[str], log) -> tuple[Path | None, str]:
    """Create (once) a venv with these pinned requirements; (python, '') or (None, why)."""
    tag = hashlib.sha256(" ".join(requirements).encode()).hexdigest()[:8]
    d = root / f"{name}-py{sys.version_info.major}{sys.version_info.minor}-{tag}"
    py = d / "bin" / "python"
    stamp = d / ".idn-peers-ready"
    if stamp.exists() and py.exists():
        return py, ""
    log(f"installing {name}: {' '.join(requirements)} into {d} (once; a few minutes) ...")
    shutil.rmtree(d, ignore_errors=True)
    d.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    install_log = d.parent / f"{d.name}.install.log"
    with install_log.open("w") as out:
        for cmd in ([sys.executable, "-m", "venv", str(d)],
                    [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--upgrade", "pip"],
                    [str(py), "-m", "pip", "install", "--disable-pip-version-check", *requirements]):
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
            if rc != 0:
                tail = install_log.read_text().strip().splitlines()[-8:]
                return None, f"`{' '.join(cmd[-len(requirements):])}` failed (exit {rc}); see {install_log}: " + \
                    " | ".join(tail)
    stamp.write_text(" ".join(requirements) + "\n")
    log(f"  {name} installed in {time.monotonic() - t0:.0f} s")
    return py, ""


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    address: str = ""
    proc: subprocess.Popen | None = None
    log: Path | None = None
    missing: str = ""           # why it is not measured
    config: dict = field(default_factory=dict)

    def log_tail(self, n: int = 12) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except Exception:
            return ""


def spawn(cmd: list[str], log: Path, cpus: set[int], env: dict | None = None, cwd: Path | None = None):
    out = log.open("w")
    out.write(f"$ {' '.join(map(str, cmd))}\n")
    out.flush()
    return subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=cwd,
                            preexec_fn=lambda: os.sched_setaffinity(0, cpus), start_new_session=True)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)       # its own session: the server and its children
        proc.wait(15)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


# ---------------------------------------------------------------- the driver (stock stubs only)


def stubs():
    # tritonclient's generated OIP v2 stubs; idn.protos must never be imported here.
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    assert "idn.protos.grpc_service_pb2" not in sys.modules
    return service_pb2, service_pb2_grpc


@dataclass
class Workload:
    """Per model: distinct requests and their expected answers (ORT in-process)."""
    model: str
    requests: list
    expected: list            # np arrays [1, C]
    expected_bytes: list      # raw little-endian bytes of each
    output_name: str
    request_bytes: int


def make_workload(pb, spec: ModelSpec, path: Path, threads: int) -> Workload:
    s = ort_session(path, threads)
    rng = np.random.default_rng(1)
    reqs, exp, expb = [], [], []
    for _ in range(N_INPUTS):
        x = rng.standard_normal((1, spec.dims[0])).astype(np.float32)
        y = s.run(None, {"input": x})[0].astype(np.float32)
        r = pb.ModelInferRequest(model_name=spec.name)
        t = r.inputs.add()
        t.name, t.datatype = "input", "FP32"
        t.shape.extend(x.shape)
        r.raw_input_contents.append(x.tobytes())
        reqs.append(r)
        exp.append(y)
        expb.append(y.tobytes())
    return Workload(spec.name, reqs, exp, expb, "probabilities", len(reqs[0].SerializeToString()))


def echo_answers(pb, loads: dict[str, Workload]) -> dict[bytes, bytes]:
    answers = {}
    for w in loads.values():
        for r, y in zip(w.requests, w.expected):
            resp = pb.ModelInferResponse(model_name=w.model, model_version="1")
            o = resp.outputs.add()
            o.name, o.datatype = w.output_name, "FP32"
            o.shape.extend(y.shape)
            resp.raw_output_contents.append(y.tobytes())
            answers[r.SerializeToString()] = resp.SerializeToString()
    return answers


def check(resp, w: Workload, i: int) -> str:
    """'' when the response carries the right answer for input i, else what is wrong."""
    if not resp.outputs:
        return "no outputs"
    o = resp.outputs[0]
    if o.name != w.output_name or o.datatype != "FP32" or list(o.shape) != list(w.expected[i].shape):
        return f"output {o.name} {o.datatype} {list(o.shape)}"
    if resp.raw_output_contents:
        b = resp.raw_output_contents[0]
        if b == w.expected_bytes[i]:
            return ""
        y = np.frombuffer(b, np.float32)
    else:
        y = np.asarray(o.contents.fp32_contents, np.float32)
    if y.size != w.expected[i].size or not np.allclose(y.reshape(w.expected[i].shape), w.expected[i],
                                                        rtol=1e-4, atol=1e-6):
        return "wrong values"
    return ""


async def wait_ready(pb, pbg, address: str, models: list[str], proc, timeout: float) -> str:
    import grpc

    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as ch:
        stub = pbg.GRPCInferenceServiceStub(ch)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                return f"exited with status {proc.returncode}"
            try:
                if (await stub.ServerReady(pb.ServerReadyRequest(), timeout=2)).ready and all(
                        [(await stub.ModelReady(pb.ModelReadyRequest(name=m), timeout=2)).ready for m in models]):
                    return ""
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.3)
    return f"not ready after {timeout:.0f} s"


async def measure(pbg, address: str, w: Workload, k: int, duration: float, warmup: float,
                  max_requests: int = 400_000) -> dict:
    """Closed loop, k requests in flight, for warmup + duration seconds (bounded in count too)."""
    import grpc

    lat: list[float] = []
    counts = collections.Counter()
    first_error: list[str] = []
    async with grpc.aio.insecure_channel(address) as ch:
        stub = pbg.GRPCInferenceServiceStub(ch)
        call = stub.ModelInfer
        n = len(w.requests)
        t_start = time.perf_counter() + warmup
        t_end = t_start + duration
        sent = 0

        async def worker(wid: int) -> None:
            nonlocal sent
            i = wid
            while sent < max_requests:
                t0 = time.perf_counter()
                if t0 >= t_end:
                    return
                idx = i % n
                i += k
                sent += 1
                try:
                    resp = await call(w.requests[idx], timeout=10)
                except grpc.aio.AioRpcError as e:
                    counts["error"] += 1
                    if not first_error:
                        first_error.append(f"{e.code().name}: {e.details()}")
                    if counts["error"] > 50:
                        return
                    continue
                t1 = time.perf_counter()
                counts["done"] += 1
                if t_start <= t1 < t_end:
                    counts["in_window"] += 1
                bad = check(resp, w, idx)
                if bad:
                    counts["wrong"] += 1
                    if not first_error:
                        first_error.append(bad)
                if t0 >= t_start:
                    lat.append(t1 - t0)
                    counts["ok" if not bad else "measured_wrong"] += 1

        await asyncio.gather(*(worker(j) for j in range(k)))
        elapsed = min(time.perf_counter(), t_end) - t_start
    a = np.asarray(lat) * 1e6 if lat else np.asarray([np.nan])
    # throughput: answers completed inside the measured window, over its length
    return {"k": k, "n": len(lat), "rps": counts["in_window"] / elapsed if elapsed > 0 else 0.0,
            "p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)),
            "errors": counts["error"], "wrong": counts["wrong"], "first_error": first_error[0] if first_error else "",
            "answered": counts["done"],
            "lat_us": a.round(1).tolist() if k == 1 else None}


def cpu_busy_ticks(cpus: set[int]) -> int:
    """Busy clock ticks (everything but idle and iowait) of these CPUs since boot."""
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0].startswith("cpu") and parts[0][3:].isdigit() and int(parts[0][3:]) in cpus:
                v = list(map(int, parts[1:8]))
                total += sum(v) - v[3] - v[4]
    return total


def tree_ticks(root: int) -> int:
    """CPU ticks (user + system) used so far by a process and its live descendants (PyTriton starts
    tritonserver in a session of its own, so the process group is not enough)."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        procs[int(d)] = (int(st[1]), int(st[11]) + int(st[12]))      # ppid, utime + stime
    children = collections.defaultdict(list)
    for pid, (ppid, _) in procs.items():
        children[ppid].append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += procs.get(pid, (0, 0))[1]
        todo += children.get(pid, [])
    return total


RETRY_BUDGET = {"left_s": 150.0}     # extra seconds a whole run may spend on repeated measurements


def clean_measure(pbg, server: Server, w: Workload, k: int, duration: float, warmup: float, server_cpus: set[int],
                  driver_cpus: set[int], max_foreign: float, log, tries: int = 3) -> dict:
    """measure(), and how much of the servers' CPUs went to processes other than this server (and
    this driver, when they share CPUs): other engineers' jobs on a shared machine. A measurement
    with more than max_foreign of a CPU taken is repeated (up to `tries` in all); the cleanest counts."""
    hz = os.sysconf("SC_CLK_TCK")
    shared = bool(server_cpus & driver_cpus)
    best = None
    for attempt in range(tries):
        me0, cpu0, srv0, t0 = os.times(), cpu_busy_ticks(server_cpus), tree_ticks(server.proc.pid), time.monotonic()
        res = asyncio.run(measure(pbg, server.address, w, k, duration, warmup))
        me1, cpu1, srv1, t1 = os.times(), cpu_busy_ticks(server_cpus), tree_ticks(server.proc.pid), time.monotonic()
        mine = (srv1 - srv0) / hz + ((me1.user + me1.system - me0.user - me0.system) if shared else 0.0)
        res["foreign_cpu"] = round(max(0.0, (cpu1 - cpu0) / hz - mine) / (t1 - t0) / len(server_cpus), 3)
        # the server's own CPU time per answered request (warm-up included): robust to sharing the CPU
        res["server_cpu_us_per_request"] = round((srv1 - srv0) / hz * 1e6 / max(1, res["answered"]), 1)
        res["attempts"] = attempt + 1
        if best is None or res["foreign_cpu"] < best["foreign_cpu"]:
            best = res
        if res["foreign_cpu"] <= max_foreign or RETRY_BUDGET["left_s"] <= 0:
            break
        RETRY_BUDGET["left_s"] -= t1 - t0
        log(f"  [dim]{server.name} {w.model} k={k}: {100 * res['foreign_cpu']:.0f}% of the servers' CPU went to "
            f"other processes; measuring again[/dim]")
    return best


# ---------------------------------------------------------------- orchestration


def cpu_plan(cores: int) -> tuple[set[int], set[int], str]:
    cpus = sorted(os.sched_getaffinity(0))
    cores = max(1, min(cores, len(cpus)))
    servers = set(cpus[-cores:])
    rest = set(cpus[:-cores])
    if rest:
        return servers, rest, f"servers on CPU {sorted(servers)}, driver on CPU {sorted(rest)}"
    return servers, set(cpus), f"servers on CPU {sorted(servers)}, driver shares them (only {len(cpus)} CPUs)"


def start_servers(args, names: list[str], paths: dict[str, Path], loads: dict[str, Workload], work: Path,
                  logs: Path, server_cpus: set[int], log) -> dict[str, Server]:
    pb, pbg = stubs()
    import onnxruntime as ort

    servers: dict[str, Server] = {}
    models = {m: str(p) for m, p in paths.items()}
    dims = {m: [MODELS[m].dims[0], MODELS[m].dims[-1]] for m in paths}
    for name in names:
        s = Server(name, log=logs / f"{name}.log")
        servers[name] = s
        port = free_port()
        s.address = f"127.0.0.1:{port}"
        try:
            if name == "echo":
                pairs = work / "echo-answers.pkl"
                pairs.write_bytes(pickle.dumps(echo_answers(pb, loads)))
                s.proc = spawn([sys.executable, "-c", ECHO_SERVER, port, pairs], s.log, server_cpus)
                s.config = {"impl": "grpc.aio generic handler, request bytes -> pre-computed response bytes"}
            elif name in ("idn", *OPTIONAL):
                idn = ROOT / ".venv" / "bin" / "idn"
                idn = idn if idn.exists() else Path(shutil.which("idn") or "idn")
                model_args = sum((["--model", f"{m}={p}"] for m, p in models.items()), [])
                cmd = [idn, "node", "--listen", s.address, *model_args, *OPTIONAL.get(name, [])]
                if args.ort_threads != 1:
                    cmd += ["--intra-op-threads", args.ort_threads]
                s.proc = spawn(cmd, s.log, server_cpus)
                s.config = {"command": " ".join(map(str, cmd)),
                            "settings": ("defaults" if name == "idn" else " ".join(OPTIONAL[name]))
                            + ("" if args.ort_threads == 1 else f", --intra-op-threads {args.ort_threads}")}
            else:
                py, why = ensure_venv(args.venvs, name, PEERS[name]["requirements"]
                                      + [f"onnxruntime=={ort.__version__}"], log)
                if py is None:
                    s.missing = f"install failed: {why}"
                    log(f"[red]{name}: {s.missing}[/red]")
                    continue
                s.config = {"venv": str(py.parent.parent),
                            "requirements": PEERS[name]["requirements"] + [f"onnxruntime=={ort.__version__}"]}
                if name == "kserve":
                    conf = {"models": models, "grpc_port": port, "http_port": free_port(),
                            "ort_threads": args.ort_threads}
                    script = work / "kserve_server.py"
                    script.write_text(KSERVE_SERVER)
                    s.proc = spawn([py, script], s.log, server_cpus, env={"IDN_PEER_CONF": json.dumps(conf)},
                                   cwd=work)
                    s.config["settings"] = "ModelServer defaults (1 worker, latency logging on), sync predict()"
                elif name == "mlserver":
                    repo = work / "mlserver-repo"
                    for m, p in models.items():
                        (repo / m).mkdir(parents=True, exist_ok=True)
                        (repo / m / "model-settings.json").write_text(json.dumps(
                            {"name": m, "implementation": "idn_ort_runtime.OrtRuntime", "parameters": {"uri": p}}))
                    (work / "mlserver-code").mkdir(exist_ok=True)
                    (work / "mlserver-code" / "idn_ort_runtime.py").write_text(MLSERVER_RUNTIME)
                    env = {"MLSERVER_HOST": "127.0.0.1", "MLSERVER_GRPC_PORT": str(port),
                           "MLSERVER_HTTP_PORT": str(free_port()), "MLSERVER_METRICS_PORT": str(free_port()),
                           "IDN_ORT_THREADS": str(args.ort_threads), "PYTHONPATH": str(work / "mlserver-code")}
                    if args.mlserver_parallel_workers is not None:
                        env["MLSERVER_PARALLEL_WORKERS"] = str(args.mlserver_parallel_workers)
                    s.proc = spawn([py.parent / "mlserver", "start", repo], s.log, server_cpus, env=env, cwd=work)
                    s.config["settings"] = (
                        "MLServer defaults (parallel_workers=1: inference in one worker process; no adaptive "
                        "batching)" if args.mlserver_parallel_workers is None else
                        f"parallel_workers={args.mlserver_parallel_workers}, no adaptive batching")
                elif name == "triton":
                    conf = {"models": models, "dims": dims, "grpc_port": port, "http_port": free_port(),
                            "metrics_port": free_port(), "ort_threads": args.ort_threads,
                            "max_batch": args.triton_max_batch, "log_file": str(logs / "tritonserver.log"),
                            "workspace": str(work / "pytriton-workspace")}
                    script = work / "triton_server.py"
                    script.write_text(TRITON_SERVER)
                    # Triton's Python-backend stub embeds libpython3.X.so from the loader's path
                    # (here Debian's 3.11.2) but imports this interpreter's stdlib (3.11.7):
                    # the mismatch breaks multiprocessing. Point it at the interpreter's own.
                    libdir = subprocess.check_output(
                        [py, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"], text=True).strip()
                    ld = ":".join(x for x in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if x)
                    s.proc = spawn([py, script], s.log, server_cpus,
                                   env={"IDN_PEER_CONF": json.dumps(conf), "LD_LIBRARY_PATH": ld}, cwd=work)
                    s.config["settings"] = ("pytriton ModelConfig() defaults: batching on, max_batch_size 4, "
                                            "DynamicBatcher(max_queue_delay_microseconds=0)"
                                            if args.triton_max_batch is None else
                                            f"ModelConfig(max_batch_size={args.triton_max_batch}), dynamic batching")
        except Exception as e:  # noqa: BLE001 - report and go on with the others
            s.missing = f"could not start: {e}"
            log(f"[red]{name}: {s.missing}[/red]")
    for name, s in servers.items():
        if s.missing:
            continue
        why = asyncio.run(wait_ready(pb, pbg, s.address, list(paths), s.proc, args.start_timeout))
        if why:
            s.missing = f"did not start: {why}; log {s.log}:\n{textwrap.indent(s.log_tail(), '    ')}"
            log(f"[red]{name}: {s.missing}[/red]")
            stop(s.proc)
        else:
            log(f"  {name} ready on {s.address} (pid {s.proc.pid})")
    return servers


def profile_node(args, server: Server, w: Workload, pbg, seconds: float, out: Path, log) -> dict:
    """Profile the node while the driver keeps 32 requests in flight, with two samplers at once:
    py-spy (Python stacks per thread, --nonblocking so the node is never paused; idle threads
    are not sampled) and, where it exists, perf (native: which library and symbol burns the CPU,
    per thread; Python 3.11 frames show as libpython)."""
    py, why = ensure_venv(args.venvs, "tools", [PY_SPY], log)
    if py is None:
        return {"error": f"py-spy: {why}"}
    raw = out.with_suffix(".pyspy.txt")
    perf_data = out.with_suffix(".perf.data")
    rate = 250
    spy = subprocess.Popen([str(py.parent / "py-spy"), "record", "--pid", str(server.proc.pid), "--duration",
                            str(int(seconds)), "--rate", str(rate), "--format", "raw", "--threads", "--nonblocking",
                            "--output", str(raw)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    perf = None
    if shutil.which("perf"):
        perf = subprocess.Popen(["perf", "record", "-F", "999", "-p", str(server.proc.pid), "-o", str(perf_data),
                                 "--", "sleep", str(int(seconds))], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    time.sleep(0.5)
    m = clean_measure(pbg, server, w, 32, seconds - 1.0, 0.3, args.server_cpus, args.driver_cpus, 1.0, log, tries=1)
    txt, _ = spy.communicate(timeout=seconds + 60)
    if spy.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed ({spy.returncode}): {txt.strip()[-400:]}"}
    summary = summarise_pyspy(raw.read_text(), rate * int(seconds))
    summary["server"] = LABELS[server.name]
    summary["load"] = {k: round(m[k], 1) for k in ("rps", "p50_us", "p99_us")} | {
        "errors": m["errors"], "wrong": m["wrong"], "other processes' share of the servers' CPUs": m["foreign_cpu"],
        "server CPU us per request": m["server_cpu_us_per_request"]}
    if perf is not None:
        ptxt, _ = perf.communicate(timeout=seconds + 60)
        summary["perf"] = summarise_perf(perf_data, summary["thread_names"]) if perf.returncode == 0 else \
            {"error": ptxt.strip()[-300:]}
    out.write_text(render_profile(summary, w.model, seconds))
    return summary


# Where a main-thread (event loop) sample is, by the innermost frame that matches; checked
# from the leaf up, so the most specific place wins.
PY_PLACES = [
    ("ORT session.run", r"onnxruntime_inference_collection|runtime\.py.*\b(run_sync|_execute)\b"),
    ("idn: protobuf -> request (grpc_service.request_from_proto)", r"\brequest_from_proto\b"),
    ("idn: response -> protobuf (grpc_service)", r"\b(response_to_proto|set_param|encode\w*)\b.*grpc_service"),
    ("idn: data plane (resolve, validate, decode, stats)", r"idn/node/(dataplane|routing|tensors|stats|runtime|"
                                                          r"batcher|metrics|repository)\.py|^\w+ \((dataplane|routing|"
                                                          r"tensors|stats|runtime|batcher|metrics|repository)\.py"),
    ("idn: servicer (grpc_service.ModelInfer)", r"grpc_service\.py"),
    ("native code run by a loop callback (grpc.aio's cygrpc, C asyncio)", r"^_run \(asyncio/events\.py"),
    ("asyncio (Python)", r"asyncio/"),
]


def _place(frames: list[str]) -> str:
    if frames and re.match(r"_run \(asyncio/events\.py", frames[-1]):
        return PY_PLACES[-2][0]
    for f in reversed(frames):
        for name, rx in PY_PLACES:
            if re.search(rx, f):
                return name
    return "other Python"


def summarise_pyspy(collapsed: str, ticks: int) -> dict:
    """py-spy raw stacks -> busy share per thread, and where the event loop thread's samples are."""
    threads = collections.Counter()
    names: dict[str, str] = {}
    places = collections.Counter()
    leaf = collections.Counter()
    for line in collapsed.splitlines():
        stack, _, cnt = line.rpartition(" ")
        if not stack or not cnt.isdigit():
            continue
        n = int(cnt)
        frames = stack.split(";")
        mt = re.match(r"thread \((\d+)\): (.*)", frames[0])
        tid, tname = (mt.group(1), mt.group(2)) if mt else (frames[0], frames[0])
        names[tid] = tname
        threads[tid] += n
        if tname == "MainThread":
            places[_place(frames[1:])] += n
            leaf[frames[-1]] += n
    main = sum(places.values()) or 1
    return {"ticks": ticks, "thread_names": names,
            "busy_pct_of_a_core": {f"{names[t]} ({t})": round(100.0 * c / ticks, 1) for t, c in threads.most_common()},
            "main_thread_places_pct": {k: round(100.0 * v / main, 1) for k, v in places.most_common()},
            "main_thread_top_leaf_pct": [(f, round(100.0 * c / main, 1)) for f, c in leaf.most_common(15)]}


def _dso_group(dso: str) -> str:
    for key, group in (("cygrpc", "gRPC (cygrpc: C-core + Cython)"), ("libpython", "CPython interpreter"),
                       ("kernel", "kernel (syscalls, TCP loopback, futex)"), ("onnxruntime", "ONNX Runtime"),
                       ("_message", "protobuf (upb)"), ("libc.so", "libc (malloc, memcpy, locks)"),
                       ("_multiarray", "numpy"), ("libstdc++", "libstdc++"), ("libgomp", "OpenMP")):
        if key in dso:
            return group
    return dso


def summarise_perf(data: Path, thread_names: dict[str, str]) -> dict:
    txt = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "pid,dso",
                          "--percent-limit", "0.1"], capture_output=True, text=True).stdout
    by_thread: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in txt.splitlines():
        mt = re.match(r"\s*([\d.]+)%\s+(\d+):(\S*)\s+(.+?)\s*$", line)   # 'pid' is the thread id here
        if mt:
            pct, tid, comm, dso = float(mt.group(1)), mt.group(2), mt.group(3), mt.group(4)
            by_thread[f"{thread_names.get(tid, comm)} ({tid})"][_dso_group(dso)] += pct
    syms = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso,sym",
                           "--percent-limit", "0.7"], capture_output=True, text=True).stdout
    top = [re.sub(r"\s+", " ", ln.strip()) for ln in syms.splitlines() if re.match(r"\s*[\d.]+%", ln)][:25]
    return {"pct_of_node_samples_by_thread_and_library": {
        t: {k: round(v, 1) for k, v in c.most_common()} for t, c in sorted(by_thread.items(),
                                                                            key=lambda kv: -sum(kv[1].values()))},
            "top_symbols": top}


def render_profile(s: dict, model: str, seconds: float) -> str:
    lines = [f"{s.get('server', 'idn node')}, model {model}, 32 requests in flight for {seconds:.0f} s; "
             f"load meanwhile: {s['load']}",
             "", "py-spy (--nonblocking, 250 Hz): busy share of one core per thread (idle threads are not sampled):"]
    lines += [f"  {v:5.1f}%  {k}" for k, v in s["busy_pct_of_a_core"].items()]
    lines += ["", "py-spy: the event loop thread's busy samples, by innermost place (% of its samples):"]
    lines += [f"  {v:5.1f}%  {k}" for k, v in s["main_thread_places_pct"].items()]
    lines += ["", "py-spy: event loop thread, top leaf frames (native code shows in the Python frame that called it):"]
    lines += [f"  {v:5.1f}%  {k}" for k, v in s["main_thread_top_leaf_pct"]]
    p = s.get("perf")
    if p and "error" not in p:
        lines += ["", "perf (999 Hz, on-CPU samples of the node, % of all its samples) by thread and library:"]
        for t, libs in p["pct_of_node_samples_by_thread_and_library"].items():
            lines.append(f"  {sum(libs.values()):5.1f}%  {t}: " + ", ".join(f"{k} {v}" for k, v in libs.items()))
        lines += ["", "perf: top symbols (% of the node's samples):"] + [f"  {x}" for x in p["top_symbols"]]
    elif p:
        lines += ["", f"perf failed: {p['error']}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- report


def agg(rounds: list[dict], pooled_lat: list[float] | None = None) -> dict:
    rps = [r["rps"] for r in rounds]
    out = {"rps": statistics.median(rps), "rps_min": min(rps), "rps_max": max(rps),
           "p50_us": statistics.median(r["p50_us"] for r in rounds),
           "p99_us": statistics.median(r["p99_us"] for r in rounds),
           "p50_us_rounds": [round(r["p50_us"], 1) for r in rounds],
           "rps_rounds": [round(r["rps"], 1) for r in rounds],
           "errors": sum(r["errors"] for r in rounds), "wrong": sum(r["wrong"] for r in rounds),
           "n": sum(r["n"] for r in rounds),
           "foreign_cpu_max": max(r.get("foreign_cpu", 0.0) for r in rounds),
           "server_cpu_us_per_request": statistics.median(r.get("server_cpu_us_per_request", float("nan"))
                                                          for r in rounds),
           "first_error": next((r["first_error"] for r in rounds if r["first_error"]), "")}
    if pooled_lat:
        a = np.asarray(pooled_lat)
        out["p50_us"] = float(np.percentile(a, 50))
        out["p99_us"] = float(np.percentile(a, 99))
    return out


def ratios(res: dict, peers_present: list[str], n_rounds: int) -> dict:
    """The issue's targets, from the medians and per round (side by side in that round)."""
    out = {}
    m = res["measured"]

    def per_round(fn):
        vals = []
        for r in range(n_rounds):
            try:
                vals.append(fn(r))
            except (KeyError, IndexError, ValueError, ZeroDivisionError):
                pass
        return [round(v, 3) for v in vals]

    for model in res["models"]:
        if "idn" not in m or not peers_present:
            break
        idn = m["idn"][model]
        best_lat = min(peers_present, key=lambda p: m[p][model]["1"]["p50_us"])
        best_rps = max(peers_present, key=lambda p: m[p][model]["32"]["rps"])
        out[f"{model}: idn p50 at 1 / best peer's"] = {
            "value": idn["1"]["p50_us"] / m[best_lat][model]["1"]["p50_us"], "best_peer": best_lat,
            "target": "<= 1", "met": idn["1"]["p50_us"] <= m[best_lat][model]["1"]["p50_us"],
            "per_round": per_round(lambda r: idn["1"]["p50_us_rounds"][r]  # noqa: B023 (called at once)
                                   / min(m[p][model]["1"]["p50_us_rounds"][r] for p in peers_present))}  # noqa: B023
        cheapest = min(peers_present, key=lambda p: m[p][model]["32"]["server_cpu_us_per_request"])
        out[f"{model}: idn req/s at 32 / best peer's"] = {
            "value": idn["32"]["rps"] / m[best_rps][model]["32"]["rps"], "best_peer": best_rps,
            # the same comparison from CPU time per request (robust to a shared CPU): a server that
            # saturates its CPU answers 1 / (CPU per request) requests per CPU-second
            "value_from_cpu_per_request": m[cheapest][model]["32"]["server_cpu_us_per_request"]
            / idn["32"]["server_cpu_us_per_request"], "cheapest_peer": cheapest,
            "target": ">= 1.5", "met": idn["32"]["rps"] >= 1.5 * m[best_rps][model]["32"]["rps"],
            "per_round": per_round(lambda r: idn["32"]["rps_rounds"][r]  # noqa: B023 (called at once)
                                   / max(m[p][model]["32"]["rps_rounds"][r] for p in peers_present))}  # noqa: B023
    if "idn" in m and "echo" in m and "tiny" in res["models"]:
        idn, echo = m["idn"]["tiny"]["32"], m["echo"]["tiny"]["32"]
        out["tiny: idn req/s at 32 / echo's"] = {
            "value": idn["rps"] / echo["rps"], "target": ">= 0.8", "met": idn["rps"] >= 0.8 * echo["rps"],
            "value_from_cpu_per_request": echo["server_cpu_us_per_request"] / idn["server_cpu_us_per_request"],
            "per_round": per_round(lambda r: idn["rps_rounds"][r] / echo["rps_rounds"][r])}
    return out


def issue_table(res: dict) -> str:
    """The issue's table, in Markdown."""
    rows = ["| server | tiny MLP: p50 µs at 1 in flight | tiny: req/s at 32 in flight | "
            "heavy MLP: p50 µs at 1 in flight | heavy: req/s at 32 in flight |", "|---|---:|---:|---:|---:|"]
    for name in res["servers"]:
        if name in res["missing"]:
            rows.append(f"| {LABELS[name]} | missing | | | |")
            continue
        cells = []
        for model in ("tiny", "heavy"):
            d = res["measured"][name].get(model)
            cells += ([f"{d['1']['p50_us']:,.0f}", f"{d['32']['rps']:,.0f} ({d['32']['rps_min']:,.0f}-"
                       f"{d['32']['rps_max']:,.0f})"] if d else ["-", "-"])
        rows.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:  # noqa: C901 - one straight-line run
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, short measurements (~1 min)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds, server order rotated each (default 3)")
    ap.add_argument("--duration", type=float, default=None, help="measured seconds per (server, model, level)")
    ap.add_argument("--warmup", type=float, default=None, help="unmeasured seconds before each measurement")
    ap.add_argument("--servers", default=",".join(SERVERS), help=f"subset of {','.join(SERVERS)}")
    ap.add_argument("--models", default="tiny,heavy")
    ap.add_argument("--cores", type=int, default=1, help="CPUs the servers may use (the last N; default 1)")
    ap.add_argument("--ort-threads", type=int, default=1, help="ONNX Runtime intra-op threads in every server")
    ap.add_argument("--triton-max-batch", type=int, default=None,
                    help="pytriton max_batch_size (default: pytriton's default ModelConfig, 4)")
    ap.add_argument("--mlserver-parallel-workers", type=int, default=None,
                    help="MLServer parallel_workers (default: MLServer's, 1; 0 runs inference in the server process)")
    ap.add_argument("--profile", action="store_true", help="py-spy the idn node at 32 in flight, each model")
    ap.add_argument("--profile-only", action="store_true", help="only the profile (idn node alone)")
    ap.add_argument("--profile-seconds", type=float, default=10.0)
    ap.add_argument("--venvs", type=Path, default=Path(os.environ.get("IDN_PEERS_VENVS",
                                                                       Path.home() / ".cache" / "idn-peers")))
    ap.add_argument("--max-foreign", type=float, default=0.10,
                    help="repeat a measurement (up to 3 tries) when other processes took more than this share "
                         "of the servers' CPUs (a shared machine); the cleanest try counts")
    ap.add_argument("--start-timeout", type=float, default=120.0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "peers.json")
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (1.0 if args.quick else 3.0)
    warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 0.7)
    names = [s for s in [*SERVERS, *OPTIONAL] if s in args.servers.split(",")]
    if args.profile_only:
        names, args.profile = ["echo", "idn"], True
    unknown = set(args.servers.split(",")) - set(SERVERS) - set(OPTIONAL)
    if unknown:
        raise SystemExit(f"--servers: unknown {sorted(unknown)}; choose from {SERVERS}")
    model_names = [m for m in args.models.split(",") if m]
    if set(model_names) - set(MODELS):
        raise SystemExit(f"--models: choose from {list(MODELS)}")

    from rich.console import Console
    from rich.table import Table

    con = Console(width=200, highlight=False)
    log = con.print
    pb, pbg = stubs()
    import onnxruntime as ort

    server_cpus, driver_cpus, pin_note = cpu_plan(args.cores)
    args.server_cpus, args.driver_cpus = server_cpus, driver_cpus
    RETRY_BUDGET["left_s"] = 20.0 if args.quick else 150.0
    results_dir = args.out.parent
    logs = results_dir / "peers-logs"
    logs.mkdir(parents=True, exist_ok=True)
    cache = args.venvs / "models"
    paths = {}
    for m in model_names:
        spec = MODELS[m]
        p = cache / f"{m}-{'-'.join(map(str, spec.dims))}-seed0.onnx"
        if not p.exists():
            log(f"building model {m}: {spec.what} -> {p}")
            build_mlp(spec.dims, p)
        paths[m] = p
    loads = {m: make_workload(pb, MODELS[m], p, args.ort_threads) for m, p in paths.items()}
    os.sched_setaffinity(0, server_cpus)      # the compute floor on the servers' CPUs
    floors = {m: ort_floor_us(p, args.ort_threads, 3000 if m == "tiny" else 300) for m, p in paths.items()}
    os.sched_setaffinity(0, driver_cpus)
    log(f"{pin_note}; ONNX Runtime {ort.__version__}, {args.ort_threads} intra-op thread(s) in every server")
    for m in model_names:
        log(f"  model {m}: {MODELS[m].what}, request {loads[m].request_bytes} B, "
            f"ORT in-process batch 1 p50 {floors[m]['p50_us']:.1f} us")

    work = Path(tempfile.mkdtemp(prefix="idn-peers-"))
    t_run = time.monotonic()
    servers = start_servers(args, names, paths, loads, work, logs, server_cpus, log)
    live = [n for n, s in servers.items() if not s.missing]
    raw: dict = {n: {m: {str(k): [] for k in LEVELS} for m in model_names} for n in live}
    lat1: dict = {n: {m: [] for m in model_names} for n in live}
    profiles = {}
    try:
        if not args.profile_only:
            for r in range(rounds):
                order = live[r % len(live):] + live[:r % len(live)] if live else []
                log(f"round {r + 1}/{rounds}: {', '.join(order)}")
                for n in order:
                    for m in model_names:
                        for k in LEVELS:
                            res = clean_measure(pbg, servers[n], loads[m], k, duration, warmup, server_cpus,
                                                driver_cpus, args.max_foreign, log)
                            lat = res.pop("lat_us")
                            if lat is not None:
                                lat1[n][m] += lat
                            raw[n][m][str(k)].append(res)
                            if res["errors"] or res["wrong"]:
                                log(f"[yellow]  {n} {m} k={k}: {res['errors']} errors, {res['wrong']} wrong "
                                    f"answers ({res['first_error']})[/yellow]")
                    if servers[n].proc.poll() is not None:
                        log(f"[red]{n} died: {servers[n].log_tail()}[/red]")
        if args.profile and "idn" in live:
            # the node on each model, and the echo server (the transport floor) on the tiny one as the baseline
            todo = [("idn", m) for m in model_names]
            todo += [("echo", "tiny")] if "echo" in live and "tiny" in loads else []
            for n, m in todo:
                key = m if n == "idn" else f"{n}-{m}"
                out = results_dir / f"peers-profile-{key}.txt"
                log(f"profiling {n}, {m}, 32 in flight, {args.profile_seconds:.0f} s -> {out}")
                profiles[key] = profile_node(args, servers[n], loads[m], pbg, args.profile_seconds, out, log)
                if "error" in profiles[key]:
                    log(f"[red]  {profiles[key]['error']}[/red]")
    finally:
        for s in servers.values():
            stop(s.proc)
        shutil.rmtree(work, ignore_errors=True)

    res = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "pinning": pin_note, "ort_version": ort.__version__, "ort_threads": args.ort_threads,
           "rounds": rounds, "duration_s": duration, "warmup_s": warmup, "levels": list(LEVELS),
           "driver": "this process: tritonclient service_pb2 stubs over grpc.aio, closed loop, "
                     f"{N_INPUTS} distinct inputs, every answer checked against ORT in-process",
           "models": {m: {"what": MODELS[m].what, "dims": list(MODELS[m].dims), "request_bytes": loads[m].request_bytes,
                          "ort_inprocess_batch1": floors[m]} for m in model_names},
           "servers": names, "labels": {n: LABELS[n] for n in names},
           "config": {n: s.config for n, s in servers.items()},
           "missing": {n: s.missing for n, s in servers.items() if s.missing},
           "measured": {n: {m: {k: agg(v, lat1[n][m] if k == "1" else None) for k, v in raw[n][m].items()}
                            for m in model_names} for n in live if not args.profile_only},
           "wall_s": round(time.monotonic() - t_run, 1)}
    peers_present = [p for p in PEERS if p in res["measured"]]
    res["ratios"] = ratios(res, peers_present, rounds) if not args.profile_only else {}
    if profiles:
        res["profile"] = profiles

    if res["measured"]:
        for m in model_names:
            t = Table(title=f"{m}: {MODELS[m].what}, {loads[m].request_bytes} B request; {rounds} round(s) x "
                            f"{duration:g} s per level; {pin_note}")
            t.add_column("server")
            for c in ("p50 µs @1", "p99 µs @1", "req/s @1", "req/s @8", "p99 µs @8", "req/s @32",
                      "(min-max)", "p99 µs @32", "CPU µs/req @32", "bad", "others' CPU"):
                t.add_column(c, justify="right")
            t.add_row("ORT in-process (compute floor)", f"{floors[m]['p50_us']:.1f}", f"{floors[m]['p99_us']:.1f}",
                      *[""] * 9)
            for n in names:
                if n in res["missing"]:
                    t.add_row(LABELS[n], "[red]missing[/red]", *[""] * 10)
                    continue
                d = res["measured"][n][m]
                bad = sum(d[k]["errors"] + d[k]["wrong"] for k in d)
                t.add_row(LABELS[n], f"{d['1']['p50_us']:,.0f}", f"{d['1']['p99_us']:,.0f}", f"{d['1']['rps']:,.0f}",
                          f"{d['8']['rps']:,.0f}", f"{d['8']['p99_us']:,.0f}", f"{d['32']['rps']:,.0f}",
                          f"{d['32']['rps_min']:,.0f}-{d['32']['rps_max']:,.0f}", f"{d['32']['p99_us']:,.0f}",
                          f"{d['32']['server_cpu_us_per_request']:,.0f}",
                          "0" if not bad else f"[red]{bad}[/red]",
                          f"{100 * max(d[k]['foreign_cpu_max'] for k in d):.0f}%")
            con.print(t)
        res["issue_table_md"] = issue_table(res)
        con.print(res["issue_table_md"])
        for k, v in res["ratios"].items():
            best = f" (best peer: {v['best_peer']})" if "best_peer" in v else ""
            cpu = (f"; from CPU µs per request: {v['value_from_cpu_per_request']:.2f}"
                   if "value_from_cpu_per_request" in v else "")
            con.print(f"{k}: {v['value']:.2f}{best}, per round {v['per_round']}{cpu}; target {v['target']}: "
                      f"{'met' if v['met'] else '[red]NOT met[/red]'}")
    for n, why in res["missing"].items():
        con.print(f"[red]missing: {LABELS[n]}: {why}[/red]")
    for m, p in profiles.items():
        if "error" not in p:
            con.print(f"profile {m}: busy % of a core: " + ", ".join(f"{t} {v}" for t, v in
                                                                 p["busy_pct_of_a_core"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    con.print(f"wrote {args.out} ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
