"""Catalog schema and integrity: the loader and `idn models verify` refuse what is wrong.

Everything runs on real files: a copy of the committed zoo in tmp_path, edited or
tampered with, loaded by the same code the node and the planner use.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import onnx
import pytest
import yaml
from onnx import numpy_helper
from typer.testing import CliRunner

from idn.catalog import DEFAULT_CATALOG, LatencyPoint, load_catalog, parse_catalog
from idn.cli import app
from idn.config import ConfigError
from idn.zoo.catalog_writer import with_profiles, write_catalog
from idn.zoo.profile import Profile
from idn.zoo.verify import verify_zoo

pytestmark = pytest.mark.skipif(not DEFAULT_CATALOG.is_file(), reason="the zoo is built by `idn models build`")


SMALL_TASKS = ("digits", "waveforms")


@pytest.fixture()
def zoo_copy(tmp_path: Path) -> Path:
    """A private copy of the small tasks of models/ (ONNX files, samples, a catalog of just those
    tasks): ~13 MB, safe to tamper with. imagenet's 80 MB stay out (tests/test_zoo_imagenet.py)."""
    src, dst = DEFAULT_CATALOG.parent, tmp_path / "models"
    doc = _doc()
    doc["tasks"] = {t: doc["tasks"][t] for t in SMALL_TASKS}
    for t in SMALL_TASKS:
        shutil.copytree(src / t, dst / t)
        (dst / "samples").mkdir(exist_ok=True)
        shutil.copy(src / "samples" / f"{t}.npz", dst / "samples" / f"{t}.npz")
    (dst / "catalog.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst / "catalog.yaml"


def _doc() -> dict:
    return yaml.safe_load(DEFAULT_CATALOG.read_text())


def _error(doc: dict) -> ConfigError:
    """The loader's error for ``doc`` (schema only: hashes are tested on real files below)."""
    with pytest.raises(ConfigError) as e:
        parse_catalog(doc, DEFAULT_CATALOG, verify_hashes=False)
    return e.value


def test_committed_catalog_loads_with_hashes_checked():
    cat = load_catalog(DEFAULT_CATALOG, verify_hashes=True)
    assert set(cat.tasks) == {"digits", "waveforms", "imagenet"}
    assert all(v.path.is_file() for v in cat.variants.values())


def test_missing_field_names_file_and_field():
    doc = _doc()
    del doc["tasks"]["digits"]["variants"]["digits-linear"]["sha256"]
    err = _error(doc)
    assert err.file == str(DEFAULT_CATALOG)
    assert err.field == "tasks.digits.variants.digits-linear.sha256"
    assert "missing" in str(err)


def test_bad_datatype_names_the_tensor_field():
    doc = _doc()
    doc["tasks"]["waveforms"]["inputs"][0]["datatype"] = "FLOAT32"
    err = _error(doc)
    assert err.field == "tasks.waveforms.inputs[0].datatype" and "FLOAT32" in err.problem


@pytest.mark.parametrize("top1", [1.5, -0.1])
def test_accuracy_outside_unit_interval_is_refused(top1):
    doc = _doc()
    doc["tasks"]["digits"]["variants"]["digits-cnn-l"]["accuracy"]["top1"] = top1
    err = _error(doc)
    assert err.field == "tasks.digits.variants.digits-cnn-l.accuracy.top1" and "[0, 1]" in err.problem


def test_wrong_type_is_refused():
    doc = _doc()
    doc["tasks"]["digits"]["variants"]["digits-mlp-s"]["bytes"] = "ten kB"
    assert _error(doc).field == "tasks.digits.variants.digits-mlp-s.bytes"


def test_tampered_onnx_file_is_refused_naming_sha256(zoo_copy: Path):
    path = zoo_copy.parent / "digits" / "digits-linear.onnx"
    model = onnx.load(str(path))
    init = model.graph.initializer[0]
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] += 0.5  # a still-valid model with one different weight
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(path))

    with pytest.raises(ConfigError) as e:
        load_catalog(zoo_copy)
    assert e.value.field == "tasks.digits.variants.digits-linear.sha256"
    assert e.value.file == str(zoo_copy)

    problems, _ = verify_zoo(zoo_copy)
    assert [(p.where, p.field) for p in problems if p.field in ("sha256", "bytes")][:1] == [("digits-linear", "sha256")]
    result = CliRunner().invoke(app, ["models", "verify", "--catalog", str(zoo_copy)])
    assert result.exit_code == 1


