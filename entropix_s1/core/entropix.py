"""entropix entropy-adaptive sampling (xjdr-alt/entropix, Oct 2024 `SamplerConfig`), per batch row.

entropix picks a strategy from the entropy H and varentropy V of the next-token distribution:

    H < low_ent  and V < low_vent   -> ARGMAX    "flowing with unspoken intent"
    H > high_ent and V < low_vent   -> PAUSE     "treading carefully" (entropix: clarifying token)
    H < high_ent and V > high_vent  -> BRANCH    "exploring forks in the path"
    H > med_ent  and V > high_vent  -> HOT       "resampling in the mist"
    otherwise                       -> ADAPTIVE  metric-driven temperature/top-p/top-k/min-p

tested in that order. Because BRANCH claims every H < high_ent first, HOT in practice needs
H >= high_ent; med_ent_thresh is kept for fidelity. entropix made one decision for the whole batch
with Python `if`s; here every row gets its own regime and every branch is computed with static
shapes and selected with `jnp.where`, so it all runs under `jax.jit`.

Units. Metrics and thresholds are in NATS (entropix's bit thresholds converted: entropy * ln 2,
varentropy * (ln 2)^2). The temperature/top-p/top-k/score COEFFICIENTS keep entropix's values and
apply, as in entropix, to metrics in BITS (converted internally with `metrics.to_bits`).

Fixes relative to entropix's `_sample`: min-p now removes tokens before sampling (entropix's mask
was computed and dropped), top-p keeps the MOST likely tokens (entropix cut an ascending cumsum),
and attention metrics ignore masked cache slots (see `metrics.attention_metrics`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from entropix_s1.core.codes import ADAPTIVE, ARGMAX, BRANCH, HOT, PAUSE
from entropix_s1.core.codes import ENTROPIX_REGIMES as REGIME_NAMES
from entropix_s1.core.controllers.pause import EntropixPause
from entropix_s1.core.lookahead import Path
from entropix_s1.core.metrics import AttentionMetrics, LogitMetrics, row_is_valid, to_bits
from entropix_s1.core.sampling import (FALLBACK_TOKEN, Proposal, Sampler, SamplerInput, as_row_keys, categorical, greedy,
                                       process_logits, sample_with, split_rows, top_k)
from entropix_s1.errors import ConfigError

LN2 = math.log(2.0)
BranchMode = Literal["top_k", "sampled"]
AttnLayers = tuple[int, ...] | Literal["last", "all"]

_THRESHOLD_FIELDS = {
    "low_ent": "low_ent_thresh",
    "med_ent": "med_ent_thresh",
    "high_ent": "high_ent_thresh",
    "low_vent": "low_vent_thresh",
    "high_vent": "high_vent_thresh",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class EntropixConfig:
    """Every threshold and coefficient of entropix's Oct-2024 SamplerConfig (same names and
    defaults; thresholds converted to nats), the constants entropix hard-coded in `sample`, and
    the knobs of our decode loop. Frozen and hashable: pass it as a static jit argument; derive
    variants with `dataclasses.replace` or `with_thresholds` (both re-validate)."""

    # -- base sampling: SamplerConfig.temp / top_p / top_k / min_p (unit-free) --
    #: SamplerConfig.temp: base temperature every regime scales.
    temp: float = 0.666
    #: SamplerConfig.top_p: nucleus mass, in (0, 1].
    top_p: float = 0.90
    #: SamplerConfig.top_k: tokens kept (<= max_top_k).
    top_k: int = 27
    #: SamplerConfig.min_p: keep p >= min_p * p_max, in [0, 1).
    min_p: float = 0.03

    # -- regime thresholds, NATS (entropix value in bits given in brackets) --
    #: SamplerConfig.low_ent_thresh [0.1 bit] * ln2.
    low_ent_thresh: float = 0.1 * LN2
    #: SamplerConfig.low_vent_thresh [0.1 bit^2] * ln2^2.
    low_vent_thresh: float = 0.1 * LN2**2
    #: SamplerConfig.med_ent_thresh [3.0 bit] * ln2.
    med_ent_thresh: float = 3.0 * LN2
    #: SamplerConfig.high_ent_thresh [5.0 bit] * ln2.
    high_ent_thresh: float = 5.0 * LN2
    #: SamplerConfig.high_vent_thresh [5.0 bit^2] * ln2^2.
    high_vent_thresh: float = 5.0 * LN2**2

    # -- PAUSE (entropix HELV, used after the pause): t = min(helv_max_temp, temp*(off + coef*attn_H)) --
    #: SamplerConfig.helv_attn_ent_offset (unit-free).
    helv_attn_ent_offset: float = 1.3
    #: SamplerConfig.helv_attn_ent_coef (per bit of attention entropy).
    helv_attn_ent_coef: float = 0.2
    #: entropix `sample`: min(1.5, ...) temperature cap of HELV.
    helv_max_temp: float = 1.5

    # -- BRANCH (entropix LEHV): t = min(lehv_max_temp, temp*(off + coef*interaction)),
    #    top_k = max(lehv_min_top_k, floor(top_k*(1 + lehv_top_k_agree_coef*(1 - agreement)))) --
    #: SamplerConfig.lehv_interaction_strength_offset (unit-free).
    lehv_interaction_strength_offset: float = 1.2
    #: SamplerConfig.lehv_interaction_strength_coef (per unit of mean |score|).
    lehv_interaction_strength_coef: float = 0.3
    #: entropix `sample`: min(1.5, ...) temperature cap of LEHV.
    lehv_max_temp: float = 1.5
    #: entropix `sample`: the 0.5 in top_k * (1 + 0.5 * (1 - agreement)).
    lehv_top_k_agree_coef: float = 0.5
    #: entropix `sample`: max(5, ...) top-k floor of LEHV.
    lehv_min_top_k: int = 5

    # -- HOT (entropix HEHV): t = max(hehv_min_temp, temp*(off + coef*attn_V)),
    #    top_p = max(hehv_min_top_p, top_p - hehv_attn_ent_coef*attn_H) --
    #: SamplerConfig.hehv_attn_ent_coef (per bit of attention entropy).
    hehv_attn_ent_coef: float = 0.2
    #: SamplerConfig.hehv_attn_vent_offset (unit-free).
    hehv_attn_vent_offset: float = 2.0
    #: SamplerConfig.hehv_attn_vent_coef (per bit^2 of attention varentropy).
    hehv_attn_vent_coef: float = 0.5
    #: entropix `sample`: max(2.0, ...) -- a temperature FLOOR in entropix, kept as such.
    hehv_min_temp: float = 2.0
    #: entropix `sample`: max(0.5, ...) top-p floor of HEHV.
    hehv_min_top_p: float = 0.5

    # -- ADAPTIVE (entropix "middle ground"); metrics in bits, U_logit = H+V, U_attn = attn_H+attn_V --
    #: SamplerConfig.n_adaptive_samples: candidates drawn; the best-scoring one is kept.
    n_adaptive_samples: int = 5
    #: SamplerConfig.ada_temp_logits: t = temp*(1 + this*U_logit + ada_temp_attn*U_attn - ada_temp_agree*agreement).
    ada_temp_logits: float = 0.3
    #: SamplerConfig.ada_temp_attn.
    ada_temp_attn: float = 0.2
    #: SamplerConfig.ada_temp_agree.
    ada_temp_agree: float = 0.2
    #: SamplerConfig.ada_top_p: top_p' = clip(top_p*(1 + this*attn_V), ada_top_p_min, ada_top_p_max).
    ada_top_p: float = 0.1
    #: SamplerConfig.ada_top_k_int: k = clip(round(top_k*(1 + this*interaction - ada_top_k_agree*agreement))).
    ada_top_k_int: float = 0.3
    #: SamplerConfig.ada_top_k_agree.
    ada_top_k_agree: float = 0.2
    #: SamplerConfig.ada_min_p: min_p' = clip(min_p*(1 - this*U_logit), ada_min_p_min, ada_min_p_max).
    ada_min_p: float = 0.5
    #: entropix `sample`: jnp.clip(top_p', 0.1, 1.0) bounds.
    ada_top_p_min: float = 0.1
    ada_top_p_max: float = 1.0
    #: entropix `sample`: jnp.clip(top_k', 1, 100) bounds (ada_top_k_max <= max_top_k).
    ada_top_k_min: int = 1
    ada_top_k_max: int = 100
    #: entropix `sample`: jnp.clip(min_p', 0.01, 0.5) bounds.
    ada_min_p_min: float = 0.01
    ada_min_p_max: float = 0.5
    #: SamplerConfig.ada_score_*: score = log p(token) + (1-H)*logits_ent + (1-attn_H)*attn_ent
    #: + (1-V)*logits_vent + (1-attn_V)*attn_vent + agreement*agree + interaction*int (metrics in bits).
    ada_score_logits_ent: float = 0.1
    ada_score_attn_ent: float = 0.2
    ada_score_logits_vent: float = 0.3
    ada_score_attn_vent: float = 0.4
    ada_score_agree: float = 0.5
    ada_score_int: float = 0.6

    # -- our decode loop (not in entropix) --
    #: Text the loop inserts on a PAUSE row (entropix inserted a clarifying-question token).
    pause_text: str = "Wait"
    #: Generated tokens after a pause during which a row cannot pause again.
    pause_cooldown: int = 16
    #: Pauses allowed per row per generation (0 disables PAUSE insertion).
    max_pauses: int = 4
    #: Candidates rolled forward on a BRANCH row (>= 2).
    n_branches: int = 3
    #: Greedy steps each branch candidate is rolled forward before scoring (>= 1).
    branch_depth: int = 4
    #: "top_k": the n most likely tokens; "sampled": n distinct tokens drawn without replacement
    #: from entropix's LEHV distribution (Gumbel-top-n).
    branch_mode: BranchMode = "top_k"
    #: score_paths: score = mean log p - branch_score_ent_coef * mean H (nats).
    branch_score_ent_coef: float = 0.5
    #: Static upper bound of any top-k (`lax.top_k` size); per-row k are clipped to it.
    max_top_k: int = 100
    #: Layers whose attention metrics are averaged: "last", "all", or a tuple of indices
    #: (negative indices count from the end).
    attn_layers: AttnLayers = "last"

    def __post_init__(self) -> None:
        if isinstance(self.attn_layers, list):
            object.__setattr__(self, "attn_layers", tuple(self.attn_layers))
        _validate(self)

    def with_thresholds(self, *, unit: Literal["nats", "bits"] = "nats", **values: float) -> EntropixConfig:
        """Replace any of low_ent, med_ent, high_ent, low_vent, high_vent (given in `unit`;
        bits are converted: entropy * ln2, varentropy * ln2^2)."""
        if unit not in ("nats", "bits"):
            raise ConfigError(f"with_thresholds: unit must be 'nats' or 'bits', got {unit!r}")
        unknown = set(values) - set(_THRESHOLD_FIELDS)
        if unknown:
            raise ConfigError(f"with_thresholds: unknown threshold(s) {sorted(unknown)}; use {list(_THRESHOLD_FIELDS)}")
        changes = {}
        for key, v in values.items():
            scale = 1.0 if unit == "nats" else (LN2**2 if key.endswith("vent") else LN2)
            changes[_THRESHOLD_FIELDS[key]] = float(v) * scale
        return dataclasses.replace(self, **changes)

    def thresholds(self, unit: Literal["nats", "bits"] = "nats") -> dict[str, float]:
        """The five thresholds as {"low_ent": ..., ...} in nats or bits."""
        out = {}
        for key, field in _THRESHOLD_FIELDS.items():
            v = getattr(self, field)
            if unit == "bits":
                v = v / (LN2**2 if key.endswith("vent") else LN2)
            out[key] = float(v)
        return out

    def layer_indices(self, n_layers: int) -> tuple[int, ...]:
        """Concrete, non-negative layer indices selected by `attn_layers` for an n-layer model."""
        if self.attn_layers == "last":
            return (n_layers - 1,)
        if self.attn_layers == "all":
            return tuple(range(n_layers))
        out = []
        for i in self.attn_layers:
            j = i + n_layers if i < 0 else i
            if not 0 <= j < n_layers:
                raise ConfigError(f"EntropixConfig.attn_layers: layer {i} out of range for a {n_layers}-layer model")
            out.append(j)
        return tuple(out)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _validate(c: EntropixConfig) -> None:
    def fail(field: str, why: str) -> None:
        raise ConfigError(f"EntropixConfig.{field} {why}, got {getattr(c, field)!r}")

    for f in dataclasses.fields(c):
        v = getattr(c, f.name)
        if f.type == "float" and (not isinstance(v, (int, float, np.floating)) or isinstance(v, bool) or not math.isfinite(v)):
            fail(f.name, "must be a finite number")
        if f.type == "int" and not _is_int(v):
            fail(f.name, "must be an int")
    if c.temp < 0:
        fail("temp", "must be >= 0 (0 = greedy)")
    for name in ("top_p", "hehv_min_top_p", "ada_top_p_min", "ada_top_p_max"):
        if not 0.0 < getattr(c, name) <= 1.0:
            fail(name, "must be in (0, 1]")
    for name in ("min_p", "ada_min_p_min", "ada_min_p_max"):
        if not 0.0 <= getattr(c, name) < 1.0:
            fail(name, "must be in [0, 1)")
    for name in ("helv_max_temp", "lehv_max_temp"):
        if getattr(c, name) <= 0:
            fail(name, "must be > 0")
    if c.hehv_min_temp < 0:
        fail("hehv_min_temp", "must be >= 0")
    for name in _THRESHOLD_FIELDS.values():
        if getattr(c, name) < 0:
            fail(name, "must be >= 0 (nats)")
    if c.low_ent_thresh > c.med_ent_thresh:
        fail("low_ent_thresh", f"must be <= med_ent_thresh ({c.med_ent_thresh!r})")
    if c.med_ent_thresh > c.high_ent_thresh:
        fail("med_ent_thresh", f"must be <= high_ent_thresh ({c.high_ent_thresh!r})")
    if c.low_vent_thresh > c.high_vent_thresh:
        fail("low_vent_thresh", f"must be <= high_vent_thresh ({c.high_vent_thresh!r})")
    if c.max_top_k < 1:
        fail("max_top_k", "must be >= 1")
    for name in ("top_k", "lehv_min_top_k", "ada_top_k_min", "ada_top_k_max"):
        if not 1 <= getattr(c, name) <= c.max_top_k:
            fail(name, f"must be in [1, max_top_k={c.max_top_k}]")
    if c.ada_top_p_min > c.ada_top_p_max:
        fail("ada_top_p_min", "must be <= ada_top_p_max")
    if c.ada_top_k_min > c.ada_top_k_max:
        fail("ada_top_k_min", "must be <= ada_top_k_max")
    if c.ada_min_p_min > c.ada_min_p_max:
        fail("ada_min_p_min", "must be <= ada_min_p_max")
    if c.n_adaptive_samples < 1:
        fail("n_adaptive_samples", "must be >= 1")
    if c.n_branches < 2:
        fail("n_branches", "must be >= 2")
    if c.branch_depth < 1:
        fail("branch_depth", "must be >= 1")
    if c.branch_mode not in ("top_k", "sampled"):
        fail("branch_mode", "must be 'top_k' or 'sampled'")
    if c.pause_cooldown < 0:
        fail("pause_cooldown", "must be >= 0")
    if c.max_pauses < 0:
        fail("max_pauses", "must be >= 0")
    if not isinstance(c.pause_text, str) or not c.pause_text:
        fail("pause_text", "must be a non-empty string")
    layers = c.attn_layers
    if isinstance(layers, str):
        if layers not in ("last", "all"):
            fail("attn_layers", "must be 'last', 'all' or a tuple of layer indices")
    elif not isinstance(layers, tuple) or not layers or not all(_is_int(i) for i in layers):
        fail("attn_layers", "must be 'last', 'all' or a non-empty tuple of int layer indices")


# ---------------------------------------------------------------------------------------------
# Regimes and per-regime sampling parameters.


def classify(logit_m: LogitMetrics, attn_m: AttentionMetrics | None, cfg: EntropixConfig) -> jax.Array:
    """Regime per row (int32 in ARGMAX..ADAPTIVE), entropix's decision order (module docstring).

    The Oct-2024 classifier reads only the logit metrics (nats); `attn_m` is accepted for
    symmetry and ignored. Rows whose metrics are NaN get ARGMAX (the no-op regime).
    """
    del attn_m
    h = logit_m.entropy_B.astype(jnp.float32)
    v = logit_m.varentropy_B.astype(jnp.float32)
    regime = jnp.full(h.shape, ADAPTIVE, jnp.int32)
    # Apply in reverse priority so earlier rules overwrite later ones.
    regime = jnp.where((h > cfg.med_ent_thresh) & (v > cfg.high_vent_thresh), HOT, regime)
    regime = jnp.where((h < cfg.high_ent_thresh) & (v > cfg.high_vent_thresh), BRANCH, regime)
    regime = jnp.where((h > cfg.high_ent_thresh) & (v < cfg.low_vent_thresh), PAUSE, regime)
    regime = jnp.where((h < cfg.low_ent_thresh) & (v < cfg.low_vent_thresh), ARGMAX, regime)
    return jnp.where(jnp.isnan(h) | jnp.isnan(v), ARGMAX, regime).astype(jnp.int32)


@flax.struct.dataclass
class SamplingParams:
    """Per-row parameters for `sampling.process_logits` (all shape [B])."""

    temperature_B: jax.Array
    top_p_B: jax.Array
    top_k_B: jax.Array
    min_p_B: jax.Array


def _full(x: float, like_B: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    return jnp.full(like_B.shape, x, dtype)


def _round_k(k_B: jax.Array, lo: int, hi: int, floor: bool = False) -> jax.Array:
    k_B = jnp.nan_to_num(k_B, nan=float(lo))
    k_B = jnp.floor(k_B) if floor else jnp.round(k_B)
    return jnp.clip(k_B, lo, hi).astype(jnp.int32)


def hot_params(attn_m: AttentionMetrics, cfg: EntropixConfig) -> SamplingParams:
    """entropix HEHV: t = max(hehv_min_temp, temp*(hehv_attn_vent_offset + hehv_attn_vent_coef*attn_V)),
    top_p = max(hehv_min_top_p, top_p - hehv_attn_ent_coef*attn_H) (attn metrics in bits);
    top_k and min_p unchanged."""
    a = to_bits(attn_m)
    t = jnp.maximum(cfg.hehv_min_temp, cfg.temp * (cfg.hehv_attn_vent_offset + cfg.hehv_attn_vent_coef * a.varentropy_B))
    p = jnp.maximum(cfg.hehv_min_top_p, cfg.top_p - cfg.hehv_attn_ent_coef * a.entropy_B)
    like = a.entropy_B
    return SamplingParams(t, jnp.minimum(p, 1.0), _full(cfg.top_k, like, jnp.int32), _full(cfg.min_p, like))


def helv_params(attn_m: AttentionMetrics, cfg: EntropixConfig) -> SamplingParams:
    """entropix HELV (after its clarifying token): t = min(helv_max_temp,
    temp*(helv_attn_ent_offset + helv_attn_ent_coef*attn_H)); base top_p/top_k/min_p."""
    a = to_bits(attn_m)
    t = jnp.minimum(cfg.helv_max_temp, cfg.temp * (cfg.helv_attn_ent_offset + cfg.helv_attn_ent_coef * a.entropy_B))
    like = a.entropy_B
    return SamplingParams(t, _full(cfg.top_p, like), _full(cfg.top_k, like, jnp.int32), _full(cfg.min_p, like))


def lehv_params(attn_m: AttentionMetrics, cfg: EntropixConfig) -> SamplingParams:
    """entropix LEHV: t = min(lehv_max_temp, temp*(offset + coef*interaction)),
    top_k = max(lehv_min_top_k, floor(top_k*(1 + lehv_top_k_agree_coef*(1 - agreement))))."""
    t = jnp.minimum(
        cfg.lehv_max_temp,
        cfg.temp * (cfg.lehv_interaction_strength_offset + cfg.lehv_interaction_strength_coef * attn_m.interaction_B),
    )
    k = cfg.top_k * (1.0 + cfg.lehv_top_k_agree_coef * (1.0 - attn_m.agreement_B))
    like = attn_m.entropy_B
    return SamplingParams(
        t, _full(cfg.top_p, like), _round_k(k, cfg.lehv_min_top_k, cfg.max_top_k, floor=True), _full(cfg.min_p, like)
    )


def adaptive_params(logit_m: LogitMetrics, attn_m: AttentionMetrics, cfg: EntropixConfig) -> SamplingParams:
    """entropix adaptive sampling, metrics in bits, U_logit = H + V, U_attn = attn_H + attn_V:
        t     = temp * (1 + ada_temp_logits*U_logit + ada_temp_attn*U_attn - ada_temp_agree*agreement)
        top_p = clip(top_p * (1 + ada_top_p*attn_V), ada_top_p_min, ada_top_p_max)
        top_k = clip(round(top_k * (1 + ada_top_k_int*interaction - ada_top_k_agree*agreement)),
                     ada_top_k_min, ada_top_k_max)
        min_p = clip(min_p * (1 - ada_min_p*U_logit), ada_min_p_min, ada_min_p_max)
    """
    lg, a = to_bits(logit_m), to_bits(attn_m)
    u_logit = lg.entropy_B + lg.varentropy_B
    u_attn = a.entropy_B + a.varentropy_B
    t = cfg.temp * (1.0 + cfg.ada_temp_logits * u_logit + cfg.ada_temp_attn * u_attn - cfg.ada_temp_agree * a.agreement_B)
    p = jnp.clip(cfg.top_p * (1.0 + cfg.ada_top_p * a.varentropy_B), cfg.ada_top_p_min, cfg.ada_top_p_max)
    k = cfg.top_k * (1.0 + cfg.ada_top_k_int * a.interaction_B - cfg.ada_top_k_agree * a.agreement_B)
    m = jnp.clip(cfg.min_p * (1.0 - cfg.ada_min_p * u_logit), cfg.ada_min_p_min, cfg.ada_min_p_max)
    return SamplingParams(t, p, _round_k(k, cfg.ada_top_k_min, cfg.ada_top_k_max), m)


def adaptive_confidence(logit_m: LogitMetrics, attn_m: AttentionMetrics, cfg: EntropixConfig) -> jax.Array:
    """entropix's confidence term (metrics in bits), added to every candidate's log-prob:
    (1-H)*ada_score_logits_ent + (1-attn_H)*ada_score_attn_ent + (1-V)*ada_score_logits_vent
    + (1-attn_V)*ada_score_attn_vent + agreement*ada_score_agree + interaction*ada_score_int.
    It is constant across a row's candidates, so the pick is the highest log-prob candidate."""
    lg, a = to_bits(logit_m), to_bits(attn_m)
    return (
        (1.0 - lg.entropy_B) * cfg.ada_score_logits_ent
        + (1.0 - a.entropy_B) * cfg.ada_score_attn_ent
        + (1.0 - lg.varentropy_B) * cfg.ada_score_logits_vent
        + (1.0 - a.varentropy_B) * cfg.ada_score_attn_vent
        + a.agreement_B * cfg.ada_score_agree
        + a.interaction_B * cfg.ada_score_int
    )


