import json

import pytest

from aelab.evaluation.bench import format_table, run_benchmark


def test_benchmark_reports_every_row_and_the_ratios():
    result = run_benchmark(device_name="cpu", typical_samples=640, sweeps=0.02)
    json.dumps(result)
    assert set(result) == {"device", "threads", "roof_gflops", "roof_gflops_each", "rows", "ratios"}
    # the roof is the median of three measurements: start, between the models, end
    each = result["roof_gflops_each"]
    assert len(each) == 3 and result["roof_gflops"] == sorted(each)[1]
    deep_roof = next(r for r in result["rows"] if r["model"] == "deep" and r["engine"] == "roof")
    assert deep_roof["samples_per_second"] * 6 * 221184 == pytest.approx(result["roof_gflops"] * 1e9)
    engines = {(r["model"], r["engine"], r["batch"]) for r in result["rows"]}
    for model in ("simple", "deep"):
        assert {(model, "typical", 64), (model, "aelab", 64), (model, "aelab", 1024), (model, "encode", 8192),
                (model, "decode", 8192), (model, "roof", None)} <= engines
    for r in result["rows"]:
        assert set(r) == {"model", "engine", "batch", "samples_per_second", "roof_fraction"}
        assert r["samples_per_second"] > 0
    assert set(result["ratios"]) == {"simple_b64_vs_typical", "deep_b64_vs_typical"}
    assert "aelab vs typical" in format_table(result)


def test_inference_is_measured_against_the_half_of_the_network_it_runs():
    from aelab.evaluation.bench import macs_per_sample
    assert macs_per_sample("simple", "encoder") == 784 * 32
    assert macs_per_sample("deep", "decoder") == 32 * 64 + 64 * 128 + 128 * 784
    for kind in ("simple", "deep"):
        assert macs_per_sample(kind, "encoder") + macs_per_sample(kind, "decoder") == macs_per_sample(kind)
