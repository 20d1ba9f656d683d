"""sampling.py: exact masks, chi-square checks of the sampled distributions, keys, fallbacks, jit."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropix_s1.errors import ConfigError
from entropix_s1.core.sampling import (
    FALLBACK_TOKEN,
    Greedy,
    Sample,
    apply_temperature,
    categorical,
    greedy,
    mask_min_p,
    mask_top_k,
    mask_top_p,
    process_logits,
    row_is_valid,
    sample_with,
    split_rows,
)

# Module-level jitted primitives: one compile per shape is much cheaper than eager dispatch.
j_top_k = jax.jit(mask_top_k, static_argnames="max_k")
j_top_p = jax.jit(mask_top_p)
j_min_p = jax.jit(mask_min_p)
j_temp = jax.jit(apply_temperature)
j_cat = jax.jit(categorical)
j_sample_with = jax.jit(sample_with, static_argnames="max_k")

NEG = -np.inf
P8 = np.array([0.30, 0.20, 0.15, 0.12, 0.09, 0.07, 0.05, 0.02])
N_DRAWS = 20_000


def keys(n: int, seed: int = 0) -> jax.Array:
    return jax.random.split(jax.random.key(seed), n)


def kept(x) -> list[int]:
    return [int(i) for i in np.flatnonzero(np.isfinite(np.asarray(x)))]


# ----------------------------------------------------------------------------- exact masks


def test_mask_top_k_exact():
    logits = jnp.array([[3.0, 1.0, 2.0, 0.0, -1.0], [3.0, 1.0, 2.0, 0.0, -1.0], [0.0, 5.0, 5.0, 1.0, NEG]])
    out = j_top_k(logits, jnp.array([2, 1, 1]), max_k=4)
    assert kept(out[0]) == [0, 2] and kept(out[1]) == [0]
    assert kept(out[2]) == [1, 2]  # tie with the k-th value is kept
    np.testing.assert_array_equal(out[0, [0, 2]], [3.0, 2.0])  # survivors untouched
    # k beyond the static bound or the vocab is clipped; k < 1 behaves as 1
    assert kept(mask_top_k(logits[:1], 9, max_k=3)[0]) == [0, 1, 2]  # eager
    assert kept(j_top_k(logits[:1], 0, max_k=3)[0]) == [0]
    assert kept(j_top_k(logits[:1], 3, max_k=50)[0]) == [0, 1, 2]


def test_mask_top_p_exact():
    logits = jnp.log(jnp.tile(jnp.array([[0.5, 0.3, 0.15, 0.05]]), (5, 1)))[:, jnp.array([2, 0, 3, 1])]
    # column order: p = [0.15, 0.5, 0.05, 0.3]
    out = j_top_p(logits, jnp.array([0.4, 0.6, 0.9, 1.0, 0.96]))
    assert kept(out[0]) == [1]
    assert kept(out[1]) == [1, 3]
    assert kept(out[2]) == [0, 1, 3]
    assert kept(out[3]) == [0, 1, 2, 3]
    assert kept(out[4]) == [0, 1, 2, 3]
    # with -inf entries and a tiny p the top token always survives
    x = jnp.array([[NEG, 1.0, 0.5, NEG]])
    assert kept(mask_top_p(x, 1e-9)[0]) == [1]  # eager


def test_mask_min_p_exact():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 4))
    out = j_min_p(logits, jnp.array([0.2, 0.5, 0.0, 0.99]))
    assert kept(out[0]) == [0, 1, 2]  # keep p >= 0.1
    assert kept(out[1]) == [0, 1]  # keep p >= 0.25
    assert kept(out[2]) == [0, 1, 2, 3]
    assert kept(out[3]) == [0]


def test_apply_temperature():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.1, 0.7, 0.2]]))
    out = j_temp(logits, jnp.array([2.0, 1.0, 0.0]))
    p2 = np.array([0.5, 0.3, 0.2]) ** 0.5
    np.testing.assert_allclose(jax.nn.softmax(out[0]), p2 / p2.sum(), rtol=1e-6)
    np.testing.assert_allclose(jax.nn.softmax(out[1]), [0.5, 0.3, 0.2], rtol=1e-6)
    assert kept(out[2]) == [1]  # t = 0 is greedy
    tiny = apply_temperature(jnp.array([[1.0, 0.0, -1e4]]), 1e-30)  # eager
    assert not np.any(np.isnan(tiny))
    np.testing.assert_array_equal(jax.nn.softmax(tiny[0]), [1.0, 0.0, 0.0])


def test_process_logits_needs_max_k():
    with pytest.raises(ConfigError):
        process_logits(jnp.zeros((1, 4)), top_k_B=2)


# ----------------------------------------------------------------------------- chi-square


def chi2_critical(df: int, z: float = 3.719) -> float:
    """Wilson-Hilferty upper quantile of chi2(df); z = 3.719 <-> alpha = 1e-4."""
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


def assert_matches(tokens: np.ndarray, expected: np.ndarray) -> None:
    counts = np.bincount(np.asarray(tokens), minlength=expected.size)
    assert counts.sum() == N_DRAWS
    assert np.all(counts[expected == 0] == 0), f"masked tokens drawn: {counts}"
    support = expected > 0
    e = expected[support] * N_DRAWS
    chi2 = float(np.sum((counts[support] - e) ** 2 / e))
    df = int(support.sum()) - 1
    if df > 0:
        assert chi2 < chi2_critical(df), f"chi2={chi2:.1f} df={df} counts={counts} expected={e}"


def renorm(p: np.ndarray) -> np.ndarray:
    return p / p.sum()


def _draw(sampler, seed: int = 0) -> np.ndarray:
    logits = jnp.tile(jnp.log(jnp.asarray(P8, jnp.float32))[None], (N_DRAWS, 1))
    return np.asarray(jax.jit(sampler.get_next_tokens)(logits, keys(N_DRAWS, seed)))


def test_chi2_temperature():
    expected = renorm(P8 ** (1 / 0.7))
    assert_matches(_draw(Sample(temperature=0.7)), expected)
    assert_matches(_draw(Sample(temperature=1.0), seed=1), P8)


def test_chi2_top_k():
    assert_matches(_draw(Sample(top_k=3)), renorm(np.where(np.arange(8) < 3, P8, 0.0)))


def test_chi2_top_p():
    # cumulative mass before each token: 0, .30, .50, .65, .77, ... -> p = 0.7 keeps 4 tokens
    assert_matches(_draw(Sample(top_p=0.7)), renorm(np.where(np.arange(8) < 4, P8, 0.0)))


def test_chi2_min_p():
    # keep p >= 0.3 * 0.30 = 0.09 -> 5 tokens
    assert_matches(_draw(Sample(min_p=0.3)), renorm(np.where(P8 >= 0.09 - 1e-9, P8, 0.0)))


def test_chi2_combined():
    # t = 1.3, min_p 0.05 (all pass), top_k 6, then top_p 0.8 on the renormalised survivors
    p = renorm(P8 ** (1 / 1.3))
    p = renorm(np.where(np.arange(8) < 6, p, 0.0))
    n_keep = int(np.sum((np.cumsum(p) - p) < 0.8))
    expected = renorm(np.where(np.arange(8) < n_keep, p, 0.0))
    assert_matches(_draw(Sample(temperature=1.3, top_k=6, top_p=0.8, min_p=0.05)), expected)


# ----------------------------------------------------------------------------- keys and rows


def test_same_key_same_tokens_and_rows_independent():
    V, B = 50, 64
    logits = jnp.zeros((B, V))
    s = jax.jit(Sample(temperature=1.0).get_next_tokens)
    k = keys(B, 3)
    a, b = s(logits, k), s(logits, k)
    np.testing.assert_array_equal(a, b)
    assert len(set(np.asarray(a).tolist())) > 20  # identical rows, different draws
    c = s(logits, keys(B, 4))
    assert np.mean(np.asarray(a) != np.asarray(c)) > 0.5
    # a row's token depends only on its own key and logits
    np.testing.assert_array_equal(s(logits[5:9], k[5:9]), np.asarray(a)[5:9])


def test_raw_uint32_keys_accepted():
    raw = jax.random.split(jax.random.PRNGKey(0), 6)
    logits = jnp.zeros((6, 30))
    t_raw = j_cat(logits, raw)
    t_typed = j_cat(logits, jax.random.wrap_key_data(raw))
    np.testing.assert_array_equal(t_raw, t_typed)
    assert split_rows(raw, 3).shape == (6, 3)


def test_per_row_parameters():
    logits = jnp.tile(jnp.log(jnp.asarray(P8))[None], (2000, 1))
    k_B = jnp.where(jnp.arange(2000) % 2 == 0, 1, 8)
    tok = np.asarray(j_sample_with(logits, keys(2000), temperature_B=1.0, top_k_B=k_B, max_k=8))
    assert np.all(tok[::2] == 0)
    assert len(set(tok[1::2].tolist())) >= 6


# ----------------------------------------------------------------------------- fallbacks


def test_invalid_rows_fallback_and_isolated():
    rng = np.random.default_rng(0)
    good = rng.standard_normal((4, 20)).astype(np.float32)
    bad = np.stack([np.full(20, NEG), np.full(20, np.nan), np.r_[np.nan, np.zeros(19)]]).astype(np.float32)
    both = np.concatenate([good[:2], bad, good[2:]])
    k = keys(7, 1)
    good_idx, bad_idx = [0, 1, 5, 6], [2, 3, 4]
    for sampler in (Greedy(), Sample(), Sample(temperature=0.5, top_k=4, top_p=0.8, min_p=0.1)):
        out = np.asarray(jax.jit(sampler.get_next_tokens)(jnp.asarray(both), k))
        alone = np.asarray(jax.jit(sampler.get_next_tokens)(jnp.asarray(good), k[np.array(good_idx)]))
        np.testing.assert_array_equal(out[good_idx], alone)
        np.testing.assert_array_equal(out[bad_idx], FALLBACK_TOKEN)
    np.testing.assert_array_equal(row_is_valid(jnp.asarray(both)), [1, 1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(greedy(jnp.asarray(bad)), FALLBACK_TOKEN)


@jax.jit
def _pipeline(logits, rng, t, k, p, m):
    proc = process_logits(logits, temperature_B=t, min_p_B=m, top_k_B=k, max_k=6, top_p_B=p)
    return proc, sample_with(logits, rng, temperature_B=t, min_p_B=m, top_k_B=k, max_k=6, top_p_B=p)


B_H, V_H = 4, 16


@settings(max_examples=60, deadline=None)
@given(
    logits=hnp.arrays(np.float32, (B_H, V_H), elements=st.floats(-1e4, 1e4, width=32)),
    drop=hnp.arrays(bool, (B_H, V_H)),
    t=hnp.arrays(np.float32, (B_H,), elements=st.floats(0.0, 100.0, width=32)),
    k=hnp.arrays(np.int32, (B_H,), elements=st.integers(-2, 30)),
    p=hnp.arrays(np.float32, (B_H,), elements=st.floats(2.0**-20, 1.0, width=32)),
    m=hnp.arrays(np.float32, (B_H,), elements=st.floats(0.0, 0.9990000128746033, width=32)),
    seed=st.integers(0, 2**31 - 1),
    bad_row=st.integers(0, B_H - 1),
    bad_kind=st.sampled_from(["nan", "neginf", "posinf"]),
)
def test_property_finite_pipeline_and_isolated_bad_rows(logits, drop, t, k, p, m, seed, bad_row, bad_kind):
    drop[np.arange(B_H), np.argmax(logits, axis=1)] = False  # at least one finite per row
    logits = np.where(drop, NEG, logits).astype(np.float32)
    rng = keys(B_H, seed % 1000)
    proc, tok = _pipeline(jnp.asarray(logits), rng, t, k, p, m)
    proc, tok = np.asarray(proc), np.asarray(tok)
    assert not np.any(np.isnan(proc)) and not np.any(proc == np.inf)
    assert np.all(np.any(np.isfinite(proc), axis=1))
    assert np.all((0 <= tok) & (tok < V_H))
    assert np.all(np.isfinite(logits[np.arange(B_H), tok])), "sampled a masked token"
    assert np.all(np.isfinite(proc[np.arange(B_H), tok]))
    # corrupt one row: it falls back, the others keep exactly their tokens
    bad = logits.copy()
    bad[bad_row] = {"nan": np.nan, "neginf": NEG, "posinf": np.inf}[bad_kind]
    _, tok2 = _pipeline(jnp.asarray(bad), rng, t, k, p, m)
    tok2 = np.asarray(tok2)
    assert tok2[bad_row] == FALLBACK_TOKEN
    others = np.arange(B_H) != bad_row
    np.testing.assert_array_equal(tok2[others], tok[others])


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(temperature=-0.1), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.01), "top_p"),
        (dict(top_k=0), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(min_p=1.0), "min_p"),
        (dict(min_p=-0.1), "min_p"),
    ],
)
def test_invalid_sample_configs(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        Sample(**kwargs)


def test_samplers_hashable_and_static_under_jit():
    assert hash(Sample(top_k=3)) == hash(Sample(top_k=3)) and Sample(top_k=3) == Sample(top_k=3)
    assert hash(Greedy()) == hash(Greedy())

    @jax.jit
    def run(logits, rng):
        return Sample(temperature=0.0).get_next_tokens(logits, rng), Greedy().get_next_tokens(logits, rng)

    f = jax.jit(lambda s, x, r: s.get_next_tokens(x, r), static_argnums=0)
    logits = jnp.array([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]])
    a, b = run(logits, keys(2))
    np.testing.assert_array_equal(a, [1, 0])
    np.testing.assert_array_equal(b, [1, 0])
    np.testing.assert_array_equal(f(Sample(temperature=0.0), logits, keys(2)), [1, 0])
    np.testing.assert_array_equal(f(Sample(top_k=1), logits, keys(2)), [1, 0])


def test_top_k_and_greedy_match_lax_with_ties_in_index_order():
    from entropix_s1.core.sampling import top_k

    x = jnp.array([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0], [0.0, -1.0, 5.0, 5.0, 1.0]])
    vals, idx = top_k(x, 3)
    ref_vals, ref_idx = jax.lax.top_k(x, 3)
    np.testing.assert_array_equal(vals, ref_vals)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(greedy(x), jnp.argmax(x, axis=-1))  # lowest index among equal maxima
    assert idx.dtype == jnp.int32


def test_branch_candidates_never_sort_the_vocabulary():
    """A later slice of a top-k output used to turn XLA:CPU's TopK kernel into a whole-row sort
    (62 ms instead of 0.4 ms at [8, 49152]); the compiled program must hold no sort over V."""
    from entropix_s1.core.entropix import EntropixConfig, branch_candidates

    x = jax.random.normal(jax.random.key(0), (4, 4096))
    for mode in ("top_k", "sampled"):
        cfg = EntropixConfig(branch_mode=mode)
        hlo = jax.jit(lambda x, r: branch_candidates(x, r, cfg)).lower(x, keys(4)).compile().as_text()
        sorts = [line for line in hlo.splitlines() if " sort(" in line and "4096]" in line.split("sort(")[0]]
        assert not sorts, (mode, sorts)
