"""Budget-forcing invariants on a tiny random Qwen3 that uses the REAL Qwen3 tokenizer and chat
template (single-token <think> = 151667, </think> = 151668).

The random model is steered like a script: for a few (current -> next) token pairs we add the
current token's normalised embedding to the next token's output row, and scale those embeddings
up so they dominate the residual stream; the pair's logit then wins by a wide margin. That makes
"</think>" appear right after "." -- i.e. the model tries to end thinking at every sentence end.
"""

from __future__ import annotations

import shutil

import pytest
import torch

import entropix_s1
from entropix_s1.core.budget import Budget

CHAIN = [("\n", "Let"), ("Let", " me"), (" me", " check"), (" check", "."), (".", "</think>"),
         ("Wait", ","), (",", " check"), ("</think>", "\n\n"), ("\n\n", "4"), ("4", "<|im_end|>"),
         (":", " answer"), (" answer", "<|im_end|>")]


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory, shared):
    import transformers as tf

    tok_dir = shared / "tokenizers" / "qwen3"
    tok = tf.PreTrainedTokenizerFast(tokenizer_file=str(tok_dir / "tokenizer.json"))
    ids = {s: tok.encode(s, add_special_tokens=False) for pair in CHAIN for s in pair}
    assert all(len(v) == 1 for v in ids.values()), ids
    torch.manual_seed(0)
    cfg = tf.Qwen3Config(vocab_size=151936, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=False,
                         max_position_embeddings=1024)
    model = tf.Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        for s in {s for pair in CHAIN for s in pair}:
            emb[ids[s][0]] *= 50.0
        for cur, nxt in CHAIN:
            e = emb[ids[cur][0]]
            head[ids[nxt][0]] += 0.5 * e / e.pow(2).mean().sqrt()
    d = tmp_path_factory.mktemp("qwen3") / "ckpt"
    model.save_pretrained(d)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / f, d / f)
    return entropix_s1.load(d)


THINK = dict(think_start="<think>\n", think_end=("</think>",), answer_prefix="\nFinal Answer:")


def test_delimiters_are_single_tokens(qwen3):
    assert qwen3.tokenizer.encode("<think>") == [151667] and qwen3.tokenizer.encode("</think>") == [151668]


def test_per_row_budgets_hold_in_one_batch(qwen3):
    budgets = [Budget(**THINK, num_waits=0), Budget(**THINK, num_waits=2), Budget(**THINK, num_waits=5, max_thinking_tokens=12),
               Budget(**THINK, min_thinking_tokens=9, max_thinking_tokens=30), Budget(**THINK, max_thinking_tokens=3, num_waits=3)]
    rs = qwen3.generate(["What is 6*7?"] * len(budgets), budget=budgets, max_new_tokens=64)
    for r, b in zip(rs, budgets):
        assert r.error is None
        if b.max_thinking_tokens is not None:
            assert r.thinking_tokens <= b.max_thinking_tokens
        if b.min_thinking_tokens == 0:
            assert r.waits_inserted <= b.num_waits
        if b.max_thinking_tokens is None or r.thinking_tokens < b.max_thinking_tokens:
            assert r.thinking_tokens >= b.min_thinking_tokens
        assert "</think>" not in r.thinking_text  # the delimiter never sits inside thinking
        alone = qwen3.generate("What is 6*7?", budget=b, max_new_tokens=64)[0]
        assert alone.token_ids == r.token_ids
    assert rs[0].waits_inserted == 0 and rs[1].waits_inserted == 2
    assert rs[4].thinking_tokens == 3 and "cap" in {t.forced for t in rs[4].trace}
    # each extension is "Wait" where the model had written "</think>"
    assert rs[1].thinking_text.count("Wait") == 2


def test_chat_template_thinking_switch_and_prefill(qwen3):
    t = qwen3.tokenizer
    off = t.render("Hi", enable_thinking=False)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    forced = t.render("Hi", prefill="<think>I know this")
    assert forced.endswith("<|im_start|>assistant\n<think>I know this")
    (r,) = qwen3.generate("Hi", prefill="<think>\nLet", max_new_tokens=8, budget=Budget(think_end=("</think>",), num_waits=1))
    assert qwen3.tokenizer.decode(r.token_ids).startswith(" me check.Wait")
