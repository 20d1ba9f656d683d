"""entropix.py: config validation, per-row regimes, entropix formulas, samplers, branching, calibration."""

from __future__ import annotations

import dataclasses
import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropix_s1.core import entropix as ex
from entropix_s1.core.entropix import (
    _top_k_space,
    ADAPTIVE,
    ARGMAX,
    BRANCH,
    HOT,
    PAUSE,
    REGIME_NAMES,
    EntropixConfig,
    EntropixSampler,
    adaptive_params,
    adaptive_sample,
    branch_candidates,
    calibrate_thresholds,
    classify,
    hot_params,
    hot_sample,
    score_paths,
)
from entropix_s1.errors import ConfigError
from entropix_s1.core.metrics import AttentionMetrics, LogitMetrics, attention_metrics, logit_metrics
from entropix_s1.core.sampling import FALLBACK_TOKEN, categorical, greedy, process_logits, split_rows

LN2 = math.log(2.0)
NEG = -np.inf
V = 1024

# Jitted once per module: eager op-by-op dispatch is what makes JAX tests slow.
jlm = jax.jit(logit_metrics)
jattn = jax.jit(attention_metrics)


def keys(n: int, seed: int = 0) -> jax.Array:
    return jax.random.split(jax.random.key(seed), n)


def regime_logits() -> np.ndarray:
    """One row per regime, in REGIME order ARGMAX, PAUSE, BRANCH, HOT, ADAPTIVE (default config)."""
    rows = np.full((5, V), NEG)
    rows[0] = 0.0
    rows[0, 7] = 30.0  # H ~ 0, V ~ 0
    rows[1, :64] = 0.0  # uniform over 64: H = ln 64 = 4.16 nats, V = 0
    rows[2, 3] = math.log(0.5)  # 0.5 on one token + 0.5 over 63: H = 2.76, V = 4.3
    rows[2, 100:163] = math.log(0.5 / 63)
    rows[3] = math.log(0.7 / (V - 1))  # 0.3 on one + 0.7 over 1023: H = 5.46, V = 7.8
    rows[3, 11] = math.log(0.3)
    rows[4, 200:208] = 0.0  # uniform over 8: H = 2.08, V = 0
    return rows.astype(np.float32)


def random_attn(B: int, seed: int = 0) -> AttentionMetrics:
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((B, 4, 10)).astype(np.float32) * 2
    valid = np.arange(10)[None] < rng.integers(1, 11, B)[:, None]
    return jattn(jnp.asarray(scores), jnp.asarray(valid))


def attn(B: int, ent=1.0, vent=0.1, agree=0.1, inter=0.5) -> AttentionMetrics:
    f = lambda x: jnp.full((B,), x, jnp.float32)  # noqa: E731
    return AttentionMetrics(f(ent), f(vent), f(agree), f(inter))


# ----------------------------------------------------------------------------- config


