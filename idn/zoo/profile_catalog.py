"""`idn models profile`: measure the committed zoo on this machine and write the profiles into the catalog.

Per variant: the latency profile (``latency``) and the load time (``load_ms``), both
under the hardware class.

Refuses to profile a file whose sha256 does not match the catalog (the numbers
would describe a different model), and keeps every other hardware class's profile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from idn.catalog import load_catalog
from idn.zoo.catalog_writer import read_raw, with_profiles, write_catalog
from idn.zoo.profile import Profile, default_hardware_class, hardware_description, load_ms, profile_variant
from idn.zoo.samples import read_samples


def best_of(a: Profile, b: Profile) -> Profile:
    """Per (threading, batch), the measurement with the lower p50 (its p95 with it)."""
    return Profile({mode: {batch: min(point, b.points[mode][batch], key=lambda p: p.p50_ms)
                           for batch, point in points.items()} for mode, points in a.points.items()})


def profile_zoo(catalog_path: Path, hardware_class: str | None = None, only: set[str] | None = None,
                log: Callable[[str], None] = print, latency: bool = True, passes: int = 1,
                clock: str = "wall") -> dict[str, Profile]:
    """Profile every variant (or those in ``only``) and rewrite the catalog's latency and load time
    for the class; ``latency=False`` measures load times only (seconds, not minutes).

    ``passes`` > 1 measures everything that many times, one variant after the other, and keeps
    per point the pass with the lowest p50 (and the lowest load time): on a machine others share,
    the pass that was least disturbed. ``clock="thread"``: the single-threaded mode and the load
    are timed by thread CPU time (:mod:`idn.zoo.profile`); the hardware class lists those
    variants under ``thread_cpu_timed``.
    """
    catalog = load_catalog(catalog_path, verify_hashes=True)
    hw = hardware_class or default_hardware_class()
    profiles: dict[str, Profile] = {}
    loads: dict[str, float] = {}
    for n in range(passes):
        if passes > 1:
            log(f" pass {n + 1}/{passes}")
        for task in catalog.tasks.values():
            if task.samples is None:
                raise ValueError(f"task {task.name} has no samples file to profile with")
            inputs, _ = read_samples(task.samples)
            for v in task.variants.values():
                if only and v.name not in only:
                    continue
                load = load_ms(v.path, clock=clock)
                loads[v.name] = min(load, loads.get(v.name, load))
                if not latency:
                    log(f"  {v.name:<24} load {load:7.1f} ms")
                    continue
                p = profile_variant(v.path, inputs, clock=clock)
                profiles[v.name] = best_of(profiles[v.name], p) if v.name in profiles else p
                st, dt = p.points["single_thread"], p.points["default_threads"]
                log(f"  {v.name:<24} b1 {st[1].p50_ms:8.3f} ms (1 thread)  {dt[1].p50_ms:8.3f} ms (default)  "
                    f"b32 {st[32].p50_ms:8.2f} ms  load {load:7.1f} ms")
    doc = read_raw(catalog_path)
    assert doc is not None
    info = hardware_description()
    # Which variants' last single-thread latency / load time on this class were timed by thread CPU time.
    old = set((doc.get("hardware_classes", {}).get(hw) or {}).get("thread_cpu_timed") or [])
    measured = set(profiles) | set(loads)
    timed = (old - measured) | (measured if clock == "thread" else set())
    if timed:
        info["thread_cpu_timed"] = sorted(timed)
    write_catalog(catalog_path, with_profiles(doc, hw, info, profiles, loads))
    return profiles
