"""The committed ``imagenet`` task: six EfficientNet-Lite variants on real photographs, without torch.

Real ONNX Runtime sessions on the committed files and the shipped photos: one signature
for all, files that hash to the catalog, the expected class named on every check photo,
accuracy sources that add up, and the int8 agreement re-measured exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from idn.catalog import DEFAULT_CATALOG, Catalog, TensorSpec, load_catalog
from idn.cli import app
from idn.config import sha256_file
from idn.zoo.agreement import AGREEMENT_VIEWS, agreement, agreement_inputs
from idn.zoo.samples import read_samples
from idn.zoo.sessions import make_session, session_signature
from idn.zoo.verify import expected_problems, verify_zoo

pytestmark = pytest.mark.skipif(not DEFAULT_CATALOG.is_file(), reason="the zoo is built by `idn models build`")

SIGNATURE = ((TensorSpec("input", "UINT8", (-1, 224, 224, 3)),), (TensorSpec("probabilities", "FP32", (-1, 1000)),))
VARIANTS = ["imagenet-lite0", "imagenet-lite0-int8", "imagenet-lite1", "imagenet-lite1-int8",
            "imagenet-lite2", "imagenet-lite2-int8"]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(DEFAULT_CATALOG, verify_hashes=True)  # every file hashes to its sha256


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DEFAULT_CATALOG.read_text())["tasks"]["imagenet"]


@pytest.fixture(scope="module")
def photos(catalog) -> np.ndarray:
    x, _ = read_samples(catalog.tasks["imagenet"].samples)
    return x


@pytest.fixture(scope="module")
def answers(catalog, photos) -> dict[str, np.ndarray]:
    """Each variant's probabilities on the check photos: one session per variant, shared by the tests."""
    return {name: make_session(catalog.variant(name).path).run(None, {"input": photos})[0] for name in VARIANTS}


def test_six_variants_one_signature_files_match_the_catalog(catalog, raw):
    task = catalog.tasks["imagenet"]
    assert sorted(task.variants) == sorted(VARIANTS)
    assert (task.inputs, task.outputs) == SIGNATURE and len(task.labels) == 1000
    assert task.labels[281] == "tabby, tabby cat" and task.labels[967] == "espresso"
    for name in VARIANTS:
        v = task.variants[name]
        assert sha256_file(v.path) == v.sha256 and v.path.stat().st_size == v.bytes
        assert session_signature(make_session(v.path)) == SIGNATURE, name
        if v.quantization == "int8":
            entry = raw["variants"][name]
            assert entry["quantized_from"] == name.removesuffix("-int8") and entry["quantization_method"] == "static"
    assert sha256_file(task.samples) == raw["samples_sha256"]
    assert sha256_file(DEFAULT_CATALOG.parent / raw["calibration_samples"]) == raw["calibration_samples_sha256"]


def test_every_variant_names_the_expected_class_on_every_photo(catalog, photos, answers):
    task = catalog.tasks["imagenet"]
    assert photos.dtype == np.uint8 and photos.shape == (len(task.expected), 224, 224, 3)
    assert {e.name for e in task.expected} >= {"chelsea", "coffee"}
    for name, probs in answers.items():
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)  # softmax kept FP32
        problems, right = expected_problems(name, task, probs)
        assert problems == [] and right == len(task.expected), (name, problems)


def test_a_wrong_answer_is_reported_naming_sample_and_classes(catalog, answers):
    task = catalog.tasks["imagenet"]
    probs = answers["imagenet-lite0"].copy()
    probs[0] = 0.0
    probs[0, 7] = 1.0  # "cock" for the cat
    problems, right = expected_problems("imagenet-lite0", task, probs)
    assert right == len(task.expected) - 1
    assert [(p.where, p.field) for p in problems] == [("imagenet-lite0", "expected")]
    assert "chelsea" in problems[0].message and "'cock'" in problems[0].message and "281" in problems[0].message