def test_default_thresholds_are_entropix_bits_in_nats():
    c = EntropixConfig()
    assert c.low_ent_thresh == pytest.approx(0.1 * LN2)
    assert c.med_ent_thresh == pytest.approx(3.0 * LN2)
    assert c.high_ent_thresh == pytest.approx(5.0 * LN2)
    assert c.low_vent_thresh == pytest.approx(0.1 * LN2**2)
    assert c.high_vent_thresh == pytest.approx(5.0 * LN2**2)
    assert c.thresholds("bits") == pytest.approx(dict(low_ent=0.1, med_ent=3.0, high_ent=5.0, low_vent=0.1, high_vent=5.0))
    assert (c.temp, c.top_p, c.top_k, c.min_p, c.n_adaptive_samples) == (0.666, 0.9, 27, 0.03, 5)
    assert REGIME_NAMES[ARGMAX] == "argmax" and REGIME_NAMES[ADAPTIVE] == "adaptive" and len(REGIME_NAMES) == 5


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(temp=-0.5), "temp"),
        (dict(temp=float("nan")), "temp"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(min_p=1.0), "min_p"),
        (dict(top_k=0), "top_k"),
        (dict(top_k=200), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(low_ent_thresh=3.0), "low_ent_thresh"),
        (dict(med_ent_thresh=4.0), "med_ent_thresh"),
        (dict(low_vent_thresh=3.0), "low_vent_thresh"),
        (dict(high_ent_thresh=-1.0, med_ent_thresh=-1.0, low_ent_thresh=-1.0), "thresh"),
        (dict(n_branches=1), "n_branches"),
        (dict(branch_depth=0), "branch_depth"),
        (dict(branch_mode="beam"), "branch_mode"),
        (dict(n_adaptive_samples=0), "n_adaptive_samples"),
        (dict(pause_text=""), "pause_text"),
        (dict(pause_cooldown=-1), "pause_cooldown"),
        (dict(max_pauses=-1), "max_pauses"),
        (dict(attn_layers="first"), "attn_layers"),
        (dict(attn_layers=()), "attn_layers"),
        (dict(attn_layers=(1.5,)), "attn_layers"),
        (dict(max_top_k=0), "max_top_k"),
        (dict(ada_min_p_min=0.6), "ada_min_p_min"),
        (dict(hehv_min_top_p=0.0), "hehv_min_top_p"),
        (dict(helv_attn_ent_coef=float("inf")), "helv_attn_ent_coef"),
    ],
)
def test_invalid_configs_raise_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        EntropixConfig(**kwargs)


def test_config_replace_hash_thresholds_layers():
    c = EntropixConfig()
    assert hash(c) == hash(EntropixConfig()) and c == EntropixConfig()
    c2 = dataclasses.replace(c, n_branches=4, attn_layers=[0, -1])
    assert c2.attn_layers == (0, -1) and hash(c2) != hash(c)
    with pytest.raises(ConfigError, match="n_branches"):
        dataclasses.replace(c, n_branches=0)
    c3 = c.with_thresholds(unit="bits", low_ent=0.2, high_vent=6.0)
    assert c3.low_ent_thresh == pytest.approx(0.2 * LN2) and c3.high_vent_thresh == pytest.approx(6 * LN2**2)
    assert c.with_thresholds(med_ent=2.5).med_ent_thresh == 2.5
    with pytest.raises(ConfigError, match="high_ent_thresh"):
        c.with_thresholds(med_ent=10.0)
    with pytest.raises(ConfigError, match="unknown"):
        c.with_thresholds(mid=1.0)
    assert c.layer_indices(12) == (11,)
    assert dataclasses.replace(c, attn_layers="all").layer_indices(3) == (0, 1, 2)
    assert c2.layer_indices(6) == (0, 5)
    with pytest.raises(ConfigError, match="attn_layers"):
        dataclasses.replace(c, attn_layers=(9,)).layer_indices(4)


# ----------------------------------------------------------------------------- regimes


def test_one_batch_mixing_all_five_regimes_jitted():
    rows = regime_logits()
    perm = np.array([3, 0, 4, 2, 1, 2, 0])
    logits = jnp.asarray(rows[perm])
    cfg = EntropixConfig()

    @jax.jit
    def run(x):
        lm = logit_metrics(x)
        return lm, classify(lm, random_attn(len(perm)), cfg)

    lm, regime = run(logits)
    np.testing.assert_array_equal(regime, perm)
    h = np.asarray(lm.entropy_B)
    assert h[1] < 1e-6 and abs(h[4] - math.log(64)) < 1e-5 and abs(h[2] - math.log(8)) < 1e-5


