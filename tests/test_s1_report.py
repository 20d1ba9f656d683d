"""benchmarks/s1_report.py: tables, cap shares and the figure from hand-made comparison results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "s1_report", Path(__file__).resolve().parent.parent / "benchmarks" / "s1_report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def _rec(i: int, method: str, family: str, correct: bool, think: int, cap: int | None, waits: int = 0) -> dict:
    return {"id": f"gsm8k-{i}", "dataset": "gsm8k", "method": method, "family": family, "correct": correct,
            "thinking_tokens": think, "answer_tokens": 5, "waits": waits, "pauses": 0, "seconds": 1.0,
            "budget_max": cap, "budget_min": None, "error": None, "prediction": "1", "gold": "1"}


def _write(d: Path, recs: list[dict]) -> None:
    d.mkdir(parents=True)
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_report_tables_and_figure(tmp_path):
    think = [_rec(i, "budget:max=32", "budget", i < 1, 32 if i < 3 else 20, 32) for i in range(4)]
    think += [_rec(i, "budget:max=512,waits=2", "budget", i < 3, 200, 512, waits=2) for i in range(4)]
    think += [_rec(i, "budget:max=512,waits=2,wait=Hmm", "budget:wait=Hmm", i < 2, 150, 512, 2) for i in range(4)]
    _write(tmp_path / "s1_think_gsm8k", think)
    _write(tmp_path / "s1_base_gsm8k", [_rec(i, "greedy", "greedy", i == 0, 90, None) for i in range(4)])
    img, md = tmp_path / "fig.png", tmp_path / "out.md"
    assert report.main(["--results", str(tmp_path), "--img", str(img), "--md", str(md)]) == 0
    text = md.read_text()
    assert img.stat().st_size > 10_000
    rows = {line.split("|")[2].strip(): line for line in text.splitlines() if line.startswith("| think") or
            line.startswith("| base")}
    assert "| 25.0% |" in rows["`budget:max=32`"] and "| 75% |" in rows["`budget:max=32`"]  # 3 of 4 at the cap
    assert "| 75.0% |" in rows["`budget:max=512,waits=2`"] and "| 0% |" in rows["`budget:max=512,waits=2`"]
    assert "| 25.0% |" in rows["`greedy`"] and rows["`greedy`"].startswith("| base")
    assert "`budget:wait=Hmm`" in text and "Scaling" in text
    assert report.at_cap_share(think, "budget:max=32") == 0.75
    assert report.at_cap_share(think, "nope") is None


def test_report_without_results_fails(tmp_path):
    assert report.main(["--results", str(tmp_path), "--img", str(tmp_path / "x.png")]) == 2
