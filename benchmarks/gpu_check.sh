#!/usr/bin/env bash
# One prepared run for a machine with a CUDA GPU: the test suite (in-process
# tests pick CUDA there, and tests/test_cuda.py covers every CUDA-only path),
# the throughput benchmark on CUDA, and the tutorial on the GPU.
# Writes at most six files into ${OUT:-gpu-check}/.
#
# For a machine without network access, put wheels of the missing packages
# (e.g. constriction) into .whl/ first; they are installed to /tmp/site.
set -uo pipefail
out=${OUT:-gpu-check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
python3 -c "import aelab, torch, numpy, numba; print('aelab', aelab.__version__, 'torch', torch.__version__, \
'numpy', numpy.__version__, 'numba', numba.__version__, 'cuda', torch.cuda.is_available())" | tee "$out/versions.txt"
PYTHONUNBUFFERED=1 timeout 300 python3 -m pytest -q -p no:cacheprovider -m "not slow" tests/ 2>&1 \
    | tee "$out/tests.log" | tail -25
PYTHONUNBUFFERED=1 python3 -m aelab bench --device cuda 2>&1 | tee "$out/bench.log" | head -16
tutorial=$(mktemp -d)
start=$(python3 -c 'import time; print(time.time())')
PYTHONUNBUFFERED=1 TEST_DEVICE=gpu python3 -m aelab tutorial --out "$tutorial" --quiet > "$out/tutorial.log" 2>&1
echo "tutorial exit $?, $(python3 -c "import time; print(round(time.time() - $start, 1))") s wall" \
    | tee -a "$out/tutorial.log"
cp "$tutorial/summary.json" "$out/summary.json" 2>/dev/null
python3 - "$out/summary.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(s["device"], f"{s['total_seconds']:.1f} s")
for name, m in s["models"].items():
    print(name, f"train {m['train_error_pct']:.2f}% test {m['test_error_pct']:.2f}% "
          f"{m['samples_per_second']:,.0f} samples/s")
EOF
