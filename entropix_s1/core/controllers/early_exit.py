"""Early exit on a probe: DEER (arXiv 2504.15895), EAT (arXiv 2509.26522), Dynasor-CoT (arXiv
2412.20993). Each asks for a probe (`core/probe.py`: the delimiter + answer prefix, then
`probe_tokens` greedy tokens over the row's cache, discarded) and, when its rule fires, ends the
row's thinking at once with the cap tail (forced reason "end:probe"), in place of the proposal.

- `DeerExit`: probe when the proposed token is a reflection token (DEER's transition points, e.g.
  "Wait"); end when the trial answer's confidence mean_a max_v p_a(v) >= `deer_threshold`.
- `EatExit`: probe every `probe_every` thinking tokens; x_i = entropy of the next token after the
  delimiter + answer prefix; m_i = a x_i + (1 - a) m_{i-1}, v_i = a (x_i - m_i)^2 + (1 - a) v_{i-1}
  (m_1 = x_1, v_1 = 0; a = `eat_ema`); end when v_i < `eat_threshold` after >= `eat_min_probes`.
- `DynasorExit`: probe every `probe_every` thinking tokens; end when the last `dynasor_streak`
  probes gave identical answer tokens.
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


def _unit(budget, field: str) -> None:
    v = getattr(budget, field)
    if v is not None and not 0.0 < v <= 1.0:
        raise ConfigError(f"Budget.{field} must be in (0, 1], got {v}")


class _ProbeExit(Controller):
    """Shared by the three: its carry's `end_B` (decided by `on_probe` this step) starts the cap
    tail in `force`; `every_B` / `next_B` schedule periodic probes."""

    seq = codes.SEQ_END_PROBE
    ends_thinking = True
    probes = True

    def force(self, view: RowView, knobs: Any, state: Any, regime_B):
        return state.end_B

    def update(self, state: Any, view: RowView, started_B):
        return state.replace(end_B=jnp.zeros_like(state.end_B))

    @staticmethod
    def _due(view: RowView, every_B, next_B):
        return (every_B > 0) & (view.think_B >= next_B)


@struct.dataclass
class DeerState:
    end_B: Any


@dataclasses.dataclass(frozen=True)
class DeerExit(_ProbeExit):
    @staticmethod
    def used_by(budget) -> bool:
        return budget.deer_threshold is not None

    @staticmethod
    def validate(budget) -> None:
        _unit(budget, "deer_threshold")

    def pack(self, budgets: Sequence[Any]):
        """[B] confidence threshold (> 1: never, the row is not a DEER row)."""
        return column(budgets, lambda b: b.deer_threshold, 2.0, jnp.float32)

    def init(self, knobs, batch: int) -> DeerState:
        return DeerState(end_B=jnp.zeros((batch,), bool))

    def probe(self, view: RowView, threshold_B, state: DeerState):
        return (threshold_B <= 1.0) & in_set(view.proposal_B, view.tables.reflect_R)

    def on_probe(self, view: RowView, threshold_B, state: DeerState, probe, asked_B) -> DeerState:
        return state.replace(end_B=asked_B & (probe.confidence_B >= threshold_B))


@struct.dataclass
class EatKnobs:
    threshold_B: Any
    every_B: Any  # 0: not an EAT row
    ema_B: Any
    min_probes_B: Any


@struct.dataclass
class EatState:
    end_B: Any
    next_B: Any
    n_B: Any
    mean_B: Any
    var_B: Any


@dataclasses.dataclass(frozen=True)
class EatExit(_ProbeExit):
    @staticmethod
    def used_by(budget) -> bool:
        return budget.eat_threshold is not None

    @staticmethod
    def validate(budget) -> None:
        _unit(budget, "eat_threshold")
        _unit(budget, "eat_ema")
        if budget.eat_min_probes < 1:
            raise ConfigError(f"Budget.eat_min_probes must be >= 1, got {budget.eat_min_probes}")

    def pack(self, budgets: Sequence[Any]) -> EatKnobs:
        def on(b):
            return b.eat_threshold is not None
        return EatKnobs(threshold_B=column(budgets, lambda b: b.eat_threshold, 0.0, jnp.float32),
                        every_B=column(budgets, lambda b: b.probe_every if on(b) else 0, 0),
                        ema_B=column(budgets, lambda b: b.eat_ema, 1.0, jnp.float32),
                        min_probes_B=column(budgets, lambda b: b.eat_min_probes, 1))

    def init(self, knobs: EatKnobs, batch: int) -> EatState:
        z = jnp.zeros((batch,), jnp.float32)
        return EatState(end_B=jnp.zeros((batch,), bool), next_B=knobs.every_B, n_B=jnp.zeros((batch,), jnp.int32),
                        mean_B=z, var_B=z)

    def probe(self, view: RowView, knobs: EatKnobs, state: EatState):
        return self._due(view, knobs.every_B, state.next_B)

    def on_probe(self, view: RowView, knobs: EatKnobs, state: EatState, probe, asked_B) -> EatState:
        x_B, a_B, first_B = probe.entropy_B, knobs.ema_B, state.n_B == 0
        mean_B = jnp.where(first_B, x_B, a_B * x_B + (1 - a_B) * state.mean_B)
        var_B = jnp.where(first_B, 0.0, a_B * (x_B - mean_B) ** 2 + (1 - a_B) * state.var_B)
        n_B = state.n_B + 1
        end_B = (n_B >= knobs.min_probes_B) & (var_B < knobs.threshold_B)
        return EatState(end_B=asked_B & end_B, next_B=jnp.where(asked_B, view.think_B + knobs.every_B, state.next_B),
                        n_B=jnp.where(asked_B, n_B, state.n_B), mean_B=jnp.where(asked_B, mean_B, state.mean_B),
                        var_B=jnp.where(asked_B, var_B, state.var_B))


@struct.dataclass
class DynasorKnobs:
    every_B: Any  # 0: not a Dynasor row
    streak_B: Any


@struct.dataclass
class DynasorState:
    end_B: Any
    next_B: Any
    streak_B: Any
    last_BA: Any


@dataclasses.dataclass(frozen=True)
class DynasorExit(_ProbeExit):
    answer_tokens: int = 8  # the probe's answer length (static: the carry holds the last answer)

    @staticmethod
    def used_by(budget) -> bool:
        return budget.dynasor_streak is not None

    @staticmethod
    def validate(budget) -> None:
        if budget.dynasor_streak is not None and budget.dynasor_streak < 1:
            raise ConfigError(f"Budget.dynasor_streak must be >= 1, got {budget.dynasor_streak}")

    def pack(self, budgets: Sequence[Any]) -> DynasorKnobs:
        return DynasorKnobs(
            every_B=column(budgets, lambda b: b.probe_every if b.dynasor_streak is not None else 0, 0),
            streak_B=column(budgets, lambda b: b.dynasor_streak, codes.NO_LIMIT))

    def init(self, knobs: DynasorKnobs, batch: int) -> DynasorState:
        return DynasorState(end_B=jnp.zeros((batch,), bool), next_B=knobs.every_B,
                            streak_B=jnp.zeros((batch,), jnp.int32), last_BA=jnp.full((batch, self.answer_tokens), -1, jnp.int32))

    def probe(self, view: RowView, knobs: DynasorKnobs, state: DynasorState):
        return self._due(view, knobs.every_B, state.next_B)

    def on_probe(self, view: RowView, knobs: DynasorKnobs, state: DynasorState, probe, asked_B) -> DynasorState:
        same_B = jnp.all(probe.tokens_BA == state.last_BA, axis=1)
        streak_B = jnp.where(same_B, state.streak_B + 1, 1)
        return DynasorState(end_B=asked_B & (streak_B >= knobs.streak_B),
                            next_B=jnp.where(asked_B, view.think_B + knobs.every_B, state.next_B),
                            streak_B=jnp.where(asked_B, streak_B, state.streak_B),
                            last_BA=jnp.where(asked_B[:, None], probe.tokens_BA, state.last_BA))


__all__ = ["DeerExit", "DynasorExit", "EatExit"]
