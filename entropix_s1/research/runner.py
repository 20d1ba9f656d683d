"""`run_compare`: every decoding method on every problem of a dataset, graded, into a resumable store.

Work order: method by method (one sampler/budget config at a time, so the engine compiles once per
method), then seed by seed, problems in dataset order with each problem's samples together. A
*row* is one (problem, seed, sample): `samples=K` runs K rows per problem and `seeds=S` repeats
the whole run with seeds `seed`, `seed + 1`, ..., `seed + S - 1`. A deterministic method (greedy
decoding, `methods.is_deterministic`) gives the same tokens every time, so it runs one sample of
the directory's first seed whatever K and S are (a note on stderr says so).

A model with `generate_iter` (ours) gets all pending rows of a (method, seed) in one call with
`batch_size` row slots, scheduled "continuous" (a finished row's slot takes the next row at once,
so K samples of a problem fill free slots like any other rows) or "static" (fixed batches); each
result is written as it finishes. A row's randomness is keyed by the seed, the method name and
its prompt id, a stable int of (problem id, sample) (`row_id`; sample 0 keeps the problem's own
id, so one-sample runs reproduce the results of before samples existed): it does not depend on
the schedule, the slot count, the batch mates or what has already run. Other models get
`batch_size` rows per `generate` call, seeded from the seed, the method name and the batch's
first row. Finished (id, method, seed, sample) rows in the out dir are skipped, so running the
same comparison again completes an interrupted one, and a larger K or S adds only the new rows.

The model is duck-typed: it needs `generate(prompts, *, raw, sampler, budget, max_new_tokens,
seed, on_error) -> list[GenerationResult]` (one result per prompt, same order; `on_error="row"`:
a prompt that cannot run comes back as a row with `error` set, graded wrong and counted in the
summary's errors column, instead of stopping the comparison) and, optionally,
`default_budget` (a `Budget`, or a callable returning one) whose `think_start`/`think_end`/
`answer_prefix`/`cap_with_delimiter` are the model's format; they replace the placeholders of every
method budget (the numbers -- caps, waits, wait string -- stay the method's). A result's optional
`confidence` and `lowest_group_confidence` (DeepConf's trace confidences) are recorded for the
confidence-weighted votes; results without them record None.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entropix_s1.errors import ConfigError
from entropix_s1.research import store
from entropix_s1.research.datasets import PROMPT_TEMPLATES, Problem, load_dataset, render_prompt, template_for
from entropix_s1.research.grading import grade
from entropix_s1.research.methods import Method, is_deterministic, model_format, parse_method, parse_spec, with_format
from entropix_s1.research.report import CompareSummary, summarize

if TYPE_CHECKING:  # budget.py imports JAX; the CLI parser must not need it
    from entropix_s1.core.budget import Budget

__all__ = ["Row", "run_compare", "record", "row_id", "resolve_baseline"]


@dataclasses.dataclass(frozen=True)
class Row:
    """One generation to run: sample `sample` of `problem` under seed `seed`."""

    problem: Problem
    seed: int
    sample: int

    @property
    def key(self) -> str:
        """The row's name in seeds: the problem id, with the sample index after a NUL from sample 1 on."""
        return self.problem.id if self.sample == 0 else f"{self.problem.id}\0{self.sample}"


def _batch_seed(seed: int, method: str, first_id: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(f"{method}\0{first_id}".encode())) % (2**31 - 1)


def row_id(row: Row) -> int:
    """A stable int per (problem id, sample): the prompt id keying the row's randomness (with the
    method's seed); sample 0 is the problem id's own (what one-sample runs always used)."""
    return zlib.crc32(row.key.encode()) % (2**31 - 1)


def _confidence(result: Any, name: str) -> float | None:
    value = getattr(result, name, None)
    return None if value is None else round(float(value), 6)


