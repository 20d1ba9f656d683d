"""The real default model: our forward vs transformers on the same converted checkpoint, and
in-loop budget forcing vs s1's own stop-and-resubmit procedure run with transformers' generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import entropix_s1
from entropix_s1.core.budget import Budget

pytestmark = pytest.mark.slow

PROMPTS = ["What is 2+3?", "Name three colors.", "Write a haiku about the sea.", "If I have 4 apples and eat one, how many are left?"]


@pytest.fixture(scope="module")
def ours(smollm2_dir):
    return entropix_s1.load(smollm2_dir)


@pytest.fixture(scope="module")
def hf(smollm2_dir):
    import transformers as tf

    return tf.AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()


def test_logprobs_match_transformers(ours, hf):
    texts = ["The capital of France is Paris.", "def add(a, b):\n    return a + b\n",
             "<|im_start|>user\nWhat is 12*3?<|im_end|>\n<|im_start|>assistant\n36", "Ünïcödé ✓ and digits 1234567"]
    worst = 0.0
    for text in texts:
        rows = ours.score(text)
        ids = [r["token_id"] for r in rows]
        with torch.no_grad():
            ref = torch.log_softmax(hf(torch.tensor([ids])).logits[0].float(), -1).numpy()
        got = np.array([r["logprob"] for r in rows[1:]])
        want = ref[np.arange(len(ids) - 1), ids[1:]]
        worst = max(worst, float(np.max(np.abs(got - want))))
        # entropy of the reference distribution agrees too
        p = np.exp(ref[:-1])
        ent = -(p * ref[:-1]).sum(-1)
        np.testing.assert_allclose([r["entropy"] for r in rows[1:]], ent, atol=5e-4)
    assert worst <= 2e-4, worst


def test_greedy_matches_transformers_generate_and_is_batch_invariant(ours, hf):
    outs = ours.generate(PROMPTS, max_new_tokens=24)
    for p, r in zip(PROMPTS, outs):
        ids = ours.tokenizer.encode(ours.tokenizer.render(p))
        with torch.no_grad():
            ref = hf.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False,
                              eos_token_id=list(ours.tokenizer.eos_ids), pad_token_id=2)[0, len(ids):].tolist()
        assert list(r.token_ids) == ref[: len(r.token_ids)]
        (alone,) = ours.generate(p, max_new_tokens=24)
        assert alone.token_ids == r.token_ids


def s1_reference(hf, prompt_ids, b: Budget, tok, max_new: int, eos: set[int]) -> list[int]:
    """s1's budget forcing as the paper's code does it: generate until the model ends thinking,
    strip the delimiter, append the wait string and generate again; at the cap append the
    end-of-thinking delimiter and the answer prefix. Token level, greedy, with HF generate."""
    enc = lambda s: tok.encode(s, add_special_tokens=False) if s else []  # noqa: E731
    delims = [enc(d) for d in b.think_end]
    cap = b.max_thinking_tokens if b.max_thinking_tokens is not None else 10**9
    out = enc(b.think_start)
    thinking: list[int] = []
    waits = 0

    def gen(prefix: list[int], n: int, stop_on_delim: bool) -> list[int]:
        """Greedy, one token at a time (with HF's KV cache) so we can stop exactly on a delimiter."""
        new: list[int] = []
        with torch.no_grad():
            out = hf(torch.tensor([prompt_ids + prefix]), use_cache=True)
            while len(new) < n:
                nxt = int(out.logits[0, -1].argmax())
                new.append(nxt)
                if stop_on_delim and any(new[-len(d):] == d for d in delims if len(new) >= len(d)):
                    break
                if not stop_on_delim and nxt in eos:
                    break
                out = hf(torch.tensor([[nxt]]), past_key_values=out.past_key_values, use_cache=True)
        return new

    while True:
        room = min(cap - len(thinking), max_new - len(out) - len(thinking))
        if room <= 0:
            break
        new = gen(out + thinking, room, True)
        d = next((d for d in delims if len(new) >= len(d) and new[-len(d):] == d), None)
        if d is None:
            thinking += new
            continue
        thinking += new[: -len(d)]
        if waits < b.num_waits or len(thinking) < b.min_thinking_tokens:
            thinking += enc(b.wait_text)
            waits += 1
            continue
        # natural end
        thinking = thinking[:cap]
        seq = out + thinking + d
        if d[-1] in eos:
            return seq[:max_new]
        return (seq + gen(seq, max_new - len(seq), False))[:max_new]
    thinking = thinking[:cap]
    seq = out + thinking + delims[0] + enc(b.answer_prefix)
    return (seq + gen(seq, max(0, max_new - len(seq)), False))[:max_new]


@pytest.mark.parametrize("mn,mx,waits", [(0, 24, 0), (0, None, 2), (12, 40, 1), (0, 16, 3)])
def test_budget_forcing_equals_s1_stop_and_resubmit(ours, hf, mn, mx, waits):
    b = Budget(think_end=("<|im_end|>",), min_thinking_tokens=mn, max_thinking_tokens=mx, num_waits=waits)
    prompt = "What is 2+3? Explain briefly."
    (r,) = ours.generate(prompt, budget=b, max_new_tokens=64)
    ids = ours.tokenizer.encode(ours.tokenizer.render(prompt))
    ref = s1_reference(hf, ids, b, ours.tokenizer, 64, set(ours.tokenizer.eos_ids))
    assert list(r.token_ids) == ref
    if mn == 0:
        assert r.waits_inserted <= waits
    if mx is not None:
        assert r.thinking_tokens <= mx


def test_per_row_budgets_on_the_real_model(ours):
    budgets = [ours.budget(num_waits=0), ours.budget(num_waits=2, max_thinking_tokens=40),
               ours.budget(max_thinking_tokens=4), ours.budget(min_thinking_tokens=20, max_thinking_tokens=30)]
    rs = ours.generate(["What is 2+3?"] * 4, budget=budgets, max_new_tokens=64)
    for r, b in zip(rs, budgets):
        if b.max_thinking_tokens is not None:
            assert r.thinking_tokens <= b.max_thinking_tokens
        if b.min_thinking_tokens == 0:
            assert r.waits_inserted <= b.num_waits
        assert "<|im_end|>" not in r.thinking_text  # the delimiter never sits inside thinking
    assert rs[2].thinking_tokens == 4 and rs[2].answer_text.startswith("\nFinal Answer:")
    assert rs[3].thinking_tokens >= 20
    for p, b, r in zip(["What is 2+3?"] * 4, budgets, rs):
        assert ours.generate(p, budget=b, max_new_tokens=64)[0].token_ids == r.token_ids
