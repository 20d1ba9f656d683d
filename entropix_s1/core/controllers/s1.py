"""s1 budget forcing (arXiv 2501.19393, section 3.1) as controllers: prefill, cap, extend, answer cap.

- `Prefill`: token forcing, `think_start` opened for the model at the start of its turn.
- `ThinkingCap`: at `max_thinking_tokens`, force `think_end[0] + answer_prefix` ("Final Answer:").
- `S1Extend`: a sampled end-of-thinking delimiter is dropped and `wait_text` appended, `num_waits`
  times, and always below `min_thinking_tokens` ("Wait", s1 Table 4). With an empty wait text (the
  "no string" ablation) the delimiter's last token is suppressed at sampling instead.
- `AnswerCap`: the answer phase ends after `max_answer_tokens`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
from flax import struct

from entropix_s1.core import codes
from entropix_s1.core.controllers.base import Controller, Extension, RowView, Suppression, column
from entropix_s1.core.tables import completing_tokens_mask
from entropix_s1.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Prefill(Controller):
    """Emit `think_start` (forced reason "prefill") as the first tokens of a thinking row."""

    seq = codes.SEQ_PREFILL

    def force(self, view: RowView, knobs: Any, state: Any, regime_B):
        return (view.t_B == 0) & view.thinking_B


@dataclasses.dataclass(frozen=True)
class ThinkingCap(Controller):
    """s1 "Final Answer:" cap: thinking stops at `max_thinking_tokens`, even inside a wait."""

    seq = codes.SEQ_CAP
    ends_thinking = True
    interrupts = True

    @staticmethod
    def validate(budget) -> None:
        mx, mn = budget.max_thinking_tokens, budget.min_thinking_tokens
        if mx is not None and mx < 0:
            raise ConfigError(f"Budget.max_thinking_tokens must be >= 0, got {mx}")
        if mx is not None and mn > mx:
            raise ConfigError(f"Budget.min_thinking_tokens ({mn}) > max_thinking_tokens ({mx})")
        if not budget.cap_with_delimiter and not budget.answer_prefix:
            raise ConfigError("Budget: cap_with_delimiter=False needs a non-empty answer_prefix to force at the cap")

    def pack(self, budgets: Sequence[Any]):
        """[B] max_thinking_tokens (no limit where unset)."""
        return column(budgets, lambda b: b.max_thinking_tokens, codes.NO_LIMIT)

    def force(self, view: RowView, max_think_B, state: Any, regime_B):
        return view.thinking_B & (view.think_B >= max_think_B)


@struct.dataclass
class ExtendKnobs:
    num_waits_B: Any
    min_think_B: Any


@dataclasses.dataclass(frozen=True)
class S1Extend(Controller):
    """s1 extension: replace a delimiter by `wait_text` while waits remain or below the minimum.

    no_string: the wait text is empty, so nothing replaces the delimiter; its completing token is
    suppressed instead while the row may still extend, and a top choice suppressed counts as a wait.
    """

    no_string: bool = False

    @staticmethod
    def validate(budget) -> None:
        if budget.min_thinking_tokens < 0:
            raise ConfigError(f"Budget.min_thinking_tokens must be >= 0, got {budget.min_thinking_tokens}")
        if budget.num_waits < 0:
            raise ConfigError(f"Budget.num_waits must be >= 0, got {budget.num_waits}")

    def pack(self, budgets: Sequence[Any]) -> ExtendKnobs:
        return ExtendKnobs(column(budgets, lambda b: b.num_waits, 0), column(budgets, lambda b: b.min_thinking_tokens, 0))

    def suppress(self, view: RowView, knobs: ExtendKnobs, logits_BV) -> Suppression | None:
        if not self.no_string:
            return None
        t = view.tables
        may_extend_B = view.thinking_B & ((view.waits_B < knobs.num_waits_B) | (view.think_B < knobs.min_think_B))
        mask_BV = completing_tokens_mask(view.out_BN, view.n_out_B, t.delim_ML, t.delim_len_M, logits_BV.shape[1])
        mask_BV = mask_BV & (may_extend_B & view.queue_idle_B)[:, None]
        top_B = jnp.argmax(logits_BV, axis=1)
        tried_B = view.active_B & jnp.take_along_axis(mask_BV, top_B[:, None], axis=1)[:, 0]
        return Suppression(mask_BV=mask_BV, counts_as_wait_B=tried_B)

    def on_delimiter(self, view: RowView, knobs: ExtendKnobs, ext: Extension) -> Extension:
        waits_left_B = view.waits_B < knobs.num_waits_B
        below_min_B = ext.think_B - ext.delim_len_B < knobs.min_think_B
        return ext.replace(extend_B=waits_left_B | below_min_B, seq_B=jnp.full_like(ext.seq_B, codes.SEQ_WAIT),
                           waits_left_B=waits_left_B, below_min_B=below_min_B)


@dataclasses.dataclass(frozen=True)
class AnswerCap(Controller):
    """End the row `max_answer_tokens` into its answer phase (stop reason "answer_budget")."""

    stop_code = codes.STOP_ANSWER_BUDGET

    @staticmethod
    def validate(budget) -> None:
        if budget.max_answer_tokens is not None and budget.max_answer_tokens < 1:
            raise ConfigError(f"Budget.max_answer_tokens must be >= 1, got {budget.max_answer_tokens}")

    def pack(self, budgets: Sequence[Any]):
        """[B] max_answer_tokens (no limit where unset)."""
        return column(budgets, lambda b: b.max_answer_tokens, codes.NO_LIMIT)

    def stop(self, view: RowView, max_answer_B):
        return view.active_B & (view.phase_B == codes.ANSWER) & (view.answer_B >= max_answer_B)


__all__ = ["AnswerCap", "Prefill", "S1Extend", "ThinkingCap"]
