"""Test-time control methods, one small class each (see `base` for the protocol).

Order matters: `force` requests are claimed in list order (the prefill, then NoThinking's finished
thought, the cap, the graceful cap, a probe's early exit, AlphaOne, then a pause), and
`on_delimiter` refines the decision in list order (s1's, then the adaptive mode's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from entropix_s1.core.controllers.adaptive import AdaptiveExtend
from entropix_s1.core.controllers.alphaone import AlphaOneEnd, AlphaOneWait
from entropix_s1.core.controllers.base import Controller, Extension, RowView, Suppression, column
from entropix_s1.core.controllers.early_exit import DeerExit, DynasorExit, EatExit
from entropix_s1.core.controllers.graceful import GracefulCap
from entropix_s1.core.controllers.nowait import NoThinking, NoWait
from entropix_s1.core.controllers.pause import EntropixPause
from entropix_s1.core.controllers.s1 import AnswerCap, Prefill, S1Extend, ThinkingCap

#: Controllers whose knobs are Budget fields (each validates its own fields).
BUDGET_CONTROLLERS: tuple[type[Controller], ...] = (Prefill, NoThinking, ThinkingCap, GracefulCap, DeerExit, EatExit,
                                                    DynasorExit, AlphaOneEnd, AlphaOneWait, S1Extend, AdaptiveExtend,
                                                    AnswerCap, NoWait)


def budget_controllers(budgets: Sequence[Any] = (), *, no_string: bool = False,
                       sampler_controllers: tuple[Controller, ...] = (), probe_tokens: int = 0) -> tuple[Controller, ...]:
    """The loop's controllers in priority order, only those some row's budget uses (`used_by`);
    the sampler's (the entropix pause) come after the caps and the methods' forced ends, so those
    always win over a pause. `probe_tokens`: the answer length of the batch's probes (Dynasor keeps
    the last answer in its carry)."""
    every = (Prefill(), NoThinking(), ThinkingCap(), GracefulCap(), DeerExit(), EatExit(),
             DynasorExit(answer_tokens=probe_tokens), AlphaOneEnd(), AlphaOneWait(), *sampler_controllers,
             S1Extend(no_string=no_string), AdaptiveExtend(), AnswerCap(), NoWait())
    rows = [b for b in budgets if b is not None]
    return tuple(c for c in every if c in sampler_controllers or any(c.used_by(b) for b in rows))


__all__ = ["AdaptiveExtend", "AlphaOneEnd", "AlphaOneWait", "AnswerCap", "BUDGET_CONTROLLERS", "Controller", "DeerExit",
           "DynasorExit", "EatExit", "EntropixPause", "Extension", "GracefulCap", "NoThinking", "NoWait", "Prefill",
           "RowView", "S1Extend", "Suppression", "ThinkingCap", "budget_controllers", "column"]
