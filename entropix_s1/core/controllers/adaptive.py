"""Adaptive budget forcing: the model's own uncertainty decides when thinking goes on or ends.

- `AdaptiveExtend` (Budget.mode == "adaptive"): a sampled end-of-thinking delimiter is replaced by
  the wait text (reason "wait:uncertain") only when the step was uncertain: entropy of the emitting
  distribution > `uncertain_entropy`, or its varentropy > `uncertain_varentropy`, or the mean entropy
  of the `window` tokens before the delimiter > `uncertain_window_entropy` (nats), at most
  `num_waits` times. Below `min_thinking_tokens` it extends too, unless `confident_ends_below_min`
  and the end was confident. See docs/adaptive_budget.md.
- Its soft cap (past `soft_max_thinking_tokens`, end at the first step whose entropy is below
  `confident_entropy`) is the graceful cap's controller (`graceful.GracefulCap`) on adaptive rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from flax import struct

from entropix_s1.core import codes
from entropix_s1.core.controllers.base import Controller, Extension, RowView, column
from entropix_s1.errors import ConfigError


def _adaptive(budget) -> bool:
    return budget.mode == "adaptive"


@struct.dataclass
class UncertaintyKnobs:
    on_B: Any  # the row is in adaptive mode
    entropy_B: Any
    varentropy_B: Any
    window_entropy_B: Any
    window_B: Any
    confident_min_B: Any


@dataclasses.dataclass(frozen=True)
class AdaptiveExtend(Controller):
    """Extend at a delimiter only when uncertain (overrides S1Extend's decision on adaptive rows)."""

    @staticmethod
    def validate(budget) -> None:
        if budget.mode not in ("fixed", "adaptive"):
            raise ConfigError(f"Budget.mode must be 'fixed' or 'adaptive', got {budget.mode!r}")
        if budget.window < 1:
            raise ConfigError(f"Budget.window must be >= 1, got {budget.window}")

    def pack(self, budgets: Sequence[Any]) -> UncertaintyKnobs:
        inf = float("inf")
        return UncertaintyKnobs(
            on_B=column(budgets, _adaptive, False, bool),
            entropy_B=column(budgets, lambda b: b.uncertain_entropy, inf, jnp.float32),
            varentropy_B=column(budgets, lambda b: b.uncertain_varentropy, inf, jnp.float32),
            window_entropy_B=column(budgets, lambda b: b.uncertain_window_entropy, inf, jnp.float32),
            window_B=column(budgets, lambda b: b.window, 1),
            confident_min_B=column(budgets, lambda b: b.confident_ends_below_min, False, bool),
        )

    def on_delimiter(self, view: RowView, knobs: UncertaintyKnobs, ext: Extension) -> Extension:
        # mean entropy of the `window` tokens before the delimiter (their recorded stats)
        end_B = ext.n_out_B - ext.delim_len_B
        n_N = jnp.arange(view.out_BN.shape[1], dtype=jnp.int32)[None, :]
        win_BN = (n_N >= (end_B - knobs.window_B)[:, None]) & (n_N < end_B[:, None])
        win_ent_B = jnp.sum(jnp.where(win_BN, view.stats_BNS[:, :, 0], 0.0), 1) / jnp.maximum(jnp.sum(win_BN, 1), 1)
        m = view.metrics
        uncertain_B = (m.entropy_B > knobs.entropy_B) | (m.varentropy_B > knobs.varentropy_B) | \
            (win_ent_B > knobs.window_entropy_B)
        extend_B = (ext.waits_left_B & uncertain_B) | (ext.below_min_B & ~(knobs.confident_min_B & ~uncertain_B))
        return ext.replace(extend_B=jnp.where(knobs.on_B, extend_B, ext.extend_B),
                           seq_B=jnp.where(knobs.on_B, codes.SEQ_WAIT_UNCERTAIN, ext.seq_B))


__all__ = ["AdaptiveExtend"]
