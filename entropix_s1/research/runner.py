"""`run_compare`: every decoding method on every problem of a dataset, graded, into a resumable store.

Work order: method by method (one sampler/budget config at a time, so the engine compiles once per
method), problems in dataset order. A model with `generate_iter` (ours) gets all of a method's
pending problems in one call with `batch_size` row slots, scheduled "continuous" (a finished row's
slot takes the next problem at once) or "static" (fixed batches); each result is written as it
finishes. Its randomness is keyed by `seed`, the method name and the problem id, so it does not
depend on the schedule, the slot count or what has already run. Other models get `batch_size`
prompts per `generate` call, seeded from `seed`, the method name and the batch's first problem id.
Finished (id, method) pairs in the out dir are skipped, so running the same comparison again
completes an interrupted one.

The model is duck-typed: it needs `generate(prompts, *, raw, sampler, budget, max_new_tokens,
seed, on_error) -> list[GenerationResult]` (one result per prompt, same order; `on_error="row"`:
a prompt that cannot run comes back as a row with `error` set, graded wrong and counted in the
summary's errors column, instead of stopping the comparison) and, optionally,
`default_budget` (a `Budget`, or a callable returning one) whose `think_start`/`think_end`/
`answer_prefix`/`cap_with_delimiter` are the model's format; they replace the placeholders of every
method budget (the numbers -- caps, waits, wait string -- stay the method's).
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entropix_s1.errors import ConfigError
from entropix_s1.research import store
from entropix_s1.research.datasets import PROMPT_TEMPLATES, Problem, load_dataset, render_prompt, template_for
from entropix_s1.research.grading import grade
from entropix_s1.research.methods import Method, model_format, parse_method, with_format
from entropix_s1.research.report import CompareSummary, summarize

if TYPE_CHECKING:  # budget.py imports JAX; the CLI parser must not need it
    from entropix_s1.core.budget import Budget

__all__ = ["run_compare", "record"]


def _batch_seed(seed: int, method: str, first_id: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(f"{method}\0{first_id}".encode())) % (2**31 - 1)


def _problem_id(problem: Problem) -> int:
    """A stable int per problem id: keys the problem's randomness (with the method's seed)."""
    return zlib.crc32(problem.id.encode()) % (2**31 - 1)


def record(problem: Problem, method: Method, budget: Budget | None, result: Any, seconds: float) -> dict[str, Any]:
    """The results-file record of one generation: graded, with its counts and texts."""
    error = getattr(result, "error", None)
    text = getattr(result, "text", "") or ""
    answer_text = getattr(result, "answer_text", "") or ""
    graded = None if error else grade(text, answer_text, problem.gold, problem.dataset)
    return {
        "id": problem.id,
        "dataset": problem.dataset,
        "method": method.name,
        "family": method.family,
        "prediction": graded.prediction if graded else None,
        "gold": problem.gold,
        "correct": bool(graded and graded.correct),
        "thinking_tokens": int(getattr(result, "thinking_tokens", 0)),
        "answer_tokens": int(getattr(result, "answer_tokens", 0)),
        "waits": int(getattr(result, "waits_inserted", 0)),
        "pauses": int(getattr(result, "pauses_inserted", 0)),
        "probes": len(getattr(result, "probes", ()) or ()),
        "seconds": round(seconds, 4),
        "stop_reason": getattr(result, "stop_reason", None),
        "error": error,
        "budget_min": (budget.min_thinking_tokens or None) if budget is not None else None,
        "budget_max": budget.max_thinking_tokens if budget is not None else None,
        "max_new_tokens": method.max_new_tokens,
        "answer_text": answer_text,
        "text": text,
    }


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    disable = not enabled or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    return tqdm(total=total, disable=disable, unit="problem", dynamic_ncols=True, desc="compare")


def _problems(dataset: str | Sequence[Problem], limit: int | None, **load_kw: Any) -> list[Problem]:
    if isinstance(dataset, str):
        problems = load_dataset(dataset, limit=limit, **load_kw)
    else:
        problems = list(dataset)[: limit if limit is not None else None]
    if not problems:
        raise ConfigError("no problems to run (empty dataset or --limit 0)")
    if len({p.id for p in problems}) != len(problems):
        raise ConfigError("problem ids must be unique (they key the resumable results file)")
    return problems


def _template(template: str | None, dataset: str) -> str:
    tmpl = template if template is not None else template_for(dataset)
    if tmpl not in PROMPT_TEMPLATES and "{question}" not in tmpl:
        raise ConfigError(f"prompt template {tmpl!r}: use one of {sorted(PROMPT_TEMPLATES)} or a string with {{question}}")
    return tmpl


def _methods(methods: Sequence[str | Method]) -> list[Method]:
    built: list[Method] = []
    for m in methods:
        mm = parse_method(m)
        if mm.name not in {b.name for b in built}:
            built.append(mm)
    if not built:
        raise ConfigError("no methods given")
    return built


def _run_batch(model: Any, method: Method, budget: Budget | None, batch: list[Problem], tmpl: str,
               seed: int) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    results = list(model.generate(
        [render_prompt(p, tmpl) for p in batch],
        raw=False,
        sampler=method.sampler,
        budget=budget,
        max_new_tokens=method.max_new_tokens,
        seed=_batch_seed(seed, method.name, batch[0].id),
        on_error="row",
    ))
    elapsed = time.perf_counter() - t0
    if len(results) != len(batch):
        raise RuntimeError(f"model.generate returned {len(results)} results for {len(batch)} prompts")
    return [record(p, method, budget, r, elapsed / len(batch)) for p, r in zip(batch, results, strict=True)]


def _scheduled_records(model: Any, method: Method, budget: Budget | None, pending: list[Problem], tmpl: str,
                       seed: int, batch_size: int, schedule: str):
    """Records as rows finish, from one `generate_iter` call over every pending problem; a record's
    `seconds` is the wall time since the previous one finished (they add up to the method's time)."""
    t0 = time.perf_counter()
    results = model.generate_iter(
        [render_prompt(p, tmpl) for p in pending], raw=False, sampler=method.sampler, budget=budget,
        max_new_tokens=method.max_new_tokens, seed=_batch_seed(seed, method.name, ""), on_error="row",
        batch_size=batch_size, schedule=schedule, prompt_ids=[_problem_id(p) for p in pending], progress=False)
    for i, result in results:
        t1 = time.perf_counter()
        yield [record(pending[i], method, budget, result, t1 - t0)]
        t0 = t1


def _batched_records(model: Any, method: Method, budget: Budget | None, pending: list[Problem], tmpl: str,
                     seed: int, batch_size: int):
    for start in range(0, len(pending), batch_size):
        yield _run_batch(model, method, budget, pending[start : start + batch_size], tmpl, seed)


def _run_method(model: Any, method: Method, budget: Budget | None, pending: list[Problem], tmpl: str, seed: int,
                batch_size: int, results_path: Path, bar: Any, schedule: str = "continuous") -> None:
    n_correct = n_done = 0
    bar.set_postfix_str(method.name, refresh=False)
    if hasattr(model, "generate_iter") and pending:
        chunks = _scheduled_records(model, method, budget, pending, tmpl, seed, batch_size, schedule)
    else:
        chunks = _batched_records(model, method, budget, pending, tmpl, seed, batch_size)
    for records in chunks:
        store.append_records(results_path, records)
        n_done += len(records)
        n_correct += sum(r["correct"] for r in records)
        bar.set_postfix_str(f"{method.name} acc={n_correct / n_done:.1%}", refresh=False)
        bar.update(len(records))


def run_compare(
    model: Any,
    dataset: str | Sequence[Problem],
    methods: Sequence[str | Method],
    out_dir: str | os.PathLike[str],
    *,
    limit: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    data_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    question_field: str | None = None,
    answer_field: str | None = None,
    template: str | None = None,
    base_budget: Budget | None = None,
    schedule: str = "continuous",
) -> CompareSummary:
    """Run every method on every problem (resuming from `out_dir`), then `summarize(out_dir)`.

    dataset: a built-in name, a JSONL path (with `question_field`/`answer_field`), or a list of
        Problems. `limit` keeps the first N problems.
    methods: spec strings (see `methods.py`) or Method objects.
    template: a PROMPT_TEMPLATES key or a string with `{question}`; default: the dataset's.
    base_budget: supplies the format fields (`think_start`/`think_end`/`answer_prefix`/
        `cap_with_delimiter`) of every method's budget; default the
        model's `default_budget` attribute if it has one, else the Budget defaults.
    schedule: "continuous" or "static" slot scheduling of `batch_size` rows (models with
        `generate_iter`); both give the same predictions.
    Exceptions from `model.generate` propagate after everything finished so far is on disk.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if schedule not in ("continuous", "static"):
        raise ConfigError(f"schedule must be 'continuous' or 'static', got {schedule!r}")
    problems = _problems(dataset, limit, data_dir=data_dir, question_field=question_field,
                         answer_field=answer_field)
    tmpl = _template(template, problems[0].dataset)
    built = _methods(methods)
    out = store.check_out_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / store.RESULTS_FILE
    base = base_budget if base_budget is not None else model_format(model)
    with store.locked(out):
        store.check_run_file(out, problems[0].dataset, tmpl, seed, [m.name for m in built],
                             getattr(model, "name", None), getattr(model, "weights_sha256", None))
        done = {(str(r["id"]), str(r["method"])) for r in store.repair_results(results_path)}
        plan = [(m, [p for p in problems if (p.id, m.name) not in done]) for m in built]
        total = sum(len(ps) for _, ps in plan)
        skipped = len(problems) * len(built) - total
        if progress and skipped:
            print(f"entropix-s1 compare: resuming, {skipped} of {len(problems) * len(built)} results already in "
                  f"{results_path}", file=sys.stderr)
        with _progress_bar(total, progress) as bar:
            for method, pending in plan:
                _run_method(model, method, with_format(method.budget, base), pending, tmpl, seed, batch_size,
                            results_path, bar, schedule)
    return summarize(out)
