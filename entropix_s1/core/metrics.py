"""Per-row uncertainty metrics of the next-token distribution and of attention.

Everything here is pure, jittable, computed in float32 whatever the input dtype, and never reduces
over the batch: every output has shape [B]. Units are NATS (natural log). entropix's thresholds
were written in BITS; convert with `to_bits` (entropy * BITS, varentropy * BITS**2).

Shape suffixes: B batch, V vocab, H query heads, S cache slots (key positions).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TypeVar

import flax.struct
import jax
import jax.numpy as jnp

#: Multiply an entropy in nats by BITS to get bits (BITS = 1 / ln 2); varentropy by BITS**2.
BITS = 1.0 / math.log(2.0)
#: ln 2: multiply bits by NATS to get nats.
NATS = math.log(2.0)
#: DeepConf's k: its token confidence averages the log-probabilities of the top 20 tokens (the
#: top-20 logprobs its vLLM runs return).
CONFIDENCE_TOP_K = 20


@flax.struct.dataclass
class LogitMetrics:
    """Entropy and varentropy of the next-token distribution p = softmax(logits), in nats.

    entropy_B    H = -sum_v p_v log p_v
    varentropy_B V = sum_v p_v (log p_v + H)^2   (the variance of the surprisal -log p)
    """

    entropy_B: jax.Array
    varentropy_B: jax.Array
    #: DeepConf's token confidence (arXiv 2508.15260, eq. 2): C = -(1/k) sum_{j<=k} log p_(j) over
    #: the k = CONFIDENCE_TOP_K most likely tokens, in nats; high when the top token dominates.
    #: Only the recorded statistics read it, so XLA drops its top-k wherever it is unused.
    confidence_B: jax.Array | None = None


@flax.struct.dataclass
class AttentionMetrics:
    """entropix's attention statistics for one query position (averaged over layers by
    `combine_layers`). Entropies in nats; see `attention_metrics` for the definitions."""

    entropy_B: jax.Array
    varentropy_B: jax.Array
    agreement_B: jax.Array
    interaction_B: jax.Array


M = TypeVar("M", LogitMetrics, AttentionMetrics)


def to_bits(m: M) -> M:
    """Same metrics in bits: entropy * BITS, varentropy * BITS**2 (agreement and interaction are
    unit-free and left as is). entropix's SamplerConfig thresholds and coefficients use bits."""
    return dataclasses.replace(m, entropy_B=m.entropy_B * BITS, varentropy_B=m.varentropy_B * BITS**2)


def row_is_valid(logits_BV: jax.Array) -> jax.Array:
    """True for rows that define a distribution: no NaN, no +inf, at least one finite logit.

    -inf entries (masked tokens, p = 0) are allowed. Rows that fail are handled by the documented
    fallbacks (metrics 0, token 0) and never influence other rows.
    """
    x = logits_BV.astype(jnp.float32)
    bad = jnp.isnan(x) | (x == jnp.inf)
    return ~jnp.any(bad, axis=-1) & jnp.any(jnp.isfinite(x), axis=-1)


def _entropy_varentropy(logp_BXV: jax.Array, keep_BXV: jax.Array) -> tuple[jax.Array, jax.Array]:
    """H and V over the last axis, counting only `keep` entries (p = 0 contributes exactly 0)."""
    p = jnp.where(keep_BXV, jnp.exp(logp_BXV), 0.0)
    safe_logp = jnp.where(keep_BXV, logp_BXV, 0.0)
    ent = -jnp.sum(p * safe_logp, axis=-1)
    vent = jnp.sum(p * (safe_logp + ent[..., None]) ** 2, axis=-1)
    return ent, jnp.maximum(vent, 0.0)


def logit_metrics(logits_BV: jax.Array) -> LogitMetrics:
    """Entropy and varentropy (nats) of softmax(logits_BV) per row.

    Uses log_softmax; entries with p = 0 (-inf logits, or underflow) contribute 0 to both sums,
    so masked vocabularies give no NaN. Invalid rows (`row_is_valid` False: NaN, +inf, all -inf)
    get entropy = varentropy = 0.
    """
    x = logits_BV.astype(jnp.float32)
    valid_B = row_is_valid(x)
    x = jnp.where(valid_B[:, None], x, 0.0)
    logp_BV = jax.nn.log_softmax(x, axis=-1)
    keep_BV = jnp.isfinite(logp_BV)
    ent_B, vent_B = _entropy_varentropy(logp_BV, keep_BV)
    zero = jnp.zeros_like(ent_B)
    return LogitMetrics(entropy_B=jnp.where(valid_B, ent_B, zero), varentropy_B=jnp.where(valid_B, vent_B, zero),
                        confidence_B=jnp.where(valid_B, _top_k_confidence(logp_BV), zero))


