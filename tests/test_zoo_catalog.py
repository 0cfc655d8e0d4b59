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


@pytest.fixture()
def zoo_copy(tmp_path: Path) -> Path:
    """A private copy of models/ (ONNX files, samples, catalog): ~12 MB, safe to tamper with."""
    dst = tmp_path / "models"
    shutil.copytree(DEFAULT_CATALOG.parent, dst, ignore=shutil.ignore_patterns("*.md"))
    return dst / "catalog.yaml"


def _doc() -> dict:
    return yaml.safe_load(DEFAULT_CATALOG.read_text())


def _error(doc: dict) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse_catalog(doc, DEFAULT_CATALOG, verify_hashes=True)
    return e.value


def test_committed_catalog_loads_with_hashes_checked():
    cat = load_catalog(DEFAULT_CATALOG, verify_hashes=True)
    assert set(cat.tasks) == {"digits", "waveforms"}
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
