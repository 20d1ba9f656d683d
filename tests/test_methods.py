"""The test-time methods of docs/methods.md on the scripted bigram model: each rule fires exactly
where its paper says, per row, in a batch that mixes every method with plain rows; a probe leaves
the row's cache, position and counts as they were."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scripted import scripted_model

from entropix_s1.core import codes
from entropix_s1.core import decode as D
from entropix_s1.core.budget import Budget
from entropix_s1.core.controllers.alphaone import _SALT
from entropix_s1.errors import ConfigError

VOCAB = ["<pad>", "<eos>", "Q", "a", "b", "c", "</think>", "Wait", "\nFinal Answer:", "X", "Y", "<think>", "\n\n", ".",
         "Okay.", "Hmm", "\n"]
# plain thinking: <think> a b \n\n Wait a b \n\n Wait ...; without reflection: ... \n\n c . a b \n\n c . a ...
SCRIPT = {"Q": {"a": 5}, "<think>": {"a": 5}, "a": {"b": 5}, "b": {"\n\n": 5}, "\n\n": {"Wait": 5, "c": 4.5},
          "Wait": {"a": 5}, "Hmm": {"a": 5}, "c": {".": 5}, ".": {"a": 5, "</think>": 3}, "</think>": {"X": 5},
          "\nFinal Answer:": {"X": 5, "Y": 3}, "X": {"<eos>": 5}, "Y": {"<eos>": 5}, "Okay.": {"</think>": 5}}
FMT = dict(think_start="<think>", think_end=("</think>",), nothinking_text="Okay.")
MAX_NEW = 48


@pytest.fixture(scope="module")
def m():
    return scripted_model(VOCAB, SCRIPT)


def words(m, result) -> list[str]:
    return [m.tokenizer.vocab[t] for t in result.token_ids]


def forced(result) -> list[str | None]:
    return [t.forced for t in result.trace]


def budget(**kw) -> Budget:
    return Budget(**FMT, **{"max_thinking_tokens": 30, **kw})


BUDGETS = {
    "none": None,
    "plain": budget(),
    "nowait": budget(no_reflection=True),
    "nothinking": budget(no_thinking=True),
    "alphaone": budget(alpha=1.0, alpha_base_tokens=16, alpha_wait_prob=1.0),
    "deer": budget(deer_threshold=0.9),
    "deer_never": budget(deer_threshold=0.95),
    "eat": budget(eat_threshold=0.01, probe_every=4, eat_min_probes=3),
    "dynasor": budget(dynasor_streak=2, probe_every=5),
    "graceful": budget(soft_max_thinking_tokens=9, max_thinking_tokens=20, confident_entropy=0.7),
    "graceful_cap": budget(soft_max_thinking_tokens=9, max_thinking_tokens=20, confident_entropy=0.5),
}


@pytest.fixture(scope="module")
def batch(m):
    names = list(BUDGETS)
    results = m.generate(["Q"] * len(names), raw=True, max_new_tokens=MAX_NEW, budget=[BUDGETS[n] for n in names])
    return dict(zip(names, results))


@pytest.fixture(scope="module")
def solo(m):
    """Each row alone, with the prompt id it has in the batch (it keys AlphaOne's draws)."""
    return {n: m.generate(["Q"], raw=True, max_new_tokens=MAX_NEW, budget=b, prompt_ids=[i])[0]
            for i, (n, b) in enumerate(BUDGETS.items())}


def test_every_row_equals_its_solo_run(batch, solo):
    for name in BUDGETS:
        assert batch[name].token_ids == solo[name].token_ids, name
        assert forced(batch[name]) == forced(solo[name]), name
        assert [p.step for p in batch[name].probes] == [p.step for p in solo[name].probes], name


def test_plain_rows_think_as_without_any_method(m, batch):
    assert words(m, batch["plain"])[:9] == ["<think>", "a", "b", "\n\n", "Wait", "a", "b", "\n\n", "Wait"]
    assert batch["plain"].thinking_tokens == 30 and batch["plain"].probes == ()
    assert batch["none"].thinking_tokens == 0 and words(m, batch["none"])[:3] == ["a", "b", "\n\n"]


def test_nowait_suppresses_reflection_tokens_only_while_thinking(m, batch):
    w = words(m, batch["nowait"])
    think = w[: w.index("</think>")]
    assert "Wait" not in think and "Hmm" not in think
    # the rule fires exactly where the plain row says "Wait": the second choice "c" comes instead
    assert think[:10] == ["<think>", "a", "b", "\n\n", "c", ".", "a", "b", "\n\n", "c"]
    assert batch["nowait"].waits_inserted == 0


def test_nothinking_forces_the_finished_thought_and_thinks_zero_tokens(m, batch):
    r = batch["nothinking"]
    assert words(m, r) == ["<think>", "Okay.", "</think>", "X", "<eos>"]
    assert forced(r)[:3] == ["prefill", "nothinking", "nothinking"] and r.thinking_tokens == 0


def test_a_model_without_thinking_delimiters_ends_its_thought_with_the_answer_prefix(m):
    """Qwen2.5-Coder's format: the "delimiter" is the end-of-turn token, so NoThinking and
    AlphaOne force the answer prefix in its place; the delimiter itself would end the reply."""
    fmt = dict(think_end=("<eos>",), cap_with_delimiter=False, nothinking_text="Okay.", max_thinking_tokens=30)
    nothinking, alphaone = m.generate(["Q"] * 2, raw=True, max_new_tokens=MAX_NEW, budget=[
        Budget(**fmt, no_thinking=True), Budget(**fmt, alpha=1.0, alpha_base_tokens=16, alpha_wait_prob=1.0)])
    assert words(m, nothinking) == ["Okay.", "\nFinal Answer:", "X", "<eos>"]
    assert forced(nothinking)[:2] == ["nothinking", "nothinking"] and nothinking.thinking_tokens == 0
    w, f = words(m, alphaone), forced(alphaone)
    end = f.index("end:alpha")
    assert w[end - 1] == "\n\n" and w[end:] == ["\nFinal Answer:", "X", "<eos>"] and end >= 16


def test_alphaone_waits_after_breaks_with_its_scheduled_probability_then_ends_at_a_reflection(m, batch):
    r, moment, seed_key = batch["alphaone"], 16, jax.random.key(0)
    w, f = words(m, r), forced(r)
    end = f.index("end:alpha")
    prompt_id = list(BUDGETS).index("alphaone")
    for j in range(1, end):  # one token per step, the prefill is one token: t = n_out = j, think = j - 1
        if w[j - 1] != "\n\n":
            assert f[j] is None, j
            continue
        key = jax.random.fold_in(jax.random.fold_in(seed_key, j), prompt_id)
        u = float(jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key, _SALT), j)))
        p = 1.0 * (1 - (j - 1) / moment)
        assert (f[j] == "wait:alpha") == (u < p), (j, u, p)
    assert "wait:alpha" in f[:end]
    # after the moment, the first proposed reflection token ("Wait" after a break) became the delimiter
    assert end - 1 >= moment and w[end - 1] == "\n\n" and w[end] == "</think>"
    assert all(not (w[j - 1] == "\n\n" and j - 1 >= moment) for j in range(1, end))
    assert r.thinking_tokens == end - 1 and r.waits_inserted == f.count("wait:alpha")