def _top_k_confidence(logp_BV: jax.Array) -> jax.Array:
    """-(1/k) sum of the k largest log p (p = 0 entries, when fewer than k are possible, count as
    the smallest float32 log p so the value stays finite). The barrier keeps XLA from fusing the
    reduction into a full sort of the vocabulary (see `sampling.top_k`)."""
    k = min(CONFIDENCE_TOP_K, logp_BV.shape[-1])
    top_BK = jax.lax.optimization_barrier(jax.lax.top_k(logp_BV, k)[0])
    return -jnp.mean(jnp.maximum(top_BK, jnp.log(jnp.finfo(jnp.float32).tiny)), axis=-1)


def attention_metrics(scores_BHS: jax.Array, valid_BS: jax.Array) -> AttentionMetrics:
    """entropix's attention metrics for ONE query position of ONE layer, restricted to valid slots.

    Args:
      scores_BHS: pre-softmax scores q.k / sqrt(d) of the current query against every cache slot
        (masked slots may hold any fill value; they are ignored).
      valid_BS: True at slots the query may attend to (causal, non-padding, written).

    With p_BHS = softmax over valid slots, n_B = number of valid slots:
      entropy_B     mean_h H_h,   H_h = -sum_s p_hs log p_hs                (nats)
      varentropy_B  var_h H_h     (population variance ACROSS HEADS of the per-head entropies;
                                   entropix's definition, not the logit-style varentropy)
      agreement_B   (1/(H n)) sum_h sum_{s valid} |p_hs - mean_h' p_h's|
      interaction_B (1/(H n)) sum_h sum_{s valid} |score_hs|

    entropix averaged these over every slot (counting masked ones) and over the batch; here
    invalid slots never change the result and each row is independent. A row with no valid slot
    returns zeros.
    """
    s = scores_BHS.astype(jnp.float32)
    valid_B1S = valid_BS.astype(bool)[:, None, :]
    n_heads = s.shape[1]
    n_valid_B = jnp.sum(valid_BS.astype(jnp.float32), axis=-1)
    any_valid_B = n_valid_B > 0

    masked = jnp.where(valid_B1S, s, -jnp.inf)
    masked = jnp.where(any_valid_B[:, None, None], masked, 0.0)  # keep empty rows NaN-free
    logp_BHS = jax.nn.log_softmax(masked, axis=-1)
    keep_BHS = valid_B1S & jnp.isfinite(logp_BHS)
    ent_BH, _ = _entropy_varentropy(logp_BHS, keep_BHS)
    p_BHS = jnp.where(keep_BHS, jnp.exp(logp_BHS), 0.0)

    entropy_B = jnp.mean(ent_BH, axis=-1)
    varentropy_B = jnp.mean((ent_BH - entropy_B[:, None]) ** 2, axis=-1)
    denom_B = jnp.maximum(n_valid_B, 1.0) * n_heads
    mean_p_B1S = jnp.mean(p_BHS, axis=1, keepdims=True)
    agreement_B = jnp.sum(jnp.where(valid_B1S, jnp.abs(p_BHS - mean_p_B1S), 0.0), axis=(1, 2)) / denom_B
    interaction_B = jnp.sum(jnp.where(valid_B1S & jnp.isfinite(s), jnp.abs(s), 0.0), axis=(1, 2)) / denom_B

    def z(x: jax.Array) -> jax.Array:
        return jnp.where(any_valid_B, x, 0.0)

    return AttentionMetrics(
        entropy_B=z(entropy_B), varentropy_B=z(varentropy_B), agreement_B=z(agreement_B), interaction_B=z(interaction_B)
    )


def combine_layers(per_layer: Sequence[AttentionMetrics]) -> AttentionMetrics:
    """Unweighted mean of each field over layers (varentropy: mean of per-layer head variances)."""
    if not per_layer:
        raise ValueError("combine_layers needs at least one layer's AttentionMetrics")
    return jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs), axis=0), *per_layer)
