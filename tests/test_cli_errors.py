"""Bad input to `entropix-s1` is a named error (exit 2, `entropix-s1 <cmd>: error: ...`, no traceback),
Ctrl-C during `compare` says what is saved and how to resume, and `generate --method SPEC` builds its
sampler and budget through the same spec grammar as `compare` (the model is a fake: no weights)."""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path
from typing import Any

import pytest

import entropix_s1
import entropix_s1.cli.generate as cli_generate
from entropix_s1.cli.main import main
from entropix_s1.core.budget import Budget
from entropix_s1.core.sampling import Greedy, Sample
from entropix_s1.research.datasets import load_dataset, render_prompt


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------- generate


class FakeModel:
    """What `generate` uses of a Model: default_budget, budget(**kw), generate(prompts, **kw)."""

    default_budget = Budget(think_start="<think>\n", think_end=("</think>",))

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def budget(self, **kw: Any) -> Budget:
        return dataclasses.replace(self.default_budget, **kw)

    def generate(self, prompts: list[str], **kw: Any) -> list[Any]:
        self.calls.append(kw)
        return [types.SimpleNamespace(text="5", thinking_tokens=1, answer_tokens=1, waits_inserted=0,
                                      pauses_inserted=0, stop_reason="eos") for _ in prompts]


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> FakeModel:
    model = FakeModel()
    monkeypatch.setattr(cli_generate, "load_model", lambda a: model)
    return model


@pytest.mark.parametrize(("flag", "value"), [("--temperature", "0.5"), ("--top-p", "0.9"), ("--top-k", "5"),
                                             ("--min-p", "0.1")])
