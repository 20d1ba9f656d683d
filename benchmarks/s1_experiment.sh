#!/usr/bin/env bash
# The s1 experiment (issue #10) on the thinking SmolLM2 (`smollm2-135m-think`, docs/thinking_model.md):
# accuracy vs thinking budget on a GSM8K test subset and both MAWPS sets, with s1's budget forcing
# (caps 32..512; 1/2/4 "Wait" extensions at the 512 cap), the wait-string ablation ("Hmm",
# "Alternatively", no string; 2 extensions each, as s1's Table 4), entropix under the same cap, and
# the base SmolLM2-135M-Instruct (greedy) for reference. Prompts: the question alone (as in
# training). Resumable: re-running skips finished (problem, method) pairs. Then the report:
# docs/img/s1_scaling.png and benchmarks/results/s1_experiment.md.
#   bash benchmarks/s1_experiment.sh     # env: LIMIT=32 problems per dataset, BATCH_SIZE=8 (faster than 32 here),
#   DATASETS (default: all three), EXTRA_DATASETS (ablation + entropix; default DATASETS; "" = none)
set -euo pipefail
cd "$(dirname "$0")/.."
E=${ENTROPIX_S1_CLI:-entropix-s1}
LIMIT=${LIMIT:-32}
BS=${BATCH_SIZE:-8}
# s1's scaling sweep: caps (waits 0), then 1/2/4 "Wait" extensions at the 512 cap
CORE='budget:max={32,64,128,256,512};budget:max=512,waits={1,2,4}'
# the wait-string ablation and entropix (branch roll-outs make it the slowest method)
EXTRA='budget:max=512,waits=2,wait={Hmm,Alternatively,none};entropix+budget:max=512'
DATASETS=${DATASETS:-gsm8k mawps_addsub mawps_multiarith}

run() {  # model dataset methods out [extra args]
  $E compare --model "$1" --dataset "$2" --template plain --limit "$LIMIT" --batch-size "$BS" \
    --methods "$3" --out "benchmarks/results/$4_$2" --no-progress "${@:5}"
}
for ds in $DATASETS; do
  run smollm2-135m-think "$ds" "$CORE" s1_think
  run smollm2-135m-instruct "$ds" greedy s1_base --max-new-tokens 640
done
for ds in ${EXTRA_DATASETS-$DATASETS}; do
  run smollm2-135m-think "$ds" "$EXTRA" s1_think
done
python benchmarks/s1_report.py
