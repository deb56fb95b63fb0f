#!/usr/bin/env bash
# One prepared call on a lent GPU machine: kernel layouts at one chunk, the GPU sweep
# (10^6 .. 10^9 paths) with the fastest layout, then the engine and scale tests on the GPU,
# then the fused Pallas-Triton month loop (mcsim.engine.fused): its test compiled against
# the scan kernel, and its timing against the scan kernel.
# Uses the machine's own Python (JAX with CUDA; no network there).
#   bash benchmarks/gpu_check.sh [OUTDIR]
# Time budget: every step runs under `timeout`; the defaults add up to 90 + 150 + 60 + 90
# + 60 + 90 = 540 s at most, inside one device call (600 s) and a 15-minute lease with the
# machine's start. FUSED=none skips the fused steps; FUSED_ONLY=1 runs only them (about
# 2.5 minutes at most, for a short device lease).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR="${1:-${OUT:-benchmarks/results}}"
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 \
  || echo "pip install -e . failed; using PYTHONPATH"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${FUSED_ONLY:-}" = "1" ]; then
  VARIANTS=none BATCH=none SWEEP_STEP=none TESTS_STEP=none
fi
if [ "${VARIANTS:-}" != "none" ]; then
  timeout "${VARIANTS_TIMEOUT:-90}" python3 benchmarks/kernel_variants.py --chunk 524288 \
    --variants "${VARIANTS:-1x1,1x32,4x32,8x32}" --repeats 5 --best "$OUTDIR/layouts.json" \
    2>&1 | tee "$OUTDIR/layouts.log"
fi
LAYOUT=$(python3 -c "import json,sys; b=json.load(open(sys.argv[1]))['best']; \
print(f\"--unroll {b['unroll']} --hist-copies {b['hist_copies']}\")" "$OUTDIR/layouts.json" \
  2>/dev/null || echo "")
echo "layout: ${LAYOUT:-device default}"
if [ "${SWEEP_STEP:-}" != "none" ]; then
  timeout "${SWEEP_TIMEOUT:-150}" python3 benchmarks/bench.py --sweep "${SWEEP:-1e6,1e7,1e8,1e9}" $LAYOUT \
    --repeats "${REPEATS:-1}" --budget-s 120 --e2e-repeats 0 --out "$OUTDIR/gpu.json" 2>&1 | tee "$OUTDIR/bench.log"
  echo "sweep exit ${PIPESTATUS[0]}"
fi
if [ "${BATCH:-}" != "none" ]; then
  timeout "${BATCH_TIMEOUT:-60}" python3 benchmarks/sweep_batch.py --points 8 \
    --paths "${BATCH_PATHS:-1048576}" --out "$OUTDIR/sweep_batch.json" 2>&1 \
    | tee "$OUTDIR/sweep_batch.log"
fi
if [ "${TESTS_STEP:-}" != "none" ]; then
  timeout "${TEST_TIMEOUT:-90}" python3 -m pytest -q -n 8 -p no:cacheprovider \
    ${TESTS:-tests/test_engine.py tests/test_scale.py} 2>&1 | tee "$OUTDIR/tests.log" | tail -n 8
  echo "tests exit ${PIPESTATUS[0]}"
fi
if [ "${FUSED:-}" != "none" ]; then
  # the same equality test as on the CPU, with the compiled Triton kernel (not interpret)
  timeout "${FUSED_TEST_TIMEOUT:-60}" env MCSIM_FUSED_INTERPRET=0 python3 -m pytest -q \
    -p no:cacheprovider tests/test_fused_kernel.py 2>&1 | tee "$OUTDIR/fused_tests.log" \
    | tail -n 30
  echo "fused tests exit ${PIPESTATUS[0]}"
  timeout "${FUSED_BENCH_TIMEOUT:-90}" python3 benchmarks/fused_bench.py \
    --paths "${FUSED_PATHS:-1e6,1e7,1e8}" --block "${FUSED_BLOCKS:-128}" \
    --repeats "${FUSED_REPEATS:-3}" --budget-s 75 --out "$OUTDIR/fused.json" 2>&1 \
    | tee "$OUTDIR/fused_bench.log"
  echo "fused bench exit ${PIPESTATUS[0]}"
fi
