"""The zoo as a table (``idn models list``, the README): pure formatting of a Catalog."""

from __future__ import annotations

from idn.catalog import Catalog, Variant

COLUMNS = ("task", "variant", "bytes", "params", "MFLOPs", "quant", "top-1 %", "top-1 source", "p50 b1 1-thr ms",
           "p50 b1 default ms", "p50 b32 1-thr ms", "load ms")
LEFT = {"task", "variant", "quant", "top-1 source"}  # the other columns are numbers


def pick_hardware_class(catalog: Catalog, preferred: str | None) -> str | None:
    """``preferred`` when profiled, else the first profiled class (or None)."""
    profiled = sorted({hw for v in catalog.variants.values() for hw in v.latency})
    if preferred in profiled:
        return preferred
    return profiled[0] if profiled else None


def _ms(v: Variant, hw: str | None, batch: int, threading: str) -> str:
    x = v.latency_ms(hw, batch, threading) if hw else None
    return "-" if x is None else f"{x:.4g}"


def _load(v: Variant, hw: str | None) -> str:
    x = v.load_ms(hw) if hw else None
    return "-" if x is None else f"{x:.4g}"


def rows(catalog: Catalog, hw: str | None) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for task in catalog.tasks.values():
        for v in sorted(task.variants.values(), key=lambda v: (v.bytes, v.name)):
            out.append((task.name, v.name, f"{v.bytes:,}", f"{v.parameters:,}", f"{v.flops_per_sample / 1e6:.3f}",
                        v.quantization or "fp32", f"{100 * v.accuracy:.2f}", v.accuracy_source,
                        _ms(v, hw, 1, "single_thread"), _ms(v, hw, 1, "default_threads"),
                        _ms(v, hw, 32, "single_thread"), _load(v, hw)))
    return out


def markdown(catalog: Catalog, hw: str | None) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" if c in LEFT else "---:" for c in COLUMNS) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(catalog, hw)]
    return "\n".join(lines)