def _top_k_space(logits_BV: jax.Array, sp: SamplingParams, cfg: EntropixConfig) -> tuple[jax.Array, jax.Array]:
    """Filtered logits over each row's `max_top_k` best tokens, and those tokens' ids.

    Every entropix draw applies top-k with k <= max_top_k, so nothing outside the row's top
    `max_top_k` can be sampled: filtering and drawing in that [B, K] space is the same
    distribution as over the vocabulary, without sorting and drawing over all V tokens (top-p
    sorts K values, the draw needs K random numbers, not V)."""
    x = logits_BV.astype(jnp.float32)
    k = min(cfg.max_top_k, x.shape[-1])
    vals_BK, idx_BK = top_k(jnp.where(row_is_valid(x)[:, None], x, 0.0), k)
    proc_BK = process_logits(vals_BK, temperature_B=sp.temperature_B, min_p_B=sp.min_p_B, top_k_B=sp.top_k_B,
                             max_k=k, top_p_B=sp.top_p_B)
    return proc_BK, idx_BK.astype(jnp.int32)


def _sample(logits_BV: jax.Array, rng_B: jax.Array, sp: SamplingParams, cfg: EntropixConfig) -> jax.Array:
    proc_BK, idx_BK = _top_k_space(logits_BV, sp, cfg)
    j_B = categorical(proc_BK, rng_B)
    tok_B = jnp.take_along_axis(idx_BK, j_B[:, None], axis=-1)[:, 0]
    return jnp.where(row_is_valid(logits_BV), tok_B, FALLBACK_TOKEN)


