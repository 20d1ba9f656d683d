"""Task functions for the entropix-s1 lm-eval tasks: our prompt templates and our graders.

A task here asks exactly what `entropix-s1 compare` asks (`research/datasets.py` templates) and
grades exactly as it grades (`research/grading.py`: math-verify for math sets, the numeric grader
for GSM8K / MAWPS), so `lm_eval --tasks entropix_...` reproduces a compare accuracy. With the
entropix-s1 backend each sample also logs our thinking tokens, answer tokens, waits and pauses
(lm-eval's mean of each is in its results table) and the per-token trace.
"""

from __future__ import annotations

from typing import Any

from entropix_s1.lm_eval.backend import sample_metrics
from entropix_s1.research.datasets import DATASETS, Problem, render_prompt
from entropix_s1.research.grading import grade


def _dataset(doc: dict[str, Any]) -> str:
    return str(doc.get("entropix_dataset") or "math500")


def _problem(doc: dict[str, Any], dataset: str) -> Problem:
    info = DATASETS.get(dataset)
    question = doc[info.question_field] if info else doc.get("question", doc.get("problem"))
    return Problem(id="", question=str(question), gold=gold(doc, dataset), dataset=dataset)


def gold(doc: dict[str, Any], dataset: str) -> str:
    """The gold answer as `research.datasets.load_dataset` reads it (GSM8K: the number after ####)."""
    info = DATASETS.get(dataset)
    raw = doc[info.answer_field] if info else doc.get("answer", doc.get("target"))
    if info is not None and info.gsm8k_gold:
        return str(raw).rsplit("####", 1)[1].strip().replace(",", "").replace("$", "")
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw).strip()


def _with_dataset(dataset: str):
    def process_docs(docs: Any) -> Any:
        return docs.map(lambda doc: {**doc, "entropix_dataset": dataset})

    return process_docs


process_gsm8k = _with_dataset("gsm8k")
process_math500 = _with_dataset("math500")
process_aime24 = _with_dataset("aime24")
process_amc23 = _with_dataset("amc23")
process_mawps_addsub = _with_dataset("mawps_addsub")
process_mawps_multiarith = _with_dataset("mawps_multiarith")


def doc_to_text(doc: dict[str, Any]) -> str:
    """The user turn `compare` sends for this problem (its dataset's template)."""
    dataset = _dataset(doc)
    return render_prompt(_problem(doc, dataset))


def doc_to_target(doc: dict[str, Any]) -> str:
    return gold(doc, _dataset(doc))


def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """exact_match by our grader (the answer phase first, as compare reads it), plus our counts.

    `trace` is the sample's per-token trace (entropy, varentropy, regime, forced, phase ...);
    its aggregate is the number of traced tokens."""
    dataset = _dataset(doc)
    response = results[0]
    details = getattr(response, "details", None) or {}
    graded = grade(str(response), details.get("answer_text", ""), gold(doc, dataset), dataset)
    return {"exact_match": float(graded.correct), **sample_metrics(response), "trace": details.get("trace", [])}


def trace_tokens(traces: list[list[dict[str, Any]]]) -> int:
    """Aggregation of the `trace` metric: how many tokens were traced in all."""
    return sum(len(t) for t in traces)