def test_verify_exits_1_when_an_expected_class_is_wrong(tmp_path: Path):
    """A catalog that expects the wrong class for the cat: verify names every variant and exits 1.
    The ONNX files are linked, not copied (nothing here writes them)."""
    src, dst = DEFAULT_CATALOG.parent, tmp_path / "models"
    (dst / "samples").mkdir(parents=True)
    (dst / "imagenet").symlink_to(src / "imagenet")
    for f in ("imagenet.npz", "imagenet-calibration.npz"):
        shutil.copy(src / "samples" / f, dst / "samples" / f)
    doc = yaml.safe_load(DEFAULT_CATALOG.read_text())
    doc["tasks"] = {"imagenet": doc["tasks"]["imagenet"]}
    doc["tasks"]["imagenet"]["expected"][0]["classes"] = [7]  # the cat is a cock
    (dst / "catalog.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    problems, checks = verify_zoo(dst / "catalog.yaml")
    assert sorted((p.where, p.field) for p in problems) == sorted((n, "expected") for n in VARIANTS)
    assert all(c.expected == (len(doc["tasks"]["imagenet"]["expected"]) - 1, 5) for c in checks)
    result = CliRunner().invoke(app, ["models", "verify", "--catalog", str(dst / "catalog.yaml")])
    assert result.exit_code == 1 and "expected" in result.output


def test_accuracy_sources_cited_and_estimated_add_up(catalog, raw):
    task = catalog.tasks["imagenet"]
    published = {"imagenet-lite0": 0.751, "imagenet-lite1": 0.767, "imagenet-lite2": 0.776}
    for name, top1 in published.items():
        v = task.variants[name]
        assert (v.accuracy, v.accuracy_source) == (top1, "cited")
        assert "tensorflow/tpu" in v.accuracy_reference and "efficientnet/lite" in v.accuracy_reference
        int8 = task.variants[f"{name}-int8"]
        acc = raw["variants"][f"{name}-int8"]["accuracy"]
        assert int8.accuracy_source == "estimated" and name in int8.accuracy_reference
        assert acc["agreement_inputs"] == 5 * (1 + AGREEMENT_VIEWS)
        assert int8.accuracy == pytest.approx(top1 * acc["agreement_same"] / acc["agreement_inputs"], abs=1e-6)
        assert 0.9 < acc["agreement_same"] / acc["agreement_inputs"] <= 1.0  # int8 is close to its parent


def test_fp32_exports_matched_pytorch(raw):
    for name in ("imagenet-lite0", "imagenet-lite1", "imagenet-lite2"):
        check = raw["variants"][name]["export_check"]
        assert check["photos"] >= 15 and check["same_top1"] == check["photos"]
        assert check["max_abs_diff"] < 1e-4, (name, check)


def test_calibration_never_saw_the_check_photos(catalog, raw, photos):
    with np.load(DEFAULT_CATALOG.parent / raw["calibration_samples"], allow_pickle=False) as z:
        calibration, names = z["inputs"], [str(n) for n in z["names"]]
    assert calibration.dtype == np.uint8 and calibration.shape[1:] == (224, 224, 3) and len(calibration) >= 10
    assert not {e.name for e in catalog.tasks["imagenet"].expected} & set(names)
    flat = calibration.reshape(len(calibration), -1)
    for p in photos:  # not even as pixels
        assert not (flat == p.reshape(1, -1)).all(axis=1).any()
    views = agreement_inputs(photos)
    assert views.shape == (len(photos) * (1 + AGREEMENT_VIEWS), 224, 224, 3)
    assert np.array_equal(views, agreement_inputs(photos))  # seeded: the same views every time


def test_int8_agreement_re_measures_exactly(catalog, raw, photos):
    """The number behind imagenet-lite0-int8's estimated top-1, re-measured on this machine's class."""
    got = agreement(catalog.variant("imagenet-lite0").path, catalog.variant("imagenet-lite0-int8").path, photos)
    acc = raw["variants"]["imagenet-lite0-int8"]["accuracy"]
    assert (got.same, got.inputs) == (acc["agreement_same"], acc["agreement_inputs"])


def test_batch_one_latency_spans_four_times(catalog):
    variants = list(catalog.tasks["imagenet"].variants.values())
    classes = {hw for v in variants for hw in v.latency}
    assert classes, "imagenet is not profiled: run `idn models profile`"
    for hw in classes:
        lat = [v.latency_ms(hw, batch=1, threading="single_thread") for v in variants]
        assert None not in lat and max(lat) / min(lat) >= 4, (hw, lat)  # type: ignore[operator]
        assert all(v.load_ms(hw) for v in variants), hw
