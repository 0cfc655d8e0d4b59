"""``idn models build``: data -> train -> export -> quantize -> measure -> catalog.

Orchestration only (the steps live in their own modules). Order matters for
reproducibility and for honest timings: every variant of a task is trained and
evaluated first, and latency is profiled last, once nothing else of ours is running.
The ``imagenet`` task is not trained: its published weights are exported and
quantized by :mod:`idn.zoo.imagenet`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idn.config import sha256_file
from idn.zoo import specs
from idn.zoo.catalog_writer import read_raw, write_catalog
from idn.zoo.datasets import SEED, TASKS, TaskData, rng_for
from idn.zoo.evaluate import measure_accuracy
from idn.zoo.graph_stats import flops_per_sample
from idn.zoo.profile import default_hardware_class
from idn.zoo.profile_catalog import profile_zoo
from idn.zoo.samples import write_samples

Log = Callable[[str], None]

PRETRAINED_TASKS = ("imagenet",)
TASK_NAMES = (*TASKS, *PRETRAINED_TASKS)   # every task `idn models build --task` accepts


@dataclass
class BuildReport:
    seconds: dict[str, float] = field(default_factory=dict)  # step -> wall seconds
    variants: list[str] = field(default_factory=list)


def _variant_entry(spec: specs.VariantSpec, data: TaskData, rel_file: str, path: Path,
                   parameters: int) -> dict[str, Any]:
    acc = measure_accuracy(path, data.x_heldout, data.y_heldout)
    entry: dict[str, Any] = {
        "description": spec.summary,
        "file": rel_file,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "parameters": parameters,
        "flops_per_sample": flops_per_sample(path),
        "quantization": "int8" if spec.is_quantized else None,
    }
    if spec.is_quantized:
        entry["quantization_method"] = spec.quantization.removeprefix("int8-")  # type: ignore[union-attr]  # is_quantized: set
        entry["quantized_from"] = spec.quantize_from
    else:
        entry["family"] = spec.architecture.family  # type: ignore[union-attr]  # not quantized: trained
    entry["accuracy"] = {"top1": round(acc.top1, 6), "correct": acc.correct,
                         "split": data.heldout_split, "samples": acc.samples, "source": "measured"}
    return entry


def build_task(task: str, models_dir: Path, log: Log) -> tuple[dict[str, Any], dict[str, float]]:
    """Train/export/quantize/evaluate every variant of ``task``; return its catalog entry and timings."""
    from idn.zoo.export import export_module
    from idn.zoo.quantize import quantize_variant
    from idn.zoo.train import train_variant

    t0 = time.perf_counter()
    data = TASKS[task]()
    samples_rel = f"samples/{task}.npz"
    write_samples(models_dir / samples_rel, data.x_heldout, data.y_heldout)
    timings = {f"{task}: data": time.perf_counter() - t0}
    parameters: dict[str, int] = {}
    variants: dict[str, Any] = {}
    for spec in specs.variants_of(task):
        t1 = time.perf_counter()
        rel = f"{task}/{spec.name}.onnx"
        path = models_dir / rel
        meta = {"variant": spec.name, "task": task, "description": spec.summary, "labels": ",".join(data.labels)}
        if spec.is_quantized:
            calibration, _ = data.epoch(rng_for(task, "calibration"))
            quantize_variant(models_dir / f"{task}/{spec.quantize_from}.onnx", path, spec.quantization or "",
                             calibration, meta)
            parameters[spec.name] = parameters[spec.quantize_from or ""]
        else:
            result = train_variant(spec, data)
            export_module(result.module, data.features, path, meta)
            parameters[spec.name] = result.parameters
        variants[spec.name] = _variant_entry(spec, data, rel, path, parameters[spec.name])
        timings[spec.name] = time.perf_counter() - t1
        a = variants[spec.name]["accuracy"]
        log(f"  {spec.name:<24} {variants[spec.name]['bytes']:>10,} B  top1 {a['top1']:.4f}  "
            f"({timings[spec.name]:.1f} s)")
    entry = {
        "description": data.description,
        "metric": "top1",
        "inputs": [{"name": specs.INPUT_NAME, "datatype": "FP32", "shape": [-1, data.features]}],
        "outputs": [{"name": specs.OUTPUT_NAME, "datatype": "FP32", "shape": [-1, data.classes]}],
        "labels": list(data.labels),
        "samples": samples_rel,
        "samples_sha256": sha256_file(models_dir / samples_rel),
        "samples_count": int(len(data.y_heldout)),
        "variants": variants,
    }
    return entry, timings


def build_zoo(models_dir: Path, tasks: Iterable[str] | None = None, profile: bool = True,
              hardware_class: str | None = None, log: Log = print) -> BuildReport:
    """Build ``tasks`` (default: all) into ``models_dir`` and (re)write its ``catalog.yaml``.

    Tasks not rebuilt keep their existing catalog entries, and latency profiles of
    other hardware classes are carried over (the files are byte-identical, so
    those measurements still hold).
    """
    import onnxruntime
    import torch

    report = BuildReport()
    catalog_path = models_dir / "catalog.yaml"
    old = read_raw(catalog_path) or {}
    selected = list(tasks) if tasks else list(TASK_NAMES)
    doc: dict[str, Any] = {
        "version": 1,
        "build": {"command": "idn models build", "seed": SEED, "torch": torch.__version__.split("+")[0],
                  "onnxruntime": onnxruntime.__version__, "opset": specs.OPSET,
                  "flops": "2 x multiply-accumulates of Conv/Gemm/MatMul (and int8 forms) at batch 1"},
        "hardware_classes": old.get("hardware_classes", {}),
        "tasks": {},
    }
    if "imagenet" in selected:
        from idn.zoo.imagenet import build_facts

        doc["build"]["imagenet"] = build_facts()
    elif "imagenet" in old.get("build", {}):
        doc["build"]["imagenet"] = old["build"]["imagenet"]
    for task in TASK_NAMES:
        if task in selected:
            log(f"task {task}")
            if task in PRETRAINED_TASKS:
                from idn.zoo.imagenet import build_imagenet

                entry, timings = build_imagenet(models_dir, log)
            else:
                entry, timings = build_task(task, models_dir, log)
            report.seconds.update(timings)
            old_variants = (old.get("tasks", {}).get(task) or {}).get("variants", {})
            for name, v in entry["variants"].items():  # keep measurements of every class when the file is unchanged
                prev = old_variants.get(name) or {}
                for key in ("latency", "load_ms"):
                    if prev.get("sha256") == v["sha256"] and prev.get(key):
                        v[key] = prev[key]
            doc["tasks"][task] = entry
        elif task in old.get("tasks", {}):
            doc["tasks"][task] = old["tasks"][task]
    report.variants = [v for t in doc["tasks"].values() for v in t["variants"]]
    write_catalog(catalog_path, doc)
    if profile:
        t0 = time.perf_counter()
        hw = hardware_class or default_hardware_class()
        log(f"profiling latency as hardware class {hw}")
        built = {v for t in selected for v in doc["tasks"][t]["variants"]}
        profile_zoo(catalog_path, hw, only=built, log=log)
        report.seconds["profile"] = time.perf_counter() - t0
    return report
