"""Checks run with the stock ``tritonclient.grpc``, in a process of their own.

tritonclient registers its own copy of the ``inference.*`` protobuf messages in the
process-wide descriptor pool; so do IDN's stubs, and the pool refuses duplicates. A
stock client never shares a process with an IDN node, so these checks run as
``python triton_checks.py ADDRESS CHECK`` from tests/test_node_tritonclient.py.
"""

from __future__ import annotations

import queue
import sys

import numpy as np
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException


def health_and_metadata(c: tc.InferenceServerClient) -> None:
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("linear")
    md = c.get_model_metadata("linear", as_json=True)
    assert md["platform"] == "onnx_onnxv1", md
    assert md["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}], md
    assert c.get_server_metadata().name == "idn"


def fp32(c: tc.InferenceServerClient) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    inp = tc.InferInput("input", [2, 4], "FP32")
    inp.set_data_from_numpy(x)
    res = c.infer("linear", [inp], outputs=[tc.InferRequestedOutput("logits"), tc.InferRequestedOutput("label")])
    logits, label = res.as_numpy("logits"), res.as_numpy("label")
    assert logits.shape == (2, 3) and logits.dtype == np.float32
    assert label.dtype == np.int64
    np.testing.assert_array_equal(label, logits.argmax(1))
    assert res.get_response().parameters["idn.variant"].string_param == "linear"


def int64(c: tc.InferenceServerClient) -> None:
    x = np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max], dtype=np.int64)
    inp = tc.InferInput("x", [4], "INT64")
    inp.set_data_from_numpy(x)
    np.testing.assert_array_equal(c.infer("ints", [inp]).as_numpy("y"), x)


def bytes_round_trip(c: tc.InferenceServerClient) -> None:
    x = np.array([b"hello", b"", "\u00fcn\u00ef".encode(), b"a\x00b"], dtype=np.object_)
    inp = tc.InferInput("x", [4], "BYTES")
    inp.set_data_from_numpy(x)
    out = c.infer("strings", [inp]).as_numpy("y")
    assert out.tolist() == x.tolist(), out


TOKEN = "test-token"  # tests/conftest.py's: the node runs in explicit repository control


def load_unload(c: tc.InferenceServerClient) -> None:
    c.unload_model("fixed", headers={"authorization": f"Bearer {TOKEN}"})
    assert not c.is_model_ready("fixed")
    index = {m["name"]: m.get("state") for m in c.get_model_repository_index(as_json=True)["models"]}
    assert index["fixed"] == "UNAVAILABLE", index
    c.load_model("fixed", headers={"authorization": f"Bearer {TOKEN}"})
    assert c.is_model_ready("fixed")


def _refused(call, code: str, words: str) -> None:
    try:
        call()
    except InferenceServerException as e:
        assert code in str(e.status()) and words in e.message(), (e.status(), e.message())
    else:
        raise AssertionError("the call was accepted")


def repository_needs_token(c: tc.InferenceServerClient) -> None:
    """The probe of issue #14 with the stock client: no token, a wrong one, a swap by upload."""
    _refused(lambda: c.unload_model("linear"), "UNAUTHENTICATED", "control token")
    _refused(lambda: c.unload_model("linear", headers={"authorization": "Bearer wrong"}), "UNAUTHENTICATED",
             "control token")
    _refused(lambda: c.load_model("linear", files={"file:1/model.onnx": b"not a model"}), "UNAUTHENTICATED",
             "control token")
    assert c.is_server_ready() and c.is_model_ready("linear")


def repository_off(c: tc.InferenceServerClient) -> None:
    """A node in the default --model-control-mode none: nobody loads or unloads, token or not."""
    _refused(lambda: c.unload_model("linear"), "PERMISSION_DENIED", "--model-control-mode")
    _refused(lambda: c.load_model("linear", headers={"authorization": f"Bearer {TOKEN}"}), "PERMISSION_DENIED",
             "repository control is off")
    assert c.is_server_ready() and c.is_model_ready("linear")


