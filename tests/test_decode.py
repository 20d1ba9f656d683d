"""The jitted loop on a scripted model: budget forcing rules per row, forced-token accounting,
entropix pauses, stopping, compilation count, bad input."""

from __future__ import annotations

import jax
import pytest
from scripted import scripted_model

from entropix_s1.core import decode as D
from entropix_s1.core.budget import Budget
from entropix_s1.core.entropix import EntropixConfig
from entropix_s1.errors import ConfigError, InputError
from entropix_s1.core.sampling import Sample

FILL = [f"f{i}" for i in range(40)]
VOCAB = ["<pad>", "<eos>", "Q", "P", "a", "b", "c", "</think>", "Wait", "Hmm",
         "\nFinal Answer:", "X", "<think>", "U", "STOP"] + FILL
# Q: think "a b", then end thinking with the (single-token) delimiter and answer "X".
SCRIPT = {
    "Q": {"a": 5}, "a": {"b": 5}, "b": {"</think>": 5}, "</think>": {"X": 5}, "X": {"<eos>": 5},
    "Wait": {"a": 5}, "\nFinal Answer:": {"X": 5}, "<think>": {"a": 5},
    # P: "c", then an UNCERTAIN end of thinking (the delimiter wins with p ~ 0.42, H ~ 2 nats).
    "P": {"c": 5}, "c": {"</think>": 2.0, **{f: 0.0 for f in FILL[:10]}},
    # U: flat over 40 fillers (high entropy, low varentropy: entropix PAUSE); fillers and the
    # pause text "Hmm" continue flat.
    **{w: {g: 0.0 for g in FILL} for w in ["U", "Hmm"] + FILL},
}
THINK = dict(think_start="<think>", think_end=("</think>", "</think>"))


@pytest.fixture(scope="module")
def m():
    return scripted_model(VOCAB, SCRIPT)


def toks(r):
    return [VOCAB[t] for t in r.token_ids]


def test_no_budget_is_plain_generation(m):
    (r,) = m.generate("Q", raw=True, max_new_tokens=20)
    assert toks(r) == ["a", "b", "</think>", "X", "<eos>"]
    assert r.stop_reason == "eos" and r.thinking_tokens == 0 and r.answer_tokens == 5
    assert all(t.forced is None and t.regime == "greedy" for t in r.trace)


def test_extend_replaces_delimiter_with_wait(m):
    (r,) = m.generate("Q", raw=True, max_new_tokens=40, budget=Budget(**THINK, num_waits=2))
    assert toks(r) == ["<think>", "a", "b", "Wait", "a", "b", "Wait", "a", "b", "</think>", "X", "<eos>"]
    assert r.waits_inserted == 2 and r.thinking_tokens == 8 and r.answer_tokens == 3
    assert r.thinking_text == "abWaitabWaitab" and r.answer_text == "X<eos>"
    assert [t.forced for t in r.trace][:4] == ["prefill", None, None, "wait"]
    assert [t.phase for t in r.trace].count("thinking") == 9  # prefill + 8 thinking tokens


def test_multi_token_delimiter_is_dropped_whole():
    vocab = ["<pad>", "<eos>", "R", "</", "think", ">", "Wait", "X", "<think>", "c", "\nFinal Answer:"]
    script = {"<think>": {"c": 5}, "c": {"</": 5}, "</": {"think": 5}, "think": {">": 5}, ">": {"X": 5},
              "X": {"<eos>": 5}, "Wait": {"c": 5}}
    m3 = scripted_model(vocab, script)
    assert len(m3.tokenizer.encode("</think>")) == 3
    b = Budget(think_start="<think>", think_end=("</think>",), num_waits=1)
    (r,) = m3.generate("R", raw=True, max_new_tokens=30, budget=b)
    names = [vocab[t] for t in r.token_ids]
    assert names == ["<think>", "c", "Wait", "c", "</", "think", ">", "X", "<eos>"]
    assert r.waits_inserted == 1 and r.thinking_tokens == 3 and r.thinking_text == "cWaitc"
    assert r.answer_text == "X<eos>"