@pytest.mark.parametrize("sampler", [[], ["--sampler", "greedy"], ["--sampler", "entropix"]])
def test_sample_flags_need_the_sample_sampler(flag: str, value: str, sampler: list[str], fake_model: FakeModel,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--prompt", "x", flag, value, *sampler]) == 2
    err = _err(capsys)
    assert err.startswith(f"entropix-s1 generate: error: {flag} applies only to --sampler sample")
    assert fake_model.calls == []  # refused before any model is loaded


def test_sample_flags_with_the_sample_sampler(fake_model: FakeModel) -> None:
    assert main(["generate", "--prompt", "x", "--sampler", "sample", "--top-p", "0.9"]) == 0
    (kw,) = fake_model.calls
    assert kw["sampler"] == Sample(temperature=0.7, top_p=0.9) and kw["budget"] is None
    assert kw["max_new_tokens"] == 256


def test_entropix_config_needs_the_entropix_sampler(tmp_path: Path, fake_model: FakeModel,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--prompt", "x", "--entropix-config", str(tmp_path / "c.json")]) == 2
    assert "--entropix-config applies only to --sampler entropix" in _err(capsys)


@pytest.mark.parametrize(("content", "match"), [
    ({"low_ent_thresh": 0.5, "bogus_key": 1}, "does not fit EntropixConfig: unknown key(s) 'bogus_key'"),
    ([1, 2], "must hold a JSON object of EntropixConfig fields, not a list"),
])
def test_bad_entropix_config_is_a_named_error(content: Any, match: str, tmp_path: Path, fake_model: FakeModel,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "cal.json"
    cfg.write_text(json.dumps(content))
    assert main(["generate", "--prompt", "x", "--sampler", "entropix", "--entropix-config", str(cfg)]) == 2
    err = _err(capsys)
    assert err.startswith("entropix-s1 generate: error: calibration file") and match in err and str(cfg) in err
    # the same loader behind the spec grammar
    assert main(["generate", "--prompt", "x", "--method", f"entropix:calibrated={cfg}"]) == 2
    assert match in _err(capsys)
    assert fake_model.calls == []


def test_entropix_config_loads(tmp_path: Path, fake_model: FakeModel) -> None:
    cfg = tmp_path / "cal.json"
    cfg.write_text(json.dumps({"low_ent_thresh": 0.2, "attn_layers": [-1]}))
    assert main(["generate", "--prompt", "x", "--sampler", "entropix", "--entropix-config", str(cfg)]) == 0
    (kw,) = fake_model.calls
    assert kw["sampler"] == entropix_s1.EntropixConfig(low_ent_thresh=0.2, attn_layers=(-1,))


@pytest.mark.parametrize("extra", [["--max-thinking", "8"], ["--num-waits", "1"], ["--sampler", "sample"],
                                   ["--temperature", "0.5"], ["--think-end", "</t>"], ["--wait", "Hmm"]])
def test_method_with_other_decoding_flags_is_refused(extra: list[str], fake_model: FakeModel,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--prompt", "x", "--method", "budget:max=64", *extra]) == 2
    err = _err(capsys)
    assert f"--method cannot be combined with {extra[0]}" in err
    assert fake_model.calls == []


def test_generate_method_spec(fake_model: FakeModel, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--prompt", "What is 2+3?", "--method", "adaptive-budget:max=64,waits=2"]) == 0
    (kw,) = fake_model.calls
    want = dataclasses.replace(Budget(max_thinking_tokens=64, num_waits=2, mode="adaptive"),
                               think_start="<think>\n", think_end=("</think>",))
    assert kw["sampler"] == Greedy() and kw["budget"] == want  # the model's delimiters, the spec's numbers
    assert kw["max_new_tokens"] == 64 + 256 + 32  # the spec's: room for the answer after the cap
    assert main(["generate", "--prompt", "x", "--method", "sample:t=0.5", "--max-new-tokens", "9"]) == 0
    kw = fake_model.calls[-1]
    assert kw["sampler"] == Sample(temperature=0.5) and kw["max_new_tokens"] == 9
    assert "[thinking=1 answer=1" in capsys.readouterr().err
    assert main(["generate", "--prompt", "x", "--method", "budget:foo=1"]) == 2
    assert "unknown key 'foo'" in _err(capsys)


def test_budget_flags_build_the_same_budget_as_before(fake_model: FakeModel) -> None:
    """The README's flags: the Budget the old parser built (the model's, with these fields set)."""
    assert main(["generate", "--prompt", "x", "--max-thinking", "48", "--num-waits", "1", "--max-answer", "24"]) == 0
    assert fake_model.calls[-1]["budget"] == fake_model.budget(
        min_thinking_tokens=0, max_thinking_tokens=48, num_waits=1, wait_text="Wait",
        answer_prefix="\nFinal Answer:", max_answer_tokens=24)
    assert main(["generate", "--prompt", "x", "--min-thinking", "4", "--think-start", "<t>", "--think-end", "</t>",
                 "--wait", "Hmm", "--answer-prefix", "A:"]) == 0
    assert fake_model.calls[-1]["budget"] == fake_model.budget(
        min_thinking_tokens=4, max_thinking_tokens=None, num_waits=0, wait_text="Hmm", answer_prefix="A:",
        max_answer_tokens=None, think_start="<t>", think_end=("</t>",), cap_with_delimiter=True)
    assert main(["generate", "--prompt", "x", "--wait", "Hmm"]) == 0  # no limit given: no budget, as before
    assert fake_model.calls[-1]["budget"] is None and fake_model.calls[-1]["sampler"] == "greedy"


def test_bad_budget_flags_are_a_named_error(fake_model: FakeModel, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--prompt", "x", "--min-thinking", "9", "--max-thinking", "3"]) == 2
    assert "entropix-s1 generate: error: " in (err := _err(capsys)) and "min_thinking_tokens (9)" in err


# -------------------------------------------------------------------------------------- compare


class InterruptedModel:
    """Answers every problem right; raises KeyboardInterrupt on generate call number `stop_at`."""

    def __init__(self, stop_at: int | None) -> None:
        self.gold = {render_prompt(p): p.gold for p in load_dataset("mawps_addsub", limit=6)}
        self.stop_at, self.n = stop_at, 0

    def generate(self, prompts: list[str], **kw: Any) -> list[Any]:
        self.n += 1
        if self.n == self.stop_at:
            raise KeyboardInterrupt
        return [types.SimpleNamespace(text=f"Final Answer: {self.gold[p]}", answer_text=str(self.gold[p]))
                for p in prompts]


def _compare(out: Path) -> list[str]:
    return ["compare", "--dataset", "mawps_addsub", "--limit", "6", "--methods", "greedy", "--out", str(out),
            "--batch-size", "2", "--no-progress"]


def test_ctrl_c_during_compare_says_what_is_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    loaded: list[str] = []
    models = iter([InterruptedModel(stop_at=2), InterruptedModel(stop_at=None)])

    def fake_load(name: str) -> InterruptedModel:
        loaded.append(name)
        return next(models)

    monkeypatch.setitem(vars(entropix_s1), "load", fake_load)
    out = tmp_path / "runs" / "x"
    assert main(_compare(out)) == 130
    err = _err(capsys)
    assert f"interrupted; 2 result(s) are saved in {out / 'results.jsonl'}" in err
    assert "Run the same command again to resume" in err
    assert loaded == ["smollm2-135m-instruct"]  # --model defaults to DEFAULT_MODEL
    assert main(_compare(out)) == 0  # resumes: 4 more
    err = _err(capsys)
    assert "resuming" not in err  # --no-progress
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6 and all(r["correct"] for r in rows)


def test_compare_out_naming_a_file_is_a_named_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    loaded: list[str] = []
    monkeypatch.setitem(vars(entropix_s1), "load", loaded.append)
    f = tmp_path / "out.txt"
    f.write_text("not a directory\n")
    assert main(_compare(f)) == 2
    err = _err(capsys)
    assert err.startswith(f"entropix-s1 compare: error: --out {f} is an existing file, not a directory")
    assert loaded == [] and f.read_text() == "not a directory\n"


def test_unknown_flag_is_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["generate", "--prompt", "x", "--no-such-flag"])
    assert e.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_bench_forwards_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse
    import sys

    seen: list[argparse.Namespace] = []
    fake = types.ModuleType("harness")
    fake.add_arguments = lambda p: p.add_argument("--repeats", type=int, default=3) and p  # type: ignore[attr-defined]
    fake.main = lambda a: seen.append(a) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "harness", fake)
    assert main(["bench", "--repeats", "1"]) == 0
    assert seen[0].repeats == 1