def hot_sample(
    logits_BV: jax.Array, logit_m: LogitMetrics, attn_m: AttentionMetrics, rng_B: jax.Array, cfg: EntropixConfig
) -> jax.Array:
    """HOT rows (entropix HEHV "resampling in the mist"): one draw with `hot_params`."""
    del logit_m
    return _sample(logits_BV, rng_B, hot_params(attn_m, cfg), cfg)


def helv_sample(logits_BV: jax.Array, attn_m: AttentionMetrics, rng_B: jax.Array, cfg: EntropixConfig) -> jax.Array:
    """entropix's HELV draw for the token after an inserted pause: one draw with `helv_params`."""
    return _sample(logits_BV, rng_B, helv_params(attn_m, cfg), cfg)


def adaptive_sample(
    logits_BV: jax.Array, logit_m: LogitMetrics, attn_m: AttentionMetrics, rng_B: jax.Array, cfg: EntropixConfig
) -> jax.Array:
    """ADAPTIVE rows: n_adaptive_samples draws from the `adaptive_params` distribution (min-p
    applied before sampling), each scored log_softmax(logits)[token] + adaptive_confidence; the
    best per row is kept. Vectorised: masks once, then [B, N] independent draws."""
    x = logits_BV.astype(jnp.float32)
    sp = adaptive_params(logit_m, attn_m, cfg)
    proc_BK, idx_BK = _top_k_space(x, sp, cfg)
    keys_BN = split_rows(rng_B, cfg.n_adaptive_samples)
    j_NB = jax.vmap(lambda k_B: categorical(proc_BK, k_B), in_axes=1)(keys_BN)
    cand_BN = jnp.take_along_axis(idx_BK, j_NB.T, axis=-1)
    logp_BV = jax.nn.log_softmax(jnp.where(row_is_valid(x)[:, None], x, 0.0), axis=-1)
    score_BN = jnp.take_along_axis(logp_BV, cand_BN, axis=-1) + adaptive_confidence(logit_m, attn_m, cfg)[:, None]
    score_BN = jnp.where(jnp.isnan(score_BN), -jnp.inf, score_BN)
    best_B = jnp.argmax(score_BN, axis=-1)
    tok_B = jnp.take_along_axis(cand_BN, best_B[:, None], axis=-1)[:, 0]
    return jnp.where(row_is_valid(x), tok_B, FALLBACK_TOKEN)


