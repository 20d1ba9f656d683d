"""The controller protocol: each method owns its knobs' validation and packing, and a new method is
one class plugged into the loop's spec (no change to the loop)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from scripted import scripted_model

from entropix_s1.core import codes
from entropix_s1.core import decode as D
from entropix_s1.core.budget import Budget
from entropix_s1.core.controllers import (AdaptiveExtend, AnswerCap, Controller, GracefulCap, RowView, S1Extend,
                                          ThinkingCap)
from entropix_s1.errors import ConfigError

VOCAB = ["<pad>", "<eos>", "Q", "a", "b", "</think>", "Wait", "\nFinal Answer:", "X", "<think>"]
SCRIPT = {"Q": {"a": 5}, "a": {"b": 5}, "b": {"a": 5, "</think>": 4.9}, "</think>": {"X": 5}, "X": {"<eos>": 5},
          "Wait": {"a": 5}, "\nFinal Answer:": {"X": 5}, "<think>": {"a": 5}}
THINK = dict(think_start="<think>", think_end=("</think>",))


@pytest.fixture(scope="module")
def m():
    return scripted_model(VOCAB, SCRIPT)


def test_each_controller_packs_its_own_knobs_per_row():
    rows = [Budget(max_thinking_tokens=5, num_waits=2, min_thinking_tokens=1, max_answer_tokens=3),
            None, Budget(mode="adaptive", soft_max_thinking_tokens=4, max_thinking_tokens=9, window=3)]
    assert np.asarray(ThinkingCap().pack(rows)).tolist() == [5, codes.NO_LIMIT, 9]
    assert np.asarray(AnswerCap().pack(rows)).tolist() == [3, codes.NO_LIMIT, codes.NO_LIMIT]
    ext = S1Extend().pack(rows)
    assert np.asarray(ext.num_waits_B).tolist() == [2, 0, 0] and np.asarray(ext.min_think_B).tolist() == [1, 0, 0]
    unc = AdaptiveExtend().pack(rows)
    assert np.asarray(unc.on_B).tolist() == [False, False, True] and np.asarray(unc.window_B).tolist() == [8, 1, 3]
    soft = GracefulCap().pack(rows)  # the soft cap exists only in adaptive mode
    assert np.asarray(soft.soft_think_B).tolist() == [codes.NO_LIMIT, codes.NO_LIMIT, 4]


@pytest.mark.parametrize("kw, field", [(dict(max_thinking_tokens=-1), "max_thinking_tokens"),
                                       (dict(num_waits=-2), "num_waits"), (dict(max_answer_tokens=0), "max_answer_tokens"),
                                       (dict(mode="sometimes"), "mode"), (dict(window=0), "window"),
                                       (dict(max_thinking_tokens=4, soft_max_thinking_tokens=8), "soft_max_thinking_tokens")])
def test_controllers_validate_the_budget_fields_they_own(kw, field):
    with pytest.raises(ConfigError, match=f"Budget.{field}"):
        Budget(**kw)


@dataclasses.dataclass(frozen=True)
class StopAfterThinking(Controller):
    """A toy method: end the row as soon as it has thought `n` tokens (stop code max_new_tokens)."""

    n: int = 3
    stop_code = codes.STOP_MAX_NEW

    def stop(self, view: RowView, knobs):
        return view.active_B & (view.think_B >= self.n)


def test_a_new_method_is_one_class_in_the_spec(m):
    plan = m.prepare(["Q", "Q"], raw=True, max_new_tokens=24, budget=Budget(**THINK))
    spec = dataclasses.replace(plan.spec, controllers=plan.spec.controllers + (StopAfterThinking(n=3),))
    inputs = plan.inputs.replace(knobs=plan.inputs.knobs + ((),))
    st = D.generate_arrays(spec, m.params, inputs)
    base = D.generate_arrays(plan.spec, m.params, plan.inputs)
    assert np.asarray(st.think_B).tolist() == [3, 3] and np.asarray(st.stop_B).tolist() == [codes.STOP_MAX_NEW] * 2
    assert int(jnp.max(base.think_B)) > 3  # without it the rows think on
    assert np.asarray(st.out_BN)[0, :4].tolist() == np.asarray(base.out_BN)[0, :4].tolist()  # same tokens until the stop


def test_the_loop_holds_only_the_controllers_its_rows_use():
    """`budget_controllers(budgets)` keeps s1's controllers for any thinking row and each method's
    only when some row's budget turns it on, in the fixed priority order; no budget, none."""
    from entropix_s1.core.controllers import budget_controllers

    def names(budgets):
        return [type(c).__name__ for c in budget_controllers(budgets)]

    s1 = ["Prefill", "ThinkingCap", "S1Extend", "AdaptiveExtend", "AnswerCap"]
    assert names([None, None]) == []
    assert names([Budget(max_thinking_tokens=64), None]) == s1
    mixed = [Budget(max_thinking_tokens=64, no_reflection=True), Budget(deer_threshold=0.9), None,
             Budget(max_thinking_tokens=64, alpha=1.4)]
    assert names(mixed) == ["Prefill", "ThinkingCap", "DeerExit", "AlphaOneEnd", "AlphaOneWait", "S1Extend",
                            "AdaptiveExtend", "AnswerCap", "NoWait"]
    assert "GracefulCap" in names([Budget(max_thinking_tokens=192, soft_max_thinking_tokens=128)])
