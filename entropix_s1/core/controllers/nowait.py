"""NoWait (arXiv 2506.08343) and NoThinking (arXiv 2504.09858): the two methods that act on the
thinking text without reading the model's uncertainty.

- `NoWait` (Budget.no_reflection): while a row thinks, every reflection token ("Wait", "Hmm",
  "Alternatively" in each spelling its tokenizer has, `TokenTables.reflect_R`) gets logit -inf,
  so the model cannot start a self-reflection: logits'[v] = -inf for v in R, else logits[v].
- `NoThinking` (Budget.no_thinking): the thought is forced to be finished before it starts: the
  first idle thinking step (after `think_start`) emits `nothinking_text` + the delimiter (forced
  reason "nothinking"); the row then answers, with 0 thinking tokens. A format whose delimiter is
  the end-of-turn token (`cap_with_delimiter=False`) gets the answer prefix in the delimiter's
  place, so the reply goes on to an answer (`host/engine.py::_tables`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

from entropix_s1.core import codes
from entropix_s1.core.controllers.base import Controller, RowView, Suppression, column


@dataclasses.dataclass(frozen=True)
class NoWait(Controller):
    """Suppress the reflection tokens of thinking rows whose budget says `no_reflection`."""

    @staticmethod
    def used_by(budget) -> bool:
        return bool(budget.no_reflection)

    def pack(self, budgets: Sequence[Any]):
        """[B] bool: the row suppresses reflection tokens."""
        return column(budgets, lambda b: b.no_reflection, False, bool)

    def suppress(self, view: RowView, on_B, logits_BV) -> Suppression | None:
        reflect_R = view.tables.reflect_R
        in_R_V = jnp.zeros((logits_BV.shape[1],), bool).at[jnp.maximum(reflect_R, 0)].max(reflect_R >= 0)
        mask_BV = in_R_V[None] & (on_B & view.thinking_B & view.queue_idle_B)[:, None]
        return Suppression(mask_BV=mask_BV, counts_as_wait_B=jnp.zeros_like(on_B))


@dataclasses.dataclass(frozen=True)
class NoThinking(Controller):
    """Force the finished thought + delimiter at the first idle thinking step (ends thinking)."""

    seq = codes.SEQ_NOTHINKING
    ends_thinking = True

    @staticmethod
    def used_by(budget) -> bool:
        return bool(budget.no_thinking)

    def pack(self, budgets: Sequence[Any]):
        """[B] bool: the row skips its thinking."""
        return column(budgets, lambda b: b.no_thinking, False, bool)

    def force(self, view: RowView, on_B, state: Any, regime_B):
        return on_B & view.thinking_B & (view.think_B == 0)


__all__ = ["NoThinking", "NoWait"]