def test_cap_forces_end_and_answer_prefix(m):
    (r,) = m.generate("Q", raw=True, max_new_tokens=40,
                      budget=Budget(**THINK, max_thinking_tokens=4, num_waits=10))
    assert r.thinking_tokens == 4
    assert toks(r)[5:7] == ["</think>", "\nFinal Answer:"]
    assert [t.forced for t in r.trace][5:7] == ["cap", "cap"]
    assert r.answer_text.startswith("\nFinal Answer:X")


def test_min_thinking_replaces_early_end(m):
    (r,) = m.generate("Q", raw=True, max_new_tokens=40, budget=Budget(**THINK, min_thinking_tokens=5))
    assert r.thinking_tokens == 5 and r.waits_inserted == 1  # ends at 2 (< 5: wait), then at 5
    (r,) = m.generate("Q", raw=True, max_new_tokens=40, budget=Budget(**THINK, min_thinking_tokens=6))
    assert r.thinking_tokens == 8 and r.waits_inserted == 2


def test_per_row_budgets_differ_in_one_batch(m):
    budgets = [Budget(**THINK, num_waits=w, max_thinking_tokens=c) for w, c in ((0, None), (1, None), (3, 7), (5, 2))]
    rs = m.generate(["Q"] * 4, raw=True, max_new_tokens=40, budget=budgets)
    for r, b in zip(rs, budgets):
        assert r.waits_inserted <= b.num_waits
        if b.max_thinking_tokens is not None:
            assert r.thinking_tokens <= b.max_thinking_tokens
        alone = m.generate("Q", raw=True, max_new_tokens=40, budget=b)[0]
        assert alone.token_ids == r.token_ids
    assert [r.waits_inserted for r in rs] == [0, 1, 2, 0]
    assert [r.thinking_tokens for r in rs] == [2, 5, 7, 2]


def test_delimiter_never_inside_thinking_while_waits_remain(m):
    (r,) = m.generate("Q", raw=True, max_new_tokens=60, budget=Budget(**THINK, num_waits=6))
    assert "</think>" not in r.thinking_text and r.waits_inserted == 6


def test_empty_wait_text_suppresses_the_delimiter(m):
    (r,) = m.generate("Q", raw=True, max_new_tokens=12, budget=Budget(**THINK, num_waits=1, wait_text=""))
    names = toks(r)
    assert names[:3] == ["<think>", "a", "b"] and names[3] != "</think>"
    assert r.waits_inserted == 1


def test_answer_budget_and_max_new_tokens(m):
    (r,) = m.generate("Q", raw=True, max_new_tokens=40, budget=Budget(**THINK, max_answer_tokens=2))
    assert r.stop_reason == "answer_budget" and r.answer_tokens == 2
    (r,) = m.generate("U", raw=True, max_new_tokens=7)
    assert r.stop_reason == "max_new_tokens" and len(r.token_ids) == 7
    (r,) = m.generate("Q", raw=True, max_new_tokens=20, ignore_eos=True)
    assert len(r.token_ids) == 20 and r.stop_reason == "max_new_tokens"


def test_stop_strings(m):
    (r,) = m.generate("Q", raw=True, max_new_tokens=20, stop=["X"])
    assert r.stop_reason == "stop_string" and toks(r)[-1] == "X"


def test_entropix_pause_inserted_and_counted(m):
    cfg = EntropixConfig(pause_text="Hmm", pause_cooldown=3, max_pauses=2)
    (r,) = m.generate("U", raw=True, max_new_tokens=12, sampler=cfg, budget=Budget(max_thinking_tokens=20))
    names = toks(r)
    assert r.pauses_inserted == 2 and names.count("Hmm") == 2
    pause_steps = [t.step for t in r.trace if t.forced == "pause"]
    assert pause_steps[1] - pause_steps[0] >= 3  # cooldown holds
    assert all(t.regime == "pause" for t in r.trace if t.forced is None and t.token in FILL[:1])
    # pauses count toward the thinking budget
    assert r.thinking_tokens == sum(1 for t in r.trace if t.phase == "thinking" and t.forced != "prefill")


