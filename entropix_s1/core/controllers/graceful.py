"""The graceful cap (llama.cpp issue #20632, PRs #25263 / #27578): past a soft cap, thinking ends
at the first confident point instead of mid-sentence at the hard cap.

Past `soft_max_thinking_tokens` S a row ends its thinking (forced cap tail, reason "end:confident")
at the first step t with H(p_t) < `confident_entropy` at a sentence boundary: the last token is a
sentence end (`TokenTables.sentence_R`: ".", ".\\n", "?", ...). The grace window is [S, max):
the hard cap `max_thinking_tokens` (ThinkingCap, which claims first) forces the cap if no such
point came (`graceful:soft=S,grace=G` sets max = S + G).

The adaptive mode's soft cap is the same controller without the boundary condition (any
confident step past S ends thinking, docs/adaptive_budget.md), so its outputs are unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from flax import struct

from entropix_s1.core import codes
from entropix_s1.core.controllers.base import Controller, RowView, column
from entropix_s1.core.tables import in_set
from entropix_s1.errors import ConfigError


@struct.dataclass
class GracefulKnobs:
    soft_think_B: Any
    confident_entropy_B: Any
    at_sentence_B: Any  # the end must come at a sentence boundary (fixed mode; not adaptive)


@dataclasses.dataclass(frozen=True)
class GracefulCap(Controller):
    """Past the soft cap, end thinking at the first confident step (at a sentence end, in fixed mode)."""

    seq = codes.SEQ_CAP_CONFIDENT
    ends_thinking = True

    @staticmethod
    def used_by(budget) -> bool:
        return budget.soft_max_thinking_tokens is not None

    @staticmethod
    def validate(budget) -> None:
        s = budget.soft_max_thinking_tokens
        if s is not None and (s < 0 or (budget.max_thinking_tokens is not None and s > budget.max_thinking_tokens)):
            raise ConfigError(f"Budget.soft_max_thinking_tokens ({s}) must be in [0, max_thinking_tokens]")

    def pack(self, budgets: Sequence[Any]) -> GracefulKnobs:
        return GracefulKnobs(
            soft_think_B=column(budgets, lambda b: b.soft_max_thinking_tokens, codes.NO_LIMIT),
            confident_entropy_B=column(budgets, lambda b: b.confident_entropy, float("inf"), jnp.float32),
            at_sentence_B=column(budgets, lambda b: b.mode != "adaptive", False, bool),
        )

    def force(self, view: RowView, knobs: GracefulKnobs, state: Any, regime_B):
        last_B = jnp.take_along_axis(view.out_BN, jnp.maximum(view.n_out_B - 1, 0)[:, None], axis=1)[:, 0]
        boundary_B = ~knobs.at_sentence_B | ((view.n_out_B > 0) & in_set(last_B, view.tables.sentence_R))
        return view.thinking_B & (view.think_B >= knobs.soft_think_B) & boundary_B & \
            (view.metrics.entropy_B < knobs.confident_entropy_B)


__all__ = ["GracefulCap"]
