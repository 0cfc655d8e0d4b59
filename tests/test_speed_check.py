"""The speed check times real variants and rescales exactly the profiles of one class."""

from __future__ import annotations

from idn.catalog import default_catalog_path, load_catalog
from idn.zoo.speed import rescaled, speed_check

HW = "cpu-x86_64-2c"


def test_rescaled_multiplies_one_class_per_variant_and_leaves_the_rest():
    cat = load_catalog(default_catalog_path(), verify_hashes=False)
    a, b = "digits-cnn-l", "imagenet-lite0-int8"
    out = rescaled(cat, HW, {a: 2.0, b: 0.5})
    for name, f in ((a, 2.0), (b, 0.5)):
        for q in ("p50", "p95"):
            assert out.variant(name).latency_ms(HW, quantile=q) == cat.variant(name).latency_ms(HW, quantile=q) * f
        assert out.variant(name).latency_ms(HW, batch=32) == cat.variant(name).latency_ms(HW, batch=32) * f
    other = "waveforms-cnn-s"
    assert out.variant(other).latency_ms(HW) == cat.variant(other).latency_ms(HW)
    assert out.variant(a).accuracy == cat.variant(a).accuracy
    assert cat.variant(a).latency_ms(HW) != out.variant(a).latency_ms(HW)  # the original is untouched


def test_speed_check_times_the_variants_it_is_given():
    cat = load_catalog(default_catalog_path(), verify_hashes=False)
    chosen = [cat.variant("digits-cnn-s"), cat.variant("waveforms-mlp-s")]
    check = speed_check(cat, HW, chosen)
    assert set(check.per_variant) == {"digits-cnn-s", "waveforms-mlp-s"}
    assert set(check.task_factors) == {"digits", "waveforms"}
    for task, profile, now in check.per_variant.values():
        assert now > 0 and profile == cat.variant(
            "digits-cnn-s" if task == "digits" else "waveforms-mlp-s").latency_ms(HW)
    assert "speed check" in check.describe()