def test_alphaone_line_breaks_for_models_that_write_one_step_per_line():
    line_model = scripted_model(VOCAB, {**SCRIPT, "b": {"\n": 5}, "\n": {"Wait": 5, "c": 4.5}})
    kw = dict(alpha=1.0, alpha_base_tokens=16, alpha_wait_prob=1.0)
    by_breaks = {breaks: line_model.generate(["Q"], raw=True, max_new_tokens=MAX_NEW, budget=budget(**kw, alpha_breaks=breaks))[0]
                 for breaks in ("paragraph", "line")}
    assert "wait:alpha" not in forced(by_breaks["paragraph"])  # no "\n\n" in this model's thought
    w, f = words(line_model, by_breaks["line"]), forced(by_breaks["line"])
    waits = [j for j, x in enumerate(f) if x == "wait:alpha"]
    assert waits and all(w[j - 1] == "\n" for j in waits)


def test_deer_ends_at_the_first_confident_reflection_point(m, batch):
    r = batch["deer"]
    assert words(m, r) == ["<think>", "a", "b", "\n\n", "</think>", "\nFinal Answer:", "X", "<eos>"]
    assert forced(r)[4:6] == ["end:probe", "end:probe"] and r.thinking_tokens == 3
    (p,) = r.probes
    assert p.step == 4 and p.answer == "X<eos>" and p.text == "</think>\nFinal Answer:"
    assert 0.9 <= p.confidence < 0.95


