"""Pure pieces of the zoo build: data generation, sample files, FLOP counting, percentiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from idn.zoo import signals
from idn.zoo.graph_stats import flops_per_sample
from idn.zoo.profile import default_hardware_class, percentile_point
from idn.zoo.samples import read_samples, write_samples


def test_waveforms_are_deterministic_and_balanced():
    x1, y1 = signals.make_waveforms(160, np.random.default_rng(7))
    x2, y2 = signals.make_waveforms(160, np.random.default_rng(7))
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert x1.shape == (160, signals.SIGNAL_LENGTH) and x1.dtype == np.float32
    assert np.bincount(y1).tolist() == [20] * len(signals.CLASSES)
    x3, _ = signals.make_waveforms(160, np.random.default_rng(8))
    assert not np.array_equal(x1, x3)


def test_image_perturbation_is_deterministic_and_bounded():
    pytest.importorskip("scipy", reason="perturbation needs the zoo extra")
    from idn.zoo.perturb import perturb_images

    imgs = np.random.default_rng(0).uniform(size=(20, 8, 8)).astype(np.float32)
    a = perturb_images(imgs, np.random.default_rng(1))
    b = perturb_images(imgs, np.random.default_rng(1))
    assert np.array_equal(a, b) and a.min() >= 0.0 and a.max() <= 1.0
    assert not np.array_equal(a, imgs)


def test_sample_files_are_byte_reproducible(tmp_path: Path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.array([0, 2, 1], dtype=np.int64)
    write_samples(tmp_path / "a.npz", x, y)
    write_samples(tmp_path / "b.npz", x, y)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    rx, ry = read_samples(tmp_path / "a.npz")
    assert np.array_equal(rx, x) and np.array_equal(ry, y)


def _model(nodes, inits, in_shape, out_shape, path: Path) -> Path:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(a, n) for n, a in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_flops_count_matmul_gemm_and_conv(tmp_path: Path):
    w = np.zeros((64, 10), np.float32)
    mm = _model([helper.make_node("MatMul", ["input", "w"], ["out"])], {"w": w}, ["N", 64], ["N", 10],
                tmp_path / "mm.onnx")
    assert flops_per_sample(mm) == 2 * 64 * 10
    gemm = _model([helper.make_node("Gemm", ["input", "w", "b"], ["out"], transB=1)],
                  {"w": np.zeros((10, 64), np.float32), "b": np.zeros(10, np.float32)}, ["N", 64], ["N", 10],
                  tmp_path / "gemm.onnx")
    assert flops_per_sample(gemm) == 2 * 64 * 10
    conv = _model([helper.make_node("Conv", ["input", "k"], ["out"], pads=[1, 1, 1, 1])],
                  {"k": np.zeros((16, 3, 3, 3), np.float32)}, ["N", 3, 8, 8], ["N", 16, 8, 8],
                  tmp_path / "conv.onnx")
    assert flops_per_sample(conv) == 2 * (16 * 8 * 8) * (3 * 3 * 3)


def test_percentiles_and_hardware_class_key():
    p = percentile_point([float(i) for i in range(1, 101)])
    assert p.p50_ms == pytest.approx(50.5) and p.p95_ms == pytest.approx(95.05)
    key = default_hardware_class()
    assert key.startswith("cpu-") and key.endswith("c")


def test_uint8_samples_stay_uint8(tmp_path: Path):
    x = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    write_samples(tmp_path / "p.npz", x, np.array([281, 967]))
    rx, ry = read_samples(tmp_path / "p.npz")
    assert rx.dtype == np.uint8 and np.array_equal(rx, x) and ry.tolist() == [281, 967]


def test_photo_views_are_seeded_numpy_and_keep_the_shape():
    from idn.zoo.photos import _resize_bilinear, views

    rng = np.random.default_rng(0)
    photos = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    a = views(photos, 3, np.random.default_rng(5))
    b = views(photos, 3, np.random.default_rng(5))
    assert a.shape == (6, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, views(photos, 3, np.random.default_rng(6)))
    same = photos[0].astype(np.float32)
    np.testing.assert_allclose(_resize_bilinear(same, 32), same)  # same size: identity
    up = _resize_bilinear(np.full((4, 4, 3), 7.0, np.float32), 9)
    assert up.shape == (9, 9, 3) and np.allclose(up, 7.0)


def test_load_time_is_measured_for_a_real_file(tmp_path: Path):
    from idn.zoo.profile import load_ms

    w = np.zeros((64, 10), np.float32)
    path = _model([helper.make_node("MatMul", ["input", "w"], ["out"])], {"w": w}, ["N", 64], ["N", 10],
                  tmp_path / "mm.onnx")
    ms = load_ms(path, repeats=3)
    assert 0 < ms < 5000


def test_imagenet_classes_are_the_standard_1000():
    from idn.zoo.imagenet_classes import IMAGENET_CLASSES

    wnids = [w for w, _ in IMAGENET_CLASSES]
    assert len(IMAGENET_CLASSES) == 1000 and wnids == sorted(wnids) and len(set(wnids)) == 1000
    assert IMAGENET_CLASSES[0] == ("n01440764", "tench, Tinca tinca")
    assert IMAGENET_CLASSES[281][1].startswith("tabby") and IMAGENET_CLASSES[967][1] == "espresso"


def test_check_and_calibration_photos_are_disjoint_and_have_sources():
    from idn.zoo.photos import PHOTOS, photos

    check, cal = photos("check"), photos("calibration")
    assert len(check) >= 5 and len(cal) >= 10 and len(check) + len(cal) == len(PHOTOS)
    assert not {p.name for p in check} & {p.name for p in cal}
    assert not {p.sha256 for p in check} & {p.sha256 for p in cal}
    for p in PHOTOS:
        assert p.licence and p.credit and len(p.sha256) == 64
        assert bool(p.classes) == (p.role == "check") and all(0 <= c < 1000 for c in p.classes)


def test_shipped_photos_are_the_packages_photos_prepared():
    """With the build's packages installed (`make models`), the shipped arrays are reproducible."""
    pytest.importorskip("skimage", reason="the photos come from the zoo extra's packages")
    pytest.importorskip("sklearn")
    from idn.catalog import DEFAULT_CATALOG
    from idn.zoo.photos import photos, prepared

    x, _ = read_samples(DEFAULT_CATALOG.parent / "samples" / "imagenet.npz")
    assert np.array_equal(x, np.stack([prepared(p) for p in photos("check")]))