def hostile_names(c: tc.InferenceServerClient) -> None:
    """Huge client strings come back as small, accurate errors (not RESOURCE_EXHAUSTED headers)."""
    x = tc.InferInput("input", [1, 4], "FP32")
    x.set_data_from_numpy(np.ones((1, 4), np.float32))
    _refused(lambda: c.infer("m" * 3_000_000, [x]), "INVALID_ARGUMENT", "model_name has 3000000 characters")
    _refused(lambda: c.infer("nope-" + "n" * 200, [x]), "NOT_FOUND", "nope-")
    _refused(lambda: c.infer("linear", [x], parameters={"idn.max_latency_ms": "9" * 500_000}), "INVALID_ARGUMENT",
             "idn.max_latency_ms")
    _refused(lambda: c.infer("linear", [x], parameters={"idn.min_accuracy": 2.0}), "INVALID_ARGUMENT",
             "idn.min_accuracy")
    big = tc.InferInput("i" * 1_000_000, [1, 4], "FP32")
    big.set_data_from_numpy(np.ones((1, 4), np.float32))
    _refused(lambda: c.infer("linear", [big]), "INVALID_ARGUMENT", "has no input")


def error_status(c: tc.InferenceServerClient) -> None:
    inp = tc.InferInput("input", [1, 5], "FP32")
    inp.set_data_from_numpy(np.ones((1, 5), np.float32))
    try:
        c.infer("linear", [inp])
    except InferenceServerException as e:
        assert "INVALID_ARGUMENT" in str(e.status()) and "input" in e.message(), (e.status(), e.message())
    else:
        raise AssertionError("a wrong shape was accepted")


def stream(c: tc.InferenceServerClient) -> None:
    """ModelStreamInfer with start_stream / async_stream_infer: answers carry their request's id,
    errors mid-stream (unknown model, wrong shape) reach the callback and the stream goes on."""
    answers: queue.Queue = queue.Queue()
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        x = np.arange(8, dtype=np.float32).reshape(2, 4)

        def send(model: str, data: np.ndarray, rid: str) -> None:
            inp = tc.InferInput("input", list(data.shape), "FP32")
            inp.set_data_from_numpy(data)
            c.async_stream_infer(model, [inp], request_id=rid, outputs=[tc.InferRequestedOutput("label")])

        def collect(n: int) -> tuple[dict[str, np.ndarray], list[str]]:
            ok, errors = {}, []
            for _ in range(n):
                result, error = answers.get(timeout=30)
                if error is not None:
                    errors.append(error.message())
                else:
                    ok[result.get_response().id] = result.as_numpy("label")
            return ok, errors

        send("linear", x, "good-1")
        send("nope-model", x, "unknown-2")
        send("linear", np.ones((1, 5), np.float32), "shape-3")
        send("linear", x[:1], "good-4")
        ok, errors = collect(4)
        assert sorted(ok) == ["good-1", "good-4"], (ok, errors)
        assert ok["good-1"].shape == (2,) and ok["good-4"].shape == (1,)
        assert len(errors) == 2 and any("nope-model" in e for e in errors) and any("input" in e for e in errors), errors
        for i in range(5, 25):  # the stream survived its errors: more good requests, all answered by id
            send("linear", x, f"after-{i}")
        ok, errors = collect(20)
        assert not errors and sorted(ok) == sorted(f"after-{i}" for i in range(5, 25)), errors
    finally:
        c.stop_stream()


CHECKS = {f.__name__: f for f in (health_and_metadata, fp32, int64, bytes_round_trip, load_unload, error_status,
                                   repository_needs_token, repository_off, hostile_names, stream)}

if __name__ == "__main__":
    address, *names = sys.argv[1:]
    client = tc.InferenceServerClient(url=address)
    for name in names or CHECKS:
        CHECKS[name](client)
        print("ok", name)
    client.close()