def test_same_seed_same_tokens_and_rows_independent(m):
    a = m.generate(["U", "U"], raw=True, max_new_tokens=10, sampler=Sample(temperature=1.0), seed=3)
    b = m.generate(["U", "U"], raw=True, max_new_tokens=10, sampler=Sample(temperature=1.0), seed=3)
    c = m.generate(["U", "U"], raw=True, max_new_tokens=10, sampler=Sample(temperature=1.0), seed=4)
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert a[0].token_ids != a[1].token_ids  # rows draw independently
    assert [x.token_ids for x in a] != [x.token_ids for x in c]


def test_one_compiled_program_for_bucketed_lengths(m):
    m.generate(["Q", "QQQ"], raw=True, max_new_tokens=20)
    n = D.generate_arrays._cache_size()
    with jax.log_compiles():
        m.generate(["QQ", "QQQQQ"], raw=True, max_new_tokens=17, seed=1)
    assert D.generate_arrays._cache_size() == n


def test_bad_input_is_refused_before_compute(m):
    with pytest.raises(InputError, match="empty prompt"):
        m.generate("", raw=True)
    with pytest.raises(InputError, match="exceeds the model context"):
        m.generate("Q" * 600, raw=True, max_new_tokens=10)
    with pytest.raises(ConfigError, match="min_thinking_tokens"):
        Budget(min_thinking_tokens=10, max_thinking_tokens=5)
    m2 = scripted_model(VOCAB, SCRIPT)
    orig = m2.tokenizer.encode
    m2.tokenizer.encode = lambda text, add_special_tokens=False: [] if text == "@@" else orig(text)
    with pytest.raises(InputError, match="tokenizes to nothing"):
        m2.generate("Q", raw=True, budget=Budget(think_end=("@@",)))


def test_bad_row_does_not_kill_the_batch(m):
    rs = m.generate(["Q", "", "Q" * 600], raw=True, max_new_tokens=10, on_error="row")
    assert rs[0].stop_reason == "eos" and rs[0].error is None
    assert rs[1].stop_reason == "error" and "empty" in rs[1].error
    assert rs[2].stop_reason == "error" and "context" in rs[2].error


def test_stream_equals_generate(m):
    kw = dict(raw=True, max_new_tokens=30, sampler=Sample(temperature=1.0), seed=5,
              budget=Budget(**THINK, num_waits=1, max_thinking_tokens=12))
    pieces = list(m.stream("U", chunk_steps=4, **kw))
    (ref,) = m.generate("U", **kw)
    assert len(pieces) > 2 and "".join(pieces) == ref.text
    assert m.last_stream_result.token_ids == ref.token_ids
    assert m.last_stream_result.thinking_tokens == ref.thinking_tokens


def test_strings_and_eos_changes_reuse_the_program(m):
    m.generate("Q", raw=True, max_new_tokens=20, budget=Budget(**THINK, num_waits=1))
    n = D.generate_arrays._cache_size()
    m.generate("Q", raw=True, max_new_tokens=20, budget=Budget(**THINK, num_waits=2, wait_text="Hmm"))
    m.generate("Q", raw=True, max_new_tokens=20, budget=Budget(**THINK, num_waits=1), ignore_eos=True)
    assert D.generate_arrays._cache_size() == n


ADAPTIVE = dict(think_end=("</think>",), mode="adaptive", uncertain_entropy=1.0)


def test_adaptive_waits_only_when_uncertain(m):
    rs = m.generate(["P", "Q"], raw=True, max_new_tokens=40, budget=Budget(**ADAPTIVE, num_waits=5))
    p, q = rs
    assert toks(p)[:2] == ["c", "Wait"] and p.waits_inserted == 1  # uncertain end -> wait
    assert [t.forced for t in p.trace][1] == "wait:uncertain"
    assert q.waits_inserted == 0 and toks(q)[:3] == ["a", "b", "</think>"]  # confident end
    (p0,) = m.generate("P", raw=True, max_new_tokens=40, budget=Budget(**ADAPTIVE, num_waits=0))
    assert p0.waits_inserted == 0  # max waits holds per row


