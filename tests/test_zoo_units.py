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


def test_load_time_is_measured_for_a_real_file(tmp_path: Path):
    from idn.zoo.profile import load_ms

    w = np.zeros((64, 10), np.float32)
    path = _model([helper.make_node("MatMul", ["input", "w"], ["out"])], {"w": w}, ["N", 64], ["N", 10],
                  tmp_path / "mm.onnx")
    ms = load_ms(path, repeats=3)
    assert 0 < ms < 5000
