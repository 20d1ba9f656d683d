"""The controller protocol: a test-time method that acts on a row's thinking, per row, in the loop.

A controller is a small frozen (hashable, static) class. Its per-row numbers ("knobs") come from
the rows' `Budget`s and are packed into [B] arrays by the controller itself (`pack`), next to the
validation of the same fields (`validate`) and the step logic that reads them. The loop calls the
hooks below in a fixed pipeline (propose -> force -> append -> delimiter -> stop -> forward); a
hook the controller does not override does nothing. Rows without a budget have no thinking phase,
and every hook here gates on it.

Hooks, in loop order:
    suppress(view, knobs, logits_BV) -> Suppression | None before sampling: forbid tokens
    probe(view, knobs, state)      -> want_B | None         after the proposal (`view.proposal_B`):
                                                            ask for a probe of the row now
    on_probe(view, knobs, state, probe, asked_B) -> state   read the probe (`core.probe.Probe`) of
                                                            the rows it asked for, before forcing
    force(view, knobs, state, regime_B) -> start_B | None  start `seq` now (claimed in list order)
    on_delimiter(view, knobs, ext) -> Extension            at a sampled end-of-thinking delimiter
    stop(view, knobs)              -> hit_B | None          end the row with `stop_code`
    update(state, view, started_B) -> state                 its own carry, after forcing
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from entropix_s1.core import codes
from entropix_s1.core.metrics import LogitMetrics
from entropix_s1.core.tables import TokenTables

Array = jax.Array

__all__ = ["Controller", "Extension", "RowView", "Suppression", "column"]


@dataclasses.dataclass(frozen=True)
class RowView:
    """What a controller may read at one point of a step; the loop builds a fresh one per stage."""

    t_B: Array  # the row's own step (0 at its first token; a step may emit a look-ahead path)
    active_B: Array
    phase_B: Array  # codes.THINKING / codes.ANSWER
    think_B: Array  # thinking tokens so far (forced prefill excluded)
    answer_B: Array
    n_out_B: Array
    waits_B: Array
    pauses_B: Array
    q_seq_B: Array  # running forced sequence, codes.NO_SEQ if none
    out_BN: Array
    stats_BNS: Array  # codes.STAT_NAMES per generated token
    metrics: LogitMetrics  # of the distribution this step samples from
    tables: TokenTables
    proposal_B: Array | None = None  # the token the sampler proposes (from the probe stage on)
    rng_B: Array | None = None  # the row's key at this step (seed, prompt id, row step)

    @property
    def thinking_B(self) -> Array:
        return self.phase_B == codes.THINKING

    @property
    def queue_idle_B(self) -> Array:
        return self.q_seq_B < 0


@dataclasses.dataclass(frozen=True)
class Suppression:
    """Tokens a row may not sample this step, and whether its top choice was one of them (the s1
    no-string ablation counts that as a wait: the model tried to end its thinking)."""

    mask_BV: Array
    counts_as_wait_B: Array


@dataclasses.dataclass(frozen=True)
class Extension:
    """The decision at a sampled end-of-thinking delimiter, refined controller by controller.

    delim_len_B: tokens of the matched delimiter; think_B / n_out_B: counts including it.
    extend_B: drop the delimiter and emit the wait text `seq_B` (its reason) instead.
    """

    delim_len_B: Array
    think_B: Array
    n_out_B: Array
    extend_B: Array
    seq_B: Array
    waits_left_B: Array
    below_min_B: Array

    def replace(self, **kw: Any) -> "Extension":
        return dataclasses.replace(self, **kw)


@dataclasses.dataclass(frozen=True)
class Controller:
    """Base of every controller; see the module docstring for the hooks."""

    #: forced sequence (codes.SEQ_*) this controller starts from `force`
    seq: ClassVar[int | None] = None
    #: starting `seq` ends the thinking phase (the cap tail)
    ends_thinking: ClassVar[bool] = False
    #: may start while an interruptible sequence (codes.SEQ_INTERRUPTIBLE) runs; else only when idle
    interrupts: ClassVar[bool] = False
    #: DecodeState counter incremented per start (e.g. "pauses_B"), or None
    counter: ClassVar[str | None] = None
    #: stop code of `stop`
    stop_code: ClassVar[int] = codes.STOP_RUNNING
    #: asks for probes (`probe`): the loop compiles the probe only when a row's budget has one
    probes: ClassVar[bool] = False

    # -- host side --
    @staticmethod
    def used_by(budget: Any) -> bool:
        """Rows with this Budget need the controller. The loop holds only the controllers some row
        of the run uses, so a batch of plain caps compiles none of the other methods' logic."""
        return True

    @staticmethod
    def validate(budget: Any) -> None:
        """Raise ConfigError naming the Budget field when this method's knobs cannot work."""

    def pack(self, budgets: Sequence[Any]) -> Any:
        """Per-row knob arrays from each row's Budget (None: the row has no budget)."""
        return ()

    # -- in the loop --
    def init(self, knobs: Any, batch: int) -> Any:
        return ()

    def suppress(self, view: RowView, knobs: Any, logits_BV: Array) -> Suppression | None:
        return None

    def force(self, view: RowView, knobs: Any, state: Any, regime_B: Array) -> Array | None:
        return None

    def probe(self, view: RowView, knobs: Any, state: Any) -> Array | None:
        return None

    def on_probe(self, view: RowView, knobs: Any, state: Any, probe: Any, asked_B: Array) -> Any:
        return state

    def on_delimiter(self, view: RowView, knobs: Any, ext: Extension) -> Extension:
        return ext

    def stop(self, view: RowView, knobs: Any) -> Array | None:
        return None

    def update(self, state: Any, view: RowView, started_B: Array) -> Any:
        return state


def column(budgets: Sequence[Any], get: Callable[[Any], Any], default: Any, dtype: Any = jnp.int32) -> Array:
    """[B] array of `get(budget)` per row; `default` where a row has no budget or `get` gives None."""
    return jnp.asarray([default if b is None or get(b) is None else get(b) for b in budgets], dtype)
