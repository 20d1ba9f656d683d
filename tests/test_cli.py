"""The `entropix-s1` command on the real default model: score, generate (json, trace, stream),
plot, calibrate; and traces that agree with the result counts."""

from __future__ import annotations

import json

import pytest

import entropix_s1
from entropix_s1.cli import main
from entropix_s1.viz.trace import read_trace, trace_summary

pytestmark = pytest.mark.slow


def test_score_prints_json_lines(smollm2_dir, capsys):
    assert main(["score", "--model", str(smollm2_dir), "--text", "The capital of France is Paris."]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rows[0]["index"] == 0 and rows[0]["logprob"] is None and rows[0]["entropy"] is None
    assert all(set(r) == {"index", "token_id", "token", "logprob", "entropy", "varentropy", "greedy"} for r in rows)
    assert all(r["logprob"] <= 0 and r["entropy"] >= 0 and r["varentropy"] >= 0 for r in rows[1:])
    assert "".join(r["token"] for r in rows).replace("Ġ", " ") == "The capital of France is Paris."


def test_generate_json_trace_and_plot(smollm2_dir, tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    argv = ["generate", "--model", str(smollm2_dir), "--prompt", "What is 2+3?", "--sampler", "entropix",
            "--max-thinking", "24", "--num-waits", "1", "--max-answer", "8", "--max-new-tokens", "48",
            "--trace", str(trace), "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"token_ids", "text", "thinking_text", "answer_text", "thinking_tokens", "answer_tokens",
            "waits_inserted", "pauses_inserted", "stop_reason"} <= set(res)
    steps = read_trace(trace)
    assert len(steps) == len(res["token_ids"])  # a line for every generated token, forced included
    assert [s.token_id for s in steps] == res["token_ids"]
    (summary,) = trace_summary(steps).values()
    assert summary["waits_inserted"] == res["waits_inserted"]
    assert summary["pauses_inserted"] == res["pauses_inserted"]
    assert sum(1 for s in steps if s.phase == "thinking" and s.forced != "prefill") == res["thinking_tokens"]
    out = tmp_path / "plots"
    assert main(["plot", str(trace), "--out", str(out)]) == 0
    for f in ("timeline.png", "regimes.png", "tokens.html"):
        assert (out / f).stat().st_size > 1000


def test_stream_cli_prints_the_same_text(smollm2_dir, capsys):
    base = ["generate", "--model", str(smollm2_dir), "--prompt", "Name a color.", "--max-new-tokens", "12"]
    assert main(base + ["--json"]) == 0
    ref = json.loads(capsys.readouterr().out)["text"]
    assert main(base + ["--stream"]) == 0
    assert capsys.readouterr().out == ref + "\n"


def test_calibrate_writes_a_loadable_config(smollm2_dir, tmp_path):
    texts = tmp_path / "t.jsonl"
    texts.write_text("\n".join(json.dumps({"text": t}) for t in ["One two three four.", "The sky is blue today."]))
    out = tmp_path / "c.json"
    assert main(["calibrate", "--model", str(smollm2_dir), "--texts", str(texts), "--out", str(out)]) == 0
    cfg = entropix_s1.EntropixConfig(**json.loads(out.read_text()))
    t = cfg.thresholds()
    assert t["low_ent"] <= t["med_ent"] <= t["high_ent"] and t["low_vent"] <= t["high_vent"]


def test_calibrate_budget_writes_an_adaptive_budget(smollm2_dir, tmp_path, capsys):
    texts = tmp_path / "q.jsonl"
    texts.write_text("\n".join(json.dumps({"question": q}) for q in ["Say hi.", "What is 2+2? Answer with a number."]))
    out = tmp_path / "b.json"
    assert main(["calibrate", "--budget", "--model", str(smollm2_dir), "--texts", str(texts), "--out", str(out),
                 "--max-new-tokens", "48", "--quantile", "1.0", "--template", "Q: {question}"]) == 0
    rep = json.loads(out.read_text())
    assert rep["template"] == "Q: {question}"
    assert 1 <= rep["ended"] <= 2 and rep["budget"]["mode"] == "adaptive"
    assert rep["budget"]["uncertain_entropy"] >= rep["entropy_quantiles"]["0.9"]  # quantile 1.0 = the max
    assert "adaptive-budget:unc=" in capsys.readouterr().out


def test_cli_errors_are_clear(smollm2_dir, tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "missing"), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "smollm2-135m-instruct" in err  # names the path and the catalog
    assert main(["generate", "--model", str(smollm2_dir), "--prompt", "x", "--min-thinking", "9",
                 "--max-thinking", "3"]) == 2
    assert "min_thinking_tokens (9) > max_thinking_tokens (3)" in capsys.readouterr().err


def test_generate_method_spec(smollm2_dir, capsys):
    """`generate --method SPEC`: the spec grammar of `compare --methods`, with the model's delimiters."""
    argv = ["generate", "--model", str(smollm2_dir), "--prompt", "What is 2+3?", "--method",
            "adaptive-budget:max=16,waits=1", "--max-new-tokens", "40", "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["thinking_tokens"] <= 16 and res["waits_inserted"] <= 1
    assert main(argv[:-3] + ["--max-thinking", "16"]) == 2
    assert "--method cannot be combined with --max-thinking" in capsys.readouterr().err
