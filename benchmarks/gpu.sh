#!/usr/bin/env bash
# benchmarks/gpu.sh: the decode loop on one GPU in under 8 minutes, no network.
#
#   bash benchmarks/gpu.sh                      # writes under ${OUT:-benchmarks/results/gpu}
#   HBM_GBS=3350 bash benchmarks/gpu.sh         # H100 SXM instead of the H200 default (4800 GB/s)
#   bash benchmarks/gpu.sh --hbm-gbs 3350       # the same
#
# Needs JAX with CUDA, flax, chex, optax, tokenizers (and transformers + torch for tests/test_model.py,
# which is skipped with a note when torch is missing) already installed. The package is used from
# this checkout (PYTHONPATH); `pip install -e . --no-deps` only if that import fails.
#
# 1. the loop's correctness tests on the device (JAX_PLATFORMS=cuda; float32 matmuls at "highest"
#    precision so greedy-equality tests are not broken by TF32);
# 2. the throughput table of our loop alone (no transformers, no llama.cpp) on random llama-1b and
#    llama-8b weights in bfloat16, batch 1, 8 and 32, prompt 64 with 128 and 640 new tokens (greedy),
#    each cell's fraction of the HBM roofline (--hbm-gbs / $HBM_GBS, default 4800 GB/s = H200).
# Every step has its own wall-clock limit (timeout); the harness rewrites its table after every cell,
# so a step cut short still leaves the cells it finished (the JSON says "partial": true).
# Files: $OUT/{summary.txt,env.txt,tests.log,gpu-llama-1b.{json,md,log},gpu-llama-8b.{json,md,log}}.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
HBM_GBS=${HBM_GBS:-4800}
while [ $# -gt 0 ]; do
    case "$1" in
        --hbm-gbs) HBM_GBS=$2; shift 2 ;;
        --hbm-gbs=*) HBM_GBS=${1#*=}; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "gpu.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-$REPO/benchmarks/results/gpu}
PY=${PYTHON:-python}
TEST_TIMEOUT=${TEST_TIMEOUT:-140}     # seconds per step; the three add up to 430 s (+ start-up)
T1B_TIMEOUT=${T1B_TIMEOUT:-110}
T8B_TIMEOUT=${T8B_TIMEOUT:-180}
TIME_BUDGET=${TIME_BUDGET:-5}         # seconds of timed runs per cell (the harness's --time-budget)
BATCHES=${BATCHES:-1,8,32}
MODES=${MODES:-greedy}
mkdir -p "$OUT"
export JAX_PLATFORMS=cuda
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
say() { echo "[gpu.sh +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"

# step 0: the machine
{
    date -u +%Y-%m-%dT%H:%M:%SZ
    git -C "$REPO" rev-parse HEAD 2>/dev/null || true
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: n/a"
    "$PY" -c "import sys, jax, jaxlib; print('python', sys.version.split()[0], '| jax', jax.__version__, '| jaxlib', jaxlib.__version__); print(jax.devices())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
    say "FAIL: JAX sees no CUDA GPU (see env.txt)"; exit 1
fi
if ! "$PY" -c "import entropix_s1" 2>/dev/null; then
    "$PY" -m pip install -e . --no-deps --no-build-isolation -q >> "$OUT/summary.txt" 2>&1 || say "pip install -e . failed"
fi
say "hardware: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1); HBM roofline at $HBM_GBS GB/s"

# step 1: correctness on the device
TESTS=(tests/test_decode.py tests/test_continuous.py tests/test_controllers.py)
if "$PY" -c "import torch, transformers" 2>/dev/null; then
    TESTS+=(tests/test_model.py)
else
    say "note: torch/transformers not importable: tests/test_model.py (transformers reference) skipped"
fi
say "tests: ${TESTS[*]} (limit ${TEST_TIMEOUT}s)"
JAX_DEFAULT_MATMUL_PRECISION=highest timeout -k 10 "$TEST_TIMEOUT" \
    "$PY" -m pytest -q -x -p no:cacheprovider "${TESTS[@]}" > "$OUT/tests.log" 2>&1
TESTS_RC=$?
tail -n 15 "$OUT/tests.log"
case $TESTS_RC in
    0) say "tests: passed" ;;
    124|137) say "tests: TIMED OUT after ${TEST_TIMEOUT}s" ;;
    *) say "tests: FAILED (rc $TESTS_RC)" ;;
esac

# step 2: the throughput tables
table() {  # table NAME TIMEOUT
    local name=$1 limit=$2 rc
    say "throughput random $name bfloat16, batch $BATCHES, prompt 64, 128 + 640 new tokens (limit ${limit}s)"
    timeout -k 10 "$limit" "$PY" benchmarks/throughput.py --random-config "$name" --dtypes bfloat16 \
        --batch-sizes "$BATCHES" --prompt-lens 64 --new-tokens 128 --long-new-tokens 640 --long-prompt-len 64 \
        --modes "$MODES" --long-modes greedy --skip-hf --no-llamacpp --no-second-process --repeats 3 \
        --time-budget "$TIME_BUDGET" --hbm-gbs "$HBM_GBS" --bandwidth-mb 1024 \
        --out "$OUT" --name "gpu-$name" > "$OUT/gpu-$name.log" 2>&1
    rc=$?
    case $rc in
        0) say "$name: done" ;;
        124|137) say "$name: TIMED OUT after ${limit}s (the table has the cells finished before)" ;;
        *) say "$name: FAILED (rc $rc); last lines:"; tail -n 20 "$OUT/gpu-$name.log" ;;
    esac
    if [ -f "$OUT/gpu-$name.md" ]; then
        echo; cat "$OUT/gpu-$name.md"; echo
    fi
    return $rc
}
table llama-1b "$T1B_TIMEOUT"; R1=$?
table llama-8b "$T8B_TIMEOUT"; R8=$?

say "finished: tests rc $TESTS_RC, llama-1b rc $R1, llama-8b rc $R8; files under $OUT"
[ "$TESTS_RC" -eq 0 ] && [ "$R1" -eq 0 ] && [ "$R8" -eq 0 ]