def record(problem: Problem, method: Method, budget: Budget | None, result: Any, seconds: float, *,
           seed: int = 0, sample: int = 0) -> dict[str, Any]:
    """The results-file record of one generation: graded, with its counts, texts and confidences."""
    error = getattr(result, "error", None)
    text = getattr(result, "text", "") or ""
    answer_text = getattr(result, "answer_text", "") or ""
    graded = None if error else grade(text, answer_text, problem.gold, problem.dataset)
    return {
        "id": problem.id,
        "dataset": problem.dataset,
        "method": method.name,
        "family": method.family,
        "seed": seed,
        "sample": sample,
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
        "confidence": _confidence(result, "confidence"),
        "lowest_group_confidence": _confidence(result, "lowest_group_confidence"),
        "answer_text": answer_text,
        "text": text,
    }


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    disable = not enabled or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    return tqdm(total=total, disable=disable, unit="sample", dynamic_ncols=True, desc="compare")


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


def _records(method: Method, budget: Budget | None, rows: list[Row], results: list[Any],
             seconds: list[float]) -> list[dict[str, Any]]:
    return [record(r.problem, method, budget, res, t, seed=r.seed, sample=r.sample)
            for r, res, t in zip(rows, results, seconds, strict=True)]


def _run_batch(model: Any, method: Method, budget: Budget | None, batch: list[Row], tmpl: str) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    results = list(model.generate(
        [render_prompt(r.problem, tmpl) for r in batch],
        raw=False,
        sampler=method.sampler,
        budget=budget,
        max_new_tokens=method.max_new_tokens,
        seed=_batch_seed(batch[0].seed, method.name, batch[0].key),
        on_error="row",
    ))
    elapsed = time.perf_counter() - t0
    if len(results) != len(batch):
        raise RuntimeError(f"model.generate returned {len(results)} results for {len(batch)} prompts")
    return _records(method, budget, batch, results, [elapsed / len(batch)] * len(batch))


def _scheduled_records(model: Any, method: Method, budget: Budget | None, rows: list[Row], tmpl: str,
                       batch_size: int, schedule: str) -> Iterator[list[dict[str, Any]]]:
    """Records as rows finish, from one `generate_iter` call over the rows (all of one seed); a
    record's `seconds` is the wall time since the previous one finished (they add up to the
    method's time)."""
    t0 = time.perf_counter()
    results = model.generate_iter(
        [render_prompt(r.problem, tmpl) for r in rows], raw=False, sampler=method.sampler, budget=budget,
        max_new_tokens=method.max_new_tokens, seed=_batch_seed(rows[0].seed, method.name, ""), on_error="row",
        batch_size=batch_size, schedule=schedule, prompt_ids=[row_id(r) for r in rows], progress=False)
    for i, result in results:
        t1 = time.perf_counter()
        yield _records(method, budget, [rows[i]], [result], [t1 - t0])
        t0 = t1


def _batched_records(model: Any, method: Method, budget: Budget | None, rows: list[Row], tmpl: str,
                     batch_size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), batch_size):
        yield _run_batch(model, method, budget, rows[start : start + batch_size], tmpl)


def _run_method(model: Any, method: Method, budget: Budget | None, rows: list[Row], tmpl: str,
                batch_size: int, results_path: Path, bar: Any, schedule: str = "continuous") -> None:
    """Run one (method, seed)'s pending rows, appending each record (or batch) as it finishes."""
    if not rows:
        return
    n_correct = n_done = 0
    bar.set_postfix_str(method.name, refresh=False)
    if hasattr(model, "generate_iter"):
        chunks = _scheduled_records(model, method, budget, rows, tmpl, batch_size, schedule)
    else:
        chunks = _batched_records(model, method, budget, rows, tmpl, batch_size)
    for records in chunks:
        store.append_records(results_path, records)
        n_done += len(records)
        n_correct += sum(r["correct"] for r in records)
        bar.set_postfix_str(f"{method.name} acc={n_correct / n_done:.1%}", refresh=False)
        bar.update(len(records))