def test_deer_below_threshold_probes_at_each_reflection_and_changes_nothing(m, batch):
    r, plain = batch["deer_never"], batch["plain"]
    assert r.token_ids == plain.token_ids and r.thinking_tokens == plain.thinking_tokens
    w = words(m, plain)
    assert [p.step for p in r.probes] == [j for j, t in enumerate(w) if t == "Wait"]


def test_eat_ends_when_the_entropy_variance_settles(m, batch):
    r = batch["eat"]  # the bigram's entropy after the delimiter never changes: variance 0 at once
    assert [p.step for p in r.probes] == [5, 9, 13]  # think = 4, 8, 12 (+ the prefill token)
    assert r.thinking_tokens == 12 and forced(r)[13] == "end:probe"
    assert len({round(p.entropy, 6) for p in r.probes}) == 1 and r.probes[0].entropy > 0.1


def test_dynasor_ends_after_consecutive_identical_answers(m, batch):
    r = batch["dynasor"]
    assert [p.step for p in r.probes] == [6, 11] and r.probes[0].answer == r.probes[1].answer == "X<eos>"
    assert r.thinking_tokens == 10 and forced(r)[11] == "end:probe"


def test_graceful_cap_ends_at_the_first_confident_sentence_end_past_the_soft_cap(m, batch):
    r = batch["graceful"]
    w = words(m, r)
    end = forced(r).index("end:confident")
    # past soft=9 thinking tokens, the first step after a sentence end ("\n\n") whose entropy < 0.7;
    # the low-entropy steps after "a" or "b" are no sentence end, so they do not end it
    assert w[end - 1] == "\n\n" and end - 1 >= 9
    assert not any(w[j - 1] == "\n\n" for j in range(10, end))
    assert r.thinking_tokens == end - 1


def test_graceful_cap_without_a_confident_end_forces_the_hard_cap(batch):
    r = batch["graceful_cap"]  # entropy after "\n\n" is 0.47 nats < 0.5? no: the choice Wait/c is 0.66
    assert "end:confident" not in forced(r) and r.thinking_tokens == 20 and "cap" in forced(r)


def test_adaptive_soft_cap_is_the_same_controller_without_the_sentence_condition(m):
    r = m.generate(["Q"], raw=True, max_new_tokens=MAX_NEW, budget=budget(
        mode="adaptive", soft_max_thinking_tokens=9, max_thinking_tokens=20, confident_entropy=0.7))[0]
    end = forced(r).index("end:confident")
    assert end == 10  # the first step past the soft cap with entropy < 0.7, no boundary needed


def test_a_probe_leaves_cache_position_and_counts_exactly_as_before(m):
    """Run the loop the same number of steps with probing rows (DEER below its threshold, Dynasor
    that never stops) and without: every array of the state but the probe log is identical."""
    probing = [budget(deer_threshold=0.95), budget(dynasor_streak=99, probe_every=3), None]
    plain = [budget(), budget(), None]
    states = []
    for budgets in (probing, plain):
        plan = m.prepare(["Q"] * 3, raw=True, max_new_tokens=MAX_NEW, budget=budgets)
        st = D.init_state(plan.spec, m.params, plan.inputs)
        states.append(D.run_chunk(plan.spec, m.params, plan.inputs, st, jnp.asarray(20)))
    with_probe, without = states
    assert int(with_probe.probes.n_B[0]) >= 2 and int(with_probe.probes.n_B[1]) >= 5
    for field in ("out_BN", "n_out_B", "think_B", "phase_B", "t_B", "waits_B", "forced_BN"):
        np.testing.assert_array_equal(getattr(with_probe, field), getattr(without, field), err_msg=field)
    for a, b in zip(jax.tree.leaves(with_probe.cache), jax.tree.leaves(without.cache)):
        np.testing.assert_array_equal(a, b)


