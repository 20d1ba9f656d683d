"""`compare --samples K --seeds S`: the rows it runs, resuming a killed multi-sample run with no
lost or duplicated (problem, method, seed, sample) record, old results files, and the sample
metrics, paired tests and figures of the summary, on fake models (no JAX sampling)."""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path
from typing import Any

import pytest

import entropix_s1
import entropix_s1.host.engine  # noqa: F401  (resolve the lazy entropix_s1.load before monkeypatching it)
from entropix_s1.cli.compare import add_arguments as add_compare_arguments
from entropix_s1.cli.compare import run as compare_main
from entropix_s1.errors import ConfigError
from entropix_s1.research.compare import RESULTS_FILE, read_results, run_compare, summarize
from entropix_s1.research.datasets import Problem, render_prompt
from entropix_s1.research.methods import Method, is_deterministic, parse_spec
from entropix_s1.research.paired import default_baseline
from entropix_s1.research.runner import Row, row_id
from entropix_s1.results import GenerationResult

TEMPLATE = "{question}"
PROBLEMS = [Problem(id=f"q{i}", question=f"What is {i} + {i}?", gold=str(2 * i), dataset="gsm8k") for i in range(6)]


def fake_method(spec: str) -> Method:
    s = parse_spec(spec)
    return Method(s.name, s.family, ("fake-sampler", s.sampler_kind), s.budget, s.max_new_tokens)


class Stop(KeyboardInterrupt):
    """A kill (Ctrl-C) in the middle of a run."""


class SamplingModel:
    """A stand-in engine: a row's answer is a function of (seed, method, prompt id) alone, as in
    ours, so it cannot depend on scheduling. Rows finish out of order (each `generate_iter` call
    yields its rows in a scrambled order, as slots free up); `stop_after=n` kills the run after n
    rows came back. `iterate=False` leaves out `generate_iter` (the batched path)."""

    def __init__(self, problems: list[Problem], stop_after: int | None = None, confidences: bool = True) -> None:
        self.by_prompt = {render_prompt(p, TEMPLATE): p for p in problems}
        self.stop_after, self.confidences = stop_after, confidences
        self.done = 0
        self.calls: list[dict[str, Any]] = []

    def _result(self, prompt: str, seed: int, prompt_id: int, sampler: Any) -> GenerationResult:
        p = self.by_prompt[prompt]
        h = zlib.crc32(f"{seed}/{prompt_id}/{sampler}".encode())
        if sampler[1] == "greedy":
            h = zlib.crc32(p.id.encode())  # deterministic: the same tokens every time
        ans = p.gold if h % 10 < 6 else f"{100 + h % 3}"
        r = GenerationResult(prompt, (1, 2), f"think</think>\nFinal Answer: {ans}", "think", f" {ans}",
                             10 + h % 50, 5, 0, 0, "eos")
        if self.confidences:
            object.__setattr__(r, "confidence", 1.0 + (h % 7) / 10)
            object.__setattr__(r, "lowest_group_confidence", 0.5 + (h % 5) / 10)
        return r

    def generate_iter(self, prompts: list[str], *, sampler: Any, seed: int, prompt_ids: list[int], batch_size: int,
                      **kw: Any):
        assert kw["on_error"] == "row" and kw["raw"] is False
        self.calls.append({"n": len(prompts), "seed": seed, "prompt_ids": list(prompt_ids), "sampler": sampler})
        order = sorted(range(len(prompts)), key=lambda i: zlib.crc32(str(prompt_ids[i]).encode()))
        for i in order:
            if self.stop_after is not None and self.done >= self.stop_after:
                raise Stop
            self.done += 1
            yield i, self._result(prompts[i], seed, prompt_ids[i], sampler)


class BatchedModel(SamplingModel):
    """No `generate_iter`: `batch_size` rows per `generate` call. Its rows' randomness would depend
    on their batch, so here a row's outcome is a function of its prompt alone."""

    def __getattribute__(self, name: str) -> Any:
        if name == "generate_iter":
            raise AttributeError(name)
        return super().__getattribute__(name)

    def generate(self, prompts: list[str], *, sampler: Any, seed: int, **kw: Any) -> list[GenerationResult]:
        if self.stop_after is not None and self.done + len(prompts) > self.stop_after:
            raise Stop
        self.calls.append({"n": len(prompts), "seed": seed, "sampler": sampler})
        self.done += len(prompts)
        return [self._result(p, 0, 0, sampler) for p in prompts]


