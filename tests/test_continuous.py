"""Continuous batching: more prompts than slots, rows refilled as they finish (host/scheduler.py,
core/slots.py). A prompt's tokens must not depend on the schedule, the slot count or its batch mates."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropix_s1 import Budget, EntropixConfig, Sample
from entropix_s1.core.model import score_logits
from entropix_s1.host.engine import Model
from entropix_s1.testing import IdTokenizer, random_config, random_params

CFG = dataclasses.replace(random_config("tiny"), eos_token_ids=(5,))
NEAR_TIE = 1e-4  # float32 logit gap under which a different argmax is a rounding effect, not a bug


@pytest.fixture(scope="module")
def m():
    tok = IdTokenizer(CFG.vocab_size, eos_ids=(5,))
    return Model("tiny-random", CFG, random_params(CFG, std=0.35, seed=3), tok)


def _prompts(n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(6, CFG.vocab_size, size=int(rng.integers(3, 60))).tolist() for _ in range(n)]


def _budgets(n: int) -> list[Budget | None]:
    """Mixed per-row budgets: caps, waits, a minimum, adaptive rows, and rows without a budget."""
    d = dict(think_end=("A",), wait_text="W", answer_prefix="F")  # one id each under IdTokenizer
    out: list[Budget | None] = []
    for i in range(n):
        kind = i % 5
        out.append(None if kind == 0 else
                   Budget(**d, max_thinking_tokens=4 + 3 * i % 29) if kind == 1 else
                   Budget(**d, num_waits=1 + i % 2, max_thinking_tokens=40) if kind == 2 else
                   Budget(**d, min_thinking_tokens=6, max_thinking_tokens=24) if kind == 3 else
                   Budget(**d, mode="adaptive", num_waits=2, uncertain_entropy=1.0, soft_max_thinking_tokens=10,
                          max_thinking_tokens=30))
    return out


def _first_divergence(a: tuple[int, ...], b: tuple[int, ...]) -> int | None:
    for j, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return j
    return None if len(a) == len(b) else min(len(a), len(b))


def _gap_at(m: Model, prompt: list[int], ids: tuple[int, ...], j: int) -> float:
    """Top-2 logit gap of the next-token distribution after prompt + ids[:j]."""
    toks = jnp.asarray([prompt + list(ids[:j])], jnp.int32)
    logits = score_logits(m.params, m.config, toks, jnp.ones_like(toks, bool))[0, -1]
    top2 = jax.lax.top_k(logits, 2)[0]
    return float(top2[0] - top2[1])


def test_greedy_continuous_equals_one_prompt_at_a_time(m):
    prompts, budgets = _prompts(40), _budgets(40)
    alone = [m.generate([p], budget=[b], max_new_tokens=48, prompt_ids=[i])[0]
             for i, (p, b) in enumerate(zip(prompts, budgets))]
    assert {r.stop_reason for r in alone} >= {"eos", "max_new_tokens"} and any(r.waits_inserted for r in alone)
    together = m.generate(prompts, budget=budgets, max_new_tokens=48, batch_size=6)
    static = m.generate(prompts, budget=budgets, max_new_tokens=48, batch_size=6, schedule="static")
    for i, (a, c, s) in enumerate(zip(alone, together, static)):
        for other in (c, s):
            j = _first_divergence(a.token_ids, other.token_ids)
            if j is not None:  # only a float32 near-tie may flip the argmax
                assert a.trace[j].forced is None and _gap_at(m, prompts[i], a.token_ids, j) < NEAR_TIE, (i, j)
        assert (a.thinking_tokens, a.waits_inserted, a.stop_reason) == (c.thinking_tokens, c.waits_inserted, c.stop_reason)


def test_sampling_is_the_same_across_schedules_and_slot_counts(m):
    prompts, budgets = _prompts(12, seed=1), _budgets(12)
    kw = dict(budget=budgets, max_new_tokens=32, sampler=Sample(temperature=1.0, top_k=20), seed=7)
    ref = [r.token_ids for r in m.generate(prompts, batch_size=3, schedule="static", **kw)]
    for bs, sched in [(3, "continuous"), (5, "continuous"), (12, "continuous"), (1, "static")]:
        assert [r.token_ids for r in m.generate(prompts, batch_size=bs, schedule=sched, **kw)] == ref, (bs, sched)
    assert [r.token_ids for r in m.generate(prompts, batch_size=3, **dict(kw, seed=8))] != ref


def test_prompt_ids_key_the_randomness(m):
    prompts = _prompts(4, seed=2)
    kw = dict(max_new_tokens=16, sampler=Sample(temperature=1.0), seed=0)
    a = m.generate(prompts, prompt_ids=[10, 11, 12, 13], **kw)
    b = m.generate(prompts[::-1], prompt_ids=[13, 12, 11, 10], batch_size=2, **kw)  # other order and slots
    assert [r.token_ids for r in a] == [r.token_ids for r in b[::-1]]
    with pytest.raises(Exception, match="prompt_ids"):
        m.generate(prompts, prompt_ids=[1], **kw)


def test_results_come_back_in_prompt_order_with_their_traces(m):
    prompts = _prompts(7, seed=3)
    rs = m.generate(prompts, max_new_tokens=20, batch_size=2)
    assert [r.prompt for r in rs] == [f"<{len(p)} token ids>" for p in prompts]
    assert all({t.row for t in r.trace} == {i} for i, r in enumerate(rs))
    seen = [i for i, _ in m.generate_iter(prompts, max_new_tokens=20, batch_size=2)]
    assert sorted(seen) == list(range(7))


def test_a_bad_prompt_is_an_error_row_and_the_others_go_on(m):
    prompts = _prompts(6, seed=4)
    prompts[2] = [7] * (CFG.max_position_embeddings + 1)
    rs = m.generate(prompts, max_new_tokens=16, batch_size=2, on_error="row")
    ref = m.generate(prompts[:2] + prompts[3:], max_new_tokens=16, batch_size=2)
    assert rs[2].stop_reason == "error" and "context" in rs[2].error
    assert [r.token_ids for r in rs[:2] + rs[3:]] == [r.token_ids for r in ref]


def test_entropix_and_pauses_run_under_continuous_batching(m):
    cfg = EntropixConfig(pause_cooldown=2, pause_text="P").with_thresholds(low_ent=0.05, med_ent=1.0, high_ent=1.5,
                                                                           low_vent=20.0, high_vent=30.0)
    prompts = _prompts(6, seed=5)
    kw = dict(sampler=cfg, budget=Budget(think_end=("A",), max_thinking_tokens=12), max_new_tokens=24, seed=3)
    alone = [m.generate([p], prompt_ids=[i], **kw)[0] for i, p in enumerate(prompts)]
    rs = m.generate(prompts, batch_size=2, **kw)
    assert [r.token_ids for r in rs] == [r.token_ids for r in alone]
    assert sum(r.pauses_inserted for r in rs) > 0


def test_compare_gives_the_same_predictions_under_both_schedules(m, tmp_path):
    from entropix_s1.research.datasets import Problem
    from entropix_s1.research.runner import run_compare
    from entropix_s1.research.store import read_results

    problems = [Problem(id=f"p{i}", question=" ".join(str(t) for t in p), gold="1", dataset="custom")
                for i, p in enumerate(_prompts(9, seed=6))]
    class Tok(IdTokenizer):  # a question is its token ids, written out
        def encode(self, text, add_special_tokens=False):
            words = text.split()
            return [int(w) for w in words] if words and words[0].isdigit() else super().encode(text)

    m = Model("tiny-random", CFG, m.params, Tok(CFG.vocab_size, eos_ids=(5,)))
    methods = ["budget:max=8,waits=1,max_new=24", "sample:t=1.0,max_new=16"]
    kw = dict(batch_size=4, progress=False, template="{question}", base_budget=Budget(think_end=("A",), wait_text="W",
                                                                                       answer_prefix="F"))
    runs = {}
    for schedule in ("continuous", "static"):
        run_compare(m, problems, methods, tmp_path / schedule, schedule=schedule, **kw)
        runs[schedule] = {(r["id"], r["method"]): (r["text"], r["thinking_tokens"]) for r in read_results(tmp_path / schedule)}
    assert len(runs["continuous"]) == 18 and runs["continuous"] == runs["static"]
