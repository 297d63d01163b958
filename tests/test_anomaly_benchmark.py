"""benchmarks/anomaly.py in a tiny setting: one digit, one model, a fraction of a sweep."""
import json

from helpers import benchmark_script


def test_anomaly_benchmark_runs_and_prints_json_last(capsys):
    script = benchmark_script("anomaly")
    assert script.main(["--quick", "--digits", "1", "--models", "deep", "--sweeps", "0.5", "--svm-limit", "300"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| method | 1 | mean")
    result = json.loads(lines[-1])
    assert set(result["mean_auroc"]) == {"aelab deep", "PCA-16", "IsolationForest", "OneClassSVM"}
    assert all(0 <= v <= 1 for v in result["mean_auroc"].values())
