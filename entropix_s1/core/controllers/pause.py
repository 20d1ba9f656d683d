"""The entropix pause: on a PAUSE step (high entropy, low varentropy: "treading carefully") insert
the pause text instead of the sampled token (entropix inserted a clarifying token), at most
`max_pauses` times per row and `cooldown` generated tokens apart. Knobs come from EntropixConfig
(pause_text, max_pauses, pause_cooldown), the same for every row."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from entropix_s1.core import codes
from entropix_s1.core.controllers.base import Controller, RowView


@dataclasses.dataclass(frozen=True)
class EntropixPause(Controller):
    """Force the pause text on PAUSE-regime steps; state: the output index of the last pause."""

    max_pauses: int = 4
    cooldown: int = 16

    seq = codes.SEQ_PAUSE
    counter = "pauses_B"

    def init(self, knobs: Any, batch: int):
        return jnp.full((batch,), -codes.NO_LIMIT, jnp.int32)  # last pause: never

    def force(self, view: RowView, knobs: Any, last_pause_B, regime_B):
        cooled_B = view.n_out_B - last_pause_B >= self.cooldown
        return (regime_B == codes.PAUSE) & (view.pauses_B < self.max_pauses) & cooled_B

    def update(self, last_pause_B, view: RowView, started_B):
        return jnp.where(started_B, view.n_out_B, last_pause_B)


__all__ = ["EntropixPause"]
