"""benchmarks/scaling_experiment.py (its parts, commands and CPU-time plan) and
benchmarks/scaling_report.py (every figure and table from results files), without a model."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


experiment = _load("scaling_experiment")
report = _load("scaling_report")


def test_parts_cover_the_planned_experiment() -> None:
    ps = experiment.parts()
    assert len(ps) == 16 and len({p.name for p in ps}) == 16
    assert len({p.out for p in ps}) == 4  # one out dir per (model, dataset), four parts each
    assert [p.name.rsplit("-", 1)[1] for p in ps[:4]] == ["seq"] * 4  # the cheap group first
    think = {p.name: p for p in ps if p.model.short == "think"}
    seq = think["think-gsm8k-seq"]
    assert seq.limit == 300 and think["think-math500-seq"].limit == 200  # the stated MATH-500 subset
    assert sum(m.startswith("budget:max=") and "waits" not in m for m in seq.methods) == 4  # four cap levels
    assert {"budget:max=512,waits=1", "budget:max=512,waits=2", "greedy", "adaptive-budget:max=512,waits=1"} <= \
        set(seq.methods)
    assert {m.split(":")[0] for m in think["think-gsm8k-methods"].methods} == {"nowait", "nothinking", "deer", "eat",
                                                                               "graceful"}
    assert think["think-gsm8k-methods"].limit == 300 and think["think-math500-methods"].limit == 100
    maj = think["think-gsm8k-maj"]
    assert maj.methods == ("sample+budget:t=0.7,max=512",) and (maj.samples, maj.seeds) == (8, 2)
    assert maj.limit == 100 and maj.rows(maj.methods[0]) == 100 * 16 and seq.rows("greedy") == 300
    math_maj = think["think-math500-maj"]
    assert (math_maj.limit, math_maj.samples, math_maj.seeds) == (100, 8, 1) and math_maj.rows(maj.methods[0]) == 800
    small = experiment.parts(experiment.Scope(gsm8k=50, math500=40, math500_methods=60, maj=100))
    by_name = {p.name: p.limit for p in small}
    # never past the set's own limit
    assert by_name["think-gsm8k-maj"] == 50 and by_name["qwen-math500-methods"] == 40 and by_name["qwen-math500-maj"] == 40
    assert by_name["qwen-gsm8k-methods"] == 50 and by_name["think-math500-seq"] == 40


def test_scope_flags_reach_the_parts(capsys: pytest.CaptureFixture[str]) -> None:
    assert experiment.main(["list", "qwen-math500-methods", "qwen-math500-maj", "--math500-methods-limit", "7",
                            "--math500-seeds", "3", "--samples", "2"]) == 0
    methods_line, maj_line = capsys.readouterr().out.splitlines()
    assert "deer:max=512" in methods_line and "dynasor" not in methods_line
    assert maj_line.endswith("(samples 2, seeds 3)")
    p = {p.name: p for p in experiment.parts(experiment.Scope(math500_methods=7))}["qwen-math500-methods"]
    assert experiment.command(p, batch_size=8)[experiment.command(p, batch_size=8).index("--limit") + 1] == "7"


def test_command(tmp_path: Path) -> None:
    p = experiment.parts(experiment.Scope(gsm8k=5, samples=4, seeds=1), root=tmp_path)[0]
    cmd = experiment.command(p, batch_size=8)
    assert cmd[cmd.index("--samples") + 1] == "1" and cmd[cmd.index("--baseline") + 1] == "budget:max=512"
    assert cmd[cmd.index("--template") + 1] == "plain" and cmd[cmd.index("--limit") + 1] == "5"
    assert cmd[cmd.index("--out") + 1] == str(tmp_path / "think_gsm8k")


def test_run_part_logs_its_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = tmp_path / "argv.json"
    script = f"import json, sys; json.dump(sys.argv[1:], open({str(seen)!r}, 'w'))"
    monkeypatch.setenv("ENTROPIX_S1_CLI", shlex.join([sys.executable, "-c", script]))
    p = experiment.parts(experiment.Scope(gsm8k=2), root=tmp_path)[-4]  # think-gsm8k-maj
    assert experiment.run_part(p, batch_size=4) == 0
    argv = json.loads(seen.read_text())
    assert argv[:2] == ["compare", "--model"] and argv[argv.index("--samples") + 1] == "8"
    (log,) = [json.loads(x) for x in (tmp_path / "part_times.jsonl").read_text().splitlines()]
    assert log["part"] == "think-gsm8k-maj" and log["rows"] == 0


def test_plan_states_rows_tokens_and_hours(capsys: pytest.CaptureFixture[str]) -> None:
    assert experiment.main(["plan", "think-gsm8k-seq", "think-gsm8k-maj", "--gsm8k-limit", "10"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| `")}
    assert rows["`think-gsm8k-seq`"].split("|")[3].strip() == "80"  # 8 deterministic methods x 10 problems
    assert rows["`think-gsm8k-maj`"].split("|")[3].strip() == "160"  # 10 problems x 8 samples x 2 seeds
    assert "**total**" in out and "think/gsm8k tokens/s: " in out
    # this committed part is finished: 10 of its 10 problems for every method, nothing left
    assert rows["`think-gsm8k-seq`"].split("|")[4].strip() == "80" and rows["`think-gsm8k-seq`"].split("|")[7].strip() == "0.0"
    # a cap clips the natural length; a wait lengthens it
    natural = (100.0, 10.0)
    assert experiment.tokens_per_row("budget:max=32", natural) == 42
    assert experiment.tokens_per_row("budget:max=512,waits=1", natural) == pytest.approx(150)
    assert experiment.tokens_per_row("greedy", None) == 1024  # no committed lengths: the upper bound
    with pytest.raises(SystemExit):
        experiment.main(["plan", "no-such-part"])


def test_plan_reads_the_experiments_own_records(tmp_path: Path) -> None:
    """Rows already in the out dir count as done, and their lengths and speed replace the older
    committed sources (the records' `seconds` add up to each method's wall time)."""
    run = tmp_path / "think_gsm8k"
    run.mkdir()
    ids = [f"gsm8k-{i}" for i in range(4)]
    recs = [{"id": i, "method": "budget:max=512", "seed": 0, "sample": 0, "thinking_tokens": 90, "answer_tokens": 10,
             "seconds": 1.0} for i in ids]
    recs += [{"id": i, "method": "entropix+budget:max=512", "seed": 0, "sample": 0, "thinking_tokens": 90,
              "answer_tokens": 10, "seconds": 4.0} for i in ids[:2]]
    recs += [{"id": ids[0], "method": "budget:max=512,waits=1", "seed": 0, "sample": 0, "thinking_tokens": 150,
              "answer_tokens": 10, "seconds": 1.5}]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "run.json").write_text(json.dumps({"dataset": "gsm8k", "seed": 0, "methods": []}))
    every = experiment.parts(experiment.Scope(gsm8k=4), root=tmp_path)
    seq, _, rand, _ = [p for p in every if p.name.startswith("think-gsm8k")]
    assert experiment.rows_done(seq, "budget:max=512") == 4 and experiment.rows_done(rand, "entropix+budget:max=512") == 2
    assert experiment.natural_lengths(seq)[0] == (90.0, 10.0)
    tps, src = experiment.tokens_per_second(seq)
    assert tps == pytest.approx((400 + 160) / 5.5) and "think_gsm8k records" in src
    assert experiment.relative_speed("entropix+budget:max=512", rand) == pytest.approx((200 / 8) / tps)
    lines = experiment.plan([seq, rand])
    row = {x.split("|")[1].strip(): x.split("|") for x in lines if x.startswith("| `")}
    assert row["`think-gsm8k-seq`"][4].strip() == "5"  # the 4 caps and the one row with a wait
    assert row["`think-gsm8k-random`"][4].strip() == "2"
    tokens, secs, left = experiment.part_cost(rand)
    # 2 methods x 4 rows x 100 tokens; the 2 entropix rows done took 4 s each at entropix's measured speed
    assert tokens == 800 and left == pytest.approx(secs - 2 * 4.0)


def _rec(pid: str, method: str, correct: bool, seed: int = 0, sample: int = 0, tokens: int = 50) -> dict:
    return {"id": pid, "dataset": "gsm8k", "method": method, "prediction": "1" if correct else "2", "gold": "1",
            "correct": correct, "seed": seed, "sample": sample, "thinking_tokens": tokens, "answer_tokens": 5,
            "budget_max": 256 if "max=" in method else None, "confidence": 1.0 + sample / 10,
            "lowest_group_confidence": 0.5}


def test_report_regenerates_figures_and_tables(tmp_path: Path) -> None:
    run = tmp_path / "scaling" / "think_gsm8k"
    run.mkdir(parents=True)
    recs = [_rec(f"p{i}", "budget:max=256", i < 4) for i in range(10)]
    recs += [_rec(f"p{i}", "budget:max=64", i < 1, tokens=40) for i in range(10)]
    recs += [_rec(f"p{i}", "entropix+budget:max=256", 1 <= i < 6) for i in range(10)]  # 2 only it, 1 only the cap
    recs += [_rec(f"p{i}", "sample+budget:t=0.7,max=256", (i + k) % 3 != 0, k // 2, k % 2) for i in range(10)
             for k in range(4)]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "run.json").write_text(json.dumps({"dataset": "gsm8k", "seed": 0, "baseline": "budget:max=256",
                                              "methods": ["budget:max=64", "budget:max=256",
                                                          "sample+budget:t=0.7,max=256", "entropix+budget:max=256"]}))
    worse = tmp_path / "scaling" / "qwen_gsm8k"  # a panel where no method beats the baseline
    worse.mkdir()
    recs = [_rec(f"p{i}", "budget:max=256", i < 4) for i in range(10)] + [_rec(f"p{i}", "budget:max=64", i < 1)
                                                                            for i in range(10)]
    (worse / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (worse / "run.json").write_text(json.dumps({"dataset": "gsm8k", "seed": 0, "baseline": "budget:max=256",
                                                "methods": ["budget:max=64", "budget:max=256"]}))
    img, md = tmp_path / "fig.png", tmp_path / "exp.md"
    argv = ["--results", str(tmp_path / "scaling"), "--img", str(img), "--md", str(md)]
    assert report.main(argv) == 0
    text = md.read_text()
    assert img.read_bytes()[:4] == b"\x89PNG" and (run / "sequential_parallel.png").is_file()
    assert "## Headlines" in text and "thinking SmolLM2-135M on gsm8k (n = 10)" in text
    assert "Baseline `budget:max=256`: 40.0%" in text
    assert "Entropy-adaptive `entropix+budget:max=256`: 50.0% at 55 tokens, Δ +10.0 points" in text
    assert "2 problems only it solves and 1 only the baseline, McNemar p = 1" in text
    assert "Qwen2.5-Coder-0.5B-Instruct on gsm8k (n = 10)" in text
    assert "No method scores above it; the closest: `budget:max=64` Pass@1 10.0%" in text
    assert "### Paired tests against `budget:max=256`" in text and "maj@4" in text
    assert "McNemar" in text and "Power:" in text
    first = text
    assert report.main(argv) == 0
    assert md.read_text() == first  # the same results give the same tables
    assert experiment.main(["pack", "--out-root", str(tmp_path / "scaling")]) == 0  # the committed form
    assert not (run / "results.jsonl").exists() and (run / "results.jsonl.gz").is_file()
    assert report.main(argv) == 0
    assert md.read_text() == first  # packed results give the same tables
    assert report.main(["--results", str(tmp_path / "none"), "--md", str(md)]) == 2
