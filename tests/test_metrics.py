"""metrics.py against straightforward NumPy references, masking invariance, dtypes, jit."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropix_s1.core import metrics
from entropix_s1.core.metrics import BITS, AttentionMetrics, LogitMetrics, combine_layers, row_is_valid, to_bits

# Tests run the jitted functions (one compile per shape beats eager op-by-op dispatch);
# test_eager_matches_jit covers the eager path.
logit_metrics = jax.jit(metrics.logit_metrics)
attention_metrics = jax.jit(metrics.attention_metrics)

TOL = dict(rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- references


def ref_logit(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ents, vents = [], []
    for row in np.asarray(logits, np.float64):
        fin = row[np.isfinite(row)]
        logp = fin - fin.max() - np.log(np.sum(np.exp(fin - fin.max())))
        p = np.exp(logp)
        h = -np.sum(p * logp)
        ents.append(h)
        vents.append(np.sum(p * (logp + h) ** 2))
    return np.array(ents), np.array(vents)


def ref_attention(scores: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    out = {k: [] for k in ("entropy", "varentropy", "agreement", "interaction")}
    for s_hs, v_s in zip(np.asarray(scores, np.float64), np.asarray(valid, bool)):
        s = s_hs[:, v_s]  # [H, n]
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        h = -np.sum(p * np.log(p), axis=-1)
        out["entropy"].append(h.mean())
        out["varentropy"].append(h.var())
        out["agreement"].append(np.abs(p - p.mean(0, keepdims=True)).mean())
        out["interaction"].append(np.abs(s).mean())
    return {k: np.array(v) for k, v in out.items()}


def _assert_attn(m: AttentionMetrics, ref: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(m.entropy_B, ref["entropy"], **TOL)
    np.testing.assert_allclose(m.varentropy_B, ref["varentropy"], **TOL)
    np.testing.assert_allclose(m.agreement_B, ref["agreement"], **TOL)
    np.testing.assert_allclose(m.interaction_B, ref["interaction"], **TOL)


# ----------------------------------------------------------------------------- logit metrics


def test_logit_metrics_match_numpy_reference():
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((7, 53)) * rng.uniform(0.1, 6, (7, 1))).astype(np.float32)
    m = logit_metrics(jnp.asarray(logits))
    h, v = ref_logit(logits)
    np.testing.assert_allclose(m.entropy_B, h, **TOL)
    np.testing.assert_allclose(m.varentropy_B, v, **TOL)
    assert m.entropy_B.dtype == jnp.float32 and m.entropy_B.shape == (7,)


def test_logit_metrics_with_masked_vocab():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 40)).astype(np.float32) * 2
    logits[rng.random((5, 40)) < 0.6] = -np.inf
    logits[:, 0] = 1.0  # at least one finite per row
    m = logit_metrics(jnp.asarray(logits))
    h, v = ref_logit(logits)
    assert np.all(np.isfinite(m.entropy_B)) and np.all(np.isfinite(m.varentropy_B))
    np.testing.assert_allclose(m.entropy_B, h, **TOL)
    np.testing.assert_allclose(m.varentropy_B, v, **TOL)


def test_one_hot_and_uniform():
    V = 32
    one_hot = np.full((1, V), -np.inf, np.float32)
    one_hot[0, 5] = 3.0
    peaked = np.zeros((1, V), np.float32)
    peaked[0, 2] = 200.0
    uniform = np.full((1, V), 0.7, np.float32)
    half = np.full((1, V), -np.inf, np.float32)
    half[0, :8] = -1.0
    m = logit_metrics(jnp.asarray(np.concatenate([one_hot, peaked, uniform, half])))
    np.testing.assert_allclose(m.entropy_B, [0.0, 0.0, math.log(V), math.log(8)], atol=1e-6)
    np.testing.assert_allclose(m.varentropy_B, [0.0, 0.0, 0.0, 0.0], atol=1e-6)


def test_invalid_rows_give_zero_and_do_not_touch_other_rows():
    rng = np.random.default_rng(2)
    good = rng.standard_normal((3, 16)).astype(np.float32)
    bad = np.stack([np.full(16, -np.inf), np.full(16, np.nan), np.r_[np.inf, np.zeros(15)]]).astype(np.float32)
    both = np.concatenate([good[:1], bad[:1], good[1:2], bad[1:], good[2:]])
    m = logit_metrics(jnp.asarray(both))
    m_good = logit_metrics(jnp.asarray(good))
    np.testing.assert_array_equal(np.asarray(m.entropy_B)[[0, 2, 5]], m_good.entropy_B)
    np.testing.assert_array_equal(np.asarray(m.entropy_B)[[1, 3, 4]], 0.0)
    np.testing.assert_array_equal(np.asarray(m.varentropy_B)[[1, 3, 4]], 0.0)
    np.testing.assert_array_equal(row_is_valid(jnp.asarray(both)), [True, False, True, False, False, True])


def test_bf16_inputs_computed_in_f32():
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.standard_normal((4, 64)) * 3, jnp.bfloat16)
    m = logit_metrics(logits)
    assert m.entropy_B.dtype == jnp.float32 and m.varentropy_B.dtype == jnp.float32
    h, v = ref_logit(np.asarray(logits.astype(jnp.float32)))
    np.testing.assert_allclose(m.entropy_B, h, **TOL)
    np.testing.assert_allclose(m.varentropy_B, v, **TOL)


def test_to_bits():
    m = LogitMetrics(entropy_B=jnp.array([math.log(2.0)]), varentropy_B=jnp.array([math.log(2.0) ** 2]))
    b = to_bits(m)
    np.testing.assert_allclose(b.entropy_B, [1.0], rtol=1e-6)
    np.testing.assert_allclose(b.varentropy_B, [1.0], rtol=1e-6)
    assert abs(BITS - 1 / math.log(2)) < 1e-15
    a = AttentionMetrics(*(jnp.array([2.0]),) * 4)
    ab = to_bits(a)
    np.testing.assert_allclose(ab.agreement_B, [2.0])
    np.testing.assert_allclose(ab.interaction_B, [2.0])
    np.testing.assert_allclose(ab.varentropy_B, [2.0 * BITS**2], rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float32, (3, 12), elements=st.floats(-1e4, 1e4, width=32)),
    hnp.arrays(bool, (3, 12)),
)
def test_logit_metrics_finite_and_nonnegative(logits, drop):
    drop[:, 0] = False
    logits = np.where(drop, -np.inf, logits).astype(np.float32)
    m = _jit_logit(jnp.asarray(logits))
    assert np.all(np.isfinite(m.entropy_B)) and np.all(np.isfinite(m.varentropy_B))
    assert np.all(np.asarray(m.varentropy_B) >= 0) and np.all(np.asarray(m.entropy_B) >= -1e-6)
    assert np.all(np.asarray(m.entropy_B) <= math.log(12) + 1e-5)


_jit_logit = logit_metrics


def test_eager_matches_jit():
    scores, valid = _random_attention(11)
    a_eager = metrics.attention_metrics(jnp.asarray(scores), jnp.asarray(valid))
    a_jit = attention_metrics(jnp.asarray(scores), jnp.asarray(valid))
    for f in ("entropy_B", "varentropy_B", "agreement_B", "interaction_B"):
        np.testing.assert_allclose(getattr(a_eager, f), getattr(a_jit, f), rtol=1e-6, atol=1e-7)
    x = jnp.asarray(scores[:, 0])
    np.testing.assert_allclose(metrics.logit_metrics(x).varentropy_B, logit_metrics(x).varentropy_B, rtol=1e-6)


# ----------------------------------------------------------------------------- attention metrics


def _random_attention(seed: int, B=5, H=4, S=11):
    rng = np.random.default_rng(seed)
    scores = (rng.standard_normal((B, H, S)) * rng.uniform(0.5, 4, (B, 1, 1))).astype(np.float32)
    lengths = np.array([S, 1, 6, 3, 9])[:B]
    valid = np.arange(S)[None, :] < lengths[:, None]
    scores = np.where(valid[:, None, :], scores, -1e9).astype(np.float32)  # typical mask fill
    return scores, valid


def test_attention_metrics_match_numpy_reference():
    scores, valid = _random_attention(0)
    m = attention_metrics(jnp.asarray(scores), jnp.asarray(valid))
    _assert_attn(m, ref_attention(scores, valid))
    # a single valid slot: every head attends with p = 1
    np.testing.assert_allclose(np.asarray(m.entropy_B)[1], 0.0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(m.agreement_B)[1], 0.0, atol=1e-7)


def test_attention_metrics_non_prefix_masks():
    rng = np.random.default_rng(4)
    scores = rng.standard_normal((4, 3, 9)).astype(np.float32) * 2
    valid = rng.random((4, 9)) < 0.5
    valid[:, 4] = True
    m = attention_metrics(jnp.asarray(scores), jnp.asarray(valid))
    _assert_attn(m, ref_attention(scores, valid))


def test_invalid_slots_never_change_the_result():
    scores, valid = _random_attention(5)
    base = attention_metrics(jnp.asarray(scores), jnp.asarray(valid))
    rng = np.random.default_rng(6)
    B, H, S = scores.shape
    # overwrite existing invalid slots with garbage, and append more garbage slots
    garbage = rng.choice([np.nan, np.inf, -np.inf, 1e30, -1e30, 50.0, 0.0], size=(B, H, S + 7)).astype(np.float32)
    scores2 = garbage.copy()
    scores2[:, :, :S] = np.where(valid[:, None, :], scores, garbage[:, :, :S])
    valid2 = np.concatenate([valid, np.zeros((B, 7), bool)], axis=1)
    m2 = attention_metrics(jnp.asarray(scores2), jnp.asarray(valid2))
    for f in ("entropy_B", "varentropy_B", "agreement_B", "interaction_B"):
        np.testing.assert_allclose(getattr(m2, f), getattr(base, f), rtol=1e-6, atol=1e-7)
        assert np.all(np.isfinite(getattr(m2, f)))


def test_rows_are_independent_and_never_batch_averaged():
    scores, valid = _random_attention(7)
    full = attention_metrics(jnp.asarray(scores), jnp.asarray(valid))
    for b in range(scores.shape[0]):
        one = attention_metrics(jnp.asarray(scores[b : b + 1]), jnp.asarray(valid[b : b + 1]))
        np.testing.assert_allclose(one.entropy_B[0], full.entropy_B[b], rtol=1e-6)
        np.testing.assert_allclose(one.agreement_B[0], full.agreement_B[b], rtol=1e-6)


def test_attention_row_without_valid_slots_is_zero():
    scores = jnp.ones((2, 2, 4))
    valid = jnp.array([[True, True, False, False], [False] * 4])
    m = attention_metrics(scores, valid)
    assert np.all(np.isfinite(np.asarray(jax.tree.leaves(m))))
    assert float(m.entropy_B[1]) == 0.0 and float(m.interaction_B[1]) == 0.0
    np.testing.assert_allclose(m.entropy_B[0], math.log(2), rtol=1e-6)


def test_attention_bf16_and_jit():
    scores, valid = _random_attention(8)
    s16 = jnp.asarray(scores, jnp.bfloat16)
    m = attention_metrics(s16, jnp.asarray(valid))
    assert m.entropy_B.dtype == jnp.float32
    ref = ref_attention(np.asarray(s16.astype(jnp.float32)), valid)
    _assert_attn(m, ref)


def test_head_disagreement_raises_varentropy_and_agreement():
    S = 8
    valid = jnp.ones((2, S), bool)
    same = jnp.tile(jnp.linspace(0, 3, S)[None, None], (1, 4, 1))
    diff = jnp.stack([jnp.zeros(S), jnp.zeros(S).at[0].set(20.0), jnp.zeros(S).at[3].set(20.0), jnp.zeros(S)])[None]
    m = attention_metrics(jnp.concatenate([same, diff]), valid)
    assert float(m.varentropy_B[0]) < 1e-10 and float(m.agreement_B[0]) < 1e-7
    assert float(m.varentropy_B[1]) > 0.5 and float(m.agreement_B[1]) > 0.05


def test_combine_layers_averages_fields():
    s1, v = _random_attention(9)
    s2, _ = _random_attention(10)
    m1 = attention_metrics(jnp.asarray(s1), jnp.asarray(v))
    m2 = attention_metrics(jnp.asarray(s2), jnp.asarray(v))
    c = combine_layers([m1, m2])
    assert isinstance(c, AttentionMetrics)
    for f in ("entropy_B", "varentropy_B", "agreement_B", "interaction_B"):
        np.testing.assert_allclose(getattr(c, f), (getattr(m1, f) + getattr(m2, f)) / 2, rtol=1e-6)
    assert combine_layers([m1]) is not None
    with pytest.raises(ValueError):
        combine_layers([])


def test_metrics_are_pytrees():
    m = metrics.logit_metrics(jnp.zeros((2, 3)))
    assert len(jax.tree.leaves(m)) == 3
    out = jax.jit(lambda x: x)(m)
    assert isinstance(out, LogitMetrics)


def test_deepconf_confidence_is_minus_mean_top_k_log_prob():
    """C = -(1/k) sum of the k largest log p (DeepConf eq. 2), k = 20, from a float64 reference;
    a vocabulary smaller than k averages all of it; invalid rows get 0."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 50)) * 3
    logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    want = -np.sort(logp, axis=-1)[:, ::-1][:, :20].mean(-1)
    got = metrics.logit_metrics(jnp.asarray(x, jnp.float32)).confidence_B
    np.testing.assert_allclose(got, want, rtol=1e-5)
    small = metrics.logit_metrics(jnp.log(jnp.asarray([[0.5, 0.25, 0.25]])))
    np.testing.assert_allclose(small.confidence_B, [-(np.log(0.5) + 2 * np.log(0.25)) / 3], rtol=1e-6)
    bad = metrics.logit_metrics(jnp.asarray([[np.nan, 0.0, 1.0]]))
    assert float(bad.confidence_B[0]) == 0.0
    peaked = metrics.logit_metrics(jnp.asarray([[20.0] + [0.0] * 49], jnp.float32)).confidence_B
    assert float(peaked[0]) > float(got.max())  # one dominant token: the other 19 are very unlikely


def test_trace_confidence_mean_and_lowest_window():
    from entropix_s1.results import trace_confidence

    assert trace_confidence([]) == (None, None)
    mean, low = trace_confidence([1.0, 2.0, 3.0, 10.0, 0.0], window=2)
    assert mean == pytest.approx(16 / 5)
    assert low == pytest.approx(1.5)  # windows: 1.5, 2.5, 6.5, 5.0
    mean, low = trace_confidence([4.0, 2.0], window=64)  # shorter than the window: one group
    assert (mean, low) == (pytest.approx(3.0), pytest.approx(3.0))
