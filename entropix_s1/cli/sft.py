"""`entropix-s1 sft`: LoRA fine-tuning that teaches <think> ... </think> (s1 at toy scale).

The flags' defaults are those of `train.config.SFTConfig` (JAX-free), so building the parser does not
import the trainer (JAX, optax).
"""

from __future__ import annotations

import argparse
import json

from entropix_s1.train.config import LORA_TARGETS, SAVE_DTYPES, SFTConfig

HELP = "LoRA fine-tuning that teaches <think> ... </think> (s1 at toy scale)"

#: the flags' defaults: SFTConfig's own
DEFAULTS = SFTConfig()


def _training_arguments(p: argparse.ArgumentParser) -> None:
    d = DEFAULTS
    p.add_argument("--limit", type=int, default=d.limit, help="examples to select")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lora-rank", type=int, default=d.lora_rank)
    p.add_argument("--lora-alpha", type=float, default=d.lora_alpha)
    p.add_argument("--targets", default=",".join(d.targets), help=f"comma list of {','.join(LORA_TARGETS)}")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--batch-tokens", type=int, default=d.batch_tokens, help="tokens per batch (rows = this // T)")
    p.add_argument("--max-len", type=int, default=d.max_len, help="longest example kept, in tokens")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--remat", action="store_true", help="jax.checkpoint the loss (less memory, more compute)")
    p.add_argument("--max-steps", type=int, default=d.max_steps,
                   help="cap on optimizer steps, the cosine schedule ending there (a capped run sees a random "
                        "subset of the shuffled epoch); may be changed when resuming")
    p.add_argument("--init-adapter", default=d.init_adapter,
                   help="start from this adapter dir (same rank and targets) instead of a fresh one: a further "
                        "training stage with its own warm-up + cosine schedule")
    p.add_argument("--unlikelihood", type=float, default=d.unlikelihood,
                   help="weight of a token-level unlikelihood term against re-emitting earlier answer tokens "
                        "(Welleck et al. 2019), which curbs greedy repetition loops; 0 = plain SFT")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", default=DEFAULTS.model, help="base model: catalog name or HF checkpoint dir")
    p.add_argument("--data", required=True, help="GSM8K-style JSONL (question, answer with '#### N')")
    p.add_argument("--exclude", default=DEFAULTS.exclude,
                   help="JSONL whose questions are never trained on (default: the *_test file next to --data)")
    _training_arguments(p)
    p.add_argument("--save-dtype", default=DEFAULTS.save_dtype, choices=SAVE_DTYPES,
                   help="dtype of the exported adapter tensors (training is float32 either way)")
    p.add_argument("--out", required=True, help="adapter output directory")
    p.add_argument("--state-dir", default=None, help="resumable training state (default: <out>-train/)")
    p.add_argument("--save-every-min", type=float, default=5.0)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (state saved, resumable) after this long")
    p.add_argument("--restart", action="store_true", help="ignore saved state and start over")
    return p


def sft_main(a: argparse.Namespace) -> int:
    """Train; prints a JSON line of the summary. Exit 0 when finished, 3 when stopped resumably."""
    from entropix_s1.train.sft import train  # lazy: JAX, optax

    summary = train(config_from_args(a), a.out, state_dir=a.state_dir, save_every_min=a.save_every_min,
                    max_minutes=a.max_minutes, restart=a.restart)
    keys = ("finished", "step", "total_steps", "wall_s", "final_loss")
    print(json.dumps({k: summary[k] for k in keys if k in summary}))
    return 0 if summary["finished"] else 3


def config_from_args(a: argparse.Namespace) -> SFTConfig:
    """The `SFTConfig` of parsed `sft` flags (no JAX)."""
    return SFTConfig(
        model=a.model, data=a.data, limit=a.limit, epochs=a.epochs, lora_rank=a.lora_rank, lora_alpha=a.lora_alpha,
        targets=tuple(t.strip() for t in a.targets.split(",") if t.strip()), lr=a.lr, warmup_steps=a.warmup_steps,
        weight_decay=a.weight_decay, batch_tokens=a.batch_tokens, max_len=a.max_len, seed=a.seed,
        exclude=a.exclude, remat=a.remat, max_steps=a.max_steps, init_adapter=a.init_adapter,
        unlikelihood=a.unlikelihood, save_dtype=a.save_dtype)


run = sft_main  # the parser's `fn` keeps the name scripts and tests know
