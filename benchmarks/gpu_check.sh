#!/usr/bin/env bash
# One prepared call on a lent GPU machine: the GPU sweep (10^6 .. 10^9 paths), then the test
# suite on the GPU. Uses the machine's own Python (JAX with CUDA, no network there).
#   bash benchmarks/gpu_check.sh [OUTDIR]
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${1:-${OUT:-benchmarks/results}}"
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 \
  || echo "pip install -e . failed; using PYTHONPATH"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
timeout "${SWEEP_TIMEOUT:-260}" python3 benchmarks/bench.py --sweep 1e6,1e7,1e8,1e9 \
  --repeats "${REPEATS:-2}" --budget-s 200 --out "$OUTDIR/gpu.json" 2>&1 | tee "$OUTDIR/bench.log"
echo "sweep exit ${PIPESTATUS[0]}"
# the suite on the GPU (subprocess tests force the CPU themselves)
timeout "${TEST_TIMEOUT:-200}" python3 -m pytest -q -n 4 -p no:cacheprovider 2>&1 \
  | tee "$OUTDIR/tests.log" | tail -n 25
echo "tests exit ${PIPESTATUS[0]}"
