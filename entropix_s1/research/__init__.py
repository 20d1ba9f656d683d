"""Research harness: datasets, grading, decoding-method specs, s1 metrics and `compare`.

Host-side Python only; samplers (and so JAX) are imported when a method is built, and the model
is loaded only by `compare_main`.
"""

from entropix_s1.research.compare import (
    CompareSummary,
    add_compare_arguments,
    compare_main,
    read_results,
    run_compare,
    summarize,
)
from entropix_s1.research.datasets import (
    DATASETS,
    PROMPT_TEMPLATES,
    DatasetError,
    Problem,
    dataset_names,
    default_data_dir,
    load_dataset,
    render_prompt,
)
from entropix_s1.research.grading import extract_answer, is_correct, normalize_latex, parse_number
from entropix_s1.research.methods import (
    Method,
    MethodSpec,
    budget_sweep,
    expand_specs,
    parse_method,
    parse_spec,
    pause_string_ablation,
    wait_string_ablation,
    waits_sweep,
)
from entropix_s1.research.s1_metrics import (
    FamilyMetrics,
    MethodPoint,
    control,
    family_metrics,
    performance,
    scaling,
    sign_test,
    wilson_interval,
)

__all__ = [
    "CompareSummary",
    "DATASETS",
    "DatasetError",
    "FamilyMetrics",
    "Method",
    "MethodPoint",
    "MethodSpec",
    "PROMPT_TEMPLATES",
    "Problem",
    "add_compare_arguments",
    "budget_sweep",
    "compare_main",
    "control",
    "dataset_names",
    "default_data_dir",
    "expand_specs",
    "extract_answer",
    "family_metrics",
    "is_correct",
    "load_dataset",
    "normalize_latex",
    "parse_method",
    "parse_number",
    "parse_spec",
    "pause_string_ablation",
    "performance",
    "read_results",
    "render_prompt",
    "run_compare",
    "scaling",
    "sign_test",
    "summarize",
    "wait_string_ablation",
    "waits_sweep",
    "wilson_interval",
]
