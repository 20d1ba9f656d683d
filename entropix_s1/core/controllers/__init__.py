"""Test-time control methods, one small class each (see `base` for the protocol).

Order matters: `force` requests are claimed in list order (the cap before the graceful cap before
a pause), and `on_delimiter` refines the decision in list order (s1's, then the adaptive mode's).
"""

from __future__ import annotations

from entropix_s1.core.controllers.adaptive import AdaptiveExtend, GracefulCap
from entropix_s1.core.controllers.base import Controller, Extension, RowView, Suppression, column
from entropix_s1.core.controllers.pause import EntropixPause
from entropix_s1.core.controllers.s1 import AnswerCap, Prefill, S1Extend, ThinkingCap

#: Controllers whose knobs are Budget fields (each validates its own fields).
BUDGET_CONTROLLERS: tuple[type[Controller], ...] = (Prefill, ThinkingCap, GracefulCap, S1Extend, AdaptiveExtend, AnswerCap)


def budget_controllers(*, no_string: bool = False, sampler_controllers: tuple[Controller, ...] = ()) -> tuple[Controller, ...]:
    """The loop's controllers in priority order; the sampler's (the entropix pause) come after
    the caps, so a cap always wins over a pause."""
    return (Prefill(), ThinkingCap(), GracefulCap(), *sampler_controllers, S1Extend(no_string=no_string),
            AdaptiveExtend(), AnswerCap())


__all__ = ["AdaptiveExtend", "AnswerCap", "BUDGET_CONTROLLERS", "Controller", "EntropixPause", "Extension",
           "GracefulCap", "Prefill", "RowView", "S1Extend", "Suppression", "ThinkingCap", "budget_controllers", "column"]
