"""The catalog: tasks and the ONNX variants that implement them (``models/catalog.yaml``).

A task is what clients address (one input/output signature); a variant is one ONNX
file implementing it, with the facts the placement optimiser trades off: size in
bytes, accuracy measured on held-out data, and a latency profile per hardware class.

File format (paths are relative to the catalog file)::

    version: 1
    hardware_classes:
      cpu-2c: {description: "x86-64, 2 cores, ONNX Runtime CPU provider"}
    tasks:
      digits:
        description: ...
        inputs:  [{name: input, datatype: FP32, shape: [-1, 64]}]
        outputs: [{name: probabilities, datatype: FP32, shape: [-1, 10]}]
        labels: ["0", "1", ...]            # class index -> label (optional)
        samples: samples/digits.npz        # held-out inputs + labels (optional)
        variants:
          digits-mlp-s:
            file: digits/digits-mlp-s.onnx
            sha256: <hex>
            bytes: 12345
            parameters: 3000
            flops_per_sample: 6000
            quantization: null | int8
            accuracy: {top1: 0.91, split: heldout-perturbed, samples: 540}
            latency:                        # per hardware class, per threading, per batch
              cpu-2c:
                single_thread:   {1: {p50_ms: 0.02, p95_ms: 0.03}, 8: {...}, 32: {...}}
                default_threads: {1: {...}, 8: {...}, 32: {...}}
            load_ms: {cpu-2c: 1.2}          # file read + ORT session creation, p50 (optional)

Where an accuracy comes from (``accuracy.source``; default ``measured``):

* ``measured``: top-1 on the task's held-out samples, re-measured by ``idn models verify``;
* ``cited``: a published figure (e.g. ImageNet top-1 from the model's authors);
  ``accuracy.reference`` says where it is published;
* ``estimated``: derived, not measured on the task's data (e.g. an int8 variant: its
  parent's cited top-1 x their measured agreement); ``accuracy.reference`` says how.

A task may list answers its variants must give on given samples (``expected``: sample
index -> class indices that count as right); ``idn models verify`` checks them::

    expected:
      - {sample: 0, name: chelsea, classes: [281, 282, 285]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idn.config import SAFE_ID_RULE, ConfigError, Fields, read_document, safe_id, sha256_file

DATATYPES = {"BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
             "FP16", "FP32", "FP64", "BYTES"}
THREADING_MODES = ("single_thread", "default_threads")
ACCURACY_SOURCES = ("measured", "cited", "estimated")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for a dynamic dimension


@dataclass(frozen=True)
class LatencyPoint:
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class Variant:
    name: str
    task: str
    path: Path
    sha256: str
    bytes: int
    parameters: int
    flops_per_sample: float
    accuracy: float  # top-1 (or the task's metric) on the held-out split, in [0, 1]
    accuracy_split: str
    accuracy_samples: int
    quantization: str | None = None
    # hardware class -> threading mode -> batch size -> latency
    latency: dict[str, dict[str, dict[int, LatencyPoint]]] = field(default_factory=dict)
    accuracy_source: str = "measured"  # one of ACCURACY_SOURCES
    accuracy_reference: str = ""       # cited: where it is published; estimated: how it was derived
    # hardware class -> milliseconds to read the file and create its ONNX Runtime session (p50)
    load_times: dict[str, float] = field(default_factory=dict)

    def load_ms(self, hardware_class: str) -> float | None:
        """Time to load the variant on a hardware class (file read + session creation), or None
        when that class was never profiled."""
        return self.load_times.get(hardware_class)

    def batch_limit(self, hardware_class: str | None = None, threading: str = "single_thread") -> int | None:
        """The largest profiled batch size that costs no more per sample than batch 1, or
        None when the variant has no profile to tell (the node then uses its setting).

        Why per sample against batch 1: a node merges requests only when they queue, and a
        merged run must not serve them slower than one by one would. Small models get ~10x
        cheaper per sample at batch 32; the imagenet variants get *dearer* (their
        activations leave the cache), so their limit is 1 and they are not batched.
        ``hardware_class``: the node's; when it is not profiled, every profiled class must
        agree (the smallest limit is taken).
        """
        classes = ([hardware_class] if hardware_class in self.latency else sorted(self.latency))
        limits = []
        for hw in classes:
            points = self.latency[hw].get(threading, {})
            one = points.get(1)
            if one is None:
                continue
            limits.append(max(b for b, p in points.items() if p.p50_ms / b <= one.p50_ms))
        return min(limits) if limits else None

    def latency_ms(self, hardware_class: str, batch: int = 1, threading: str = "single_thread",
                   quantile: str = "p50") -> float | None:
        """Measured latency on a hardware class, or None when that class was never profiled."""
        point = self.latency.get(hardware_class, {}).get(threading, {}).get(batch)
        if point is None:
            return None
        return point.p50_ms if quantile == "p50" else point.p95_ms


@dataclass(frozen=True)
class ExpectedAnswer:
    """A right answer the task's variants must give: sample ``sample`` is one of ``classes``."""

    sample: int                  # row of the task's samples file
    classes: tuple[int, ...]     # class indices that count as right
    name: str = ""               # what the sample is, for humans (e.g. "chelsea")


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...]
    samples: Path | None
    variants: dict[str, Variant]
    expected: tuple[ExpectedAnswer, ...] = ()