# ---------------------------------------------------------------------------------------------
# Branching (the decode loop rolls candidates forward and scores them).


def branch_candidates(
    logits_BV: jax.Array, rng_B: jax.Array, cfg: EntropixConfig, attn_m: AttentionMetrics | None = None
) -> jax.Array:
    """cfg.n_branches distinct first tokens per row, [B, N] int32, best first.

    "top_k": the N most likely tokens (rng unused). "sampled": N tokens without replacement
    (Gumbel-top-N) from temperature/min-p/top-k filtered logits -- entropix's LEHV parameters
    (`lehv_params`) when attn_m is given, else the base temp/min_p/top_k. Slots that would hold an
    impossible token (fewer than N survive the filters) repeat the first candidate; invalid rows
    get FALLBACK_TOKEN everywhere. N must not exceed the vocabulary (checked at trace time).
    Like every sampler here it consumes rng_B: give it keys not used for anything else.
    """
    x = logits_BV.astype(jnp.float32)
    n = cfg.n_branches
    if n > x.shape[-1]:
        raise ConfigError(f"EntropixConfig.n_branches ({n}) exceeds the vocabulary size ({x.shape[-1]})")
    valid_B = row_is_valid(x)
    x = jnp.where(valid_B[:, None], x, 0.0)
    if cfg.branch_mode == "top_k":
        val_BN, cand_BN = top_k(x, n)
    else:
        if attn_m is not None:
            sp = lehv_params(attn_m, cfg)
            t, k = sp.temperature_B, sp.top_k_B
        else:
            t, k = cfg.temp, cfg.top_k
        proc = process_logits(x, temperature_B=t, min_p_B=cfg.min_p, top_k_B=k, max_k=cfg.max_top_k)
        gumbel_BV = jax.vmap(lambda key: jax.random.gumbel(key, x.shape[-1:]))(as_row_keys(rng_B))
        val_BN, cand_BN = top_k(proc + gumbel_BV, n)
    cand_BN = jnp.where(jnp.isneginf(val_BN), cand_BN[:, :1], cand_BN).astype(jnp.int32)
    return jnp.where(valid_B[:, None], cand_BN, FALLBACK_TOKEN)


