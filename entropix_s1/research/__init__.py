"""Research harness: datasets, grading, decoding-method specs, s1 metrics and `compare`.

Host-side Python only; samplers (and so JAX) are imported when a method is built. Public names
resolve lazily, so importing one submodule (the CLI parser reads `datasets.PROMPT_TEMPLATES`)
does not import the others. The `entropix-s1 compare` command lives in `entropix_s1/cli/`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("CompareSummary", "summarize"), "report"),
    **dict.fromkeys(("read_results",), "store"),
    **dict.fromkeys(("run_compare",), "runner"),
    **dict.fromkeys(("DATASETS", "PROMPT_TEMPLATES", "DatasetError", "Problem", "dataset_names", "default_data_dir",
                     "load_dataset", "render_prompt"), "datasets"),
    **dict.fromkeys(("extract_answer", "grade", "is_correct", "parse_number"), "grading"),
    **dict.fromkeys(("Method", "MethodSpec", "budget_sweep", "expand_specs", "parse_method", "parse_spec",
                     "pause_string_ablation", "wait_string_ablation", "waits_sweep"), "methods"),
    **dict.fromkeys(("FamilyMetrics", "MethodPoint", "control", "family_metrics", "performance", "scaling",
                     "sign_test", "wilson_interval"), "s1_metrics"),
    **dict.fromkeys(("maj_at_k", "majority_vote", "pass_at_k", "weighted_vote"), "voting"),
    **dict.fromkeys(("bootstrap_interval", "detectable_difference", "mcnemar_detectable_difference", "mcnemar_exact",
                     "paired_bootstrap"), "stats"),
    **dict.fromkeys(("SampleStats", "sample_stats", "group_samples"), "samples"),
    **dict.fromkeys(("PairedRow", "paired_rows"), "paired"),
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from entropix_s1.research.datasets import (DATASETS, PROMPT_TEMPLATES, DatasetError, Problem, dataset_names,
                                               default_data_dir, load_dataset, render_prompt)
    from entropix_s1.research.grading import extract_answer, grade, is_correct, parse_number
    from entropix_s1.research.methods import (Method, MethodSpec, budget_sweep, expand_specs, parse_method,
                                              parse_spec, pause_string_ablation, wait_string_ablation, waits_sweep)
    from entropix_s1.research.report import CompareSummary, summarize
    from entropix_s1.research.runner import run_compare
    from entropix_s1.research.s1_metrics import (FamilyMetrics, MethodPoint, control, family_metrics, performance,
                                                 scaling, sign_test, wilson_interval)
    from entropix_s1.research.paired import PairedRow, paired_rows
    from entropix_s1.research.samples import SampleStats, group_samples, sample_stats
    from entropix_s1.research.stats import (bootstrap_interval, detectable_difference, mcnemar_detectable_difference,
                                            mcnemar_exact, paired_bootstrap)
    from entropix_s1.research.store import read_results
    from entropix_s1.research.voting import maj_at_k, majority_vote, pass_at_k, weighted_vote


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
