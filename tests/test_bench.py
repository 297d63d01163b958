import json

from aelab.bench import format_table, run_benchmark


def test_benchmark_reports_every_row_and_the_ratios():
    result = run_benchmark(device_name="cpu", typical_samples=640, sweeps=0.02)
    json.dumps(result)
    assert set(result) == {"device", "threads", "roof_gflops", "rows", "ratios"}
    engines = {(r["model"], r["engine"], r["batch"]) for r in result["rows"]}
    for model in ("simple", "deep"):
        assert {(model, "typical", 64), (model, "aelab", 64), (model, "aelab", 1024), (model, "encode", 8192),
                (model, "decode", 8192), (model, "roof", None)} <= engines
    for r in result["rows"]:
        assert set(r) == {"model", "engine", "batch", "samples_per_second", "roof_fraction"}
        assert r["samples_per_second"] > 0
    assert set(result["ratios"]) == {"simple_b64_vs_typical", "deep_b64_vs_typical"}
    assert "aelab vs typical" in format_table(result)