METHODS = ["greedy", "sample:t=0.7", "budget:max=64"]


def _run(model: Any, out: Path, **kw: Any):
    kw = {"samples": 3, "seeds": 2, "batch_size": 4, "progress": False, "template": TEMPLATE, **kw}
    return run_compare(model, PROBLEMS, [fake_method(m) for m in METHODS], out, **kw)


def _keys(out: Path) -> list[tuple[Any, ...]]:
    """(id, method, seed, sample) of every line of the results file, in file order."""
    path = out / RESULTS_FILE
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
    return [(r["id"], r["method"], r["seed"], r["sample"]) for r in rows]


def _outcomes(out: Path) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {(r["id"], r["method"], r["seed"], r["sample"]): (r["prediction"], r["correct"], r["thinking_tokens"],
                                                               r["confidence"]) for r in read_results(out)}


# ----------------------------------------------------------------------------- what runs


def test_samples_and_seeds_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = SamplingModel(PROBLEMS)
    s = _run(model, tmp_path, seed=5)
    keys = _keys(tmp_path)
    assert len(keys) == len(set(keys)) == 6 * (1 + 1 + 3 * 2)
    # deterministic methods: one sample of the first seed; the sampler: 3 samples x seeds 5, 6
    assert {k[2:] for k in keys if k[1] == "greedy"} == {(5, 0)}
    assert {k[2:] for k in keys if k[1] == "sample:t=0.7"} == {(s_, k_) for s_ in (5, 6) for k_ in range(3)}
    assert "greedy, budget:max=64: deterministic" in capsys.readouterr().err
    # one generate_iter call per (method, seed), holding every sample of every problem
    assert [c["n"] for c in model.calls] == [6, 18, 18, 6]
    sample_calls = model.calls[1:3]
    assert len({c["seed"] for c in sample_calls}) == 2
    want_ids = [row_id(Row(p, 0, k)) for p in PROBLEMS for k in range(3)]
    assert all(c["prompt_ids"] == want_ids for c in sample_calls)
    assert want_ids[0] == zlib.crc32(b"q0") % (2**31 - 1)  # sample 0 keeps the problem's own prompt id
    assert len(set(want_ids)) == len(want_ids)
    rec = read_results(tmp_path)[0]
    assert {"seed", "sample", "confidence", "lowest_group_confidence"} <= set(rec)
    assert s.samples["sample:t=0.7"].samples == 6 and s.samples["sample:t=0.7"].seeds == 2
    assert s.samples["greedy"].samples == 1


def test_deterministic_methods() -> None:
    assert is_deterministic("greedy") and is_deterministic("budget:max=64") and is_deterministic("deer:max=64")
    assert not is_deterministic("sample:t=0.7") and not is_deterministic("entropix+budget:max=64")
    assert not is_deterministic("alphaone:max=256")  # its wait draws are random (p = 0.5)
    assert is_deterministic("alphaone:max=256,p=1")


def test_more_samples_later_add_only_the_new_ones(tmp_path: Path) -> None:
    _run(SamplingModel(PROBLEMS), tmp_path, samples=2, seeds=1)
    model = SamplingModel(PROBLEMS)
    _run(model, tmp_path, samples=4, seeds=1)
    assert [c["n"] for c in model.calls] == [6 * 2]  # samples 2 and 3 only
    ref = tmp_path / "ref"
    _run(SamplingModel(PROBLEMS), ref, samples=4, seeds=1)
    assert _outcomes(tmp_path) == _outcomes(ref)


def test_bad_counts_are_named_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"samples \(--samples\) must be >= 1"):
        _run(SamplingModel(PROBLEMS), tmp_path, samples=0)
    with pytest.raises(ConfigError, match=r"seeds \(--seeds\) must be >= 1"):
        _run(SamplingModel(PROBLEMS), tmp_path, seeds=0)
    with pytest.raises(ConfigError, match=r"baseline \(--baseline\) 'beam'.*unknown family"):
        _run(SamplingModel(PROBLEMS), tmp_path, baseline="beam")
    # a baseline that has not run yet (another part of an experiment runs it): a note, then the default
    s = _run(SamplingModel(PROBLEMS), tmp_path, baseline="budget:max=99", samples=1, seeds=1)
    assert "baseline 'budget:max=99' is not one of the methods" in capsys.readouterr().err
    assert s.baseline == "budget:max=64"


