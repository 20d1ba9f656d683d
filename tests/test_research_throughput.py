"""The research-throughput benchmark (benchmarks/research_throughput.py) end to end at a tiny size."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np

from entropix_s1.host.engine import Model
from entropix_s1.research.datasets import Problem
from entropix_s1.testing import IdTokenizer, random_config, random_params

_spec = importlib.util.spec_from_file_location(
    "research_throughput", Path(__file__).resolve().parents[1] / "benchmarks" / "research_throughput.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

CFG = dataclasses.replace(random_config("tiny"), eos_token_ids=(5,))


class IdsTokenizer(IdTokenizer):
    """A question is its token ids written out; other strings (budget texts) one id per character."""

    def encode(self, text, add_special_tokens=False):
        words = text.split()
        return [int(w) for w in words] if words and words[0].isdigit() else super().encode(text)


def test_research_throughput_runs_both_schedules_and_reports_ratios():
    model = Model("tiny-random", CFG, random_params(CFG, std=0.35, seed=3), IdsTokenizer(CFG.vocab_size, eos_ids=(5,)))
    model.default_budget  # noqa: B018 -- the runner reads it for the model's delimiters
    rng = np.random.default_rng(0)
    problems = [Problem(id=f"p{i}", question=" ".join(map(str, rng.integers(6, 256, size=int(rng.integers(3, 30))))),
                        gold="1", dataset="custom") for i in range(6)]
    report = bench.run({"tiny": lambda: model}, problems, ["budget:max=8,max_new=24", "entropix+budget:max=8,max_new=24"],
                       batch_size=2, template="{question}")
    rows = report["rows"]
    assert [(r["method"], r["schedule"]) for r in rows] == [
        ("budget:max=8,max_new=24", "static"), ("budget:max=8,max_new=24", "continuous"),
        ("entropix+budget:max=8,max_new=24", "static"), ("entropix+budget:max=8,max_new=24", "continuous")]
    assert all(r["problems"] == 6 and r["same_predictions"] for r in rows)
    assert all(0 < r["utilisation"] <= 1 and r["tokens"] > 0 and r["wall_s"] > 0 for r in rows)
    assert rows[1]["speedup_vs_static"] == round(rows[0]["wall_s"] / rows[1]["wall_s"], 2)
    assert rows[3]["entropix_over_greedy"] == round(rows[3]["tokens_per_s"] / rows[1]["tokens_per_s"], 3)
    md = bench.to_markdown(report)
    assert md.count("\n| tiny |") == 4 and "speed-up vs static" in md