def test_adaptive_equals_fixed_when_everything_is_uncertain(m):
    for waits in (1, 3):
        fixed = m.generate(["Q", "P"], raw=True, max_new_tokens=40, budget=Budget(think_end=("</think>",), num_waits=waits))
        adapt = m.generate(["Q", "P"], raw=True, max_new_tokens=40,
                           budget=Budget(**dict(ADAPTIVE, uncertain_entropy=-1.0), num_waits=waits))
        assert [r.token_ids for r in fixed] == [r.token_ids for r in adapt]
        assert [r.waits_inserted for r in adapt] == [waits, waits]


def test_adaptive_confident_end_below_min(m):
    b = dict(ADAPTIVE, min_thinking_tokens=6)
    (strict,) = m.generate("Q", raw=True, max_new_tokens=40, budget=Budget(**b))
    (lenient,) = m.generate("Q", raw=True, max_new_tokens=40, budget=Budget(**b, confident_ends_below_min=True))
    assert strict.thinking_tokens >= 6 and lenient.thinking_tokens == 2


def test_soft_cap_ends_at_first_confident_step(m):
    b = Budget(**ADAPTIVE, soft_max_thinking_tokens=1, max_thinking_tokens=30, confident_entropy=0.5)
    (r,) = m.generate("Q", raw=True, max_new_tokens=40, budget=b)
    assert r.thinking_tokens == 1
    assert [t.forced for t in r.trace][1:3] == ["end:confident", "end:confident"]
    (u,) = m.generate("U", raw=True, max_new_tokens=40, budget=b)
    # U's fillers are never confident: the hard cap ends thinking
    assert u.thinking_tokens == 30 and "cap" in [t.forced for t in u.trace]


def test_progress_bar_path_gives_the_same_tokens(m):
    kw = dict(raw=True, max_new_tokens=40, sampler=Sample(temperature=1.0), seed=2, budget=Budget(**THINK, num_waits=2))
    a = m.generate(["U", "Q"], progress=True, **kw)
    b = m.generate(["U", "Q"], progress=False, **kw)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]


def test_calibrate_budget_splits_the_models_own_ends(m):
    from entropix_s1.research.calibrate import calibrate_budget, delimiter_step_metrics

    base = Budget(think_end=("</think>",), num_waits=1)
    b, rep = calibrate_budget(m, ["P", "Q", "Q", "P", "Q"], base, quantile=0.5, max_new_tokens=20)
    (p,) = m.generate("P", max_new_tokens=20, budget=Budget(think_end=("</think>",)))
    (q,) = m.generate("Q", max_new_tokens=20, budget=Budget(think_end=("</think>",)))
    ep = delimiter_step_metrics(p, [[VOCAB.index("</think>")]])
    eq = delimiter_step_metrics(q, [[VOCAB.index("</think>")]])
    assert ep["thinking_tokens"] == 1 and eq["thinking_tokens"] == 2
    assert ep["entropy"] == p.trace[1].entropy and ep["entropy"] > 1.5 > 0.1 > eq["entropy"]
    assert rep["ended"] == 5 and b.mode == "adaptive" and b.num_waits == 1
    assert b.uncertain_entropy == pytest.approx(eq["entropy"])  # median of [q, q, q, p, p]
    b, _ = calibrate_budget(m, ["P", "Q", "Q", "P", "Q"], base, quantile=0.65, max_new_tokens=20)
    assert eq["entropy"] < b.uncertain_entropy < ep["entropy"]
    rp, rq = m.generate(["P", "Q"], max_new_tokens=20, budget=b)
    assert rp.waits_inserted == 1 and rq.waits_inserted == 0  # the uncertain end gets the wait
    with pytest.raises(InputError, match="ended thinking by itself"):
        calibrate_budget(m, ["U"], base, max_new_tokens=8)
    with pytest.raises(InputError, match="quantile"):
        calibrate_budget(m, ["Q"], base, quantile=1.5)