@dataclass(frozen=True)
class Catalog:
    path: Path | None
    tasks: dict[str, Task]
    hardware_classes: dict[str, str]  # name -> description

    @property
    def variants(self) -> dict[str, Variant]:
        return {v.name: v for t in self.tasks.values() for v in t.variants.values()}

    def variant(self, name: str) -> Variant:
        for t in self.tasks.values():
            if name in t.variants:
                return t.variants[name]
        raise KeyError(name)

    def task_of(self, variant_name: str) -> Task:
        return self.tasks[self.variant(variant_name).task]


def _tensor_specs(f: Fields, key: str) -> tuple[TensorSpec, ...]:
    raw = f.req(key, list)
    specs = []
    for i, item in enumerate(raw):
        t = Fields(item, f.file, f"{f.path(key)}[{i}]")
        dt = t.req("datatype", str)
        if dt not in DATATYPES:
            raise t.error("datatype", f"unknown datatype {dt!r}", f"use one of {', '.join(sorted(DATATYPES))}")
        shape = t.req("shape", list)
        if not all(isinstance(d, int) and not isinstance(d, bool) and -1 <= d < 2**31 for d in shape):
            raise t.error("shape", f"dimensions must be integers >= -1, got {shape}",
                          "write integer sizes, -1 for a dynamic one, e.g. [-1, 64]")
        specs.append(TensorSpec(t.req("name", str), dt, tuple(shape)))
    return tuple(specs)


def _latency(f: Fields) -> dict[str, dict[str, dict[int, LatencyPoint]]]:
    out: dict[str, dict[str, dict[int, LatencyPoint]]] = {}
    for hw in f.data:
        hwf = f.sub(hw)
        hwf.check_keys(set(THREADING_MODES))
        out[str(hw)] = {}
        for mode in hwf.data:
            mf = hwf.sub(mode)
            points = {}
            for batch in mf.data:
                if not isinstance(batch, int) or batch < 1:
                    raise mf.error(str(batch), "batch sizes must be positive integers",
                                   "key each point by its batch size")
                pf = mf.sub(batch)
                points[batch] = LatencyPoint(pf.positive("p50_ms", maximum=1e6), pf.positive("p95_ms", maximum=1e6))
            out[str(hw)][mode] = points
    return out


def _accuracy_source(acc: Fields) -> tuple[str, str]:
    """``accuracy.source`` (default measured) and ``accuracy.reference`` (required unless measured)."""
    source = acc.opt("source", str, "measured")
    if source not in ACCURACY_SOURCES:
        raise acc.error("source", f"unknown accuracy source {source!r}",
                        "use measured (top-1 on the task's samples), cited (a published figure) "
                        "or estimated (derived; say how in `reference`)")
    reference = acc.opt("reference", str, "").strip()
    if source != "measured" and not reference:
        what = "where it is published" if source == "cited" else "how it was derived"
        raise acc.error("reference", f"a {source} accuracy needs a reference",
                        f"add `reference: <{what}>` next to `source: {source}`")
    return source, reference


def _load_times(f: Fields) -> dict[str, float]:
    """``load_ms``: hardware class -> milliseconds (> 0)."""
    return {str(hw): f.positive(str(hw), float) for hw in f.data}


def _expected(tf: Fields, n_labels: int) -> tuple[ExpectedAnswer, ...]:
    raw = tf.opt("expected", list, [])
    out: list[ExpectedAnswer] = []
    seen: set[int] = set()
    for i, item in enumerate(raw):
        ef = Fields(item, tf.file, f"{tf.path('expected')}[{i}]")
        ef.check_keys({"sample", "classes", "name"})
        sample = ef.positive("sample", int, allow_zero=True)
        if sample in seen:
            raise ef.error("sample", f"sample {sample} is listed twice", "list each sample once, with all its classes")
        seen.add(sample)
        classes = ef.req("classes", list)
        if not classes or not all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
            raise ef.error("classes", f"must be a non-empty list of class indices, got {classes!r}")
        bad = [c for c in classes if not 0 <= c < n_labels] if n_labels else [c for c in classes if c < 0]
        if bad:
            raise ef.error("classes", f"class indices {bad} are outside the task's {n_labels} labels",
                           "use indices into the task's `labels`")
        out.append(ExpectedAnswer(sample, tuple(classes), ef.opt("name", str, "")))
    return tuple(out)