def test_classify_rules_and_order():
    c = EntropixConfig()
    lo, hi = c.low_ent_thresh, c.high_ent_thresh
    lv, hv = c.low_vent_thresh, c.high_vent_thresh
    h = jnp.array([lo / 2, hi + 1, hi - 0.01, hi + 0.01, (lo + hi) / 2, hi, np.nan, lo / 2])
    v = jnp.array([lv / 2, lv / 2, hv + 1, hv + 1, (lv + hv) / 2, hv + 1, 0.0, hv + 1])
    r = classify(LogitMetrics(h, v), None, c)
    # row 5: H == high_ent exactly is not < high_ent, but is > med_ent -> HOT; row 7: low H, high V -> BRANCH
    np.testing.assert_array_equal(r, [ARGMAX, PAUSE, BRANCH, HOT, ADAPTIVE, HOT, ARGMAX, BRANCH])


# ----------------------------------------------------------------------------- formulas


def test_hot_params_formula():
    c = EntropixConfig(temp=1.5)
    a = attn(3, ent=jnp.array([0.5, 2.0, 0.1]), vent=jnp.array([0.1, 2.0, 0.0]))
    sp = hot_params(a, c)
    ent_bits = np.array([0.5, 2.0, 0.1]) / LN2
    vent_bits = np.array([0.1, 2.0, 0.0]) / LN2**2
    np.testing.assert_allclose(sp.temperature_B, np.maximum(2.0, 1.5 * (2.0 + 0.5 * vent_bits)), rtol=1e-6)
    np.testing.assert_allclose(sp.top_p_B, np.maximum(0.5, 0.9 - 0.2 * ent_bits), rtol=1e-6)
    np.testing.assert_array_equal(sp.top_k_B, 27)
    np.testing.assert_allclose(sp.min_p_B, 0.03)


def test_adaptive_params_formula():
    c = EntropixConfig()
    lm = LogitMetrics(jnp.array([0.5, 3.0]), jnp.array([0.2, 0.01]))
    a = attn(2, ent=jnp.array([1.0, 2.0]), vent=jnp.array([0.3, 0.05]), agree=jnp.array([0.1, 0.4]), inter=jnp.array([0.5, 3.0]))
    sp = adaptive_params(lm, a, c)
    H, Vv = np.array([0.5, 3.0]) / LN2, np.array([0.2, 0.01]) / LN2**2
    aH, aV = np.array([1.0, 2.0]) / LN2, np.array([0.3, 0.05]) / LN2**2
    agree, inter = np.array([0.1, 0.4]), np.array([0.5, 3.0])
    t = 0.666 * (1 + 0.3 * (H + Vv) + 0.2 * (aH + aV) - 0.2 * agree)
    np.testing.assert_allclose(sp.temperature_B, t, rtol=1e-5)
    np.testing.assert_allclose(sp.top_p_B, np.clip(0.9 * (1 + 0.1 * aV), 0.1, 1.0), rtol=1e-6)
    np.testing.assert_array_equal(sp.top_k_B, np.clip(np.round(27 * (1 + 0.3 * inter - 0.2 * agree)), 1, 100))
    np.testing.assert_allclose(sp.min_p_B, np.clip(0.03 * (1 - 0.5 * (H + Vv)), 0.01, 0.5), rtol=1e-6)


def test_adaptive_sample_keeps_best_scored_candidate():
    B, Vs = 64, 40
    logits = jnp.asarray(np.random.default_rng(0).standard_normal((B, Vs)).astype(np.float32) * 2)
    a = random_attn(B)
    c = EntropixConfig(n_adaptive_samples=4)

    @jax.jit
    def run(x, k):
        lm = logit_metrics(x)
        tok = adaptive_sample(x, lm, a, k, c)
        # reproduce: same processed distribution, same per-row subkeys
        sp = adaptive_params(lm, a, c)
        proc, idx = _top_k_space(x, sp, c)
        k_BN = split_rows(k, 4)
        cand = jnp.stack([jnp.take_along_axis(idx, categorical(proc, k_BN[:, n])[:, None], 1)[:, 0]
                          for n in range(4)], axis=1)
        return tok, cand, jax.nn.log_softmax(x)

    tok, cand, logp = map(np.asarray, run(logits, keys(B, 1)))
    best = cand[np.arange(B), np.argmax(np.take_along_axis(logp, cand, 1), axis=1)]
    np.testing.assert_array_equal(tok, best)
    assert len({tuple(r) for r in cand.tolist()}) > 1


