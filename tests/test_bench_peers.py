"""benchmarks/peers.py without the peers: the model builder, the answer check, and one tiny
run of the driver against the echo server and a real `idn node` (a few seconds).

The peers themselves (KServe, MLServer, PyTriton) are never installed here: that takes
minutes and the network. The driver runs in a subprocess because it imports
tritonclient's stubs, which clash with idn.protos (imported by conftest) in protobuf's
descriptor pool.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import peers  # noqa: E402


def test_builder_makes_valid_onnx_with_a_dynamic_batch(tmp_path):
    import onnx
    import onnxruntime as ort

    p = peers.build_mlp((8, 16, 16, 3), tmp_path / "m.onnx")
    onnx.checker.check_model(onnx.load(str(p)))
    s = peers.ort_session(p, 1)
    assert s.get_inputs()[0].shape[0] == "N" and s.get_inputs()[0].shape[1] == 8
    for n in (1, 5):
        y = s.run(None, {"input": np.ones((n, 8), np.float32)})[0]
        assert y.shape == (n, 3) and np.allclose(y.sum(axis=1), 1, atol=1e-5)  # softmax head
    again = peers.build_mlp((8, 16, 16, 3), tmp_path / "m2.onnx")
    assert p.read_bytes() == again.read_bytes()  # seeded: the same model every time
    assert isinstance(ort.__version__, str)


def _response(y: np.ndarray, raw: bool, name: str = "probabilities"):
    contents = SimpleNamespace(fp32_contents=[] if raw else y.ravel().tolist())
    out = SimpleNamespace(name=name, datatype="FP32", shape=list(y.shape), contents=contents)
    return SimpleNamespace(outputs=[out], raw_output_contents=[y.tobytes()] if raw else [])


def test_check_accepts_right_answers_raw_or_typed_and_rejects_garbage():
    y = np.array([[0.1, 0.2, 0.7]], np.float32)
    w = peers.Workload("m", [None], [y], [y.tobytes()], "probabilities", 0)
    assert peers.check(_response(y, raw=True), w, 0) == ""
    assert peers.check(_response(y, raw=False), w, 0) == ""
    assert peers.check(_response(y + np.float32(1e-9), raw=True), w, 0) == ""  # within tolerance
    assert peers.check(_response(y[:, ::-1].copy(), raw=True), w, 0) == "wrong values"
    assert peers.check(_response(np.zeros((1, 3), np.float32), raw=False), w, 0) == "wrong values"
    assert peers.check(_response(y, raw=True, name="logits"), w, 0).startswith("output")
    assert peers.check(SimpleNamespace(outputs=[], raw_output_contents=[]), w, 0) == "no outputs"


def test_profile_summary_from_py_spy_stacks():
    collapsed = "\n".join([
        "thread (10): MainThread;_run_once (asyncio/base_events.py:1922);_run (asyncio/events.py:80) 60",
        "thread (10): MainThread;_run (asyncio/events.py:80);ModelInfer (grpc_service.py:107);"
        "request_from_proto (grpc_service.py:53) 20",
        "thread (10): MainThread;_run (asyncio/events.py:80);run (onnxruntime/capi/"
        "onnxruntime_inference_collection.py:406) 20",
        "thread (11): idn-ort_0;_worker (concurrent/futures/thread.py:81) 50"])
    s = peers.summarise_pyspy(collapsed, 200)
    assert s["busy_pct_of_a_core"] == {"MainThread (10)": 50.0, "idn-ort_0 (11)": 25.0}
    places = s["main_thread_places_pct"]
    assert places[peers.PY_PLACES[-2][0]] == 60.0
    assert places["ORT session.run"] == 20.0
    assert places["idn: protobuf -> request (grpc_service.request_from_proto)"] == 20.0


@pytest.mark.skipif(importlib.util.find_spec("tritonclient") is None, reason="tritonclient is in the test extra")
def test_driver_against_echo_and_idn_node(tmp_path):
    out = tmp_path / "peers.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "peers.py"), "--servers", "echo,idn", "--models", "tiny",
           "--rounds", "1", "--duration", "0.3", "--warmup", "0.1", "--max-foreign", "1",
           "--venvs", str(tmp_path / "venvs"),
           "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=100, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["missing"] == {}
    for server in ("echo", "idn"):
        levels = res["measured"][server]["tiny"]
        for level, m in levels.items():
            assert m["errors"] == 0 and m["wrong"] == 0, (server, level, m)
        # every answer was checked; timings are not asserted (a shared machine can be slow)
        assert sum(m["n"] for m in levels.values()) > 0, levels
    assert "tiny: idn req/s at 32 / echo's" in res["ratios"]
    assert "node" in res["config"]["idn"]["command"] and "--intra-op-threads" not in res["config"]["idn"]["command"]
