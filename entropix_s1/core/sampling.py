"""Token sampling primitives and gemma-style samplers, vectorised per batch row.

Primitives are small pure functions over float32 `logits_BV` whose parameters are per-row arrays
of shape [B] (a Python scalar broadcasts), so entropix can adapt them row by row under `jax.jit`.
Masks return logits with dropped tokens set to -inf; they always keep the row's most likely token.

Randomness: `rng_B` is one key per row, canonically a [B] array of typed keys,
`jax.random.split(jax.random.key(seed), B)`; legacy raw uint32 keys of shape [B, 2] are accepted
and wrapped. Row b draws only from `rng_B[b]`, so rows are independent and a row's token never
depends on other rows. Equal keys on two rows give equal draws: split, don't broadcast. Each function consumes the
keys it is given; derive distinct keys for distinct uses with ONE `split_rows(rng_B, n)` (note that
`split(k, 1)[0] == split(k, 2)[0]`, so separate splits of one key can collide).

Invalid rows (see `row_is_valid`: any NaN or +inf, or all -inf) never raise and never touch other
rows: `greedy` and `categorical` return token 0 for them. Call `row_is_valid(logits_BV)` to flag.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from entropix_s1.core import codes
from entropix_s1.core.metrics import AttentionMetrics, LogitMetrics, row_is_valid
from entropix_s1.errors import ConfigError

__all__ = [
    "FALLBACK_TOKEN",
    "Greedy",
    "Proposal",
    "Sample",
    "Sampler",
    "SamplerInput",
    "apply_temperature",
    "as_row_keys",
    "categorical",
    "greedy",
    "mask_min_p",
    "mask_top_k",
    "mask_top_p",
    "process_logits",
    "row_is_valid",
    "sample_with",
    "split_rows",
    "top_k",
]

#: Token returned for rows that hold no valid distribution (NaN / +inf / all -inf logits).
FALLBACK_TOKEN = 0


def as_row_keys(rng_B: jax.Array) -> jax.Array:
    """[B] typed keys from typed keys [B] or raw uint32 keys [B, 2]."""
    if jnp.issubdtype(rng_B.dtype, jax.dtypes.prng_key):
        return rng_B
    return jax.random.wrap_key_data(rng_B)


def split_rows(rng_B: jax.Array, n: int) -> jax.Array:
    """[B, n] typed keys: each row's key split into n independent subkeys."""
    return jax.vmap(lambda k: jax.random.split(k, n))(as_row_keys(rng_B))


def _per_row(x: Any, logits_BV: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(x, dtype), logits_BV.shape[:1])


