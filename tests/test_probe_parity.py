"""A probe at a step gives the answer tokens of stopping the row there and decoding the probe text
greedily as a fresh prompt: checked against transformers on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import save_tiny

from entropix_s1.core.budget import Budget
from entropix_s1.host.engine import Model
from entropix_s1.io.checkpoint import load_checkpoint
from entropix_s1.testing import IdTokenizer

PROMPT = [5, 17, 33, 8, 2, 61, 40]


@pytest.fixture(scope="module", params=["llama", "qwen3"])
def tiny(request, tmp_path_factory):
    import transformers as tf

    d = save_tiny(request.param, tmp_path_factory.mktemp(request.param) / "ckpt")
    hf = tf.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    cfg, params = load_checkpoint(d)
    return Model(d, cfg, params, IdTokenizer(cfg.vocab_size)), hf


def hf_greedy(hf, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(hf(torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ids):]


def test_probe_answers_equal_greedy_decoding_of_the_probe_text_as_a_fresh_prompt(tiny):
    m, hf = tiny
    b = Budget(think_end=("</think>",), answer_prefix=" A:", max_thinking_tokens=18, dynasor_streak=99,
               probe_every=5, probe_tokens=5)
    r = m.generate([PROMPT], budget=b, max_new_tokens=24, ignore_eos=True)[0]
    assert [p.step for p in r.probes] == [5, 10, 15]
    probe_text = m.tokenizer.encode("</think> A:")
    for p in r.probes:
        fresh = PROMPT + list(r.token_ids[: p.step]) + probe_text
        assert list(p.answer_ids) == hf_greedy(hf, fresh, 5), p.step
        ours = m.generate([fresh], max_new_tokens=5, ignore_eos=True)[0]
        assert list(ours.token_ids) == list(p.answer_ids)
        with torch.no_grad():  # the confidence is the mean max-probability of those answer tokens
            logits = hf(torch.tensor([fresh + list(p.answer_ids)])).logits[0].float()
        maxprob = torch.softmax(logits[len(fresh) - 1: -1], -1).max(-1).values.numpy()
        np.testing.assert_allclose(p.confidence, maxprob.mean(), rtol=1e-4)
    # the probes changed nothing: the row's tokens are those of the same run without probing
    plain = m.generate([PROMPT], budget=Budget(think_end=("</think>",), answer_prefix=" A:", max_thinking_tokens=18),
                       max_new_tokens=24, ignore_eos=True)[0]
    assert plain.token_ids == r.token_ids and plain.thinking_tokens == r.thinking_tokens


@pytest.mark.parametrize("threshold", [1e-9, 1.0])  # never fires / fires at the 2nd probe
def test_eat_reads_one_answer_token_and_decides_as_with_eight(tiny, threshold):
    """EAT's signal is the entropy of the first answer token, so its default probe reads one
    token (L forced forwards instead of L + 7): the same probes, entropies (to float32 rounding) and
    ends as with 8."""
    from entropix_s1.research.methods import parse_method

    assert parse_method("eat").budget.probe_tokens == 1
    m, _ = tiny
    runs = {}
    for n in (1, 8):
        b = Budget(think_end=("</think>",), answer_prefix=" A:", max_thinking_tokens=18, eat_threshold=threshold,
                   eat_min_probes=2, probe_every=4, probe_tokens=n)
        runs[n] = m.generate([PROMPT, PROMPT[:4]], budget=b, max_new_tokens=24, ignore_eos=True)
    for one, eight in zip(runs[1], runs[8], strict=True):
        assert one.token_ids == eight.token_ids and one.thinking_tokens == eight.thinking_tokens
        assert [p.step for p in one.probes] == [p.step for p in eight.probes] and one.probes
        # the same forwards in another compiled program: equal up to float32 rounding
        np.testing.assert_allclose([p.entropy for p in one.probes], [p.entropy for p in eight.probes], rtol=1e-6)
        assert all(len(p.answer_ids) == 1 and p.answer_ids == q.answer_ids[:1]
                   for p, q in zip(one.probes, eight.probes, strict=True))
    fired = runs[1][0].thinking_tokens < 18
    assert fired == (threshold == 1.0)