def test_adaptive_min_p_is_applied_before_sampling():
    # Zero metrics -> adaptive t = temp = 0.666, min_p = 0.03, top_k = 27, top_p = 0.9.
    # Tokens 1..9 have p_i / p_max = 0.07 -> 0.07 ** 1.5 = 0.0185 < 0.03 after temperature: masked.
    B = 2000
    row = np.full(10, math.log(0.07), np.float32)
    row[0] = 0.0
    logits = jnp.tile(jnp.asarray(row)[None], (B, 1))
    lm = LogitMetrics(jnp.zeros(B), jnp.zeros(B))
    a = attn(B, ent=0.0, vent=0.0, agree=0.0, inter=0.0)
    c = EntropixConfig(n_adaptive_samples=1)

    @jax.jit
    def run(x, k):
        sp = adaptive_params(lm, a, c)
        tok = adaptive_sample(x, lm, a, k, c)
        # entropix's ineffective min-p (mask dropped) would leave top-p's second token in play
        proc = process_logits(x, temperature_B=sp.temperature_B, top_k_B=sp.top_k_B, max_k=100, top_p_B=sp.top_p_B)
        return sp, tok, categorical(proc, k)

    sp, tok, no_min_p = run(logits, keys(B, 2))
    np.testing.assert_allclose([sp.temperature_B[0], sp.min_p_B[0], sp.top_p_B[0]], [0.666, 0.03, 0.9], rtol=1e-6)
    assert np.all(np.asarray(tok) == 0)
    assert np.sum(np.asarray(no_min_p) != 0) > 10


# ----------------------------------------------------------------------------- sampler


def test_entropix_sampler_mixed_batch_jitted():
    """Also checks HOT rows are `hot_sample` = sampling with `hot_params` on the sampler's subkey."""
    rows = regime_logits()
    perm = np.array([0, 1, 2, 3, 4, 3, 4])
    logits = jnp.asarray(rows[perm])
    B = len(perm)
    a = random_attn(B, 5)
    s = EntropixSampler()
    cfg = s.cfg

    @jax.jit
    def run(x, rng):
        lm = logit_metrics(x)
        tok, reg = s.get_next_tokens(x, lm, a, rng)
        k2 = split_rows(rng, 2)
        sp = hot_params(a, cfg)
        proc, idx = _top_k_space(x, sp, cfg)
        hot_direct = jnp.take_along_axis(idx, categorical(proc, k2[:, 0])[:, None], 1)[:, 0]
        return tok, reg, greedy(x), hot_sample(x, lm, a, k2[:, 0], cfg), hot_direct, adaptive_sample(x, lm, a, k2[:, 1], cfg), sp

    tok, reg, arg, hot, hot_direct, ada, sp = run(logits, keys(B, 6))
    tok, reg, arg, hot, hot_direct, ada = map(np.asarray, (tok, reg, arg, hot, hot_direct, ada))
    np.testing.assert_array_equal(reg, perm)
    np.testing.assert_array_equal(hot, hot_direct)
    assert np.all(np.asarray(sp.temperature_B) >= 2.0)
    placeholder = np.isin(perm, [ARGMAX, PAUSE, BRANCH])
    np.testing.assert_array_equal(tok[placeholder], arg[placeholder])
    np.testing.assert_array_equal(tok[perm == HOT], hot[perm == HOT])
    np.testing.assert_array_equal(tok[perm == ADAPTIVE], ada[perm == ADAPTIVE])
    assert np.all(np.isfinite(rows[perm][np.arange(B), tok]))
    assert hash(s) == hash(EntropixSampler())


_jit_sampler = jax.jit(lambda x, lm, a, r: EntropixSampler().get_next_tokens(x, lm, a, r))


