#!/usr/bin/env bash
# One prepared run for a machine with a CUDA GPU: the test suite (in-process
# tests pick CUDA there, and tests/test_cuda.py covers every CUDA-only path),
# the throughput benchmark on CUDA (without and with the CUDA graph), and the
# tutorial on the GPU (wall time and memory). Writes six files into ${OUT:-gpu-check}/.
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
# the same engine with its step as a CUDA graph (off by default until this script has passed on a GPU)
PYTHONUNBUFFERED=1 AELAB_CUDA_GRAPHS=1 python3 -m aelab bench --device cuda --quick 2>&1 \
    | tee "$out/bench-graph.log" | head -16
PYTHONUNBUFFERED=1 python3 benchmarks/tutorial.py --runs 2 --device cuda 2>&1 | tee "$out/tutorial.log"