def top_k(x_BV: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """`lax.top_k` (values, int32 indices; equal values in index order) that stays fast on XLA:CPU.

    XLA lowers top-k to a sort of the whole row plus a slice, and turns that back into its fast
    TopK kernel only while the slice is the sort's one user. Any later slice of an output (e.g.
    `idx[:, :1]`) is merged into a second slice of the sort and the whole row is then sorted:
    62 ms instead of 0.4 ms at [8, 49152] (issue 17; `benchmarks/profile_decode.py`). The barrier
    keeps the results opaque to that merge; it changes no value. One barrier per output: XLA's
    TopkDecomposer (sharded programs) aborts when a barrier takes the TopK tuple itself.
    """
    vals, idx = jax.lax.top_k(x_BV, k)
    return jax.lax.optimization_barrier(vals), jax.lax.optimization_barrier(idx.astype(jnp.int32))


def greedy(logits_BV: jax.Array) -> jax.Array:
    """argmax per row (int32, the lowest index among equal maxima); FALLBACK_TOKEN for invalid rows.

    Through `top_k(., 1)`: XLA:CPU's argmax (a variadic reduce) is 4x slower at [8, 49152]."""
    x = logits_BV.astype(jnp.float32)
    valid_B = row_is_valid(x)
    tok_B = top_k(jnp.where(valid_B[:, None], x, 0.0), 1)[1][:, 0]
    return jnp.where(valid_B, tok_B, FALLBACK_TOKEN)


def apply_temperature(logits_BV: jax.Array, t_B: Any) -> jax.Array:
    """(logits - max) / t per row; rows with t <= 0 become greedy (0 at the argmax, -inf elsewhere).

    Subtracting the row max first leaves softmax unchanged and keeps tiny temperatures from
    overflowing to NaN (very unlikely tokens go to -inf instead). `t` must be finite.
    """
    x = logits_BV.astype(jnp.float32)
    t_B = _per_row(t_B, x)
    shifted = x - jnp.max(x, axis=-1, keepdims=True)
    scaled = shifted / jnp.where(t_B > 0, t_B, 1.0)[:, None]
    idx_BV = jnp.arange(x.shape[-1])[None, :]
    one_hot = jnp.where(idx_BV == top_k(x, 1)[1], 0.0, -jnp.inf)
    return jnp.where((t_B > 0)[:, None], scaled, one_hot)


def mask_top_k(logits_BV: jax.Array, k_B: Any, max_k: int) -> jax.Array:
    """Keep each row's k_B highest logits (ties with the k-th are kept too).

    k_B is traced, clipped to [1, min(max_k, V)]; `max_k` is the static bound used for
    `lax.top_k`, whose k-th value becomes the row's threshold.
    """
    x = logits_BV.astype(jnp.float32)
    kmax = min(int(max_k), x.shape[-1])
    k_B = jnp.clip(_per_row(k_B, x, jnp.int32), 1, kmax)
    top_BK, _ = top_k(x, kmax)
    thresh_B1 = jnp.take_along_axis(top_BK, (k_B - 1)[:, None], axis=-1)
    return jnp.where(x >= thresh_B1, x, -jnp.inf)


def mask_top_p(logits_BV: jax.Array, p_B: Any) -> jax.Array:
    """Nucleus: keep the smallest set of most likely tokens whose mass reaches p_B.

    Sorting descending, token i is kept iff the mass strictly before it is < p (so the top token
    is always kept); ties with the last kept logit are kept. Rows with p >= 1 are unchanged.
    """
    x = logits_BV.astype(jnp.float32)
    p_B = _per_row(p_B, x)
    sorted_BV = -jnp.sort(-x, axis=-1)
    probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
    mass_before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
    n_keep_B = jnp.maximum(jnp.sum(mass_before_BV < p_B[:, None], axis=-1), 1)
    thresh_B1 = jnp.take_along_axis(sorted_BV, (n_keep_B - 1)[:, None], axis=-1)
    keep_BV = (x >= thresh_B1) | (p_B >= 1.0)[:, None]
    return jnp.where(keep_BV, x, -jnp.inf)


def mask_min_p(logits_BV: jax.Array, min_p_B: Any) -> jax.Array:
    """min-p: drop tokens with p < min_p * p_max, i.e. logit - max_logit < log(min_p).

    Applied to the logits that are then sampled (entropix computed the mask after its probs, so
    it never took effect). min_p = 0 keeps everything; the argmax is always kept.
    """
    x = logits_BV.astype(jnp.float32)
    log_min_p_B = jnp.log(_per_row(min_p_B, x))
    keep_BV = (x - jnp.max(x, axis=-1, keepdims=True)) >= log_min_p_B[:, None]
    return jnp.where(keep_BV, x, -jnp.inf)


def categorical(logits_BV: jax.Array, rng_B: jax.Array) -> jax.Array:
    """One draw per row from softmax(logits_BV), row b using only rng_B[b] (int32).

    Invalid rows get FALLBACK_TOKEN; their logits are zeroed first so nothing NaN is computed.
    """
    x = logits_BV.astype(jnp.float32)
    valid_B = row_is_valid(x)
    x = jnp.where(valid_B[:, None], x, 0.0)
    tok_B = jax.vmap(lambda k, row: jax.random.categorical(k, row))(as_row_keys(rng_B), x)
    return jnp.where(valid_B, tok_B.astype(jnp.int32), FALLBACK_TOKEN)


def process_logits(
    logits_BV: jax.Array,
    *,
    temperature_B: Any = 1.0,
    min_p_B: Any = None,
    top_k_B: Any = None,
    max_k: int | None = None,
    top_p_B: Any = None,
) -> jax.Array:
    """temperature -> min-p -> top-k -> top-p; None skips a step.

    min-p and top-k are thresholds relative to the max and commute; top-p is applied last, on the
    renormalised survivors (the Hugging Face convention). `max_k` is required with `top_k_B`.
    """
    x = apply_temperature(logits_BV, temperature_B)
    if min_p_B is not None:
        x = mask_min_p(x, min_p_B)
    if top_k_B is not None:
        if max_k is None:
            raise ConfigError("top_k_B needs the static bound max_k")
        x = mask_top_k(x, top_k_B, max_k)
    if top_p_B is not None:
        x = mask_top_p(x, top_p_B)
    return x


def sample_with(logits_BV: jax.Array, rng_B: jax.Array, **params: Any) -> jax.Array:
    """`categorical(process_logits(logits_BV, **params), rng_B)`; invalid rows -> FALLBACK_TOKEN."""
    valid_B = row_is_valid(logits_BV)
    tok_B = categorical(process_logits(logits_BV, **params), rng_B)
    return jnp.where(valid_B, tok_B, FALLBACK_TOKEN)


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclasses.dataclass(frozen=True)
class SamplerInput:
    """What the loop hands a sampler at one step.

    logits_BV: float32, possibly with tokens a controller suppressed set to -inf; metrics: the
    logit metrics of the distribution before suppression; attention: the attention metrics of
    the forward pass that produced the logits; rng_B: one key per row, (seed, step, row);
    active_B: rows still generating; lookahead: the model and cache, for samplers that look ahead.
    """

    logits_BV: jax.Array
    metrics: LogitMetrics
    attention: AttentionMetrics
    rng_B: jax.Array
    active_B: jax.Array
    lookahead: Any = None


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A sampler's answer for one step: the next token and its regime (a `codes` regime) per row,
    and optionally a look-ahead `Path` (core/lookahead.py) of tokens that follow it, which the
    loop then takes token by token through the controllers without recomputing them."""

    token_B: jax.Array
    regime_B: jax.Array
    path: Any = None


class Sampler(abc.ABC):
    """A sampling method: one frozen (hashable, static) class with one loop-facing method."""

    @abc.abstractmethod
    def propose(self, step: SamplerInput) -> Proposal:
        """The next token of every row (see `Proposal`)."""

    #: cache slots one step may write past the current one (a committed look-ahead path writes more)
    lookahead_slots: int = 1

    def metric_layers(self, n_layers: int) -> tuple[int, ...]:
        """Layers whose attention metrics the loop must compute (none by default)."""
        return ()

    def controllers(self) -> tuple[Any, ...]:
        """Controllers the sampler brings into the loop (entropix: its pause)."""
        return ()

    #: text a pause controller of this sampler forces ("" when it has none)
    pause_text: str = ""


@dataclasses.dataclass(frozen=True)
class Greedy(Sampler):
    """argmax sampling (hashable; usable as a static jit argument)."""

    def propose(self, step: SamplerInput) -> Proposal:
        return Proposal(greedy(step.logits_BV), jnp.full(step.active_B.shape, codes.GREEDY, jnp.int32))

    def get_next_tokens(self, logits_BV: jax.Array, rng_B: jax.Array | None = None) -> jax.Array:
        del rng_B
        return greedy(logits_BV)


@dataclasses.dataclass(frozen=True)
class Sample(Sampler):
    """Temperature sampling with optional min-p, top-k and top-p (applied in that order).

    temperature == 0 means greedy. Validated at construction (ConfigError): temperature finite
    and >= 0; top_k int >= 1; top_p in (0, 1]; min_p in [0, 1).
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None

    def __post_init__(self) -> None:
        t = self.temperature
        if not _is_real(t) or not math.isfinite(t) or t < 0:
            raise ConfigError(f"Sample.temperature must be a finite number >= 0 (0 = greedy), got {t!r}")
        k = self.top_k
        if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
            raise ConfigError(f"Sample.top_k must be an int >= 1 or None, got {k!r}")
        p = self.top_p
        if p is not None and (not _is_real(p) or not 0.0 < p <= 1.0):
            raise ConfigError(f"Sample.top_p must be in (0, 1] or None, got {p!r}")
        m = self.min_p
        if m is not None and (not _is_real(m) or not 0.0 <= m < 1.0):
            raise ConfigError(f"Sample.min_p must be in [0, 1) or None, got {m!r}")

    def propose(self, step: SamplerInput) -> Proposal:
        regime = codes.GREEDY if self.temperature == 0 else codes.SAMPLE
        return Proposal(self.get_next_tokens(step.logits_BV, step.rng_B), jnp.full(step.active_B.shape, regime, jnp.int32))

    def get_next_tokens(self, logits_BV: jax.Array, rng_B: jax.Array) -> jax.Array:
        if self.temperature == 0:
            return greedy(logits_BV)
        return sample_with(
            logits_BV,
            rng_B,
            temperature_B=self.temperature,
            min_p_B=self.min_p,
            top_k_B=self.top_k,
            max_k=self.top_k,
            top_p_B=self.top_p,
        )
