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


def profile_zoo(catalog_path: Path, hardware_class: str | None = None, only: set[str] | None = None,
                log: Callable[[str], None] = print, latency: bool = True) -> dict[str, Profile]:
    """Profile every variant (or those in ``only``) and rewrite the catalog's latency and load time
    for the class; ``latency=False`` measures load times only (seconds, not minutes)."""
    catalog = load_catalog(catalog_path, verify_hashes=True)
    hw = hardware_class or default_hardware_class()
    profiles: dict[str, Profile] = {}
    loads: dict[str, float] = {}
    for task in catalog.tasks.values():
        if task.samples is None:
            raise ValueError(f"task {task.name} has no samples file to profile with")
        inputs, _ = read_samples(task.samples)
        for v in task.variants.values():
            if only and v.name not in only:
                continue
            loads[v.name] = load_ms(v.path)
            if not latency:
                log(f"  {v.name:<24} load {loads[v.name]:7.1f} ms")
                continue
            profiles[v.name] = p = profile_variant(v.path, inputs)
            st, dt = p.points["single_thread"], p.points["default_threads"]
            log(f"  {v.name:<24} b1 {st[1].p50_ms:8.3f} ms (1 thread)  {dt[1].p50_ms:8.3f} ms (default)  "
                f"b32 {st[32].p50_ms:8.2f} ms  load {loads[v.name]:7.1f} ms")
    doc = read_raw(catalog_path)
    assert doc is not None
    write_catalog(catalog_path, with_profiles(doc, hw, hardware_description(), profiles, loads))
    return profiles
