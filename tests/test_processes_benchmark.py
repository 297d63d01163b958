"""benchmarks/processes.py runs and reports each launch beside one plain process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "processes.py"


@pytest.mark.slow
def test_processes_benchmark_prints_each_launch_and_json_last() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--model", "simple", "--sweeps", "0.05",
                           "--minibatches", "256"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    launches = [row["launch"] for row in report["rows"]]
    assert launches == ["python -m aelab", "torchrun x1", "torchrun x2"]
    assert all(row["samples_per_second"] > 0 and row["minibatch"] == 256 for row in report["rows"])
    assert report["rows"][0]["ratio_to_one_process"] == 1.0
    # the same model from 1 and 2 processes: the same test PSNR
    psnrs = [row["test_psnr_db"] for row in report["rows"]]
    assert max(psnrs) - min(psnrs) < 0.01
