"""``idn models verify``: is the committed zoo what the catalog says it is?

Checks, for every task and variant, and reports all problems rather than the first:

* the ONNX file exists, hashes to its ``sha256`` and has its ``bytes``;
* the samples file hashes to ``samples_sha256`` and holds ``samples_count`` rows;
* the ONNX session's inputs/outputs are the task's declared signature;
* a ``measured`` top-1 re-measured with ONNX Runtime on the samples equals the
  catalog's (``cited`` and ``estimated`` accuracies cannot be re-measured here: there is
  no ImageNet validation set to measure them on);
* every variant names one of the expected classes on each of the task's ``expected``
  samples (the ``imagenet`` check photos);
* with ``agreement=True``: an ``estimated`` int8 top-1 is re-derived, i.e. the variant's
  agreement with its FP32 parent is re-measured on the held-out views
  (:mod:`idn.zoo.agreement`, tens of seconds) and must match the catalog's.

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

from idn.catalog import Catalog, Task, TensorSpec, parse_catalog
from idn.config import read_document, sha256_file
from idn.zoo.evaluate import Accuracy, measure_accuracy, predict
from idn.zoo.samples import read_samples
from idn.zoo.sessions import make_session, session_signature

DEFAULT_TOLERANCE = 0.002
# Agreement is counted over ~200 inputs, with int8 kernels that differ between CPUs (VNNI
# or not); on the building machine it is exact.
AGREEMENT_TOLERANCE = 0.02


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
    source: str = "measured"
    expected: tuple[int, int] | None = None      # (right, checked) on the task's expected samples
    agreement: tuple[int, int] | None = None     # (same, inputs) re-measured, when asked for

    @property
    def delta(self) -> float | None:
        return None if self.measured is None else self.measured.top1 - self.catalog_top1


def expected_problems(where: str, task: Task, probabilities: np.ndarray) -> tuple[list[Problem], int]:
    """Samples of ``task.expected`` on which ``probabilities`` (one row per sample) name no expected
    class, as problems; and how many were right."""
    problems, right = [], 0
    for e in task.expected:
        if e.sample >= len(probabilities):
            problems.append(Problem(where, "expected", f"sample {e.sample} ({e.name}) is not in {task.samples}"))
            continue
        got = int(np.argmax(probabilities[e.sample]))
        if got in e.classes:
            right += 1
            continue
        label = task.labels[got] if got < len(task.labels) else str(got)
        wanted = ", ".join(f"{c} {task.labels[c]!r}" if c < len(task.labels) else str(c) for c in e.classes)
        problems.append(Problem(where, "expected", f"sample {e.sample} ({e.name}): named {got} {label!r}, "
                                                   f"expected one of {wanted}"))
    return problems, right


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


def _agreement_problem(v_name: str, raw_acc: dict, same: int, inputs: int) -> list[Problem]:
    want_same, want_inputs = raw_acc.get("agreement_same"), raw_acc.get("agreement_inputs")
    if want_inputs is not None and want_inputs != inputs:
        return [Problem(v_name, "accuracy.agreement_inputs", f"catalog {want_inputs}, re-measured on {inputs}")]
    if want_same is not None and abs(same - want_same) / inputs > AGREEMENT_TOLERANCE:
        return [Problem(v_name, "accuracy.agreement", f"catalog {want_same}/{inputs}, re-measured {same}/{inputs} "
                                                      f"(tolerance {AGREEMENT_TOLERANCE})")]
    return []


def verify_zoo(catalog_path: Path, tolerance: float = DEFAULT_TOLERANCE, agreement: bool = False,
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
        calibration = raw_task.get("calibration_samples")
        if calibration:
            path = Path(catalog_path).parent / calibration
            if not path.is_file():
                problems.append(Problem(task.name, "calibration_samples", f"{path} missing"))
            elif sha256_file(path) != raw_task.get("calibration_samples_sha256"):
                problems.append(Problem(task.name, "calibration_samples_sha256", f"{path} does not hash to it"))
        for v in task.variants.values():
            if not v.path.is_file():
                problems.append(Problem(v.name, "file", f"{v.path} does not exist"))
                checks.append(VariantCheck(v.name, v.accuracy, None, v.accuracy_source))
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
                checks.append(VariantCheck(v.name, v.accuracy, None, v.accuracy_source))
                continue
            sig = signature_problems(v.name, task.inputs, inputs, "inputs") + \
                signature_problems(v.name, task.outputs, outputs, "outputs")
            problems += sig
            if samples is None or sig:
                checks.append(VariantCheck(v.name, v.accuracy, None, v.accuracy_source))
                continue
            acc: Accuracy | None = None
            expected: tuple[int, int] | None = None
            if v.accuracy_source == "measured":
                acc = measure_accuracy(v.path, *samples)
                if v.accuracy_samples and v.accuracy_samples != acc.samples:
                    problems.append(Problem(v.name, "accuracy.samples",
                                            f"catalog {v.accuracy_samples}, measured on {acc.samples}"))
                if abs(acc.top1 - v.accuracy) > tolerance:
                    problems.append(Problem(v.name, "accuracy.top1",
                                            f"catalog {v.accuracy:.4f}, re-measured {acc.top1:.4f} "
                                            f"({acc.correct}/{acc.samples}; tolerance {tolerance})"))
            if task.expected:
                wrong, right = expected_problems(v.name, task, predict(v.path, samples[0]))
                problems += wrong
                expected = (right, len(task.expected))
            agreed: tuple[int, int] | None = None
            raw_acc = raw_task["variants"][v.name].get("accuracy") or {}
            parent = raw_task["variants"][v.name].get("quantized_from")
            if agreement and v.accuracy_source == "estimated" and "agreement_same" in raw_acc and parent:
                from idn.zoo.agreement import agreement as measure_agreement

                got = measure_agreement(task.variants[parent].path, v.path, samples[0])
                agreed = (got.same, got.inputs)
                problems += _agreement_problem(v.name, raw_acc, got.same, got.inputs)
            checks.append(VariantCheck(v.name, v.accuracy, acc, v.accuracy_source, expected, agreed))
    return problems, checks
