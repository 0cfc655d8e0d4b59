"""Writing ``models/catalog.yaml``: the build's and the profiler's output.

Pure functions build and update the document (plain dicts in a fixed key order, so a
rebuild that changes nothing changes no byte); ``write_catalog`` validates the
document with the same parser every reader uses before it touches the file, so the
zoo can never hold a catalog that its own loader would refuse.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from idn.catalog import parse_catalog
from idn.zoo.profile import Profile

HEADER = ("# Written by `idn models build` (and `idn models profile`, which updates `latency`).\n"
          "# Do not edit by hand: the loader checks every sha256, `idn models verify` re-measures.\n")


def _sig(x: float) -> float:
    """4 significant digits: latencies are noisy well before that, and diffs stay readable."""
    return float(f"{x:.4g}")


def latency_block(profile: Profile) -> dict[str, dict[int, dict[str, float]]]:
    return {mode: {b: {"p50_ms": _sig(p.p50_ms), "p95_ms": _sig(p.p95_ms)} for b, p in points.items()}
            for mode, points in profile.points.items()}


def with_profiles(doc: dict[str, Any], hardware_class: str, hardware_info: dict[str, Any],
                  profiles: dict[str, Profile], load_times: dict[str, float] | None = None) -> dict[str, Any]:
    """A copy of ``doc`` with ``profiles`` (variant -> Profile) and ``load_times`` (variant ->
    milliseconds) stored under ``hardware_class``.

    Profiles of other hardware classes, and of variants not in ``profiles``, are kept.
    """
    out = copy.deepcopy(doc)
    classes = out.setdefault("hardware_classes", {})
    classes[hardware_class] = dict(hardware_info)
    out["hardware_classes"] = dict(sorted(classes.items()))
    for task in out["tasks"].values():
        for name, variant in task["variants"].items():
            if name in profiles:
                latency = variant.get("latency") or {}
                latency[hardware_class] = latency_block(profiles[name])
                variant["latency"] = dict(sorted(latency.items()))
            if load_times and name in load_times:
                loads = variant.get("load_ms") or {}
                loads[hardware_class] = _sig(load_times[name])
                variant["load_ms"] = dict(sorted(loads.items()))
    return out


def read_raw(path: Path) -> dict[str, Any] | None:
    """The catalog document as plain data, or None when there is none yet."""
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def write_catalog(path: Path, doc: dict[str, Any]) -> None:
    """Validate ``doc`` (hashes included) against the files beside ``path``, then write it."""
    parse_catalog(doc, path, verify_hashes=True)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(HEADER + text, encoding="utf-8")
    tmp.replace(path)