def _check_counts(samples: int, seeds: int, batch_size: int, schedule: str) -> None:
    if samples < 1:
        raise ConfigError(f"samples (--samples) must be >= 1, got {samples}")
    if seeds < 1:
        raise ConfigError(f"seeds (--seeds) must be >= 1, got {seeds}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if schedule not in ("continuous", "static"):
        raise ConfigError(f"schedule must be 'continuous' or 'static', got {schedule!r}")


def _pending(method: Method, problems: list[Problem], seeds: list[int], samples: int,
             done: set[tuple[str, str, int, int]]) -> list[list[Row]]:
    """Per seed, the rows of `method` not yet in the store: problems in order, samples together."""
    return [[Row(p, s, k) for p in problems for k in range(samples) if (p.id, method.name, s, k) not in done]
            for s in seeds]


def _work(built: list[Method], problems: list[Problem], seed: int, first_seed: int, samples: int, seeds: int,
          done: set[tuple[str, str, int, int]]) -> tuple[list[tuple[Method, list[list[Row]]]], int]:
    """Per method its pending rows by seed (deterministic methods: one sample of the first seed),
    and how many rows the run asks for in all, done or not."""
    fixed = [m.name for m in built if is_deterministic(m)]
    if fixed and (samples > 1 or seeds > 1):
        print(f"entropix-s1 compare: note: {', '.join(fixed)}: deterministic (greedy decoding), so run once "
              f"(sample 0 of seed {first_seed}); --samples and --seeds apply to sampling methods", file=sys.stderr)
    plan, asked = [], 0
    for m in built:
        m_seeds, m_samples = ([first_seed], 1) if m.name in fixed else ([seed + i for i in range(seeds)], samples)
        plan.append((m, _pending(m, problems, m_seeds, m_samples, done)))
        asked += len(m_seeds) * m_samples * len(problems)
    return plan, asked


def resolve_baseline(baseline: str | None, out: Path, names: Sequence[str]) -> str | None:
    """The canonical name of `baseline` (a ConfigError naming --baseline if it is not a method
    spec). One that is neither among `names` (this run's methods) nor a method of the out dir's
    earlier runs gets a note: the paired tests use it once a later run gives it results."""
    if baseline is None:
        return None
    known = list(names) + [m for m in store.read_run_info(out).get("methods", []) if m not in names]
    try:
        name = baseline if baseline in known else parse_spec(baseline).name
    except ConfigError as e:
        raise ConfigError(f"baseline (--baseline) {baseline!r}: {e}") from None
    if name not in known:
        print(f"entropix-s1 compare: note: baseline {name!r} is not one of the methods ({', '.join(known)}); the "
              "paired tests use the default baseline until it has results", file=sys.stderr)
    return name

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
    samples: int = 1,
    seeds: int = 1,
    baseline: str | None = None,
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
    samples, seeds: K samples per problem under each of S seeds (`seed` .. `seed + S - 1`) for
        every sampling method; deterministic methods run once (see the module docstring).
    baseline: the method the summary's paired tests compare against (default: the largest plain
        cap `budget:max=N`, else the first method); kept in `run.json` for later summaries.
    Exceptions from `model.generate` propagate after everything finished so far is on disk.
    """
    _check_counts(samples, seeds, batch_size, schedule)
    problems = _problems(dataset, limit, data_dir=data_dir, question_field=question_field,
                         answer_field=answer_field)
    tmpl = _template(template, problems[0].dataset)
    built = _methods(methods)
    out = store.check_out_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / store.RESULTS_FILE
    base = base_budget if base_budget is not None else model_format(model)
    baseline = resolve_baseline(baseline, out, [m.name for m in built])
    with store.locked(out):
        info = store.check_run_file(out, problems[0].dataset, tmpl, seed, [m.name for m in built],
                                    getattr(model, "name", None), getattr(model, "weights_sha256", None), baseline)
        done = {store.record_key(r) for r in store.repair_results(out, info["seed"])}
        plan, asked = _work(built, problems, seed, info["seed"], samples, seeds, done)
        total = sum(len(rows) for _, by_seed in plan for rows in by_seed)
        if progress and asked > total:
            print(f"entropix-s1 compare: resuming, {asked - total} of {asked} results already in "
                  f"{results_path}", file=sys.stderr)
        with _progress_bar(total, progress) as bar:
            for method, by_seed in plan:
                for rows in by_seed:
                    _run_method(model, method, with_format(method.budget, base), rows, tmpl, batch_size,
                                results_path, bar, schedule)
    return summarize(out)
