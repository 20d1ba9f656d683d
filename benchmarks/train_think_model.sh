#!/usr/bin/env bash
# Reproduce the committed thinking-SmolLM2 adapter (weights/smollm2-135m-think/, issue #10):
# LoRA rank 8 on attention and MLP, two stages of one epoch each over the same 1,000 selected GSM8K
# training examples (s1 trains 5 epochs; stage 2 starts from stage 1's adapter with a fresh
# warm-up + cosine schedule). About 25 min per stage on an idle 2-core CPU. Resumable: re-running a
# stopped stage continues from its saved state
# (<out>-train/state.npz). Then the close-rate check (greedy, 50 test questions).
#   bash benchmarks/train_think_model.sh
set -euo pipefail
cd "$(dirname "$0")/.."
E=${ENTROPIX_S1_CLI:-entropix-s1}
COMMON=(--model smollm2-135m-instruct --data ../shared/data/gsm8k_train.jsonl --limit 1000 --epochs 1
        --lora-rank 8 --targets wqkv,wo,gate_up,down)
$E sft "${COMMON[@]}" --out weights/smollm2-135m-think-stage1/     # a finished stage re-exports at once
$E sft "${COMMON[@]}" --init-adapter weights/smollm2-135m-think-stage1/ --out weights/smollm2-135m-think/
python benchmarks/think_close_rate.py --batch-size 50
