"""Does the thinking model end its thinking on its own? Close rate and accuracy on GSM8K test.

    python benchmarks/think_close_rate.py                        # smollm2-135m-think, 50 questions
    python benchmarks/think_close_rate.py --model smollm2-135m-instruct --n 20   # the base, for contrast
    python benchmarks/think_close_rate.py --model weights/my-run/   # an `sft --out` dir, merged on first use

Greedy generation of the first `--n` GSM8K test questions (the question alone as the user turn, as
in training) under `Budget(think_start="", think_end=("</think>",))` with no limits: the budget only
tracks phases, nothing is forced, so the tokens are those of plain greedy generation. A row counts as
closed when `</think>` appears in its text. Accuracy grades the answer phase (`Final Answer: N`) with
the project's GSM8K grader. Prints one JSON summary; `--out FILE.jsonl` keeps every generation.
The issue's bar: close rate >= 0.9 on 50 questions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

import entropix_s1  # noqa: E402
from entropix_s1.jsonl import read_jsonl  # noqa: E402
from entropix_s1.research.grading import extract_from_generation, is_correct  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_test.jsonl"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-think")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--n", type=int, default=50, help="first N test questions")
    ap.add_argument("--max-new-tokens", type=int, default=384)
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--out", default=None, help="write per-question JSON lines here")
    a = ap.parse_args(argv)

    rows = read_jsonl(a.data)[: a.n]
    questions = [r["question"] for r in rows]
    golds = [r["answer"].rsplit("####", 1)[1].strip().replace(",", "") for r in rows]
    t0 = time.time()
    m = entropix_s1.load(a.model)
    t_load = time.time() - t0
    budget = entropix_s1.Budget(think_start="", think_end=("</think>",))
    results = []
    t0 = time.time()
    for i in range(0, len(questions), a.batch_size):
        results += m.generate(questions[i: i + a.batch_size], max_new_tokens=a.max_new_tokens, budget=budget)
    t_gen = time.time() - t0

    recs = []
    for q, gold, r in zip(questions, golds, results):
        closed = "</think>" in r.text
        pred = extract_from_generation(r.text, r.answer_text if closed else "", "gsm8k")
        recs.append({"question": q, "gold": gold, "pred": pred, "correct": is_correct(pred, gold, "gsm8k"),
                     "closed": closed, "opened": r.text.lstrip().startswith("<think>"),
                     "thinking_tokens": r.thinking_tokens, "answer_tokens": r.answer_tokens,
                     "stop_reason": r.stop_reason, "text": r.text})
    n = len(recs)
    closed = [x for x in recs if x["closed"]]
    summary = {
        "model": a.model, "questions": n, "max_new_tokens": a.max_new_tokens,
        "close_rate": sum(x["closed"] for x in recs) / n,
        "open_rate": sum(x["opened"] for x in recs) / n,
        "accuracy": sum(x["correct"] for x in recs) / n,
        "final_answer_rate": sum("Final Answer:" in x["text"] for x in recs) / n,
        "mean_thinking_tokens_closed": (sum(x["thinking_tokens"] for x in closed) / len(closed)) if closed else None,
        "stop_reasons": {s: sum(x["stop_reason"] == s for x in recs) for s in sorted({x["stop_reason"] for x in recs})},
        "load_s": round(t_load, 1), "generate_s": round(t_gen, 1),
        "passes_bar": sum(x["closed"] for x in recs) / n >= 0.9,
    }
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            for x in recs:
                f.write(json.dumps(x, ensure_ascii=False) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
