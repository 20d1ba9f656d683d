"""The research comparison harness with fake models: scoring, resume after a crash, s1 metrics,
method specs and the CLI glue. No JAX: samplers are stand-ins (Method objects built from
`parse_spec`, or fake `entropix_s1.core.sampling` / `entropix_s1.core.entropix` modules)."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import sys
import types
import zlib
from pathlib import Path
from typing import Any

import pytest

import entropix_s1
import entropix_s1.host.engine  # noqa: F401  (entropix_s1.load is lazy: resolve it before fake_samplers swaps modules)
from entropix_s1.core.budget import Budget
from entropix_s1.errors import ConfigError
from entropix_s1.cli.compare import add_arguments as add_compare_arguments
from entropix_s1.cli.compare import run as compare_main
from entropix_s1.research.compare import RESULTS_FILE, read_results, run_compare, summarize
from entropix_s1.research.datasets import Problem, default_data_dir, load_dataset, render_prompt
from entropix_s1.research.methods import (
    DEFAULT_ANSWER_TOKENS,
    DEFAULT_MAX_NEW_TOKENS,
    Method,
    budget_sweep,
    expand_specs,
    parse_method,
    parse_spec,
    pause_string_ablation,
    wait_string_ablation,
    waits_sweep,
)
from entropix_s1.research.s1_metrics import control, performance, scaling, sign_test, wilson_interval
from entropix_s1.results import GenerationResult

DATA = default_data_dir()
# The data files are part of the test environment (../shared/data): missing data fails, never skips.
assert (DATA / "math500_test.jsonl").is_file(), f"no data files in {DATA} (set ENTROPIX_S1_DATA)"


def fake_method(spec: str) -> Method:
    """A Method with a stand-in sampler (the real ones need JAX)."""
    s = parse_spec(spec)
    return Method(s.name, s.family, ("fake-sampler", s.sampler_kind, s.sampler_options), s.budget, s.max_new_tokens)


class Killed(RuntimeError):
    pass


class FakeModel:
    """Answers each problem with its gold ("oracle") or a constant, in a `Final Answer:` line or a
    `\\boxed{}`; thinks 20..219 tokens (a hash of the id), clipped to the budget cap. With
    `fail_after=k` it raises instead of generating past k problems (a killed run)."""

    def __init__(self, problems: list[Problem], answer: str = "oracle", style: str = "final",
                 fail_after: int | None = None, default_budget: Budget | None = None,
                 error_ids: tuple[str, ...] = ()):
        self.by_prompt = {render_prompt(p): p for p in problems}
        self.answer, self.style, self.fail_after = answer, style, fail_after
        self.generated = 0
        self.calls: list[dict[str, Any]] = []
        self.error_ids = set(error_ids)
        if default_budget is not None:
            self.default_budget = default_budget

    def generate(self, prompts: list[str], *, sampler: Any, budget: Budget | None, max_new_tokens: int,
                 seed: int, raw: bool = False, **kw: Any) -> list[GenerationResult]:
        assert raw is False and isinstance(prompts, list)
        if self.fail_after is not None and self.generated + len(prompts) > self.fail_after:
            raise Killed(f"killed after {self.generated} problems")
        self.calls.append(dict(n=len(prompts), sampler=sampler, budget=budget, max_new_tokens=max_new_tokens,
                               seed=seed, kw=kw))
        out = []
        for pr in prompts:
            p = self.by_prompt[pr]
            if p.id in self.error_ids:
                out.append(GenerationResult(pr, (), "", "", "", 0, 0, 0, 0, "error", (), "prompt too long"))
                continue
            ans = p.gold if self.answer == "oracle" else self.answer
            natural = 20 + zlib.crc32(p.id.encode()) % 200
            cap = budget.max_thinking_tokens if budget is not None else None
            think = natural if cap is None else min(natural, cap)
            if self.style == "final":
                thinking, answer_text = "Let me think. 1 + 1 = 2. ", f" {ans}"
                text = thinking + "</think>\nFinal Answer:" + answer_text
            else:
                thinking, answer_text = "", ""
                text = f"Some steps with 12 and 7. So the answer is \\boxed{{{ans}}}."
            out.append(GenerationResult(
                prompt=pr, token_ids=(1, 2, 3), text=text, thinking_text=thinking, answer_text=answer_text,
                thinking_tokens=think, answer_tokens=3, waits_inserted=budget.num_waits if budget else 0,
                pauses_inserted=0, stop_reason="eos"))
        self.generated += len(prompts)
        return out


def _lines(out: Path) -> list[dict[str, Any]]:
    raw = (out / RESULTS_FILE).read_text()
    assert raw.endswith("\n")
    return [json.loads(x) for x in raw.splitlines()]


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["id"], r["method"], r["prediction"], r["correct"], r["thinking_tokens"], r["gold"])


METHODS = ["greedy", "budget:max=64", "budget:max=128"]


# ---------------------------------------------------------------------------------- scoring


@pytest.mark.parametrize("style", ["final", "boxed"])
def test_oracle_scores_100_on_math500(tmp_path: Path, style: str) -> None:
    problems = load_dataset("math500")
    model = FakeModel(problems, style=style)
    s = run_compare(model, problems, [fake_method("greedy")], tmp_path, batch_size=64, progress=False)
    p = s.point("greedy")
    assert (p.n, p.correct, p.accuracy) == (500, 500, 1.0)
    assert len(_lines(tmp_path)) == 500


@pytest.mark.parametrize("dataset", ["gsm8k", "mawps_addsub", "mawps_multiarith", "aime24", "amc23"])
def test_oracle_scores_100_everywhere(tmp_path: Path, dataset: str) -> None:
    problems = load_dataset(dataset, limit=60)
    s = run_compare(FakeModel(problems), dataset, [fake_method(m) for m in METHODS], tmp_path, limit=60,
                    batch_size=16, progress=False)
    assert [p.accuracy for p in s.points] == [1.0, 1.0, 1.0]
    assert s.n_results == 3 * len(problems)
    assert (tmp_path / "summary.md").is_file()
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("dataset", ["mawps_multiarith", "gsm8k", "aime24"])
def test_constant_model_scores_the_gold_frequency(tmp_path: Path, dataset: str) -> None:
    problems = load_dataset(dataset, limit=120)
    const, count = collections.Counter(p.gold for p in problems).most_common(1)[0]
    model = FakeModel(problems, answer=const)
    s = run_compare(model, problems, [fake_method("greedy"), fake_method("budget:max=64")], tmp_path,
                    batch_size=32, progress=False)
    for p in s.points:
        assert p.correct == count and p.accuracy == count / len(problems) > 0


def test_records_and_budget_delimiters(tmp_path: Path) -> None:
    problems = load_dataset("mawps_multiarith", limit=6)
    base = Budget(think_start="<think>\n", think_end=("</think>",), answer_prefix="\n\nAnswer:")
    model = FakeModel(problems, default_budget=base, error_ids=(problems[2].id,))
    run_compare(model, problems, [fake_method("budget:max=512,waits=2")], tmp_path, batch_size=4, seed=3,
                progress=False)
    # the model's delimiters replace the placeholders; the numbers stay the method's
    b = model.calls[0]["budget"]
    assert (b.think_start, b.think_end, b.max_thinking_tokens, b.num_waits) == ("<think>\n", ("</think>",), 512, 2)
    assert b.answer_prefix == "\n\nAnswer:"
    assert model.calls[0]["max_new_tokens"] == 512 + DEFAULT_ANSWER_TOKENS + 32
    assert model.calls[0]["kw"] == {"on_error": "row"}
    rows = _lines(tmp_path)
    need = {"id", "method", "prediction", "gold", "correct", "thinking_tokens", "answer_tokens", "waits", "pauses",
            "seconds", "stop_reason"}
    assert all(need <= set(r) for r in rows)
    bad = [r for r in rows if r["id"] == problems[2].id][0]
    assert bad["error"] == "prompt too long" and bad["correct"] is False and bad["prediction"] is None
    assert summarize(tmp_path).point("budget:max=512,waits=2").errors == 1
    assert rows[0]["waits"] == 2 and rows[0]["method"] == "budget:max=512,waits=2" and rows[0]["family"] == "budget"


# --------------------------------------------------------------------------------- resuming


@pytest.mark.parametrize("fail_after", [6, 13])
@pytest.mark.parametrize("truncate", [False, True])
def test_kill_and_resume_matches_uninterrupted(tmp_path: Path, fail_after: int, truncate: bool) -> None:
    problems = load_dataset("mawps_multiarith", limit=10)
    methods = [fake_method(m) for m in METHODS]
    ref_dir, dir_ = tmp_path / "ref", tmp_path / "run"
    run_compare(FakeModel(problems), problems, methods, ref_dir, batch_size=4, progress=False)
    reference = sorted(_key(r) for r in _lines(ref_dir))
    assert len(reference) == 30

    with pytest.raises(Killed):
        run_compare(FakeModel(problems, fail_after=fail_after), problems, methods, dir_, batch_size=4,
                    progress=False)
    before = _lines(dir_)
    # batches of 4: killed inside the first method (4 done) or at the start of the second (10 done)
    assert len(before) == {6: 4, 13: 10}[fail_after]
    if truncate:  # a crash in the middle of writing the next line
        full = json.dumps({**before[-1], "id": problems[-1].id, "method": "budget:max=128"})
        with (dir_ / RESULTS_FILE).open("a") as f:
            f.write(full[: len(full) // 2])
        assert len(read_results(dir_)) == len(before)  # readers ignore the unfinished line

    model = FakeModel(problems)
    s = run_compare(model, problems, methods, dir_, batch_size=4, progress=False)
    after = _lines(dir_)  # every line parses: the partial one was cut off, not kept
    assert sum(c["n"] for c in model.calls) == 30 - len(before)  # only unfinished work was redone
    assert len({(r["id"], r["method"]) for r in after}) == len(after) == 30  # no duplicates
    assert sorted(_key(r) for r in after) == reference
    assert s.n_results == 30

    # a third run has nothing left to do and changes nothing
    model3 = FakeModel(problems)
    run_compare(model3, problems, methods, dir_, batch_size=4, progress=False)
    assert model3.calls == [] and len(_lines(dir_)) == 30


def test_out_dir_of_another_dataset_is_refused(tmp_path: Path) -> None:
    a = load_dataset("mawps_multiarith", limit=2)
    b = load_dataset("mawps_addsub", limit=2)
    run_compare(FakeModel(a), a, [fake_method("greedy")], tmp_path, progress=False)
    with pytest.raises(ConfigError, match="mawps_multiarith"):
        run_compare(FakeModel(b), b, [fake_method("greedy")], tmp_path, progress=False)


def test_out_dir_of_other_weights_is_refused(tmp_path: Path) -> None:
    """Same dataset, same model name, retrained weights: resuming would mix two models."""
    a = load_dataset("mawps_multiarith", limit=2)
    m1, m2 = FakeModel(a), FakeModel(a)
    m1.name = m2.name = "think"
    m1.weights_sha256, m2.weights_sha256 = "aa" * 32, "bb" * 32
    run_compare(m1, a, [fake_method("greedy")], tmp_path, progress=False)
    assert json.loads((tmp_path / "run.json").read_text())["weights_sha256"] == "aa" * 32
    run_compare(m1, a, [fake_method("budget:max=64")], tmp_path, progress=False)  # same weights: fine
    with pytest.raises(ConfigError, match="other weights"):
        run_compare(m2, a, [fake_method("greedy")], tmp_path, progress=False)


def test_weights_listed_as_equivalent_resume_and_the_note_survives(tmp_path: Path) -> None:
    """A re-converted checkpoint checked to give the recorded outputs is listed in run.json's
    `equivalent_weights`: it resumes, the recorded digest stays the first run's, the note is kept,
    and a third digest is still refused."""
    a = load_dataset("mawps_multiarith", limit=2)
    m1, m2, m3 = FakeModel(a), FakeModel(a), FakeModel(a)
    m1.name = m2.name = m3.name = "think"
    m1.weights_sha256, m2.weights_sha256, m3.weights_sha256 = "aa" * 32, "bb" * 32, "cc" * 32
    run_compare(m1, a, [fake_method("greedy")], tmp_path, progress=False)
    info = json.loads((tmp_path / "run.json").read_text())
    info["equivalent_weights"] = [{"sha256": "bb" * 32, "evidence": "same texts on 2 problems"}]
    (tmp_path / "run.json").write_text(json.dumps(info))
    run_compare(m2, a, [fake_method("budget:max=64")], tmp_path, progress=False)
    after = json.loads((tmp_path / "run.json").read_text())
    assert after["weights_sha256"] == "aa" * 32
    assert after["equivalent_weights"] == info["equivalent_weights"]
    assert "budget:max=64" in after["methods"]
    with pytest.raises(ConfigError, match="equivalent_weights"):
        run_compare(m3, a, [fake_method("greedy")], tmp_path, progress=False)


def test_packed_results_resume_and_fold_in_later_records(tmp_path: Path) -> None:
    """`pack_results` seals the records into results.jsonl.gz (the same records give the same
    bytes); a run after it redoes nothing, appends only new rows to a fresh live log, and the next
    pack folds them in; a crash between the archive's rename and the log's removal reads once."""
    import gzip

    from entropix_s1.research.store import ARCHIVE_FILE, pack_results

    a = load_dataset("mawps_multiarith", limit=4)
    run_compare(FakeModel(a), a, [fake_method("greedy")], tmp_path, progress=False)
    (tmp_path / RESULTS_FILE).open("a").write('{"id": "cut short')  # a killed writer's last line
    before = read_results(tmp_path)
    assert pack_results(tmp_path)[0] == 4
    assert not (tmp_path / RESULTS_FILE).exists()
    packed = (tmp_path / ARCHIVE_FILE).read_bytes()
    assert [json.loads(x) for x in gzip.decompress(packed).splitlines()] == before == read_results(tmp_path)
    assert pack_results(tmp_path) == (4, len(packed)) and (tmp_path / ARCHIVE_FILE).read_bytes() == packed

    model = FakeModel(a)
    run_compare(model, a, [fake_method("greedy"), fake_method("budget:max=64")], tmp_path, progress=False)
    assert sum(c["n"] for c in model.calls) == 4  # only the new method's rows
    assert {r["method"] for r in _lines(tmp_path)} == {"budget:max=64"}
    both = read_results(tmp_path)
    assert len(both) == 8 and both[:4] == before

    # a crash after the archive was renamed in, before the live log was removed: read once
    live = (tmp_path / RESULTS_FILE).read_bytes()
    pack_results(tmp_path)
    (tmp_path / RESULTS_FILE).write_bytes(live)
    assert read_results(tmp_path) == both
    assert summarize(tmp_path).n_results == 8
    pack_results(tmp_path)
    assert not (tmp_path / RESULTS_FILE).exists() and read_results(tmp_path) == both


# ------------------------------------------------------------------------------- s1 metrics


def test_s1_metrics_on_hand_made_results(tmp_path: Path) -> None:
    # three budget caps (one family) and an unconstrained greedy run; 4 problems each
    table = {
        "budget:max=100": ([50, 100, 120, 80], [1, 0, 0, 1]),
        "budget:max=200": ([150, 200, 210, 190], [1, 1, 0, 1]),
        "budget:max=400": ([300, 400, 390, 420], [1, 1, 1, 1]),
        "greedy": ([500, 700, 600, 200], [0, 1, 0, 0]),
    }
    with (tmp_path / RESULTS_FILE).open("w") as f:
        for method, (toks, correct) in table.items():
            for i, (t, c) in enumerate(zip(toks, correct, strict=True)):
                f.write(json.dumps({"id": f"p{i}", "method": method, "correct": bool(c), "thinking_tokens": t}) + "\n")
    s = summarize(tmp_path)

    # per method: accuracy, mean thinking tokens, Control = share of runs within [0, max]
    p100, p200, p400, g = (s.point(m) for m in table)
    assert (p100.accuracy, p200.accuracy, p400.accuracy, g.accuracy) == (0.5, 0.75, 1.0, 0.25)
    assert (p100.mean_thinking_tokens, p200.mean_thinking_tokens, p400.mean_thinking_tokens) == (87.5, 187.5, 377.5)
    assert (p100.control, p200.control, p400.control, g.control) == (0.75, 0.75, 0.75, None)

    fam = s.family("budget")
    assert fam.methods == ("budget:max=100", "budget:max=200", "budget:max=400")
    hand_scaling = ((0.75 - 0.5) / (187.5 - 87.5) + (1.0 - 0.5) / (377.5 - 87.5) + (1.0 - 0.75) / (377.5 - 187.5)) / 3
    assert fam.scaling == pytest.approx(hand_scaling, rel=1e-12)
    assert fam.performance == 1.0
    assert fam.control == 0.75
    gf = s.family("greedy")
    assert (gf.scaling, gf.performance, gf.control) == (None, 0.25, None)

    md = (tmp_path / "summary.md").read_text()
    assert f"{hand_scaling * 1e5:+.2f}" in md and "| `budget:max=100` | 4 | 50.0%" in md
    assert (tmp_path / "scaling.png").is_file()


def test_metric_functions() -> None:
    assert control([5, 10, 11], 0, 10) == pytest.approx(2 / 3)
    assert control([5, 10, 11], 6, None) == pytest.approx(2 / 3)
    assert control([5], None, None) is None and control([5], 0, None) is None
    assert scaling([(1, 0.1)]) is None
    assert scaling([(100, 0.2), (100, 0.3)]) is None  # no pair with b > a
    assert scaling([(200, 0.4), (100, 0.2)]) == pytest.approx(0.002)  # order-independent
    assert performance([0.1, 0.7, 0.3]) == 0.7 and performance([]) is None
    lo, hi = wilson_interval(5, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_sign_test_matches_the_exact_binomial_definition() -> None:
    # textbook values: 8 vs 3 discordant -> 2 * (C(11,8)+C(11,9)+C(11,10)+C(11,11)) / 2^11
    assert sign_test(8, 3) == pytest.approx(2 * 232 / 2048) and sign_test(3, 8) == sign_test(8, 3)
    assert sign_test(5, 0) == pytest.approx(1 / 16) and sign_test(0, 0) == 1.0 and sign_test(3, 3) == 1.0
    # the other definition of a two-sided exact p: the mass of outcomes no likelier than the observed
    for n in range(1, 21):
        pmf = [math.comb(n, i) / 2**n for i in range(n + 1)]
        for w in range(n + 1):
            want = sum(q for q in pmf if q <= pmf[w] * (1 + 1e-12))
            assert sign_test(w, n - w) == pytest.approx(min(1.0, want)), (w, n)
    with pytest.raises(ValueError, match="wins and losses"):
        sign_test(-1, 2)


def test_summarize_drops_a_truncated_line(tmp_path: Path) -> None:
    line = json.dumps({"id": "a", "method": "greedy", "correct": True, "thinking_tokens": 3})
    (tmp_path / RESULTS_FILE).write_text(line + "\n" + line[:10])
    assert summarize(tmp_path).point("greedy").n == 1


# ------------------------------------------------------------------------------ method specs


@pytest.mark.parametrize(
    ("spec", "name", "family"),
    [
        ("greedy", "greedy", "greedy"),
        ("sample:t=0.7", "sample:t=0.7", "sample:t=0.7"),
        ("sample:temperature=0.70,top_p=0.9,top_k=40,min_p=0.05", "sample:t=0.7,top_k=40,top_p=0.9,min_p=0.05",
         "sample:t=0.7,top_k=40,top_p=0.9,min_p=0.05"),
        ("budget:max=256", "budget:max=256", "budget"),
        ("budget:waits=2,max=512", "budget:max=512,waits=2", "budget"),
        ("budget:max=512,waits=2,min=64,wait=Hmm", "budget:max=512,min=64,waits=2,wait=Hmm", "budget:wait=Hmm"),
        ("budget:max=512,wait=Wait", "budget:max=512", "budget"),
        ("budget:max=512,waits=2,wait=none", "budget:max=512,waits=2,wait=none", "budget:wait=none"),
        ("entropix", "entropix", "entropix"),
        ("entropix+budget:max=512", "entropix+budget:max=512", "entropix+budget"),
        ("greedy+budget:max=64", "budget:max=64", "budget"),
        ("entropix:calibrated", "entropix:calibrated", "entropix:calibrated"),
        ("entropix:calibrated=/tmp/c.json", "entropix:calibrated=/tmp/c.json", "entropix:calibrated=/tmp/c.json"),
        ("entropix:pause=Hmm", "entropix:pause=Hmm", "entropix:pause=Hmm"),
        ("adaptive-budget:max=512,waits=2", "adaptive-budget:max=512,waits=2", "adaptive-budget"),
        ("sample+budget:t=1,max=128,max_new=300", "sample+budget:t=1,max=128,max_new=300", "sample+budget:t=1"),
        (" Budget:MAX=64 ", "budget:max=64", "budget"),
    ],
)
def test_spec_round_trip(spec: str, name: str, family: str) -> None:
    s = parse_spec(spec)
    assert (s.name, s.family) == (name, family)
    again = parse_spec(s.name)
    assert again == s  # parsing a canonical name gives the same method back


def test_spec_contents() -> None:
    b = parse_spec("budget:max=512,waits=2,min=64,wait=Hmm")
    assert b.sampler_kind == "greedy"
    assert b.budget == Budget(min_thinking_tokens=64, max_thinking_tokens=512, num_waits=2, wait_text="Hmm")
    assert b.max_new_tokens == 512 + DEFAULT_ANSWER_TOKENS + 32
    assert parse_spec("budget:max=64,waits=1,wait=none").budget.wait_text == ""
    assert parse_spec("adaptive-budget:max=512,waits=2").budget.mode == "adaptive"
    assert parse_spec("greedy").budget == Budget() and parse_spec("greedy").max_new_tokens == DEFAULT_MAX_NEW_TOKENS
    assert parse_spec("greedy", default_max_new_tokens=99).max_new_tokens == 99
    assert parse_spec("budget:max=64,answer=16").max_new_tokens == 64 + 16 + 32
    assert parse_spec("sample:t=0.7,top_k=5").sampler_options == (("t", 0.7), ("top_k", 5))
    assert parse_spec("entropix:calibrated=x.json,pause=Hmm").sampler_options == (("calibrated", "x.json"),
                                                                                  ("pause", "Hmm"))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("beam", "unknown family 'beam'.*greedy"),
        ("greedy:max=64", "belongs to a budget"),
        ("sample:t=0.7,max=64", "belongs to a budget"),
        ("budget:t=0.7,max=64", "belongs to the 'sample' sampler"),
        ("budget:max=64,foo=1", "unknown key 'foo'.*valid keys: max, min, waits, wait, answer, max_new"),
        ("budget:max=abc", "not an integer"),
        ("sample:t=hot", "not a number"),
        ("budget:max=64,max=128", "given twice"),
        ("budget", "at least one of max=, min=, waits="),
        ("budget:wait=Hmm", "at least one of"),
        ("budget:max=64,min=128", "min_thinking_tokens"),
        ("budget:max=64,", "stray ','"),
        ("budget:max", "needs a value"),
        ("entropix:pause=none", "cannot be empty"),
        ("", "non-empty"),
    ],
)
def test_spec_errors(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_spec(spec)


def test_expand_and_ablations() -> None:
    assert expand_specs("greedy; budget:max={64,128};budget:max=64") == ["greedy", "budget:max=64", "budget:max=128"]
    assert expand_specs(["greedy", "entropix+budget:max={1,2},waits={0,2}"]) == [
        "greedy", "entropix+budget:max=1", "entropix+budget:max=1,waits=2", "entropix+budget:max=2",
        "entropix+budget:max=2,waits=2"]
    with pytest.raises(ConfigError):
        expand_specs(" ; ")
    assert budget_sweep([64, 128, 256, 512]) == ["budget:max=64", "budget:max=128", "budget:max=256", "budget:max=512"]
    assert budget_sweep([64], base="entropix+budget", waits=2) == ["entropix+budget:max=64,waits=2"]
    assert waits_sweep([0, 2], max=512) == ["budget:max=512", "budget:max=512,waits=2"]
    assert wait_string_ablation(max=512, strings=["Wait", "Hmm", "Alternatively", "none"]) == [
        "budget:max=512,waits=2", "budget:max=512,waits=2,wait=Hmm", "budget:max=512,waits=2,wait=Alternatively",
        "budget:max=512,waits=2,wait=none"]
    assert pause_string_ablation(["Wait", "Hmm"]) == ["entropix:pause=Wait", "entropix:pause=Hmm"]
    assert pause_string_ablation(["Hmm"], max=256) == ["entropix+budget:pause=Hmm,max=256"]
    # families: the sweep is one line, every wait string its own
    assert {parse_spec(s).family for s in budget_sweep()} == {"budget"}
    assert len({parse_spec(s).family for s in wait_string_ablation()}) == 4


@dataclasses.dataclass(frozen=True)
class _FakeEntropixConfig:
    low_ent_thresh: float = 0.1
    high_ent_thresh: float = 3.0
    attn_layers: Any = "last"
    pause_text: str = "Wait"


@pytest.fixture
def fake_samplers(monkeypatch: pytest.MonkeyPatch) -> None:
    sampling = types.ModuleType("entropix_s1.core.sampling")

    @dataclasses.dataclass(frozen=True)
    class Greedy:
        pass

    @dataclasses.dataclass(frozen=True)
    class Sample:
        temperature: float = 1.0
        top_k: int | None = None
        top_p: float | None = None
        min_p: float | None = None

    sampling.Greedy, sampling.Sample = Greedy, Sample  # type: ignore[attr-defined]
    entropix = types.ModuleType("entropix_s1.core.entropix")
    entropix.EntropixConfig = _FakeEntropixConfig  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "entropix_s1.core.sampling", sampling)
    monkeypatch.setitem(sys.modules, "entropix_s1.core.entropix", entropix)


def test_parse_method_builds_samplers(fake_samplers: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = parse_method("sample:t=0.7,top_p=0.9")
    assert (m.name, m.family, m.max_new_tokens) == ("sample:t=0.7,top_p=0.9", "sample:t=0.7,top_p=0.9", 1024)
    assert (m.sampler.temperature, m.sampler.top_p, m.sampler.top_k) == (0.7, 0.9, None)
    assert type(parse_method("budget:max=64").sampler).__name__ == "Greedy"
    assert parse_method("entropix+budget:max=64").sampler == _FakeEntropixConfig()
    assert parse_method("entropix:pause=Hmm").sampler.pause_text == "Hmm"

    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"low_ent_thresh": 0.5, "attn_layers": [-1, -2]}))
    c = parse_method(f"entropix:calibrated={cal},pause=Hmm").sampler
    assert c == _FakeEntropixConfig(low_ent_thresh=0.5, attn_layers=(-1, -2), pause_text="Hmm")
    monkeypatch.setenv("ENTROPIX_S1_CALIBRATION", str(cal))
    assert parse_method("entropix:calibrated").sampler.low_ent_thresh == 0.5
    with pytest.raises(ConfigError, match="not found.*calibrate"):
        parse_method(f"entropix:calibrated={tmp_path / 'none.json'}")
    cal.write_text(json.dumps({"bogus": 1}))
    with pytest.raises(ConfigError, match="does not fit EntropixConfig.*low_ent_thresh"):
        parse_method(f"entropix:calibrated={cal}")


# ---------------------------------------------------------------------------------- CLI glue


def test_compare_main(fake_samplers: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    loaded: list[str] = []

    def fake_load(name: str) -> FakeModel:
        loaded.append(name)
        return FakeModel(load_dataset("mawps_addsub", limit=5))

    monkeypatch.setattr(entropix_s1, "load", fake_load, raising=False)
    parser = add_compare_arguments(argparse.ArgumentParser())
    out = tmp_path / "out"
    args = parser.parse_args(["--model", "tiny", "--dataset", "mawps_addsub", "--limit", "5",
                              "--methods", "greedy;budget:max={16,32}", "--methods", "entropix",
                              "--out", str(out), "--batch-size", "2", "--no-progress"])
    assert compare_main(args) == 0
    assert loaded == ["tiny"]
    s = summarize(out)
    assert [p.method for p in s.points] == ["greedy", "budget:max=16", "budget:max=32", "entropix"]
    assert all(p.accuracy == 1.0 and p.n == 5 for p in s.points)
    assert "summary.md" in capsys.readouterr().out

    # bad methods fail before the model is loaded
    bad = parser.parse_args(["--model", "tiny", "--dataset", "mawps_addsub", "--methods", "budget:foo=1",
                             "--out", str(out)])
    with pytest.raises(ConfigError):
        compare_main(bad)
    assert loaded == ["tiny"]
