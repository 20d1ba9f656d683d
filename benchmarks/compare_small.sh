#!/usr/bin/env bash
# The default comparisons a user can run on a 2-core CPU: entropy-adaptive decoding vs s1 budget
# forcing on the models we have. Resumable: re-running skips finished (problem, method) pairs.
#   bash benchmarks/compare_small.sh [smollm2|qwen|all]   (outputs under benchmarks/results/)
set -euo pipefail
cd "$(dirname "$0")/.."
E=${ENTROPIX_S1_CLI:-entropix-s1}
which="${1:-all}"
LIMIT=${LIMIT:-40}

# s1's budget sweep (cap), its extension ("Wait" x N), the adaptive variant, and entropix.
SMOL_METHODS='greedy;budget:max={16,32};budget:max=128,waits=1;adaptive-budget:max=128,waits=1;entropix+budget:max=64'

if [[ "$which" == smollm2 || "$which" == all ]]; then
  # SmolLM2-135M solves some one-step word problems and ~0% of GSM8K: MAWPS is where it can differ.
  for ds in ${DATASETS:-mawps_addsub mawps_multiarith}; do
    $E compare --model smollm2-135m-instruct --dataset "$ds" --limit "$LIMIT" --batch-size 8 \
      --max-new-tokens 256 --methods "$SMOL_METHODS" --out "benchmarks/results/smollm2_$ds" --no-progress
  done
fi
if [[ "$which" == qwen || "$which" == all ]]; then
  $E compare --model qwen2.5-coder-0.5b-instruct --dataset gsm8k --limit "${QWEN_LIMIT:-40}" --batch-size 8 \
    --max-new-tokens 384 --methods 'greedy;budget:max={64,128};budget:max=256,waits=1;adaptive-budget:max=256,waits=1;entropix+budget:max=128' \
    --out benchmarks/results/qwen05_gsm8k --no-progress
fi
