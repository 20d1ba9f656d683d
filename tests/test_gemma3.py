"""Gemma 3 (`gemma3_text`) against transformers on tiny random checkpoints saved with
`save_pretrained`: a sliding window of 8 tokens and prompts longer than it, so the local layers
(window, local RoPE base) and the global layer differ; (1 + w) norms before and after attention and
MLP, GeGLU, sqrt(hidden) embedding scale, query_pre_attn_scalar, and (second config) softcapping
with linear RoPE scaling of the global layers."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from tiny_models import save_tiny

from entropix_s1.core.config import ModelConfig
from entropix_s1.core.model import KVCache, forward, score_logits
from entropix_s1.errors import UnsupportedArchitectureError
from entropix_s1.io.checkpoint import load_checkpoint

VARIANTS = {
    "plain": {},
    # A final-logit cap (small, so it bites on random weights; transformers' Gemma 3 never applies
    # `attn_logit_softcapping`, nor do we) and Gemma 3 4B+-style linear RoPE scaling of the global layers.
    "softcap_linear_rope": dict(final_logit_softcapping=0.5, attn_logit_softcapping=0.7,
                                rope_parameters={"full_attention": {"rope_type": "linear", "factor": 4.0,
                                                                    "rope_theta": 1_000_000.0},
                                                 "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}}),
}
STEP = jax.jit(forward, static_argnames=("cfg", "window", "metric_layers", "last_only"))


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def tiny(request, tmp_path_factory):
    import transformers as tf

    d = save_tiny("gemma3", tmp_path_factory.mktemp("gemma3") / "ckpt", tie=True, **VARIANTS[request.param])
    hf = tf.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    cfg, params = load_checkpoint(d)
    return request.param, d, hf, cfg, params


def hf_logits(hf, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0].float().numpy()


def left_pad(prompts: list[list[int]], T: int):
    toks = np.zeros((len(prompts), T), np.int32)
    valid = np.zeros((len(prompts), T), bool)
    for i, p in enumerate(prompts):
        toks[i, T - len(p):] = p
        valid[i, T - len(p):] = True
    return jnp.asarray(toks), jnp.asarray(valid)


def test_config_reads_gemma3_features(tiny):
    variant, d, _, cfg, _ = tiny
    assert cfg.arch == "gemma3" and cfg.qk_norm and cfg.norm_plus_one and cfg.post_norms
    assert cfg.hidden_act == "gelu_tanh" and cfg.tie_embeddings
    assert cfg.sliding_windows == (8, None, 8) and cfg.has_local_layers
    assert cfg.embed_scale == pytest.approx(8.0) and cfg.attn_scale == pytest.approx(24**-0.5)
    assert cfg.rope_theta == 1_000_000.0 and cfg.rope_local_theta == 10_000.0
    np.testing.assert_allclose(cfg.inv_freq(local=True), 1 / 10_000.0 ** (np.arange(0, 16, 2) / 16), rtol=1e-6)
    factor = 4.0 if variant == "softcap_linear_rope" else 1.0
    np.testing.assert_allclose(cfg.inv_freq(), 1 / 1e6 ** (np.arange(0, 16, 2) / 16) / factor, rtol=1e-6)
    assert cfg.final_softcap == (0.5 if factor != 1.0 else None)


def test_prefill_of_left_padded_batch_matches_transformers(tiny):
    """Rows of 5, 21, 1 and 14 tokens (window 8) left-padded to 24: each row equals transformers
    run on it alone."""
    _, _, hf, cfg, params = tiny
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, cfg.vocab_size, n).tolist() for n in (5, 21, 1, 14)]
    toks, valid = left_pad(prompts, 24)
    ours = np.asarray(score_logits(params, cfg, toks, valid))
    worst = 0.0
    for i, p in enumerate(prompts):
        ref = hf_logits(hf, p)
        worst = max(worst, float(np.abs(ours[i, 24 - len(p):] - ref).max()))
        np.testing.assert_allclose(ours[i, 24 - len(p):], ref, atol=1e-4, rtol=0)
    print(f"max |logit diff| prefill: {worst:.2e}")


@pytest.mark.parametrize("max_len,window", [(32, 32), (48, 32)])
def test_token_by_token_decode_matches_transformers(tiny, max_len, window):
    """Prefill 3- and 11-token prompts, then 14 one-token steps over the cache (past the 8-token
    window in every row); also with an attention window shorter than the cache (the decode loop's
    stages)."""
    _, _, hf, cfg, params = tiny
    rng = np.random.default_rng(1)
    prompts = [rng.integers(0, cfg.vocab_size, n).tolist() for n in (3, 11)]
    conts = [rng.integers(0, cfg.vocab_size, 14).tolist() for _ in prompts]
    toks, valid = left_pad(prompts, 12)
    cache = KVCache.init(cfg, 2, max_len, params.dtype)
    logits, cache, _ = STEP(params, cfg, toks, cache, window=window, token_valid_BT=valid, last_only=True)
    got = [np.asarray(logits)]
    for t in range(14):
        col = jnp.asarray([[c[t]] for c in conts], jnp.int32)
        logits, cache, _ = STEP(params, cfg, col, cache, window=window, last_only=True)
        got.append(np.asarray(logits))
    got = np.stack(got, axis=1)
    worst = 0.0
    for i, (p, c) in enumerate(zip(prompts, conts)):
        ref = hf_logits(hf, p + c)[len(p) - 1:]
        worst = max(worst, float(np.abs(got[i] - ref).max()))
        np.testing.assert_allclose(got[i], ref, atol=1e-4, rtol=0)
    print(f"max |logit diff| decode: {worst:.2e}")


def test_sliding_window_matters(tiny):
    """The same weights with the local layers' window opened wide give other logits past the window
    (and the same ones within it), so the parity above is a test of the window."""
    _, _, _, cfg, params = tiny
    ids = jnp.asarray([np.random.default_rng(2).integers(0, cfg.vocab_size, 20)], jnp.int32)
    valid = jnp.ones(ids.shape, bool)
    local = np.asarray(score_logits(params, cfg, ids, valid))[0]
    glob = np.asarray(score_logits(params, dataclasses.replace(cfg, sliding_windows=(10**6, None, 10**6)), ids, valid))[0]
    np.testing.assert_allclose(local[:8], glob[:8], atol=1e-5)
    assert np.abs(local[8:] - glob[8:]).max() > 1e-3


def test_window_counts_real_tokens_after_invalidate(tiny):
    """Slots forgotten by `KVCache.invalidate` (a dropped budget-forcing delimiter) do not count
    against the window: the continuation equals transformers on the sequence without them."""
    _, _, hf, cfg, params = tiny
    prompt, junk, cont = list(range(10, 20)), [5, 6, 7], [30, 31, 32, 33, 34]
    cache = KVCache.init(cfg, 1, 32, params.dtype)
    _, cache, _ = STEP(params, cfg, jnp.asarray([prompt + junk]), cache, window=32, last_only=True)
    cache = cache.invalidate(jnp.asarray([cache.length - len(junk)]), jnp.asarray([cache.length]))
    got = []
    for t in cont:
        logits, cache, _ = STEP(params, cfg, jnp.asarray([[t]]), cache, window=32, last_only=True)
        got.append(np.asarray(logits[0]))
    ref = hf_logits(hf, prompt + cont)[len(prompt):]
    np.testing.assert_allclose(np.stack(got), ref, atol=1e-4, rtol=0)


def test_local_layer_attention_entropy_is_over_its_window(tiny):
    """entropix's attention entropy of a local layer is the entropy of transformers' attention
    probabilities (zero outside the window), not of a softmax over the whole row."""
    _, _, hf, cfg, params = tiny
    ids = np.random.default_rng(3).integers(0, cfg.vocab_size, 16).tolist()
    with torch.no_grad():
        att = hf(torch.tensor([ids]), output_attentions=True).attentions
    for layer in (0, 1):  # local, global
        p = att[layer][0, :, -1].double().numpy()  # [heads, keys]
        assert (np.count_nonzero(p, axis=-1) == (8 if layer == 0 else 16)).all()
        ref_ent = float(np.mean(-(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0)).sum(-1)))
        cache = KVCache.init(cfg, 1, 16, params.dtype)
        _, _, m = STEP(params, cfg, jnp.asarray([ids]), cache, window=16, metric_layers=(layer,), last_only=True)
        assert float(m.entropy_B[0]) == pytest.approx(ref_ent, abs=1e-4)
    assert ref_ent > np.log(8) * 0.9  # the global layer's entropy is not capped by the window


def test_bfloat16_weights_close_to_float32(tiny):
    _, d, _, cfg, params = tiny
    _, p16 = load_checkpoint(d, dtype=jnp.bfloat16)
    ids = jnp.asarray([list(range(1, 13))])
    valid = jnp.ones(ids.shape, bool)
    a = np.asarray(score_logits(params, cfg, ids, valid))
    b = score_logits(p16, cfg, ids, valid)
    assert b.dtype == jnp.float32
    assert np.max(np.abs(a - np.asarray(b))) < 0.1


def test_window_mask_is_built_only_for_local_layers():
    """No local layers, no window mask: a gemma3 forward has cumsums a llama forward lacks
    (the valid-slot counts the window is measured in), and the same config with every layer global
    has none more."""
    from entropix_s1.testing import RANDOM_CONFIGS, random_params

    def cumsums(cfg):
        p = random_params(cfg)
        cache = KVCache.init(cfg, 1, 16, p.dtype)
        lowered = jax.jit(forward, static_argnames=("cfg", "window")).lower(
            p, cfg, jnp.zeros((1, 4), jnp.int32), cache, window=16)
        return lowered.as_text().count("call @cumsum")

    tiny = RANDOM_CONFIGS["tiny"]
    assert not tiny.has_local_layers and tiny.layer_window(0) is None
    gemma = dataclasses.replace(RANDOM_CONFIGS["gemma3-270m"], vocab_size=64, dim=32, n_layers=6, head_dim=8,
                                ffn_dim=32, sliding_windows=(4, 4, 4, 4, 4, None))
    assert cumsums(gemma) > cumsums(tiny)
    assert cumsums(dataclasses.replace(gemma, sliding_windows=())) == cumsums(tiny)


def test_multimodal_gemma3_is_rejected_naming_the_vision_tower(tmp_path):
    import transformers as tf

    (tmp_path / "config.json").write_text(json.dumps(tf.Gemma3Config().to_dict()))
    with pytest.raises(UnsupportedArchitectureError, match="vision tower"):
        load_checkpoint(tmp_path)
    with pytest.raises(UnsupportedArchitectureError, match="use_bidirectional_attention"):
        ModelConfig.from_hf({**tf.Gemma3TextConfig().to_dict(), "use_bidirectional_attention": True})


def test_older_gemma3_config_fields():
    """Configs written before transformers 5 (e.g. the text_config of gemma-3-4b): top-level
    rope_theta / rope_local_base_freq, rope_scaling on the global layers, sliding_window_pattern."""
    cfg = ModelConfig.from_hf(dict(model_type="gemma3_text", vocab_size=262208, hidden_size=2560, intermediate_size=10240,
                                   num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                                   rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, sliding_window=1024,
                                   sliding_window_pattern=4, query_pre_attn_scalar=256,
                                   rope_scaling={"factor": 8.0, "rope_type": "linear"}))
    assert cfg.sliding_windows == (1024, 1024, 1024, None, 1024, 1024, 1024, None)
    assert (cfg.rope_theta, cfg.rope_local_theta, cfg.rope_linear_factor) == (1e6, 1e4, 8.0)
    assert cfg.hidden_act == "gelu_tanh" and cfg.tie_embeddings and cfg.eos_token_ids == (1,)
    np.testing.assert_allclose(cfg.inv_freq(local=True), 1e4 ** -(np.arange(0, 256, 2) / 256), rtol=1e-6)
    np.testing.assert_allclose(cfg.inv_freq(), 1e6 ** -(np.arange(0, 256, 2) / 256) / 8, rtol=1e-6)
    with pytest.raises(UnsupportedArchitectureError, match="sliding_attention rope_type 'yarn'"):
        ModelConfig.from_hf(dict(model_type="gemma3_text", vocab_size=8, hidden_size=8, intermediate_size=8,
                                 num_hidden_layers=1, num_attention_heads=1, sliding_window=4,
                                 rope_parameters={"sliding_attention": {"rope_type": "yarn"}}))


def test_lookahead_paths_respect_the_window():
    """entropix's branch roll-outs (`forward_paths` over the shared cache) on a gemma3 config
    whose 4-token window the paths cross: every path token's logits equal decoding it."""
    import math

    from entropix_s1.core.lookahead import Lookahead
    from entropix_s1.core.sampling import greedy
    from entropix_s1.testing import RANDOM_CONFIGS, random_params

    cfg = dataclasses.replace(RANDOM_CONFIGS["gemma3-270m"], vocab_size=128, dim=32, n_layers=3, head_dim=8,
                              ffn_dim=32, embed_scale=math.sqrt(32), sliding_windows=(4, None, 4))
    params = random_params(cfg, std=0.35, seed=3)
    tokens = jnp.asarray([[11, 12, 13, 14, 15, 16], [0, 0, 0, 21, 22, 23]], jnp.int32)
    cache = KVCache.init(cfg, 2, 32, jnp.float32)
    _, cache, _ = forward(params, cfg, tokens, cache, window=32, token_valid_BT=tokens > 0, last_only=True)
    cand_BN = jnp.asarray([[40, 41, 42], [7, 7, 90]], jnp.int32)
    paths = Lookahead(params, cfg, cache, 32).greedy_paths(cand_BN, steps=4)
    for n in range(3):
        ref, tok_B = cache, cand_BN[:, n]
        for j in range(3):
            logits_BV, ref, _ = forward(params, cfg, tok_B[:, None], ref, window=32, last_only=True)
            np.testing.assert_allclose(paths.logits_BNDV[:, n, j], logits_BV, atol=2e-5, rtol=1e-5)
            tok_B = greedy(logits_BV)
            np.testing.assert_array_equal(paths.tokens_BND[:, n, j + 1], tok_B)
    wide = dataclasses.replace(cfg, sliding_windows=(10**6, None, 10**6))  # the window matters here
    wide_paths = Lookahead(params, wide, cache, 32).greedy_paths(cand_BN, steps=4)
    assert np.abs(np.asarray(wide_paths.logits_BNDV) - np.asarray(paths.logits_BNDV)).max() > 1e-3