@settings(max_examples=40, deadline=None)
@given(
    logits=hnp.arrays(np.float32, (4, 24), elements=st.floats(-1e4, 1e4, width=32)),
    drop=hnp.arrays(bool, (4, 24)),
    scale=st.sampled_from([0.01, 1.0, 10.0]),
    ametrics=hnp.arrays(np.float32, (4, 4), elements=st.floats(0.0, 20.0, width=32)),
    bad_row=st.integers(0, 3),
    bad_value=st.sampled_from([np.nan, NEG]),
    seed=st.integers(0, 999),
)
def test_property_sampler_finite_and_bad_rows_isolated(logits, drop, scale, ametrics, bad_row, bad_value, seed):
    drop[np.arange(4), np.argmax(logits, axis=1)] = False
    x = np.where(drop, NEG, logits * np.float32(scale)).astype(np.float32)
    a = AttentionMetrics(*(jnp.asarray(ametrics[:, i]) for i in range(4)))
    k = keys(4, seed)
    tok, reg = map(np.asarray, _jit_sampler(jnp.asarray(x), jlm(jnp.asarray(x)), a, k))
    assert np.all((0 <= reg) & (reg <= 4))
    assert np.all(np.isfinite(x[np.arange(4), tok])), "sampled a masked token"
    bad = x.copy()
    bad[bad_row] = bad_value
    lm_bad = jlm(jnp.asarray(bad))
    assert np.all(np.isfinite(np.asarray(lm_bad.entropy_B)))
    tok2, reg2 = map(np.asarray, _jit_sampler(jnp.asarray(bad), lm_bad, a, k))
    assert tok2[bad_row] == FALLBACK_TOKEN and reg2[bad_row] == ARGMAX
    others = np.arange(4) != bad_row
    np.testing.assert_array_equal(tok2[others], tok[others])
    np.testing.assert_array_equal(reg2[others], reg[others])


# ----------------------------------------------------------------------------- branching


def test_branch_candidates_top_k():
    logits = jnp.array([[0.0, 3.0, 1.0, 2.0, -1.0], [5.0, NEG, NEG, NEG, NEG], [np.nan] * 5])
    c = EntropixConfig(n_branches=3)
    cand = np.asarray(jax.jit(branch_candidates, static_argnums=2)(logits, keys(3), c))
    np.testing.assert_array_equal(cand[0], [1, 3, 2])
    np.testing.assert_array_equal(cand[1], [0, 0, 0])  # only one possible token: repeated
    np.testing.assert_array_equal(cand[2], FALLBACK_TOKEN)
    with pytest.raises(ConfigError, match="n_branches"):
        branch_candidates(logits, keys(3), EntropixConfig(n_branches=6))


def test_branch_candidates_sampled_without_replacement():
    B, Vs = 20_000, 8
    p = np.array([0.30, 0.20, 0.15, 0.12, 0.09, 0.07, 0.05, 0.02])
    logits = jnp.tile(jnp.log(jnp.asarray(p, jnp.float32))[None], (B, 1))
    c = EntropixConfig(n_branches=3, branch_mode="sampled", temp=1.0, min_p=0.0)
    f = jax.jit(branch_candidates, static_argnums=2)
    cand = np.asarray(f(logits, keys(B, 7), c))
    assert cand.shape == (B, 3) and cand.dtype == np.int32
    assert np.all((cand[:, 0] != cand[:, 1]) & (cand[:, 1] != cand[:, 2]) & (cand[:, 0] != cand[:, 2]))
    # the first candidate is an ordinary draw (Gumbel-max): chi-square against p
    counts = np.bincount(cand[:, 0], minlength=Vs)
    chi2 = np.sum((counts - p * B) ** 2 / (p * B))
    assert chi2 < 33.0, (chi2, counts)  # chi2(7) at alpha = 1e-4 is ~29.9; some slack
    np.testing.assert_array_equal(f(logits, keys(B, 7), c), cand)
    assert np.mean(np.asarray(f(logits, keys(B, 8), c)) != cand) > 0.3
    # with LEHV parameters from attention metrics: still distinct and within the top-k
    c2 = EntropixConfig(n_branches=4, branch_mode="sampled", top_k=5, lehv_min_top_k=5)
    a = attn(B, agree=1.0, inter=0.0)  # agreement 1 -> top_k stays 5
    cand2 = np.asarray(f(logits, keys(B), c2, a))
    assert cand2.max() < 5 and all(len(set(r)) == 4 for r in cand2.tolist())


