"""`entropix-s1 calibrate`: entropix thresholds (or an adaptive budget) fitted to a model."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from entropix_s1.cli.common import add_model_arguments, load_model

HELP = "entropix thresholds at quantiles of this model's metrics"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_model_arguments(p)
    p.add_argument("--texts", required=True, help="JSONL file of texts")
    p.add_argument("--field", default=None)
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--out", required=True)
    p.add_argument("--budget", action="store_true",
                   help="calibrate adaptive budget forcing instead: the texts are prompts, and uncertain_entropy "
                        "goes to --quantile of the entropies at which the model ends thinking by itself")
    p.add_argument("--quantile", type=float, default=0.5, help="with --budget (default 0.5)")
    p.add_argument("--template", default=None,
                   help="with --budget: wrap each text in this prompt template (arithmetic, math, plain, or a "
                        "string with {question}), as `compare` does; calibrate on the prompts you will run")
    p.add_argument("--max-new-tokens", type=int, default=256, help="with --budget (default 256)")
    return p


def _budget(a: argparse.Namespace, m: Any) -> int:
    """Adaptive budget forcing: the texts are prompts; see calibrate.calibrate_budget."""
    from entropix_s1.research.calibrate import calibrate_budget, read_texts

    prompts = read_texts(a.texts, a.field, a.limit)
    if a.template:  # prompts as `compare` renders them, so the stops are the ones it will see
        from entropix_s1.research.datasets import Problem, render_prompt

        prompts = [render_prompt(Problem(id=str(i), question=q, gold="", dataset=""), a.template)
                   for i, q in enumerate(prompts)]
    b, report = calibrate_budget(m, prompts, quantile=a.quantile, max_new_tokens=a.max_new_tokens)
    report["template"] = a.template
    fields = {k: v for k, v in dataclasses.asdict(b).items() if k != "think_end"}
    out = dict(report, budget=dict(fields, think_end=list(b.think_end)))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(a.out)
    print(f"uncertain_entropy = {b.uncertain_entropy:.4f} nats ({report['ended']} of {report['prompts']} "
          f"ended thinking by themselves); use it as adaptive-budget:unc={b.uncertain_entropy:.3f}")
    return 0


def run(a: argparse.Namespace) -> int:
    from entropix_s1.research.calibrate import calibrate, read_texts, save_config

    m = load_model(a)
    if a.budget:
        return _budget(a, m)
    cfg = calibrate(m, read_texts(a.texts, a.field, a.limit))
    print(save_config(cfg, a.out))
    print(json.dumps(cfg.thresholds(), indent=2))
    return 0
