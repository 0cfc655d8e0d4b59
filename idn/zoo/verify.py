"""``idn models verify``: is the committed zoo what the catalog says it is?

Checks, for every task and variant, and reports all problems rather than the first:

* the ONNX file exists, hashes to its ``sha256`` and has its ``bytes``;
* the samples file hashes to ``samples_sha256`` and holds ``samples_count`` rows;
* the ONNX session's inputs/outputs are the task's declared signature;
* top-1 accuracy re-measured with ONNX Runtime on the samples equals the catalog's.

Accuracy tolerance: on the machine that built the catalog the re-measurement is
exact (single-threaded ORT is deterministic; the test suite checks the correct count
bit for bit there). On another CPU, ORT picks other kernels (AVX2 vs AVX-512 vs
VNNI, the int8 ones most of all), which can flip a sample whose two best classes
tie within float rounding; ``DEFAULT_TOLERANCE`` (0.2 accuracy points, 1-2 samples
out of 600-1000) absorbs that and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idn.catalog import Catalog, TensorSpec, parse_catalog
from idn.config import read_document, sha256_file
from idn.zoo.evaluate import Accuracy, measure_accuracy
from idn.zoo.samples import read_samples
from idn.zoo.sessions import make_session, session_signature

DEFAULT_TOLERANCE = 0.002


@dataclass(frozen=True)
class Problem:
    where: str      # task or variant
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: {self.message}"


@dataclass(frozen=True)
class VariantCheck:
    variant: str
    catalog_top1: float
    measured: Accuracy | None

    @property
    def delta(self) -> float | None:
        return None if self.measured is None else self.measured.top1 - self.catalog_top1


def signature_problems(where: str, declared: tuple[TensorSpec, ...], actual: tuple[TensorSpec, ...],
                       kind: str) -> list[Problem]:
    """Differences between a task's declared tensors and what an ONNX session exposes."""
    if len(declared) != len(actual):
        return [Problem(where, kind, f"task declares {len(declared)} tensors, model has {len(actual)}")]
    problems = []
    for d, a in zip(declared, actual):
        if (d.name, d.datatype, d.shape) != (a.name, a.datatype, a.shape):
            problems.append(Problem(where, kind, f"declared {d} but the model has {a}"))
    return problems


def verify_zoo(catalog_path: Path, tolerance: float = DEFAULT_TOLERANCE,
               ) -> tuple[list[Problem], list[VariantCheck]]:
    """All problems found (empty: the zoo is what the catalog says) and each variant's re-measurement."""
    raw = read_document(catalog_path)
    catalog: Catalog = parse_catalog(raw, catalog_path, verify_hashes=False)
    problems: list[Problem] = []
    checks: list[VariantCheck] = []
    for task in catalog.tasks.values():
        raw_task = raw["tasks"][task.name]
        samples: tuple[np.ndarray, np.ndarray] | None = None
        if task.samples is None or not task.samples.is_file():
            problems.append(Problem(task.name, "samples", f"samples file {task.samples} missing"))
        else:
            want = raw_task.get("samples_sha256")
            if want and sha256_file(task.samples) != want:
                problems.append(Problem(task.name, "samples_sha256", f"{task.samples} does not hash to it"))
            samples = read_samples(task.samples)
            count = raw_task.get("samples_count")
            if count is not None and len(samples[1]) != count:
                problems.append(Problem(task.name, "samples_count", f"{count} in catalog, {len(samples[1])} in file"))
        for v in task.variants.values():
            if not v.path.is_file():
                problems.append(Problem(v.name, "file", f"{v.path} does not exist"))
                checks.append(VariantCheck(v.name, v.accuracy, None))
                continue
            actual_sha = sha256_file(v.path)
            if actual_sha != v.sha256:
                problems.append(Problem(v.name, "sha256", f"{v.path} hashes to {actual_sha}"))
            if v.path.stat().st_size != v.bytes:
                problems.append(Problem(v.name, "bytes", f"catalog {v.bytes}, file {v.path.stat().st_size}"))
            try:
                inputs, outputs = session_signature(make_session(v.path))
            except Exception as e:  # a corrupt file: report it with the others, don't crash
                problems.append(Problem(v.name, "file", f"ONNX Runtime cannot load {v.path}: {e}"))
                checks.append(VariantCheck(v.name, v.accuracy, None))
                continue
            problems += signature_problems(v.name, task.inputs, inputs, "inputs")
            problems += signature_problems(v.name, task.outputs, outputs, "outputs")
            if samples is None:
                checks.append(VariantCheck(v.name, v.accuracy, None))
                continue
            acc = measure_accuracy(v.path, *samples)
            checks.append(VariantCheck(v.name, v.accuracy, acc))
            if v.accuracy_samples and v.accuracy_samples != acc.samples:
                problems.append(Problem(v.name, "accuracy.samples",
                                        f"catalog {v.accuracy_samples}, measured on {acc.samples}"))
            if abs(acc.top1 - v.accuracy) > tolerance:
                problems.append(Problem(v.name, "accuracy.top1",
                                        f"catalog {v.accuracy:.4f}, re-measured {acc.top1:.4f} "
                                        f"({acc.correct}/{acc.samples}; tolerance {tolerance})"))
    return problems, checks