def test_corrupt_onnx_file_is_reported_not_crashed_on(zoo_copy: Path):
    (zoo_copy.parent / "waveforms" / "waveforms-mlp-s.onnx").write_bytes(b"not an onnx model")
    problems, _ = verify_zoo(zoo_copy)
    fields = {(p.where, p.field) for p in problems}
    assert ("waveforms-mlp-s", "sha256") in fields and ("waveforms-mlp-s", "file") in fields


def test_verify_catches_an_accuracy_the_files_do_not_reach(zoo_copy: Path):
    doc = yaml.safe_load(zoo_copy.read_text())
    doc["tasks"]["digits"]["variants"]["digits-cnn-s"]["accuracy"]["top1"] += 0.05
    zoo_copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    problems, _ = verify_zoo(zoo_copy)
    assert [(p.where, p.field) for p in problems] == [("digits-cnn-s", "accuracy.top1")]
    result = CliRunner().invoke(app, ["models", "verify", "--catalog", str(zoo_copy)])
    assert result.exit_code == 1 and "accuracy.top1" in result.output


def test_tampered_samples_are_reported(zoo_copy: Path):
    samples = zoo_copy.parent / "samples" / "digits.npz"
    samples.write_bytes(samples.read_bytes() + b"\0")
    problems, _ = verify_zoo(zoo_copy)
    assert ("digits", "samples_sha256") in {(p.where, p.field) for p in problems}


def test_profiles_of_other_hardware_classes_are_kept(zoo_copy: Path):
    doc = yaml.safe_load(zoo_copy.read_text())
    before = copy.deepcopy(doc)
    point = LatencyPoint(1.0, 2.0)
    prof = Profile({"single_thread": {1: point}, "default_threads": {1: point}})
    out = with_profiles(doc, "edge-arm64-1c", {"description": "an edge box"}, {"digits-linear": prof})
    assert doc == before  # pure: the input is not modified
    lat = out["tasks"]["digits"]["variants"]["digits-linear"]["latency"]
    assert lat["edge-arm64-1c"]["single_thread"][1] == {"p50_ms": 1.0, "p95_ms": 2.0}
    for hw in before["tasks"]["digits"]["variants"]["digits-linear"]["latency"]:
        assert lat[hw] == before["tasks"]["digits"]["variants"]["digits-linear"]["latency"][hw]
    write_catalog(zoo_copy, out)
    cat = load_catalog(zoo_copy)
    assert cat.variant("digits-linear").latency_ms("edge-arm64-1c", 1) == 1.0
    assert "edge-arm64-1c" in cat.hardware_classes


def test_writer_refuses_a_catalog_its_loader_would_refuse(zoo_copy: Path):
    doc = yaml.safe_load(zoo_copy.read_text())
    original = zoo_copy.read_bytes()
    doc["tasks"]["digits"]["variants"]["digits-linear"]["sha256"] = "0" * 64
    with pytest.raises(ConfigError):
        write_catalog(zoo_copy, doc)
    assert zoo_copy.read_bytes() == original


# --- accuracy sources, load times and expected answers: the loader's validation ----------------

def test_accuracy_source_defaults_to_measured_and_is_parsed():
    doc = _doc()
    del doc["tasks"]["digits"]["variants"]["digits-linear"]["accuracy"]["source"]
    cat = parse_catalog(doc, DEFAULT_CATALOG, verify_hashes=False)
    assert cat.variant("digits-linear").accuracy_source == "measured"
    assert cat.variant("digits-linear").accuracy_reference == ""
    real = load_catalog(DEFAULT_CATALOG, verify_hashes=False)
    assert {v.accuracy_source for t in SMALL_TASKS for v in real.tasks[t].variants.values()} == {"measured"}
    lite0 = real.variant("imagenet-lite0")
    assert lite0.accuracy_source == "cited" and "tensorflow/tpu" in lite0.accuracy_reference


def test_unknown_accuracy_source_names_field_and_fix():
    doc = _doc()
    doc["tasks"]["digits"]["variants"]["digits-cnn-s"]["accuracy"]["source"] = "guessed"
    err = _error(doc)
    assert err.field == "tasks.digits.variants.digits-cnn-s.accuracy.source"
    assert "guessed" in err.problem and "measured" in (err.fix or "") and "cited" in (err.fix or "")


