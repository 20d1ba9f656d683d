"""AlphaOne (arXiv 2505.24863): slow thinking until the alpha moment, fast thinking after it.

The alpha moment of a row is T_a = alpha * N, N its thinking budget (`alpha_base_tokens`, else
`max_thinking_tokens`). Before it, at each structural break (the last token is one of
`TokenTables.break_R`: "\\n\\n", ".\\n\\n", ...; with `alpha_breaks="line"` any line end,
`line_R`), the wait text is inserted with the linearly
annealed probability p(t) = p0 * (1 - t / T_a), t the row's thinking tokens, drawn from the row's
own key (fold_in of the step key and the output index: reproducible per seed and prompt).
From T_a on, every proposed reflection token (`reflect_R`) is replaced by the end-of-thinking
delimiter (forced reason "end:alpha"; the answer prefix instead where the delimiter is the
end-of-turn token, `cap_with_delimiter=False`), and the row answers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from entropix_s1.core import codes
from entropix_s1.core.controllers.base import Controller, RowView, column
from entropix_s1.core.tables import in_set
from entropix_s1.errors import ConfigError

_SALT = 0xA1  # keeps AlphaOne's draw apart from the sampler's, which uses the step key itself


@struct.dataclass
class AlphaKnobs:
    moment_B: Any  # T_a in thinking tokens (codes.NO_LIMIT: the row is not an AlphaOne row)
    wait_prob_B: Any  # p0
    lines_B: Any  # line ends count as breaks too


def _moment(b) -> int | None:
    if b.alpha is None:
        return None
    base = b.alpha_base_tokens if b.alpha_base_tokens is not None else b.max_thinking_tokens
    return int(math.ceil(b.alpha * base))


def _pack(budgets: Sequence[Any]) -> AlphaKnobs:
    return AlphaKnobs(moment_B=column(budgets, _moment, codes.NO_LIMIT),
                      wait_prob_B=column(budgets, lambda b: b.alpha_wait_prob if b.alpha is not None else 0.0, 0.0,
                                         jnp.float32),
                      lines_B=column(budgets, lambda b: b.alpha_breaks == "line", False, bool))


@dataclasses.dataclass(frozen=True)
class AlphaOneEnd(Controller):
    """From the alpha moment on, a proposed reflection token becomes the delimiter."""

    seq = codes.SEQ_END_ALPHA
    ends_thinking = True

    @staticmethod
    def used_by(budget) -> bool:
        return budget.alpha is not None

    @staticmethod
    def validate(budget) -> None:
        if budget.alpha is None:
            return
        if not budget.alpha > 0:
            raise ConfigError(f"Budget.alpha must be > 0, got {budget.alpha}")
        if budget.alpha_base_tokens is None and budget.max_thinking_tokens is None:
            raise ConfigError("Budget.alpha needs a thinking budget: set alpha_base_tokens or max_thinking_tokens")
        if budget.alpha_base_tokens is not None and budget.alpha_base_tokens < 1:
            raise ConfigError(f"Budget.alpha_base_tokens must be >= 1, got {budget.alpha_base_tokens}")
        if budget.alpha_breaks not in ("paragraph", "line"):
            raise ConfigError(f"Budget.alpha_breaks must be 'paragraph' or 'line', got {budget.alpha_breaks!r}")
        if not 0.0 <= budget.alpha_wait_prob <= 1.0:
            raise ConfigError(f"Budget.alpha_wait_prob must be in [0, 1], got {budget.alpha_wait_prob}")

    def pack(self, budgets: Sequence[Any]) -> AlphaKnobs:
        return _pack(budgets)

    def force(self, view: RowView, knobs: AlphaKnobs, state: Any, regime_B):
        return view.thinking_B & (view.think_B >= knobs.moment_B) & in_set(view.proposal_B, view.tables.reflect_R)


@dataclasses.dataclass(frozen=True)
class AlphaOneWait(Controller):
    """Before the alpha moment, insert the wait text after a structural break with p(t)."""

    seq = codes.SEQ_WAIT_ALPHA
    counter = "waits_B"

    @staticmethod
    def used_by(budget) -> bool:
        return budget.alpha is not None

    def pack(self, budgets: Sequence[Any]) -> AlphaKnobs:
        return _pack(budgets)

    def force(self, view: RowView, knobs: AlphaKnobs, state: Any, regime_B):
        last_B = jnp.take_along_axis(view.out_BN, jnp.maximum(view.n_out_B - 1, 0)[:, None], axis=1)[:, 0]
        at_break_B = (view.n_out_B > 0) & (in_set(last_B, view.tables.break_R) |
                                           (knobs.lines_B & in_set(last_B, view.tables.line_R)))
        before_B = view.think_B < knobs.moment_B
        p_B = knobs.wait_prob_B * (1.0 - view.think_B.astype(jnp.float32) / jnp.maximum(knobs.moment_B, 1))
        u_B = jax.vmap(lambda k, n: jax.random.uniform(jax.random.fold_in(jax.random.fold_in(k, _SALT), n)))(
            view.rng_B, view.n_out_B)
        return view.thinking_B & before_B & at_break_B & (u_B < p_B)


__all__ = ["AlphaOneEnd", "AlphaOneWait"]