def parse_catalog(doc: Any, file: str | Path | None = None, verify_hashes: bool = True) -> Catalog:
    """Validate a catalog document. Relative files resolve against the catalog's folder."""
    root = Fields(doc, file, "")
    base = Path(file).parent if file is not None else Path(".")
    hw = root.opt("hardware_classes", dict, {})
    tasks: dict[str, Task] = {}
    seen_variants: dict[str, str] = {}
    tf_all = root.sub("tasks")
    if not tf_all.data:
        raise root.error("tasks", "no tasks defined", "add at least one task with variants")
    for tname in tf_all.data:
        if not isinstance(tname, str) or not safe_id(tname):
            raise tf_all.error(str(tname), f"task name {tname!r} is not allowed", f"use {SAFE_ID_RULE}")
        tf = tf_all.sub(tname)
        samples = tf.opt("samples", str, "")
        vf_all = tf.sub("variants")
        if not vf_all.data:
            raise tf.error("variants", "task has no variants", "add at least one variant")
        variants: dict[str, Variant] = {}
        for vname in vf_all.data:
            if not isinstance(vname, str) or not safe_id(vname):
                raise vf_all.error(str(vname), f"variant name {vname!r} is not allowed", f"use {SAFE_ID_RULE}")
            vf = vf_all.sub(vname)
            if vname in seen_variants:
                raise vf_all.error(str(vname), f"variant name already used by task {seen_variants[vname]!r}",
                                   "variant names are global: rename one")
            seen_variants[vname] = tname
            path = base / vf.req("file", str)
            sha = vf.req("sha256", str)
            if verify_hashes:
                if not path.is_file():
                    raise vf.error("file", f"model file {path} does not exist",
                                   "run `idn models build` or fix the path")
                actual = sha256_file(path)
                if actual != sha:
                    raise vf.error("sha256", f"does not match {path} (file hashes to {actual})",
                                   "the file changed: rebuild the zoo or update the catalog")
            acc = vf.sub("accuracy")
            top1 = acc.req("top1", float)
            if not 0.0 <= top1 <= 1.0:
                raise acc.error("top1", f"must be within [0, 1], got {top1}", "accuracy is a fraction, e.g. 0.93")
            source, reference = _accuracy_source(acc)
            variants[vname] = Variant(
                name=str(vname), task=str(tname), path=path, sha256=sha,
                bytes=vf.positive("bytes", int), parameters=vf.positive("parameters", int, allow_zero=True, default=0),
                flops_per_sample=vf.positive("flops_per_sample", float, allow_zero=True, default=0.0),
                accuracy=top1, accuracy_split=acc.opt("split", str, ""), accuracy_samples=acc.opt("samples", int, 0),
                quantization=vf.opt("quantization", str, None),
                latency=_latency(vf.sub("latency", required=False)),
                accuracy_source=source, accuracy_reference=reference,
                load_times=_load_times(vf.sub("load_ms", required=False)),
            )
        labels = tuple(str(x) for x in tf.opt("labels", list, []))
        tasks[str(tname)] = Task(
            name=str(tname), description=tf.opt("description", str, ""),
            inputs=_tensor_specs(tf, "inputs"), outputs=_tensor_specs(tf, "outputs"),
            labels=labels, samples=(base / samples) if samples else None, variants=variants,
            expected=_expected(tf, len(labels)),
        )
    return Catalog(path=Path(file) if file is not None else None, tasks=tasks,
                   hardware_classes={str(k): str((v or {}).get("description", "")) if isinstance(v, dict) else str(v)
                                     for k, v in hw.items()})


def load_catalog(path: str | Path, verify_hashes: bool = True) -> Catalog:
    """Load and validate ``catalog.yaml``; refuses a variant whose file does not hash to its sha256."""
    return parse_catalog(read_document(path), path, verify_hashes=verify_hashes)


DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "models" / "catalog.yaml"


def default_catalog_path() -> Path:
    """The zoo shipped with the repo (``models/catalog.yaml``)."""
    if not DEFAULT_CATALOG.is_file():
        raise ConfigError(DEFAULT_CATALOG, "<file>", "the model zoo catalog is missing",
                          "run `idn models build` or pass --catalog")
    return DEFAULT_CATALOG
