#!/usr/bin/env bash
# One prepared run for a machine with a CUDA GPU: the test suite (CUDA tests
# included, the slow end-to-end run too), then the throughput benchmark on CUDA.
# Writes logs into ${OUT:-gpu-check}/.
set -uo pipefail
out=${OUT:-gpu-check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -m pip install -q -e '.[test]' 2>&1 | tail -2
PYTHONUNBUFFERED=1 python3 -m pytest -q tests/test_cuda.py tests/test_train.py 2>&1 | tee "$out/tests.log"
PYTHONUNBUFFERED=1 python3 -m aelab bench --device cuda 2>&1 | tee "$out/bench.log"
PYTHONUNBUFFERED=1 TEST_DEVICE=gpu python3 -m aelab tutorial --out "$out/tutorial" --quiet 2>&1 | tee "$out/tutorial.log"