# ------------------------------------------------------------------------------- resuming


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[type, dict[tuple[Any, ...], tuple[Any, ...]]]:
    """The outcomes of an uninterrupted run, per model class."""
    out = {}
    for cls in (SamplingModel, BatchedModel):
        d = tmp_path_factory.mktemp(cls.__name__)
        _run(cls(PROBLEMS), d)
        out[cls] = _outcomes(d)
    return out


@pytest.mark.parametrize("model_cls", [SamplingModel, BatchedModel])
@pytest.mark.parametrize("stop_after", [1, 23])
@pytest.mark.parametrize("truncate", [False, True])
def test_killed_multi_sample_run_resumes_exactly(tmp_path: Path, model_cls: type, stop_after: int, truncate: bool,
                                                 uninterrupted: dict[type, dict[tuple[Any, ...], tuple[Any, ...]]]
                                                 ) -> None:
    run = tmp_path / "run"
    reference = uninterrupted[model_cls]
    assert len(reference) == 48

    with pytest.raises(Stop):
        _run(model_cls(PROBLEMS, stop_after=stop_after), run)
    before = _keys(run)
    assert len(before) <= stop_after  # the batched model loses the batch in flight
    if truncate:  # killed in the middle of writing the next line
        with (run / RESULTS_FILE).open("a") as f:
            f.write(json.dumps({"id": "q5", "method": "sample:t=0.7", "seed": 1, "sample": 2})[:25])

    model = model_cls(PROBLEMS)
    _run(model, run)
    after = _keys(run)  # every line parses: the cut one was dropped, not kept
    assert len(after) == len(set(after)) == 48  # nothing lost, nothing twice
    assert after[: len(before)] == before
    assert sum(c["n"] for c in model.calls) == 48 - len(before)  # only the unfinished rows ran
    assert _outcomes(run) == reference  # a row's outcome does not depend on when or beside what it ran

    model3 = model_cls(PROBLEMS)
    _run(model3, run)
    assert model3.calls == [] and len(_keys(run)) == 48


def test_old_records_read_as_sample_0_of_the_first_seed(tmp_path: Path) -> None:
    _run(SamplingModel(PROBLEMS), tmp_path, samples=1, seeds=1, seed=3)
    lines = []
    for line in (tmp_path / RESULTS_FILE).read_text().splitlines():  # as written before samples existed
        r = json.loads(line)
        del r["seed"], r["sample"], r["confidence"], r["lowest_group_confidence"]
        lines.append(json.dumps(r))
    (tmp_path / RESULTS_FILE).write_text("\n".join(lines) + "\n")
    assert {(r["seed"], r["sample"]) for r in read_results(tmp_path)} == {(3, 0)}
    model = SamplingModel(PROBLEMS)
    _run(model, tmp_path, samples=1, seeds=1, seed=3)
    assert model.calls == []  # all done
    _run(model, tmp_path, samples=2, seeds=1, seed=3)
    assert [c["n"] for c in model.calls] == [6]  # sample 1 of the sampler only
    assert summarize(tmp_path).samples["sample:t=0.7"].votes["conf"] is not None  # 6 of 12 samples carry one


# --------------------------------------------------------------------------------- summary