def test_best_of_passes_keeps_the_least_disturbed_point():
    from idn.catalog import LatencyPoint
    from idn.zoo.profile import Profile
    from idn.zoo.profile_catalog import best_of

    a = Profile({"single_thread": {1: LatencyPoint(5.0, 9.0), 8: LatencyPoint(20.0, 21.0)}})
    b = Profile({"single_thread": {1: LatencyPoint(4.0, 12.0), 8: LatencyPoint(30.0, 31.0)}})
    best = best_of(a, b).points["single_thread"]
    assert best[1] == LatencyPoint(4.0, 12.0) and best[8] == LatencyPoint(20.0, 21.0)


def test_thread_clock_times_the_single_thread_mode(tmp_path: Path):
    from idn.zoo.profile import load_ms, profile_variant

    w = np.zeros((64, 10), np.float32)
    path = _model([helper.make_node("MatMul", ["input", "w"], ["out"])], {"w": w}, ["N", 64], ["N", 10],
                  tmp_path / "mm.onnx")
    x = np.ones((4, 64), np.float32)
    prof = profile_variant(path, x, batch_sizes=(1, 8), clock="thread")
    assert set(prof.points) == {"single_thread", "default_threads"}
    assert all(p.p95_ms >= p.p50_ms > 0 for points in prof.points.values() for p in points.values())
    assert load_ms(path, repeats=2, clock="thread") > 0
    with pytest.raises(ValueError, match="clock"):
        profile_variant(path, x, clock="sundial")
