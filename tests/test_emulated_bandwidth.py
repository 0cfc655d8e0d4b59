"""Emulated links pace the bytes they carry: a forwarded image pays bytes x 8 / bandwidth, as predicted."""

from __future__ import annotations

import statistics
import time

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper

from idn.catalog import load_catalog
from idn.client import Client
from idn.config import sha256_file
from idn.latency import LatencyModel
from idn.topology import load_topology
from tests.network import HW, Network, free_port

SHAPE = (224, 224, 3)


def image_catalog(d):
    """Task `img`: uint8 [N, 224, 224, 3] -> mean colour FP32 [N, 3] (cheap compute, a real image payload)."""
    d.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["f", "axes"], ["colour"], keepdims=0)],
        "mean_colour",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", *SHAPE])],
        [helper.make_tensor_value_info("colour", TensorProto.FLOAT, ["N", 3])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path = d / "mean.onnx"
    onnx.save(model, path)
    doc = {"version": 1, "hardware_classes": {HW: {"description": "tests"}},
           "tasks": {"img": {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [-1, *SHAPE]}],
                             "outputs": [{"name": "colour", "datatype": "FP32", "shape": [-1, 3]}],
                             "variants": {"mean": {
                                 "file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
                                 "accuracy": {"top1": 0.5, "split": "test"},
                                 "latency": {HW: {"single_thread": {1: {"p50_ms": 0.5, "p95_ms": 1.0}}}}}}}}}
    p = d / "catalog.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def two_edges(d):
    """cloud (repository) with two edges, no link delay; only edge-bw's link has a bandwidth (100 Mb/s)."""
    doc = {"hardware_class": HW, "nodes": [
        {"id": "cloud", "tier": "cloud", "address": f"127.0.0.1:{free_port()}", "mem_mb": 1024, "cores": 2,
         "repository": True},
        {"id": "edge-bw", "tier": "edge", "address": f"127.0.0.1:{free_port()}", "mem_mb": 64, "cores": 1,
         "parent": "cloud"},
        {"id": "edge-free", "tier": "edge", "address": f"127.0.0.1:{free_port()}", "mem_mb": 64, "cores": 1,
         "parent": "cloud"}],
        "links": [{"a": "edge-bw", "b": "cloud", "delay_ms": 0, "bandwidth_mbps": 100},
                  {"a": "edge-free", "b": "cloud", "delay_ms": 0}]}
    p = d / "two_edges.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_a_100_mbps_link_adds_the_transfer_time_of_a_forwarded_image(tmp_path):
    cat_path, topo_path = image_catalog(tmp_path / "models"), two_edges(tmp_path)
    topo, cat = load_topology(topo_path), load_catalog(cat_path)
    predicted_ms = (LatencyModel(topo, cat).predict("edge-bw", "cloud", cat.variant("mean")).transfer_ms
                    - LatencyModel(topo, cat).predict("edge-free", "cloud", cat.variant("mean")).transfer_ms)
    assert 11.5 < predicted_ms < 12.5  # (150,528 + 12) bytes x 8 / 100 Mb/s
    net = Network(topo_path, cat_path)
    x = {"image": np.random.default_rng(0).integers(0, 255, (1, *SHAPE), dtype=np.uint8)}
    took: dict[str, list[float]] = {"edge-bw": [], "edge-free": []}
    try:
        clients = {n: Client(net.address(n)) for n in took}
        for c in clients.values():  # warm up channels and the cloud's session
            assert c.infer("img", x, timeout=10).node == "cloud"
        for _ in range(15):  # interleaved, so both see the same machine
            for n, c in clients.items():
                t0 = time.perf_counter()
                r = c.infer("img", x, timeout=10)
                took[n].append((time.perf_counter() - t0) * 1000)
                assert r.node == "cloud" and r.hops == 1
        for c in clients.values():
            c.close()
    finally:
        net.close()
    added = statistics.median(took["edge-bw"]) - statistics.median(took["edge-free"])
    assert abs(added - predicted_ms) <= 0.25 * predicted_ms, (added, predicted_ms, took)
