"""benchmarks/adaptive_budget_report.py: the paired comparison and its exact sign test."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "adaptive_budget_report", Path(__file__).resolve().parent.parent / "benchmarks" / "adaptive_budget_report.py")
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def test_sign_test_matches_hand_values():
    assert report.sign_test_p(0, 0) == 1.0
    assert report.sign_test_p(5, 0) == pytest.approx(2 / 32)  # all 5 discordant pairs one way
    assert report.sign_test_p(1, 4) == pytest.approx(2 * (1 + 5) / 32)
    assert report.sign_test_p(3, 3) == 1.0
    assert report.sign_test_p(10, 0) == pytest.approx(2 / 1024)
    assert math.isclose(report.sign_test_p(2, 7), report.sign_test_p(7, 2))


def test_paired_counts_on_a_hand_made_results_file(tmp_path):
    rows = [("a", "budget:max=8", True), ("a", "adaptive-budget:max=8", True),
            ("b", "budget:max=8", True), ("b", "adaptive-budget:max=8", False),
            ("c", "budget:max=8", False), ("c", "adaptive-budget:max=8", True),
            ("d", "budget:max=8", False), ("d", "adaptive-budget:max=8", True),
            ("e", "budget:max=8", False)]  # e has no adaptive run: not paired
    recs = [dict(id=i, method=m, correct=c) for i, m, c in rows]
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    assert report.paired(recs, "budget:max=8", "adaptive-budget:max=8") == (4, 1, 2, 1, 1.0)
    assert report.paired(recs, "budget:max=9", "adaptive-budget:max=8") is None
