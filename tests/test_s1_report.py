"""benchmarks/s1_report.py: tables, cap shares and the figure from hand-made comparison results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "s1_report", Path(__file__).resolve().parent.parent / "benchmarks" / "s1_report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def _rec(i: int, method: str, family: str, correct: bool, think: int, cap: int | None, waits: int = 0,
         ds: str = "gsm8k") -> dict:
    return {"id": f"{ds}-{i}", "dataset": ds, "method": method, "family": family, "correct": correct,
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
    assert "All sets pooled" not in text  # one dataset: nothing to pool


def test_pooled_section_pairs_methods_with_the_plain_cap(tmp_path):
    ref, ent = report.REFERENCE, "entropix+budget:max=512"
    for ds, ref_right, ent_right in (("gsm8k", {0}, {1, 2}), ("mawps_addsub", {0, 1}, {0, 2, 3})):
        recs = [_rec(i, ref, "budget", i in ref_right, 100, 512, ds=ds) for i in range(4)]
        recs += [_rec(i, ent, "entropix+budget", i in ent_right, 50, 512, ds=ds) for i in range(4)]
        _write(tmp_path / f"s1_think_{ds}", recs)
    _write(tmp_path / "s1_base_gsm8k", [_rec(i, "greedy", "greedy", True, 90, None) for i in range(4)])
    md = tmp_path / "out.md"
    assert report.main(["--results", str(tmp_path), "--img", str(tmp_path / "f.png"), "--md", str(md)]) == 0
    pooled = md.read_text().split("## All sets pooled (2 datasets)")[1]
    rows = {line.split("|")[2].strip(): line for line in pooled.splitlines() if line.startswith("| ")}
    # entropix: 5 of 8 right; only it on gsm8k-1, -2, mawps_addsub-2, -3; only the cap on gsm8k-0 and
    # mawps_addsub-1: p = 2 * (C(6,4) + C(6,5) + C(6,6)) / 2^6 = 0.6875
    assert "| 8 | 62.5% |" in rows[f"`{ent}`"] and "| 4 / 2 | 0.69 |" in rows[f"`{ent}`"]
    assert "| 37.5% |" in rows[f"`{ref}`"] and rows[f"`{ref}`"].endswith("| – | – |")
    # the base model ran gsm8k only: paired on those 4 problems (right on all; the cap on gsm8k-0)
    assert "| 4 | 100.0% |" in rows["`greedy`"] and "| 3 / 0 | 0.25 |" in rows["`greedy`"]


def test_report_without_results_fails(tmp_path):
    assert report.main(["--results", str(tmp_path), "--img", str(tmp_path / "x.png")]) == 2
