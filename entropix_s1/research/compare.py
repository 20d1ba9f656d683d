"""Run decoding methods over a dataset, grade them, and report s1's metrics (resumable).

`run_compare(model, dataset, methods, out_dir)` writes into `out_dir`:

* `results.jsonl`: one JSON object per (problem, method, seed, sample) with `id`, `method`,
  `seed`, `sample`, `prediction`, `gold`, `correct`, `thinking_tokens`, `answer_tokens`, `waits`,
  `pauses`, `probes`, `seconds` (batch wall time / batch rows), `stop_reason`, `confidence` and
  `lowest_group_confidence` (DeepConf's trace confidences, None when the engine gives none), plus
  `dataset`, `family`, `budget_min`, `budget_max`, `max_new_tokens`, `error`, `answer_text` and
  `text` (so a run can be re-graded and re-summarised from this file alone).
* `summary.md`: per method n, accuracy (Pass@1) with a 95% interval, mean thinking/answer
  tokens, waits, pauses, probes, Control; per family Scaling, Performance, Control
  (`s1_metrics`); with samples, pass@k, maj@k, DeepConf's weighted votes and seed sds
  (`samples`); paired tests against a baseline with a power note (`paired`, `stats`).
* `scaling.png`: accuracy vs mean thinking tokens, one line per family, 95% CI error bars
  (s1's Figure 1 layout); `sequential_parallel.png`: accuracy vs total tokens per problem,
  families and maj@k (s1's Figure 4), when a method has K >= 2 samples.
* `run.json`: the dataset, prompt template, first seed, methods and baseline of the run, and the
  model's name and weights sha256 (a directory holding another model's results is refused).

The pieces live by concern: `store` (the resumable results file, `run.json`, the lock),
`runner` (`run_compare`: the loop over methods x seeds x problems x samples), `voting` and
`stats` (the estimators and tests), `samples` and `paired` (records -> metrics and tests),
`report`, `report_sections` and `scaling_figure` (`summarize`, the markdown and the plots).
This module gathers their public names; the `entropix-s1 compare` command is
`entropix_s1/cli/compare.py`.
"""

from __future__ import annotations

from entropix_s1.research.report import (FIGURE_FILE, PLOT_FILE, SUMMARY_FILE, CompareSummary, plot_points, save_report,
                                         summarize)
from entropix_s1.research.runner import run_compare
from entropix_s1.research.store import RESULTS_FILE, RUN_FILE, read_results

__all__ = [
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "PLOT_FILE",
    "FIGURE_FILE",
    "RUN_FILE",
    "CompareSummary",
    "run_compare",
    "summarize",
    "read_results",
    "plot_points",
    "save_report",
]
