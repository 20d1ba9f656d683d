"""Our JAX forward vs transformers on random tiny configs of every architecture."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from tiny_models import save_tiny

from entropix_s1.io.checkpoint import load_checkpoint
from entropix_s1.core.config import ModelConfig
from entropix_s1.core.model import KVCache, forward, score_logits

ARCHS = ["llama", "qwen2", "qwen3"]


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request, tmp_path_factory):
    arch = request.param
    d = save_tiny(arch, tmp_path_factory.mktemp(arch) / "ckpt", tie=(arch == "qwen2"))
    import transformers as tf

    hf = tf.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    cfg, params = load_checkpoint(d)
    return arch, d, hf, cfg, params


def hf_logits(hf, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0].float().numpy()


def left_pad(prompts: list[list[int]], T: int | None = None):
    T = T or max(map(len, prompts))
    toks = np.zeros((len(prompts), T), np.int32)
    valid = np.zeros((len(prompts), T), bool)
    for i, p in enumerate(prompts):
        toks[i, T - len(p) :] = p
        valid[i, T - len(p) :] = True
    return jnp.asarray(toks), jnp.asarray(valid)


def test_config_reads_arch_features(tiny):
    arch, _, _, cfg, _ = tiny
    assert cfg.arch == arch
    assert cfg.qkv_bias == (arch == "qwen2")
    assert cfg.qk_norm == (arch == "qwen3")
    assert (cfg.rope_scaling is not None) == (arch == "llama")


def test_prefill_logits_match_transformers_batched(tiny):
    """A left-padded batch of different prompt lengths: every row equals transformers alone."""
    _, _, hf, cfg, params = tiny
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, cfg.vocab_size, n).tolist() for n in (5, 12, 1, 9)]
    toks, valid = left_pad(prompts, 16)
    ours = np.asarray(score_logits(params, cfg, toks, valid))
    for i, p in enumerate(prompts):
        ref = hf_logits(hf, p)
        np.testing.assert_allclose(ours[i, 16 - len(p) :], ref, atol=1e-4, rtol=0)


def test_decode_through_cache_matches_transformers(tiny):
    """Prefill, then token-by-token decode over the cache, rows of different lengths."""
    _, _, hf, cfg, params = tiny
    rng = np.random.default_rng(1)
    prompts = [rng.integers(0, cfg.vocab_size, n).tolist() for n in (3, 7)]
    conts = [rng.integers(0, cfg.vocab_size, 6).tolist() for _ in prompts]
    toks, valid = left_pad(prompts, 8)
    window = 16
    cache = KVCache.init(cfg, 2, window, params.dtype)
    step = jax.jit(forward, static_argnames=("cfg", "window", "metric_layers", "last_only"))
    logits, cache, _ = step(params, cfg, toks, cache, window=window, token_valid_BT=valid, last_only=True)
    got = [np.asarray(logits)]
    for t in range(6):
        col = jnp.asarray([[c[t]] for c in conts], jnp.int32)
        logits, cache, _ = step(params, cfg, col, cache, window=window, last_only=True)
        got.append(np.asarray(logits))
    got = np.stack(got, axis=1)  # [B, 7, V]
    for i, (p, c) in enumerate(zip(prompts, conts)):
        ref = hf_logits(hf, p + c)[len(p) - 1 :]
        np.testing.assert_allclose(got[i], ref, atol=1e-4, rtol=0)


def test_bfloat16_weights_close_to_float32(tiny):
    _, d, _, cfg, params = tiny
    _, p16 = load_checkpoint(d, dtype=jnp.bfloat16)
    assert p16.embed_VD.dtype == jnp.bfloat16
    toks, valid = left_pad([[1, 2, 3, 4, 5]])
    a = np.asarray(score_logits(params, cfg, toks, valid))
    b = score_logits(p16, cfg, toks, valid)
    assert b.dtype == jnp.float32  # logits stay float32 whatever the weight dtype
    assert np.max(np.abs(a - np.asarray(b))) < 0.1


def test_config_and_params_hash_stably(tiny):
    """Building config and params twice gives equal hashes and treedefs: no silent recompiles."""
    _, d, _, cfg, params = tiny
    cfg2, params2 = load_checkpoint(d)
    assert cfg == cfg2 and hash(cfg) == hash(cfg2)
    assert jax.tree.structure(params) == jax.tree.structure(params2)
    chex.assert_trees_all_equal_shapes_and_dtypes(params, params2)
    cfg3 = dataclasses.replace(cfg2, norm_eps=cfg2.norm_eps * 2)
    assert hash(cfg3) != hash(cfg)
    def fresh(p, c, t, s):  # a new function object: its own compilation cache
        return score_logits.__wrapped__(p, c, t, s)

    f = jax.jit(fresh, static_argnums=1)
    toks, valid = left_pad([[1, 2, 3]])
    f(params, cfg, toks, valid)
    f(params2, cfg2, toks, valid)
    assert f._cache_size() == 1


def test_llama3_rope_scaling_matches_transformers():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    import transformers as tf

    hf_cfg = tf.LlamaConfig(
        hidden_size=64, num_attention_heads=2, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
    )
    ref, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_cfg, "cpu")
    ours = ModelConfig.from_hf(hf_cfg.to_dict()).inv_freq()
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-6)


def test_invalidated_slots_are_forgotten(tiny):
    """Dropping tokens from the cache (how budget forcing removes a delimiter) is exact: the
    continuation equals transformers on the sequence that never contained them."""
    _, _, hf, cfg, params = tiny
    prompt, junk, cont = [5, 6, 7, 8], [9, 10, 11], [12, 13]
    step = jax.jit(forward, static_argnames=("cfg", "window", "metric_layers", "last_only"))
    cache = KVCache.init(cfg, 1, 16, params.dtype)
    _, cache, _ = step(params, cfg, jnp.asarray([prompt + junk]), cache, window=16, last_only=True)
    lo = cache.length - len(junk)
    cache = cache.invalidate(jnp.asarray([lo]), jnp.asarray([cache.length]))
    assert int(cache.pos_B[0]) == len(prompt)
    got = []
    for t in cont:
        logits, cache, _ = step(params, cfg, jnp.asarray([[t]]), cache, window=16, last_only=True)
        got.append(np.asarray(logits[0]))
    ref = hf_logits(hf, prompt + cont)[len(prompt) :]
    np.testing.assert_allclose(np.stack(got), ref, atol=1e-4, rtol=0)


def _decode_conts(params, cfg, prompts, conts, max_len, window, legacy=False):
    """Prefill + one-token steps over a `max_len` cache attending to its first `window` slots."""
    from entropix_s1.core import model as model_lib

    old, model_lib.LEGACY_ATTENTION = model_lib.LEGACY_ATTENTION, legacy
    try:
        step = jax.jit(forward, static_argnames=("cfg", "window", "metric_layers", "last_only"))
        toks, valid = left_pad(prompts, 8)
        cache = KVCache.init(cfg, len(prompts), max_len, params.dtype)
        logits, cache, _ = step(params, cfg, toks, cache, window=window, token_valid_BT=valid, last_only=True)
        got = [np.asarray(logits)]
        for t in range(len(conts[0])):
            col = jnp.asarray([[c[t]] for c in conts], jnp.int32)
            logits, cache, _ = step(params, cfg, col, cache, window=window, last_only=True)
            got.append(np.asarray(logits))
        return np.stack(got, axis=1), cache
    finally:
        model_lib.LEGACY_ATTENTION = old


def test_window_shorter_than_cache_matches_transformers_and_the_old_path(tiny):
    """The decode loop's stages attend to a prefix window of a longer cache (the write goes through
    `_write_cache`'s window): same logits as transformers, the same cache contents as the plain
    update-then-slice of before issue 17, and the slots past the window untouched."""
    _, _, hf, cfg, params = tiny
    rng = np.random.default_rng(2)
    prompts = [rng.integers(0, cfg.vocab_size, n).tolist() for n in (3, 7)]
    conts = [rng.integers(0, cfg.vocab_size, 6).tolist() for _ in prompts]
    got, cache = _decode_conts(params, cfg, prompts, conts, max_len=40, window=16)
    old, old_cache = _decode_conts(params, cfg, prompts, conts, max_len=40, window=16, legacy=True)
    for i, (p, c) in enumerate(zip(prompts, conts)):
        np.testing.assert_allclose(got[i], hf_logits(hf, p + c)[len(p) - 1 :], atol=1e-4, rtol=0)
    np.testing.assert_allclose(got, old, atol=1e-5, rtol=0)
    for a, b in zip(cache.k + cache.v, old_cache.k + old_cache.v):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert not np.asarray(a)[:, :, 14:].any()  # 8 prompt slots + 6 steps written, nothing past them
    assert int(cache.length) == 14


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's fusion and copy insertion")
def test_decode_loop_updates_the_cache_in_place():
    """Issue 17: inside a `while_loop`, with a window shorter than the cache, the cache write used
    to cost two copies of every whole K/V buffer per step (found in the compiled HLO)."""
    from entropix_s1.testing import random_config, random_params

    cfg = dataclasses.replace(random_config("tiny"), n_layers=2)
    params = random_params(cfg, "float32")
    B, S, W = 4, 96, 32

    def body(_, carry):
        tok, cache = carry
        logits, cache, _ = forward(params, cfg, tok[:, None], cache, window=W, last_only=True)
        return jnp.argmax(logits, -1).astype(jnp.int32), cache

    run = jax.jit(lambda tok, cache: jax.lax.fori_loop(0, 4, body, (tok, cache)), donate_argnums=(1,))
    hlo = run.lower(jnp.zeros((B,), jnp.int32), KVCache.init(cfg, B, S, jnp.float32)).compile().as_text()
    shape = f"f32[{B},{cfg.n_kv_heads},{S},{cfg.head_dim}]"
    copies = [line for line in hlo.splitlines() if f"= {shape}" in line and " copy(" in line]
    assert not copies, copies
