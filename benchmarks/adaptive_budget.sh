#!/usr/bin/env bash
# Adaptive budget forcing (issue #8) beside fixed waits and entropix, on GSM8K and MATH-500 subsets,
# for both small models we have. Shares output dirs with compare_small.sh (methods already run there
# are skipped). Resumable.   bash benchmarks/adaptive_budget.sh [smollm2|qwen|all]
set -euo pipefail
cd "$(dirname "$0")/.."
E=${ENTROPIX_S1_CLI:-entropix-s1}
which="${1:-all}"
LIMIT=${LIMIT:-16}

if [[ "$which" == qwen || "$which" == all ]]; then
  # GSM8K: the fixed/adaptive/entropix methods of compare_small.sh's qwen run (same dir).
  $E compare --model qwen2.5-coder-0.5b-instruct --dataset gsm8k --limit "${QWEN_LIMIT:-40}" --batch-size 8 \
    --methods 'budget:max=128;budget:max=256,waits=1;adaptive-budget:max=256,waits=1;entropix+budget:max=128' \
    --out benchmarks/results/qwen05_gsm8k --no-progress
  # The default uncertain_entropy (1.0 nats) is a guess; calibrate it on TRAINING questions in the
  # same prompt template: the median entropy at which Qwen ends its own reply; then the same
  # adaptive method with it.
  CAL=benchmarks/results/qwen05_budget_calibration.json
  [[ -f $CAL ]] || $E calibrate --budget --model qwen2.5-coder-0.5b-instruct --texts ../shared/data/gsm8k_train.jsonl \
    --template arithmetic --limit 24 --max-new-tokens 384 --out "$CAL"
  UNC=$(python -c "import json, sys; print(round(json.load(open(sys.argv[1]))['uncertain_entropy'], 3))" "$CAL")
  $E compare --model qwen2.5-coder-0.5b-instruct --dataset gsm8k --limit "${QWEN_LIMIT:-40}" --batch-size 8 \
    --methods "adaptive-budget:max=256,waits=1,unc=$UNC" --out benchmarks/results/qwen05_gsm8k --no-progress
  $E compare --model qwen2.5-coder-0.5b-instruct --dataset math500 --limit "$LIMIT" --batch-size 8 \
    --methods 'budget:max=128;budget:max=256,waits=1;adaptive-budget:max=256,waits=1;entropix+budget:max=128' \
    --out benchmarks/results/qwen05_math500 --no-progress
fi
if [[ "$which" == smollm2 || "$which" == all ]]; then
  for ds in gsm8k math500; do
    $E compare --model smollm2-135m-instruct --dataset "$ds" --limit "$LIMIT" --batch-size 8 \
      --methods 'budget:max=64;budget:max=128,waits=1;adaptive-budget:max=128,waits=1;entropix+budget:max=64' \
      --out "benchmarks/results/smollm2_$ds" --no-progress
  done
fi
