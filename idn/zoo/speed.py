"""How fast this machine runs the zoo *now*, against the catalog's profile of its class.

A catalog profile describes a hardware class at the moment it was measured. A shared
machine (a VM whose physical cores other tenants use, hyperthread siblings, frequency
scaling) runs the same model at a speed that drifts: on the 2-core machine IDN is
developed on, EfficientNet-Lite0 int8 took 2.7 ms when profiled and 4.6-7 ms of CPU
(not wall: CPU) on another afternoon. A prediction built on the stale figure is then
wrong by that factor before any modelling error, and the live comparison
(``idn demo``) would measure the machine, not the model.

:func:`speed_check` times every variant profiled on the class as the profiler does (one
intra-op thread, the task's own samples, p50, the time per variant capped as in the
profiler: ~6-10 s for the zoo); :func:`rescaled` multiplies each variant's profile on
that class by its own ratio of now to then (latency only; load times are left). It is
what an operator does when a box changes, re-profile, done quickly; the demo prints the
factors it used.

The factor is per variant: a large CNN that streams its weights through the caches
slows down more on a busy host than a small one does (1.8-2.6x for the ImageNet
variants on one afternoon, int8 more than fp32; 1.2-2x for the small CNNs).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

import numpy as np

from idn.catalog import Catalog, LatencyPoint, Variant
from idn.zoo.profile import time_runs
from idn.zoo.samples import read_samples
from idn.zoo.sessions import make_session


@dataclass(frozen=True)
class SpeedCheck:
    hardware_class: str
    per_variant: dict[str, tuple[str, float, float]]  # variant -> (task, profile p50 ms, now p50 ms)

    @property
    def variant_factors(self) -> dict[str, float]:
        """variant -> now / profile (> 1: slower now)."""
        return {n: m / p for n, (_, p, m) in self.per_variant.items()}

    @property
    def task_factors(self) -> dict[str, float]:
        """task -> median of its variants' factors (a summary)."""
        by_task: dict[str, list[float]] = {}
        for task, p, m in self.per_variant.values():
            by_task.setdefault(task, []).append(m / p)
        return {t: statistics.median(fs) for t, fs in by_task.items()}

    def describe(self) -> str:
        f = self.variant_factors.values()
        tasks = ", ".join(f"{t} {x:.2f}x" for t, x in self.task_factors.items())
        return (f"speed check: this machine runs the zoo at {tasks} (median per task; variants "
                f"{min(f):.2f}-{max(f):.2f}x) its {self.hardware_class} profile now")


def profiled_variants(catalog: Catalog, hardware_class: str) -> list[Variant]:
    return [v for v in catalog.variants.values() if v.latency_ms(hardware_class) is not None]


def speed_check(catalog: Catalog, hardware_class: str, variants: list[Variant] | None = None) -> SpeedCheck:
    """Time ``variants`` (default: every variant profiled on the class) now; compare with the profile."""
    chosen = variants if variants is not None else profiled_variants(catalog, hardware_class)
    per: dict[str, tuple[str, float, float]] = {}
    for v in chosen:
        samples = catalog.tasks[v.task].samples
        profile = v.latency_ms(hardware_class)
        if samples is None or profile is None:
            continue
        inputs, _ = read_samples(samples)
        session = make_session(v.path, "single_thread")
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(inputs[:1])}
        per[v.name] = (v.task, float(profile), float(statistics.median(time_runs(session, feed))))
    if not per:
        raise ValueError(f"no variant profiled on hardware class {hardware_class!r} has a samples file to time")
    return SpeedCheck(hardware_class, per)


def rescaled(catalog: Catalog, hardware_class: str, factors: dict[str, float]) -> Catalog:
    """The catalog with the latency points of ``hardware_class`` multiplied by each variant's
    factor (``factors``: variant name -> factor; variants without one are left as profiled)."""
    def scale(v: Variant) -> Variant:
        factor = factors.get(v.name)
        if factor is None or hardware_class not in v.latency:
            return v
        points = {mode: {b: LatencyPoint(p.p50_ms * factor, p.p95_ms * factor) for b, p in by_batch.items()}
                  for mode, by_batch in v.latency[hardware_class].items()}
        return replace(v, latency={**v.latency, hardware_class: points})
    tasks = {name: replace(t, variants={n: scale(v) for n, v in t.variants.items()})
             for name, t in catalog.tasks.items()}
    return replace(catalog, tasks=tasks)