def test_probes_appear_in_the_json_only_for_probing_rows(batch):
    assert "probes" not in batch["plain"].to_json()
    d = batch["dynasor"].to_json()
    assert d["probes"][0] == dict(step=6, text="</think>\nFinal Answer:", answer="X<eos>", answer_ids=[9, 1],
                                  confidence=pytest.approx(batch["dynasor"].probes[0].confidence),
                                  entropy=pytest.approx(batch["dynasor"].probes[0].entropy))


@pytest.mark.parametrize("kw, field", [
    (dict(alpha=0.0, max_thinking_tokens=10), "alpha"), (dict(alpha=-1.0, max_thinking_tokens=10), "alpha"),
    (dict(alpha=1.4), "alpha"), (dict(alpha=1.0, alpha_base_tokens=8, alpha_wait_prob=1.5), "alpha_wait_prob"),
    (dict(deer_threshold=0.0), "deer_threshold"), (dict(deer_threshold=1.01), "deer_threshold"),
    (dict(eat_threshold=0.0), "eat_threshold"), (dict(eat_threshold=2.0), "eat_threshold"),
    (dict(eat_threshold=0.1, eat_ema=0.0), "eat_ema"), (dict(probe_every=0), "probe_every"),
    (dict(dynasor_streak=0), "dynasor_streak"), (dict(probe_tokens=0), "probe_tokens"),
    (dict(alpha=1.0, alpha_base_tokens=8, alpha_breaks="page"), "alpha_breaks")])
def test_bad_parameters_name_their_budget_field(kw, field):
    with pytest.raises(ConfigError, match=f"Budget.{field}"):
        Budget(**kw)


def test_each_bare_family_is_a_method_with_the_papers_defaults():
    from entropix_s1.research.methods import parse_method

    b = {n: parse_method(n).budget for n in ("alphaone", "nowait", "nothinking", "deer", "eat", "dynasor", "graceful")}
    assert (b["alphaone"].alpha, b["alphaone"].alpha_base_tokens) == (1.4, 256)
    assert b["nowait"].no_reflection and b["nothinking"].no_thinking
    assert b["deer"].deer_threshold == 0.95
    assert (b["eat"].eat_threshold, b["eat"].eat_ema, b["eat"].probe_every) == (1e-4, 0.2, 32)
    assert (b["dynasor"].dynasor_streak, b["dynasor"].probe_every) == (3, 64)
    assert (b["graceful"].soft_max_thinking_tokens, b["graceful"].max_thinking_tokens) == (256, 320)
    m = parse_method("entropix+deer:threshold=0.9,max=512")
    assert type(m.sampler).__name__ == "EntropixConfig" and m.budget.deer_threshold == 0.9
    assert m.budget.max_thinking_tokens == 512 and m.name == "entropix+deer:max=512,threshold=0.9"
    assert parse_method(m.name).budget == m.budget and m.family == "entropix+deer:threshold=0.9"


def test_a_method_key_of_another_family_is_refused():
    from entropix_s1.research.methods import parse_spec

    with pytest.raises(ConfigError, match="unknown key 'streak'"):
        parse_spec("deer:streak=3")


def test_methods_run_through_the_spec_grammar_on_the_scripted_model(m):
    from entropix_s1.research.methods import parse_method, with_format

    fmt = Budget(**FMT)
    for spec in ("nowait:max=20", "deer:threshold=0.9,max=20", "dynasor:every=5,streak=2,max=20"):
        method = parse_method(spec)
        r = m.generate(["Q"], raw=True, max_new_tokens=MAX_NEW, budget=with_format(method.budget, fmt),
                       sampler=method.sampler)[0]
        assert r.thinking_tokens <= 20, spec
    assert with_format(parse_method("nothinking").budget, fmt).no_thinking


def test_the_trace_file_records_each_probe_on_the_token_it_came_before(m, batch, tmp_path):
    import json

    from entropix_s1.viz.trace import read_trace, write_trace

    r = batch["dynasor"]
    path = write_trace([r, batch["plain"]], tmp_path / "t.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    rows = {line["row"] for line in lines}
    probed = [(line["row"], line["step"], line["probe"]) for line in lines if "probe" in line]
    assert [(s, p["answer"]) for _, s, p in probed] == [(p.step, p.answer) for p in r.probes]
    assert {row for row, _, _ in probed} == {r.trace[0].row} and len(rows) == 2
    assert len(read_trace(path)) == len(r.trace) + len(batch["plain"].trace)  # readers skip the probe key
