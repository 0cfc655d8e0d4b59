"""The node over real gRPC with the project's own client: metadata, every datatype, repository."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from idn.client import Client, build_request
from idn.protocol.tensors import DTYPES
from tests.conftest import TOKEN
from tests.onnx_models import ONNX_TYPES


@pytest.fixture(scope="module")
def client(node):
    with Client(node.address) as c:
        yield c


def sample(dt: str, shape=(2, 3)) -> np.ndarray:
    rng = np.random.default_rng(7)
    n = int(np.prod(shape))
    if dt == "BOOL":
        return rng.integers(0, 2, n).astype(bool).reshape(shape)
    if dt == "BYTES":
        vals = [b"", b"a\x00b", "日本".encode(), b"x" * 40, b"\x7f", b"ok"][:n]
        return np.array(vals, dtype=object).reshape(shape)
    d = DTYPES[dt]
    if d.kind in "iu":
        info = np.iinfo(d)
        return rng.integers(info.min, info.max, n, dtype=d, endpoint=True).reshape(shape)
    return rng.standard_normal(n).astype(d).reshape(shape)


def test_health_and_server_metadata(client):
    assert client.live() and client.ready()
    md = client.server_metadata()
    assert md.name == "idn" and "model_repository" in md.extensions


def test_model_metadata_from_onnx_graph(client):
    md = client.metadata("linear")
    assert md.platform == "onnx_onnxv1" and list(md.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [("input", "FP32", [-1, 4])]
    assert [(t.name, t.datatype, list(t.shape)) for t in md.outputs] == [
        ("logits", "FP32", [-1, 3]), ("label", "INT64", [-1])]
    fixed = client.metadata("fixed")
    assert list(fixed.inputs[0].shape) == [2, 3]


def test_fp32_inference_matches_numpy(client, model_dir):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(model_dir / "linear.onnx"))
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    want = x @ init["W"] + init["B"]
    for raw in (True, False):
        res = client.infer("linear", {"input": x}, raw=raw)
        np.testing.assert_allclose(res.outputs["logits"], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(res.outputs["label"], want.argmax(1))
        assert res.outputs["label"].dtype == np.int64
        assert res.variant == "linear" and res.node == "test-node" and res.server_us > 0


def test_requested_output_subset(client):
    x = np.ones((2, 4), np.float32)
    res = client.infer("linear", {"input": x}, outputs=["label"])
    assert list(res.outputs) == ["label"]


# FP16 has no typed contents field in the protocol: raw only (its refusal is in test_node_errors).
@pytest.mark.parametrize("dt, raw", [(dt, raw) for dt in sorted(ONNX_TYPES) for raw in (True, False)
                                     if raw or dt != "FP16"])
def test_every_datatype_round_trips(client, dt, raw):
    x = sample(dt)
    y = client.infer(f"id_{dt}", {"x": x}, raw=raw).outputs["y"]
    assert y.shape == x.shape
    if dt == "BYTES":
        assert y.reshape(-1).tolist() == x.reshape(-1).tolist()  # byte-exact
    else:
        assert y.dtype == x.dtype
        np.testing.assert_array_equal(y, x)


def test_empty_batch(client):
    res = client.infer("linear", {"input": np.zeros((0, 4), np.float32)})
    assert res.outputs["logits"].shape == (0, 3)


def test_raw_input_is_decoded_zero_copy():
    from idn.protocol.tensors import decode_raw

    raw = np.arange(6, dtype=np.float32).tobytes()
    arr = decode_raw("x", "FP32", (2, 3), raw, 100)
    assert not arr.flags.owndata and np.shares_memory(arr, np.frombuffer(raw, np.uint8))


def test_repository_index_load_unload(node, client):
    names = {m.name: m.state for m in client.index()}
    assert names["linear"] == "READY"
    client.unload("strings", token=TOKEN)
    assert not client.model_ready("strings")
    with pytest.raises(grpc.RpcError) as e:
        client.infer("strings", {"x": np.array([b"a"], dtype=object)})
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert {m.name: m.state for m in client.index()}["strings"] == "UNAVAILABLE"
    assert "strings" not in {m.name for m in client.index(ready_only=True)}
    client.load("strings", token=TOKEN)
    assert client.model_ready("strings")
    assert client.infer("strings", {"x": np.array([b"back"], dtype=object)}).output().tolist() == [b"back"]


def test_load_unknown_model_is_not_found(client):
    with pytest.raises(grpc.RpcError) as e:
        client.load("nope", token=TOKEN)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in e.value.details()


def test_version_handling(client):
    assert client.model_ready("linear", "1") and not client.model_ready("linear", "2")
    with pytest.raises(grpc.RpcError) as e:
        client.infer("linear", {"input": np.ones((1, 4), np.float32)}, version="2")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "version" in e.value.details()


def test_request_id_and_parameters_echo(node):
    ch = grpc.insecure_channel(node.address)
    from idn.protos import grpc_service_pb2_grpc as pb_grpc

    stub = pb_grpc.GRPCInferenceServiceStub(ch)
    req = build_request("linear", {"input": np.ones((1, 4), np.float32)}, request_id="req-42")
    resp = stub.ModelInfer(req, timeout=5)
    assert resp.id == "req-42" and resp.model_name == "linear" and resp.model_version == "1"
    assert len(resp.raw_output_contents) == 2 and not resp.outputs[0].HasField("contents")
    ch.close()
