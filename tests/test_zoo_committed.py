"""The committed zoo meets issue #3's spans and is what its catalog says, measured for real.

Real ONNX Runtime sessions on the committed files and held-out samples; no mocks.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import yaml
from onnx import numpy_helper
from typer.testing import CliRunner

from idn.catalog import DEFAULT_CATALOG, THREADING_MODES, Catalog, load_catalog
from idn.cli import app
from idn.zoo.graph_stats import flops_per_sample
from idn.zoo.samples import read_samples
from idn.zoo.sessions import make_session, session_signature
from idn.zoo.verify import verify_zoo

pytestmark = pytest.mark.skipif(not DEFAULT_CATALOG.is_file(), reason="the zoo is built by `idn models build`")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(DEFAULT_CATALOG, verify_hashes=True)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DEFAULT_CATALOG.read_text())


def _profiled_classes(catalog: Catalog) -> set[str]:
    return {hw for v in catalog.variants.values() for hw in v.latency}


def test_at_least_two_tasks_of_five_variants_with_int8(catalog):
    assert len(catalog.tasks) >= 2
    for task in catalog.tasks.values():
        assert len(task.variants) >= 5, task.name
        int8 = [v for v in task.variants.values() if v.quantization == "int8"]
        assert int8, f"{task.name} has no int8 variant"


@pytest.mark.parametrize("task", ["digits", "waveforms"])
def test_spans_size_latency_accuracy(catalog, task):
    variants = list(catalog.tasks[task].variants.values())
    sizes = [v.bytes for v in variants]
    assert max(sizes) / min(sizes) >= 100, sizes
    accs = [v.accuracy for v in variants]
    assert max(accs) - min(accs) >= 0.08, accs
    classes = _profiled_classes(catalog)
    assert classes, "no latency profile in the catalog: run `idn models profile`"
    for hw in classes:
        lat = [v.latency_ms(hw, batch=1, threading="single_thread") for v in variants]
        assert None not in lat, f"{hw}: a variant of {task} is not profiled"
        assert max(lat) / min(lat) >= 20, (hw, lat)


def test_every_profile_is_complete_and_ordered(catalog):
    for v in catalog.variants.values():
        for hw, modes in v.latency.items():
            assert set(modes) == set(THREADING_MODES), (v.name, hw)
            for mode, points in modes.items():
                assert set(points) == {1, 8, 32}, (v.name, hw, mode)
                assert all(p.p95_ms >= p.p50_ms > 0 for p in points.values()), (v.name, hw, mode)


def test_int8_variants_derive_from_an_fp32_variant_of_the_same_task(catalog, raw):
    for tname, task in catalog.tasks.items():
        for v in task.variants.values():
            entry = raw["tasks"][tname]["variants"][v.name]
            if v.quantization == "int8":
                source = task.variants[entry["quantized_from"]]
                assert source.quantization is None and v.bytes < source.bytes / 3
                assert v.parameters == source.parameters
                assert entry["quantization_method"] in ("dynamic", "static")


def test_accuracy_re_measured_equals_catalog(catalog, raw):
    problems, checks = verify_zoo(DEFAULT_CATALOG)
    assert problems == []
    by_name = {name: v for t in raw["tasks"].values() for name, v in t["variants"].items()}
    assert {c.variant for c in checks} == set(catalog.variants)
    for c in checks:
        if c.source != "measured":  # imagenet: cited / estimated, checked by its expected answers
            assert c.measured is None and c.expected is not None and c.expected[0] == c.expected[1], c
            continue
        assert c.measured is not None
        # Same machine class as the build: the correct count must be exact, not just within tolerance.
        assert c.measured.correct == by_name[c.variant]["accuracy"]["correct"], c.variant
        assert c.measured.samples == by_name[c.variant]["accuracy"]["samples"]


def test_every_variant_signature_is_its_tasks(catalog):
    for task in catalog.tasks.values():
        assert task.inputs[0].shape[0] == -1 and task.outputs[0].shape[0] == -1  # dynamic batch
        # photos are uint8 RGB; every other input FP32; every output FP32 probabilities
        assert [t.datatype for t in task.inputs + task.outputs] in (["FP32", "FP32"], ["UINT8", "FP32"])
        inputs, _ = read_samples(task.samples)
        for v in task.variants.values():
            session = make_session(v.path)
            assert session_signature(session) == (task.inputs, task.outputs), v.name
            for batch in (1, 3):
                (probs,) = session.run(None, {task.inputs[0].name: inputs[:batch]})
                assert probs.shape == (batch, len(task.labels))
                np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)


def test_samples_match_the_task(catalog, raw):
    for task in catalog.tasks.values():
        x, y = read_samples(task.samples)
        assert x.dtype == {"FP32": np.float32, "UINT8": np.uint8}[task.inputs[0].datatype] and y.dtype == np.int64
        assert x.shape[1:] == task.inputs[0].shape[1:]
        assert len(y) == raw["tasks"][task.name]["samples_count"]
        if all(v.accuracy_source == "measured" for v in task.variants.values()):  # a held-out split
            assert 300 <= len(y) <= 1500
            assert set(np.unique(y)) == set(range(len(task.labels)))  # every class is represented
        else:  # photos with expected answers (imagenet): each label is one of its photo's expected classes
            assert [e.sample for e in task.expected] == list(range(len(y)))
            assert all(int(y[e.sample]) in e.classes for e in task.expected)


def test_flops_and_parameters_read_back_from_the_graphs(catalog):
    for v in catalog.variants.values():
        assert flops_per_sample(v.path) == v.flops_per_sample, v.name
        if v.quantization is None:  # FP32: every weight and bias is one element of a float initializer
            model = onnx.load(str(v.path))  # (rank >= 1: imagenet's normalisation scalars are not parameters)
            floats = sum(numpy_helper.to_array(i).size for i in model.graph.initializer
                         if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) >= 1)
            assert floats == v.parameters, v.name


def test_whole_zoo_stays_small():
    # ~13 MB for the two small tasks, ~80 MB for imagenet's six EfficientNet-Lite files.
    total = sum(p.stat().st_size for p in DEFAULT_CATALOG.parent.rglob("*") if p.is_file())
    assert total < 110 * 2**20


def test_list_prints_every_variant_with_its_accuracy_source(catalog):
    result = CliRunner().invoke(app, ["models", "list", "--markdown"])
    assert result.exit_code == 0, result.output
    assert "| top-1 source |" in result.output.splitlines()[0]
    for v in catalog.variants.values():
        row = next(line for line in result.output.splitlines() if f"| {v.name} |" in line)
        assert f"| {v.accuracy_source} |" in row


def test_every_variant_has_a_load_time_where_it_has_a_profile(catalog):
    for v in catalog.variants.values():
        for hw in v.latency:
            load = v.load_ms(hw)
            assert load is not None and load > 0, (v.name, hw)
    assert all(v.load_ms("no-such-class") is None for v in catalog.variants.values())
