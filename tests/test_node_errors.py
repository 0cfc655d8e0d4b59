"""Bad input gets the right status and a message naming what was wrong; the node keeps serving."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idn.client import build_request
from idn.protos import grpc_service_pb2 as pb
from idn.protos import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import start_node

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def stub(node):
    ch = grpc.insecure_channel(node.address)
    yield pb_grpc.GRPCInferenceServiceStub(ch)
    ch.close()


def good(model="linear") -> pb.ModelInferRequest:
    return build_request(model, {"input": np.ones((2, 4), np.float32)})


def call(stub, req) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req, timeout=10)
    return e.value


def mutate(**changes):
    req = good()
    t = req.inputs[0]
    for k, v in changes.items():
        if k == "shape":
            del t.shape[:]
            t.shape.extend(v)
        elif k == "raw":
            req.raw_input_contents[0] = v
        else:
            setattr(t, k, v)
    return req


@pytest.mark.parametrize("req, code, words", [
    (build_request("nope", {"input": np.ones((1, 4), np.float32)}), grpc.StatusCode.NOT_FOUND, ["nope"]),
    (build_request("linear", {"input": np.ones((1, 4), np.float32)}, version="7"),
     grpc.StatusCode.NOT_FOUND, ["version", "7"]),
    (build_request("linear", {"inptu": np.ones((1, 4), np.float32)}), INVALID, ["inptu", "input"]),
    (mutate(datatype="FP64"), INVALID, ["input", "FP32", "FP64"]),
    (mutate(datatype="FLOAT"), INVALID, ["input", "FP32", "FLOAT"]),
    (mutate(shape=[8]), INVALID, ["input", "rank"]),
    (mutate(shape=[1, 8]), INVALID, ["input", "[-1, 4]"]),
    (mutate(shape=[-2, 4]), INVALID, ["input", "negative"]),
    (mutate(shape=[1 << 40, 4]), INVALID, ["input", "elements"]),
    (mutate(raw=b"\x00" * 31), INVALID, ["input", "31 bytes", "32"]),
    (build_request("linear", {}), INVALID, ["no inputs"]),
    (build_request("linear", {"input": np.ones((1, 4), np.float32)}, outputs=["probs"]), INVALID, ["probs", "logits"]),
    (build_request("id_FP16", {"x": np.ones((1, 1), np.float16)}, raw=True), None, []),
], ids=["unknown-model", "unknown-version", "unknown-input", "wrong-dtype", "bogus-dtype", "wrong-rank",
        "wrong-dim", "negative-dim", "absurd-shape", "raw-length", "no-inputs", "unknown-output", "fp16-ok"])
def test_bad_requests(stub, req, code, words):
    if code is None:
        stub.ModelInfer(req, timeout=10)
        return
    err = call(stub, req)
    assert err.code() == code, err.details()
    for w in words:
        assert w in err.details(), (w, err.details())


def test_both_raw_and_typed(stub):
    req = good()
    req.inputs[0].contents.fp32_contents.extend([1.0] * 8)
    err = call(stub, req)
    assert err.code() == INVALID and "both" in err.details() and "input" in err.details()


def test_raw_count_mismatch(stub):
    req = good()
    req.raw_input_contents.append(b"extra")
    err = call(stub, req)
    assert err.code() == INVALID and "raw_input_contents" in err.details()


def test_typed_count_and_field(stub):
    req = build_request("linear", {"input": np.ones((2, 4), np.float32)}, raw=False)
    del req.inputs[0].contents.fp32_contents[-1]
    err = call(stub, req)
    assert err.code() == INVALID and "7 values" in err.details()
    req = build_request("linear", {"input": np.ones((2, 4), np.float32)}, raw=False)
    req.inputs[0].contents.int_contents.append(3)
    assert "int_contents" in call(stub, req).details()


def test_typed_int8_out_of_range(stub):
    req = build_request("id_INT8", {"x": np.ones((1, 2), np.int8)}, raw=False)
    req.inputs[0].contents.int_contents[0] = 300
    err = call(stub, req)
    assert err.code() == INVALID and "[-128, 127]" in err.details()


def test_fp16_typed_has_no_field(stub):
    req = pb.ModelInferRequest(model_name="id_FP16")
    req.inputs.add(name="x", datatype="FP16", shape=[1, 1]).contents.fp32_contents.append(1.0)
    err = call(stub, req)
    assert err.code() == INVALID and "FP16" in err.details() and "raw" in err.details()


def test_missing_data(stub):
    req = pb.ModelInferRequest(model_name="linear")
    req.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    assert "no data" in call(stub, req).details()


@pytest.mark.parametrize("raw, words", [
    (b"\x05\x00\x00\x00ab", ["claims 5 bytes"]),
    (b"\x01\x00", ["truncated"]),
    (b"\x02\x00\x00\x00\xff\xfe", ["UTF-8"]),
    (b"\x01\x00\x00\x00a\x01\x00\x00\x00b", ["2 elements", "needs 1"]),
])
def test_bad_bytes_tensors(stub, raw, words):
    req = pb.ModelInferRequest(model_name="strings", raw_input_contents=[raw])
    req.inputs.add(name="x", datatype="BYTES", shape=[1])
    err = call(stub, req)
    assert err.code() == INVALID
    for w in words:
        assert w in err.details()


def test_model_failing_inside_ort_is_internal(stub):
    req = build_request("failing", {"x": np.ones(6, np.float32), "shape": np.array([4, 4], np.int64)})
    err = call(stub, req)
    assert err.code() == grpc.StatusCode.INTERNAL and "ONNX Runtime" in err.details()
    ok = build_request("failing", {"x": np.ones(6, np.float32), "shape": np.array([2, 3], np.int64)})
    assert stub.ModelInfer(ok, timeout=10).outputs[0].shape == [2, 3]


def test_oversize_message_is_refused_and_node_survives(model_dir):
    n = start_node(model_dir, ["linear"], max_message_bytes=64 * 1024)
    try:
        ch = grpc.insecure_channel(n.address, options=[("grpc.max_send_message_length", 1 << 26)])
        s = pb_grpc.GRPCInferenceServiceStub(ch)
        big = build_request("linear", {"input": np.ones((4096, 4), np.float32)})  # 64 KiB + framing
        err = call(s, big)
        assert err.code() == INVALID and "65536" in err.details() and "--max-message-mb" in err.details()
        # far past the limit, gRPC's transport refuses it before reading it, with its standard code
        huge = build_request("linear", {"input": np.ones((16384, 4), np.float32)})  # 256 KiB
        err = call(s, huge)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in err.details()
        s.ModelInfer(good(), timeout=10)
        ch.close()
    finally:
        n.stop()


def test_garbage_bytes_instead_of_a_message(node, stub):
    ch = grpc.insecure_channel(node.address)
    raw_call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        raw_call(b"\xff\xff\xff\xff\x0f garbage", timeout=5)
    assert e.value.code() == INVALID and "inference.ModelInferRequest" in e.value.details()
    ch.close()
    stub.ModelInfer(good(), timeout=10)


# -- fuzzing: a few hundred malformed requests, then a good one ----------------------------------

DATATYPES = ["BOOL", "INT8", "INT32", "INT64", "UINT8", "UINT64", "FP16", "FP32", "FP64", "BYTES", "XX", ""]
ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INTERNAL}


@st.composite
def malformed(draw) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=draw(st.sampled_from(["linear", "strings", "id_INT8", "failing", "x", ""])))
    use_raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        t = req.inputs.add(name=draw(st.sampled_from(["input", "x", "shape", "", "?"])),
                           datatype=draw(st.sampled_from(DATATYPES)),
                           shape=draw(st.lists(st.integers(-3, 1 << 33), max_size=4)))
        if use_raw and draw(st.booleans()):
            req.raw_input_contents.append(draw(st.binary(max_size=64)))
        elif not use_raw:
            c = t.contents
            c.fp32_contents.extend(draw(st.lists(st.floats(width=32, allow_nan=True), max_size=8)))
            c.int_contents.extend(draw(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), max_size=4)))
            c.bytes_contents.extend(draw(st.lists(st.binary(max_size=8), max_size=3)))
    for name in draw(st.lists(st.sampled_from(["logits", "label", "y", "zz"]), max_size=2)):
        req.outputs.add(name=name)
    return req


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(req=malformed())
def test_fuzz_malformed_requests(stub, req):
    try:
        stub.ModelInfer(req, timeout=10)
    except grpc.RpcError as e:
        assert e.code() in ALLOWED, (e.code(), e.details(), req)
        assert e.details(), "an error must say what was wrong"


def test_good_request_after_fuzzing(stub):
    resp = stub.ModelInfer(good(), timeout=10)
    assert resp.model_name == "linear" and len(resp.raw_output_contents) == 2