def test_score_paths_formula_and_mask():
    c = EntropixConfig(branch_score_ent_coef=0.5)
    lp = jnp.array([[[-0.1, -0.2, -0.3], [-1.0, -0.1, -0.1]]])
    ent = jnp.array([[[0.5, 0.5, 0.5], [0.1, 0.1, 0.1]]])
    s = np.asarray(score_paths(lp, ent, c))
    np.testing.assert_allclose(s, [[-0.2 - 0.25, -0.4 - 0.05]], rtol=1e-6)
    valid = jnp.array([[[True, True, False], [False, False, False]]])
    s2 = np.asarray(score_paths(lp, ent, c, valid))
    np.testing.assert_allclose(s2[0, 0], -0.15 - 0.25, rtol=1e-6)
    assert s2[0, 1] == -np.inf


# ----------------------------------------------------------------------------- calibration


def test_calibrate_thresholds_defaults_and_overrides():
    rng = np.random.default_rng(0)
    ent = rng.exponential(1.0, 5000)
    vent = ent * rng.uniform(0.5, 2.0, 5000)
    c = calibrate_thresholds(ent, vent)
    assert c.low_ent_thresh == pytest.approx(np.quantile(ent, 0.25))
    assert c.med_ent_thresh == pytest.approx(np.quantile(ent, 0.5))
    assert c.high_ent_thresh == pytest.approx(np.quantile(ent, 0.9))
    assert c.low_vent_thresh == pytest.approx(np.quantile(vent, 0.25))
    assert c.high_vent_thresh == pytest.approx(np.quantile(vent, 0.9))
    assert c.temp == EntropixConfig().temp and isinstance(c, EntropixConfig)
    base = EntropixConfig(n_branches=5)
    c2 = calibrate_thresholds(np.r_[ent, np.nan], np.r_[vent, 1.0], quantiles={"high_ent": 0.99}, base=base)
    assert c2.n_branches == 5 and c2.high_ent_thresh == pytest.approx(np.quantile(ent, 0.99))
    for bad in ({"low_ent": 0.95}, {"high_vent": 1.5}, {"middle": 0.5}):
        with pytest.raises(ConfigError):
            calibrate_thresholds(ent, vent, quantiles=bad)
    with pytest.raises(ConfigError):
        calibrate_thresholds([np.nan], [np.nan])
    with pytest.raises(ConfigError):
        calibrate_thresholds([1.0, 2.0], [1.0])
    assert ex.DEFAULT_QUANTILES["high_ent"] == 0.9


def test_top_k_space_is_the_full_vocabulary_distribution():
    """Filtering/drawing among the max_top_k best tokens equals filtering the whole vocabulary."""
    B, Vs = 16, 300
    x = jnp.asarray(np.random.default_rng(3).standard_normal((B, Vs)).astype(np.float32) * 3)
    c = EntropixConfig(max_top_k=50, ada_top_k_max=50)
    a = random_attn(B)
    sp = adaptive_params(logit_metrics(x), a, c)
    full = process_logits(x, temperature_B=sp.temperature_B, min_p_B=sp.min_p_B, top_k_B=sp.top_k_B, max_k=50,
                          top_p_B=sp.top_p_B)
    proc, idx = _top_k_space(x, sp, c)
    p_full = np.asarray(jax.nn.softmax(full, -1))
    p_small = np.zeros_like(p_full)
    np.put_along_axis(p_small, np.asarray(idx), np.asarray(jax.nn.softmax(proc, -1)), 1)
    np.testing.assert_allclose(p_small, p_full, atol=1e-6)
