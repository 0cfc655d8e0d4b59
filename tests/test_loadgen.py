"""`idn infer` and the load generator against a real 3-node network on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from idn.catalog import load_catalog
from idn.demand import load_demand
from idn.launcher import start_network, stop_nodes
from idn.loadgen import LoadOptions, load_samples, plan_load, run_load
from idn.network import push_plan
from idn.topology import load_topology
from tests.network import line_topology, make_plan, toy_catalog
from tests.test_launcher import idn

SPLIT = make_plan(1, {"edge": ["toy-small"], "cloud": ["toy-big"]},
                  [("edge", "toy-small", 0.5), ("cloud", "toy-big", 0.5)])


def toy_world(d: Path) -> None:
    """Toy catalog with held-out samples labelled by toy-big (so toy-big is always right), a demand."""
    toy_catalog(d)
    x = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    labels = ort.InferenceSession(str(d / "toy-big.onnx")).run(["label"], {"input": x})[0]
    np.savez(d / "toy.npz", inputs=x, labels=labels)
    doc = yaml.safe_load((d / "catalog.yaml").read_text())
    doc["tasks"]["toy"].update(samples="toy.npz", labels=["ant", "bee", "cat"])
    (d / "catalog.yaml").write_text(yaml.safe_dump(doc))
    line_topology(d, delays_ms=(1.0, 1.0))
    (d / "demand.yaml").write_text(yaml.safe_dump({"classes": [
        {"ingress": "edge", "task": "toy", "rate": 60},
        {"ingress": "edge", "task": "toy", "rate": 20, "min_accuracy": 0.9}]}))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    toy_world(d)
    state, procs = start_network(d / "line3.yaml", catalog=d / "catalog.yaml", emulate=True, run_dir=d / "run")
    topo = load_topology(d / "line3.yaml")
    push_plan(SPLIT, topo, state.addresses, state.token)
    yield d, state
    stop_nodes(state.nodes, procs=procs)


def test_infer_prints_answer_label_and_who_served(world):
    d, state = world
    res = idn(d, "infer", "--to", state.addresses["edge"], "--task", "toy", "--sample", "5",
              "--min-accuracy", "0.9", "--catalog", "catalog.yaml")
    truth = int(np.load(d / "toy.npz")["labels"][5])
    name = ["ant", "bee", "cat"][truth]
    assert f"label:    {truth} ({name})" in res.stdout
    assert f"answer:   {truth} ({name})  correct" in res.stdout  # toy-big labelled the samples
    assert "node cloud · variant toy-big" in res.stdout and "2 hop(s)" in res.stdout

    np.save(d / "one.npy", np.ones(4, np.float32))
    res = idn(d, "infer", "--to", state.addresses["cloud"], "--task", "toy-big", "--input", "one.npy",
              "--catalog", "catalog.yaml")
    assert "label:    unknown" in res.stdout and "node cloud · variant toy-big" in res.stdout

    bad = idn(d, "infer", "--to", state.addresses["edge"], "--task", "toy", "--sample", "999",
              "--catalog", "catalog.yaml", check=False)
    assert bad.returncode == 1 and "64 held-out samples" in bad.stderr


def test_loadgen_counts_latency_accuracy_and_served_by(world):
    d, state = world
    cat = load_catalog(d / "catalog.yaml")
    topo = load_topology(d / "line3.yaml")
    loads = plan_load(topo, cat, load_demand(d / "demand.yaml", topo, cat), seed=1)
    assert [len(ld.messages) for ld in loads] == [64, 64]  # prebuilt: one message per sample
    report = asyncio.run(run_load(loads, LoadOptions(duration_s=2.0, warmup_s=0.3, seed=1)))
    plain, gold = report.classes
    # open loop at 60 and 20 req/s for 2 s: Poisson counts, well inside +-5 sigma
    assert 60 * 2 - 5 * (120 ** 0.5) < plain.sent < 120 + 5 * (120 ** 0.5)
    assert 40 - 5 * (40 ** 0.5) < gold.sent < 40 + 5 * (40 ** 0.5)
    assert plain.ok == plain.sent and gold.ok == gold.sent and not plain.errors and report.overall.dropped == 0
    # the plan's 50/50 split (smooth round-robin); the accuracy-0.9 class only fits toy-big at the cloud
    assert set(plain.served_by) == {"edge/toy-small", "cloud/toy-big"}
    assert abs(plain.served_by["cloud/toy-big"] - 0.5) < 0.1
    assert gold.served_by == {"cloud/toy-big": 1.0} and gold.accuracy == 1.0 and gold.labelled == gold.sent
    assert plain.accuracy is not None and plain.accuracy < 1.0  # toy-small disagrees with toy-big sometimes
    # 2 x (1 + 1) ms emulated round trip to the cloud
    assert gold.latency.p50_ms > 4.0 and gold.latency.p50_ms <= gold.latency.p95_ms <= gold.latency.p99_ms
    assert report.overall.sent == plain.sent + gold.sent


def test_loadgen_cli_writes_table_and_json(world):
    d, _ = world
    res = idn(d, "loadgen", "--topology", "line3.yaml", "--demand", "demand.yaml", "--duration", "1",
              "--warmup", "0.2", "--json", "out/lg.json", "--catalog", "catalog.yaml")
    assert "edge/toy/acc0.9" in res.stdout and "cloud/toy-big" in res.stdout
    doc = json.loads((d / "out/lg.json").read_text())
    assert set(doc) == {"duration_s", "warmup_s", "seed", "classes", "overall", "started"}
    c = doc["classes"][1]
    assert c["class_id"] == "edge/toy/acc0.9" and c["min_accuracy"] == 0.9
    assert set(c["latency"]) == {"p50_ms", "p95_ms", "p99_ms", "mean_ms"}
    assert c["ok"] == c["sent"] > 0 and c["accuracy"] == 1.0 and c["errors"] == {}


def test_samples_file_errors_name_the_fix(tmp_path):
    toy_catalog(tmp_path)
    np.savez(tmp_path / "toy.npz", pixels=np.zeros((3, 4), np.float32))
    doc = yaml.safe_load((tmp_path / "catalog.yaml").read_text())
    doc["tasks"]["toy"]["samples"] = "toy.npz"
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(Exception) as e:
        load_samples(load_catalog(tmp_path / "catalog.yaml").tasks["toy"])
    assert "'inputs'" in str(e.value) and "pixels" in str(e.value)