@pytest.mark.parametrize("source", ["cited", "estimated"])
def test_cited_or_estimated_accuracy_needs_a_reference(source):
    doc = _doc()
    acc = doc["tasks"]["digits"]["variants"]["digits-cnn-s"]["accuracy"]
    acc["source"] = source
    acc.pop("reference", None)
    err = _error(doc)
    assert err.field == "tasks.digits.variants.digits-cnn-s.accuracy.reference"
    assert source in err.problem and "reference:" in (err.fix or "")
    acc["reference"] = "   "
    assert _error(doc).field == "tasks.digits.variants.digits-cnn-s.accuracy.reference"
    acc["reference"] = "somewhere"
    assert parse_catalog(doc, DEFAULT_CATALOG, verify_hashes=False).variant("digits-cnn-s").accuracy_source == source


def test_load_ms_is_parsed_per_hardware_class():
    doc = _doc()
    v = doc["tasks"]["digits"]["variants"]["digits-mlp-s"]
    v["load_ms"] = {"cpu-x86_64-2c": 1.25, "edge-arm64-1c": 7}
    cat = parse_catalog(doc, DEFAULT_CATALOG, verify_hashes=False)
    assert cat.variant("digits-mlp-s").load_ms("cpu-x86_64-2c") == 1.25
    assert cat.variant("digits-mlp-s").load_ms("edge-arm64-1c") == 7.0
    assert cat.variant("digits-mlp-s").load_ms("gpu-h200") is None
    del v["load_ms"]
    reparsed = parse_catalog(doc, DEFAULT_CATALOG, verify_hashes=False)
    assert reparsed.variant("digits-mlp-s").load_ms("cpu-x86_64-2c") is None


@pytest.mark.parametrize("bad, field", [
    ({"cpu-x86_64-2c": -3.0}, "load_ms.cpu-x86_64-2c"),
    ({"cpu-x86_64-2c": 0}, "load_ms.cpu-x86_64-2c"),
    ({"cpu-x86_64-2c": "fast"}, "load_ms.cpu-x86_64-2c"),
    ([1.0, 2.0], "load_ms"),
])
def test_bad_load_ms_is_refused(bad, field):
    doc = _doc()
    doc["tasks"]["waveforms"]["variants"]["waveforms-cnn-s"]["load_ms"] = bad
    assert _error(doc).field == f"tasks.waveforms.variants.waveforms-cnn-s.{field}"


@pytest.mark.parametrize("bad, field, words", [
    ([{"sample": 0, "classes": [10]}], "expected[0].classes", "outside"),
    ([{"sample": 0, "classes": []}], "expected[0].classes", "non-empty"),
    ([{"sample": -1, "classes": [3]}], "expected[0].sample", ">= 0"),
    ([{"sample": 0, "classes": [3]}, {"sample": 0, "classes": [4]}], "expected[1].sample", "twice"),
    ([{"sample": 0, "classes": [3], "clases": [4]}], "expected[0].clases", "unknown"),
])
def test_bad_expected_answers_are_refused(bad, field, words):
    doc = _doc()
    doc["tasks"]["digits"]["expected"] = bad  # 10 labels
    err = _error(doc)
    assert err.field == f"tasks.digits.{field}" and words in err.problem


def test_expected_answers_are_parsed():
    doc = _doc()
    doc["tasks"]["digits"]["expected"] = [{"sample": 4, "classes": [7, 1], "name": "a seven"},
                                          {"sample": 0, "classes": [0]}]
    task = parse_catalog(doc, DEFAULT_CATALOG, verify_hashes=False).tasks["digits"]
    assert [(e.sample, e.classes, e.name) for e in task.expected] == [(4, (7, 1), "a seven"), (0, (0,), "")]
    assert load_catalog(DEFAULT_CATALOG, verify_hashes=False).tasks["waveforms"].expected == ()


def test_profile_writes_load_times_beside_latency(zoo_copy: Path):
    doc = yaml.safe_load(zoo_copy.read_text())
    point = LatencyPoint(1.0, 2.0)
    prof = Profile({"single_thread": {1: point}, "default_threads": {1: point}})
    out = with_profiles(doc, "edge-arm64-1c", {"description": "an edge box"}, {"digits-linear": prof},
                        {"digits-linear": 12.345678})
    v = out["tasks"]["digits"]["variants"]["digits-linear"]
    assert v["load_ms"]["edge-arm64-1c"] == 12.35  # 4 significant digits, like latency
    before = doc["tasks"]["digits"]["variants"]["digits-linear"]["load_ms"]
    assert v["load_ms"]["cpu-x86_64-2c"] == before["cpu-x86_64-2c"]
    write_catalog(zoo_copy, out)
    assert load_catalog(zoo_copy).variant("digits-linear").load_ms("edge-arm64-1c") == 12.35