def _write(out: Path, rows: list[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_FILE).write_text("".join(json.dumps({"dataset": "gsm8k", **r}) + "\n" for r in rows))


def _rec(pid: str, method: str, pred: str | None, gold: str, seed: int = 0, sample: int = 0, conf: float | None = None,
         tokens: int = 10) -> dict[str, Any]:
    return {"id": pid, "method": method, "prediction": pred, "gold": gold, "correct": pred == gold, "seed": seed,
            "sample": sample, "thinking_tokens": tokens, "answer_tokens": 0, "confidence": conf,
            "lowest_group_confidence": conf}


def test_summary_metrics_by_hand(tmp_path: Path) -> None:
    # three problems (gold 1, 2, 3); the baseline right on p0 only; a sampler with 2 seeds x 2 samples
    base = [_rec("p0", "budget:max=64", "1", "1"), _rec("p1", "budget:max=64", "9", "2"),
            _rec("p2", "budget:max=64", "9", "3")]
    samples = {  # problem -> [(seed, sample, prediction, confidence)]
        "p0": [(0, 0, "1", 0.9), (0, 1, "1", 0.8), (1, 0, "7", 0.5), (1, 1, "1", 0.4)],
        "p1": [(0, 0, "2", 0.2), (0, 1, "8", 0.9), (1, 0, "8", 0.9), (1, 1, "2", 0.3)],
        "p2": [(0, 0, "5", 0.6), (0, 1, "5", 0.6), (1, 0, "5", 0.6), (1, 1, "5", 0.6)],
    }
    gold = {"p0": "1", "p1": "2", "p2": "3"}
    sampled = [_rec(p, "sample:t=0.7", pred, gold[p], s, k, c, tokens=20) for p, ss in samples.items()
               for s, k, pred, c in ss]
    _write(tmp_path, base + sampled)
    s = summarize(tmp_path)
    st = s.samples["sample:t=0.7"]
    assert (st.problems, st.samples, st.seeds) == (3, 4, 2)
    # Pass@1: per problem 3/4, 2/4, 0
    assert st.pass1.value == pytest.approx((0.75 + 0.5 + 0) / 3)
    assert s.point("sample:t=0.7").accuracy == pytest.approx(st.pass1.value)
    # pass@2 = 1 - C(n-c, 2)/C(4, 2): p0 1 - 0/6 = 1, p1 1 - 1/6, p2 0
    assert st.pass_at[2].value == pytest.approx((1 + 5 / 6 + 0) / 3)
    assert st.pass_at[4].value == pytest.approx(2 / 3)
    # maj@4: p0 '1' x3 -> right; p1 '2' x2 vs '8' x2, '2' sampled first -> right; p2 wrong
    assert st.maj_at[4].value == pytest.approx(2 / 3)
    assert st.maj_at[1].value == pytest.approx(st.pass1.value)
    # maj@2 on p1 (answers 2, 8, 8, 2): subsets {2,8} x4 tie -> '2' (first), {2,2} -> '2', {8,8} -> '8': 5/6
    assert st.maj_at[2].value == pytest.approx((1 + 5 / 6 + 0) / 3)
    # conf vote: p0 '1' 2.1 vs '7' 0.5 -> right; p1 '2' 0.5 vs '8' 1.8 -> wrong; p2 wrong
    assert st.votes["conf"].value == pytest.approx(1 / 3)
    # deepconf@10: ceil(0.4) = 1 most confident sample: p0 0.9 '1' right; p1 0.9 '8' (first) wrong
    assert st.votes["deepconf@10"].value == pytest.approx(1 / 3)
    # seed sd: per-seed Pass@1 (1 + .5 + 0)/3 = .5 and (.5 + .5 + 0)/3 = 1/3
    assert st.seed_sd_pass1 == pytest.approx(abs(0.5 - 1 / 3) / 2**0.5)
    # per-seed votes: seed 0 p0 '1', p1 tie '2' first -> right, p2 wrong: 2/3; seed 1 p0 tie '7' first, p1 '8'
    # first: 0
    assert st.seed_sd_maj == pytest.approx((2 / 3) / 2**0.5)
    assert st.mean_tokens == 20

    # paired against the plain cap (the default baseline): Pass@1 is averaged -> bootstrap; maj@4 is 0/1 -> McNemar
    assert s.baseline == "budget:max=64"
    by_metric = {r.metric: r for r in s.paired if r.method == "sample:t=0.7"}
    pass1, maj = by_metric["pass1"], by_metric["maj@4"]
    assert pass1.test == "bootstrap" and pass1.diff == pytest.approx(st.pass1.value - 1 / 3)
    assert pass1.low <= pass1.diff <= pass1.high
    assert maj.test == "McNemar" and (maj.wins, maj.losses) == (1, 0) and maj.p == 1.0  # p1 only
    # DeepConf's votes are paired too (0/1 per problem -> McNemar), on the problems with confidences
    conf = by_metric["conf"]
    assert conf.test == "McNemar" and conf.value == pytest.approx(st.votes["conf"].value) and conf.n == 3
    assert set(by_metric) == {"pass1", "maj@4", "conf", "deepconf@90", "deepconf@10"}
    md = s.summary_path.read_text()
    for heading in ("## Samples", "## Paired tests against `budget:max=64`", "## Sequential vs parallel scaling",
                    "Power:", "deepconf@10"):
        assert heading in md
    assert (tmp_path / "sequential_parallel.png").read_bytes()[:4] == b"\x89PNG"
    curves = {c.name: c for c in s.curves}
    par = curves["maj@k sample:t=0.7"]
    assert [p.tokens for p in par.points] == [20, 40, 80] and par.kind == "parallel"
    assert curves["budget"].control == 1.0 and par.control is None


def test_baselines(tmp_path: Path) -> None:
    assert default_baseline(["greedy", "budget:max=64", "budget:max=512", "budget:max=512,waits=1"]) == \
        "budget:max=512"
    assert default_baseline(["entropix", "greedy"]) == "entropix"
    rows = [_rec("p0", m, "1", "1") for m in ("greedy", "entropix")] + [_rec("p1", m, "2", "1") for m in ("greedy",
                                                                                                         "entropix")]
    _write(tmp_path, rows)
    assert summarize(tmp_path).baseline == "greedy"
    assert summarize(tmp_path, baseline="entropix").baseline == "entropix"
    with pytest.raises(ConfigError, match="baseline 'budget:max=9' has no results"):
        summarize(tmp_path, baseline="budget:max=9")


def test_one_sample_summary_has_no_sample_sections(tmp_path: Path) -> None:
    rows = [_rec(f"p{i}", m, "1" if (i + j) % 2 else "0", "1") for i in range(4) for j, m in
            enumerate(("budget:max=64", "budget:max=128"))]
    for r in rows:
        del r["seed"], r["sample"], r["confidence"], r["lowest_group_confidence"]
    _write(tmp_path, rows)
    s = summarize(tmp_path)
    md = s.summary_path.read_text()
    assert "## Samples" not in md and "Sequential vs parallel" not in md and s.figure_path is None
    (row,) = s.paired
    assert (row.method, row.baseline, row.test, row.wins, row.losses) == ("budget:max=64", "budget:max=128", "McNemar",
                                                                          2, 2)
    assert "95% Wilson score intervals" in md


# ------------------------------------------------------------------------------------- CLI


def test_compare_cli_samples_seeds_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from entropix_s1.research.datasets import load_dataset

    problems = load_dataset("mawps_addsub", limit=3)
    loaded: list[str] = []

    class CliModel(SamplingModel):
        def __init__(self) -> None:
            super().__init__(problems)
            self.by_prompt = {render_prompt(p): p for p in problems}

    def fake_load(name: str) -> CliModel:
        loaded.append(name)
        return CliModel()

    monkeypatch.setitem(vars(entropix_s1), "load", fake_load)
    monkeypatch.setattr("entropix_s1.research.methods.build_method", fake_method_from_spec)
    parser = add_compare_arguments(argparse.ArgumentParser())
    out = tmp_path / "out"
    base = ["--dataset", "mawps_addsub", "--limit", "3", "--methods", "budget:max=64;sample:t=0.7", "--out", str(out),
            "--no-progress"]
    with pytest.raises(ConfigError, match="--samples must be >= 1"):
        compare_main(parser.parse_args(base + ["--samples", "0"]))
    with pytest.raises(ConfigError, match=r"--baseline.*'budget:foo=1'"):
        compare_main(parser.parse_args(base + ["--baseline", "budget:foo=1"]))
    assert loaded == []  # both refused before the model loads
    assert compare_main(parser.parse_args(base + ["--samples", "2", "--seeds", "2", "--baseline",
                                                  "sample:temperature=0.70"])) == 0
    assert "## Paired tests against `sample:t=0.7`" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["baseline"] == "sample:t=0.7"
    assert len(read_results(out)) == 3 * (1 + 2 * 2)
    assert summarize(out).baseline == "sample:t=0.7"  # kept for later summaries


def fake_method_from_spec(spec: Any) -> Method:
    return Method(spec.name, spec.family, ("fake-sampler", spec.sampler_kind), spec.budget, spec.max_new_tokens)