def score_paths(
    logprobs_BNT: jax.Array, entropies_BNT: jax.Array, cfg: EntropixConfig, valid_BNT: jax.Array | None = None
) -> jax.Array:
    """Score of each branch path, [B, N]; the loop keeps the argmax over N.

        score = mean_t log p_t  -  branch_score_ent_coef * mean_t H_t      (nats)

    log p_t: log-prob of the path's token at step t (recommended: the candidate itself under the
    branching distribution, then the greedy roll-out); H_t: entropy of the distribution it came
    from. The first term prefers likely paths, the second paths that become confident (low
    entropy) -- entropix's "(1 - entropy)" confidence idea. `valid_BNT` masks steps past an EOS;
    a path without valid steps scores -inf.
    """
    lp = logprobs_BNT.astype(jnp.float32)
    ent = entropies_BNT.astype(jnp.float32)
    w = jnp.ones_like(lp) if valid_BNT is None else valid_BNT.astype(jnp.float32)
    n = jnp.sum(w, axis=-1)
    mean_lp = jnp.sum(jnp.where(w > 0, lp, 0.0), axis=-1) / jnp.maximum(n, 1.0)
    mean_ent = jnp.sum(jnp.where(w > 0, ent, 0.0), axis=-1) / jnp.maximum(n, 1.0)
    return jnp.where(n > 0, mean_lp - cfg.branch_score_ent_coef * mean_ent, -jnp.inf)


# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EntropixSampler(Sampler):
    """Per-row entropix sampler; hashable, usable as a static jit argument. It brings the pause
    controller into the loop and runs its own branch roll-out (`propose`)."""

    cfg: EntropixConfig = dataclasses.field(default_factory=EntropixConfig)

    @property
    def lookahead_slots(self) -> int:  # a committed branch path writes branch_depth slots
        return max(1, self.cfg.branch_depth)

    @property
    def pause_text(self) -> str:
        return self.cfg.pause_text

    def metric_layers(self, n_layers: int) -> tuple[int, ...]:
        return self.cfg.layer_indices(n_layers)

    def controllers(self) -> tuple[EntropixPause, ...]:
        return (EntropixPause(max_pauses=self.cfg.max_pauses, cooldown=self.cfg.pause_cooldown),)

    def propose(self, step: SamplerInput) -> Proposal:
        """The regime's token per row. BRANCH rows roll their candidates forward greedily
        (`branch_depth` - 1 steps, only when some row branches) and take the best-scoring path:
        its first token now, and the rest of it as the proposal's `Path`, which the loop commits
        token by token (`docs/guide.md`, "Branches": what this samples)."""
        cfg = self.cfg
        keys_B2 = split_rows(step.rng_B, 2)  # distinct keys for the sampler and the branch candidates
        tok_B, regime_B = self.get_next_tokens(step.logits_BV, step.metrics, step.attention, keys_B2[:, 0])
        branch_B = (regime_B == BRANCH) & step.active_B
        if cfg.branch_depth == 1:  # each candidate scored by its own log-prob: nothing to roll out
            return Proposal(jnp.where(branch_B, self._branch(step, keys_B2[:, 1], branch_B)[0], tok_B), regime_B)

        def roll_out(_):
            best_B, path = self._branch(step, keys_B2[:, 1], branch_B)
            return jnp.where(branch_B, best_B, tok_B), path

        def no_branch(_):
            b, vocab = step.logits_BV.shape
            return tok_B, Path.none(b, cfg.branch_depth - 1, vocab, step.lookahead.cache)

        tok_B, path = jax.lax.cond(jnp.any(branch_B), roll_out, no_branch, None)
        return Proposal(tok_B, regime_B, path)

    def _branch(self, step: SamplerInput, rng_B: jax.Array, branch_B: jax.Array) -> tuple[jax.Array, Path | None]:
        """The winning candidate of each row (`score_paths` over its candidates' roll-outs) and,
        when branch_depth > 1, the winner's roll-out as a `Path` for the `branch_B` rows."""
        cfg = self.cfg
        cand_BN = branch_candidates(step.logits_BV, rng_B, cfg, step.attention)
        logprob_BNT = jnp.take_along_axis(jax.nn.log_softmax(step.logits_BV), cand_BN, axis=1)[..., None]
        entropy_BNT = jnp.broadcast_to(step.metrics.entropy_B[:, None, None], logprob_BNT.shape)
        paths = None
        if cfg.branch_depth > 1:
            paths = step.lookahead.greedy_paths(cand_BN, cfg.branch_depth, branch_B)
            logprob_BNT = jnp.concatenate([logprob_BNT, paths.logprob_BND], axis=2)
            entropy_BNT = jnp.concatenate([entropy_BNT, paths.entropy_BND], axis=2)
        win_B = jnp.argmax(score_paths(logprob_BNT, entropy_BNT, cfg), axis=1)
        best_B = jnp.take_along_axis(cand_BN, win_B[:, None], axis=1)[:, 0]
        return best_B, None if paths is None else Path.pick(paths, win_B, branch_B)

    def get_next_tokens(
        self, logits_BV: jax.Array, logit_m: LogitMetrics, attn_m: AttentionMetrics, rng_B: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """(tokens_B int32, regime_B int32). ARGMAX, PAUSE and BRANCH rows get the argmax token
        (PAUSE/BRANCH as placeholders the loop replaces); HOT rows `hot_sample`; ADAPTIVE rows
        `adaptive_sample`. Invalid rows (`row_is_valid` False) get regime ARGMAX and
        FALLBACK_TOKEN. All branches are computed, then selected per row."""
        cfg = self.cfg
        valid_B = row_is_valid(logits_BV)
        regime_B = jnp.where(valid_B, classify(logit_m, attn_m, cfg), ARGMAX)
        keys_B2 = split_rows(rng_B, 2)
        tok_arg = greedy(logits_BV)
        tok_hot = hot_sample(logits_BV, logit_m, attn_m, keys_B2[:, 0], cfg)
        tok_ada = adaptive_sample(logits_BV, logit_m, attn_m, keys_B2[:, 1], cfg)
        tok_B = jnp.where(regime_B == HOT, tok_hot, jnp.where(regime_B == ADAPTIVE, tok_ada, tok_arg))
        return tok_B.astype(jnp.int32), regime_B.astype(jnp.int32)


# ---------------------------------------------------------------------------------------------

#: Default corpus quantiles for `calibrate_thresholds`.
DEFAULT_QUANTILES: Mapping[str, float] = {
    "low_ent": 0.25,
    "med_ent": 0.50,
    "high_ent": 0.90,
    "low_vent": 0.25,
    "high_vent": 0.90,
}


def calibrate_thresholds(
    entropy_N: Any,
    varentropy_N: Any,
    quantiles: Mapping[str, float] | None = None,
    base: EntropixConfig | None = None,
) -> EntropixConfig:
    """`base` (default EntropixConfig()) with thresholds set to quantiles of a corpus's per-token
    logit metrics (nats, as `logit_metrics` returns them). Pure NumPy; non-finite pairs dropped.

    Defaults (DEFAULT_QUANTILES; override any subset): low_ent/low_vent at the 25th percentile,
    med_ent at the median, high_ent/high_vent at the 90th. Entropy and varentropy are strongly
    correlated per token, so a corner rule fires on roughly the per-axis fraction: ARGMAX (greedy)
    takes about the most confident quarter, where sampling barely changes the token anyway; the
    median splits the entropy axis for the HOT gate; and the interventions that cost or perturb
    most -- PAUSE (inserts text), HOT (temperature >= 2), BRANCH (n_branches * branch_depth extra
    forward steps) -- are each limited to about the most uncertain decile.
    """
    q = dict(DEFAULT_QUANTILES)
    if quantiles:
        unknown = set(quantiles) - set(q)
        if unknown:
            raise ConfigError(f"calibrate_thresholds: unknown quantile key(s) {sorted(unknown)}; use {list(q)}")
        q.update(quantiles)
    for key, v in q.items():
        if not 0.0 <= float(v) <= 1.0:
            raise ConfigError(f"calibrate_thresholds: quantile {key}={v!r} must be in [0, 1]")
    if not q["low_ent"] <= q["med_ent"] <= q["high_ent"] or not q["low_vent"] <= q["high_vent"]:
        raise ConfigError(f"calibrate_thresholds: quantiles must be ordered low <= med <= high, got {q}")
    ent = np.asarray(entropy_N, np.float64).reshape(-1)
    vent = np.asarray(varentropy_N, np.float64).reshape(-1)
    if ent.shape != vent.shape:
        raise ConfigError(f"calibrate_thresholds: {ent.size} entropies but {vent.size} varentropies")
    ok = np.isfinite(ent) & np.isfinite(vent)
    if not ok.any():
        raise ConfigError("calibrate_thresholds: no finite (entropy, varentropy) pairs to calibrate on")
    ent, vent = np.maximum(ent[ok], 0.0), np.maximum(vent[ok], 0.0)
    values = {k: float(np.quantile(vent if k.endswith("vent") else ent, v)) for k, v in q.items()}
    return (base or EntropixConfig()).with_thresholds(unit="nats", **values)
