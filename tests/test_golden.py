"""Golden generations: the tokens of a fixed set of runs, recorded before the layering refactor.

Every case runs the real SmolLM2-135M-Instruct (or the thinking SmolLM2) and compares token ids,
per-token regimes and forced reasons, and the budget counters with `tests/golden/generations.json`.
A refactor must leave every case token-identical. To record anew after an intended change of
behaviour: `ENTROPIX_S1_RECORD_GOLDEN=1 pytest tests/test_golden.py` (and say why in the commit).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parent / "golden" / "generations.json"
PROMPTS = ["What is 2+3? Think it through.", "Name a prime number above 10.", "Tom has 3 apples and buys 4 more. How many?"]


def _cases(m, think):
    from entropix_s1 import Budget, EntropixConfig, Sample

    calibrated = EntropixConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in
                                   json.loads((Path(__file__).parents[1] / "docs" / "smollm2_calibrated.json").read_text()).items()})
    pausing = dataclasses.replace(EntropixConfig(pause_cooldown=4).with_thresholds(
        low_ent=0.05, med_ent=1.0, high_ent=1.5, low_vent=20.0, high_vent=30.0), pause_text=" Wait,")
    return {
        "greedy": lambda: m.generate(PROMPTS, max_new_tokens=32),
        "s1_cap_waits_min": lambda: m.generate(PROMPTS, budget=m.budget(max_thinking_tokens=24, num_waits=2, min_thinking_tokens=8),
                                               max_new_tokens=64),
        "per_row_budgets": lambda: m.generate(PROMPTS, budget=[m.budget(max_thinking_tokens=12), m.budget(num_waits=2, max_thinking_tokens=40), None],
                                              max_new_tokens=64),
        "adaptive": lambda: m.generate(PROMPTS, budget=m.budget(mode="adaptive", num_waits=2, uncertain_entropy=0.2, max_thinking_tokens=48,
                                                                soft_max_thinking_tokens=20, confident_entropy=0.9), max_new_tokens=80),
        "adaptive_window_min": lambda: m.generate(PROMPTS, budget=m.budget(mode="adaptive", num_waits=1, uncertain_entropy=9.0,
                                                                           uncertain_window_entropy=0.5, window=4, min_thinking_tokens=30,
                                                                           confident_ends_below_min=True, max_thinking_tokens=60),
                                                  max_new_tokens=90),
        "no_string_ablation": lambda: m.generate(PROMPTS, budget=m.budget(num_waits=1, wait_text="", max_thinking_tokens=40), max_new_tokens=64),
        "wait_text_hmm_answer_cap": lambda: m.generate(PROMPTS, budget=m.budget(num_waits=1, wait_text="Hmm", max_thinking_tokens=20,
                                                                                max_answer_tokens=6), max_new_tokens=64),
        "prefill": lambda: m.generate(PROMPTS[:2], budget=Budget(think_start="Let me think.", think_end=("<|im_end|>",), cap_with_delimiter=False,
                                                                 max_thinking_tokens=16), prefill="Sure.", max_new_tokens=40),
        "seeded_sampling": lambda: m.generate(PROMPTS, sampler=Sample(temperature=0.8, top_p=0.9, top_k=40), max_new_tokens=32, seed=3),
        "entropix_seed": lambda: m.generate(PROMPTS, sampler="entropix", budget=m.budget(max_thinking_tokens=24), max_new_tokens=40, seed=1),
        "entropix_calibrated_pauses": lambda: m.generate(PROMPTS, sampler=calibrated, budget=m.budget(max_thinking_tokens=30, num_waits=1),
                                                         max_new_tokens=48, seed=2),
        "entropix_pauses": lambda: m.generate(PROMPTS, sampler=pausing, budget=m.budget(max_thinking_tokens=40), max_new_tokens=56, seed=4),
        "thinking_model": lambda: think.generate(PROMPTS, budget=think.budget(max_thinking_tokens=40, num_waits=1), max_new_tokens=72),
        "thinking_model_entropix": lambda: think.generate(PROMPTS[:2], sampler="entropix", budget=think.budget(max_thinking_tokens=32),
                                                          max_new_tokens=56, seed=5),
    }


def _record(results) -> list[dict]:
    return [dict(token_ids=list(r.token_ids), regimes=[t.regime for t in r.trace], forced=[t.forced for t in r.trace],
                 thinking_tokens=r.thinking_tokens, answer_tokens=r.answer_tokens, waits=r.waits_inserted,
                 pauses=r.pauses_inserted, stop=r.stop_reason) for r in results]


@pytest.fixture(scope="module")
def outputs(smollm2_dir):
    import entropix_s1

    m = entropix_s1.load(smollm2_dir)
    think = entropix_s1.load("smollm2-135m-think")
    return {name: _record(run()) for name, run in _cases(m, think).items()}


def test_golden_generations_are_token_identical(outputs):
    if os.environ.get("ENTROPIX_S1_RECORD_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(outputs, indent=0) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert set(golden) == set(outputs)
    for name in golden:
        assert outputs[name] == golden[name], f"golden case {name!r} changed"


def test_golden_cases_exercise_every_mechanism():
    """The recorded file covers waits, caps, pauses, branches, prefill and stop reasons."""
    golden = json.loads(GOLDEN.read_text())
    forced = {f for case in golden.values() for row in case for f in row["forced"]}
    regimes = {g for case in golden.values() for row in case for g in row["regimes"]}
    assert {"cap", "wait", "prefill", "wait:uncertain", "end:confident", "pause"} <= forced, forced
    assert {"branch", "forced", "greedy", "sample"} <= regimes, regimes
    assert any(row["waits"] for row in golden["no_string_ablation"])
    assert {row["stop"] for case in golden.values() for row in case} >= {"eos", "answer_budget", "max_new_tokens"}


BEFORE_PATHS = Path(__file__).parent / "golden" / "entropix_before_committed_paths.json"


def test_entropix_cases_changed_only_where_a_branch_path_was_committed():
    """Issue 17 made a branch step commit its winning roll-out (regime "branch_path") instead of
    keeping only its first token. The entropix cases recorded before that must agree with the
    current ones, tokens, regimes and forced reasons, up to the first committed path token; runs
    without one are unchanged; each path follows a branch token, at most branch_depth - 1 long."""
    before, now = json.loads(BEFORE_PATHS.read_text()), json.loads(GOLDEN.read_text())
    unchanged = 0
    for name, rows in before.items():
        for old, new in zip(rows, now[name], strict=True):
            first = next((j for j, r in enumerate(new["regimes"]) if r == "branch_path"), None)
            if first is None:
                assert new == old, name
                unchanged += 1
                continue
            for key in ("token_ids", "regimes", "forced"):
                assert new[key][:first] == old[key][:first], (name, key)
            run = 0
            for j, regime in enumerate(new["regimes"]):
                run = run + 1 if regime == "branch_path" else 0
                assert run <= 3, (name, j)  # default branch_depth 4
                if run == 1:
                    assert new["regimes"][j - 1] == "branch", (name, j)
    assert 0 < unchanged < sum(len(rows) for rows in before.values())  # both kinds are covered
