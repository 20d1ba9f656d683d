"""Run decoding methods over a dataset, grade them, and report s1's metrics (resumable).

`run_compare(model, dataset, methods, out_dir)` writes into `out_dir`:

* `results.jsonl`: one JSON object per (problem, method) with `id`, `method`, `prediction`,
  `gold`, `correct`, `thinking_tokens`, `answer_tokens`, `waits`, `pauses`, `seconds` (batch
  wall time / batch rows), `stop_reason`, plus `dataset`, `family`, `budget_min`, `budget_max`,
  `max_new_tokens`, `error`, `answer_text` and `text` (so a run can be re-graded and
  re-summarised from this file alone).
* `summary.md`: per method n, accuracy with a 95% Wilson interval, mean thinking/answer tokens,
  waits, pauses, Control; per family Scaling, Performance, Control (`s1_metrics`).
* `scaling.png`: accuracy vs mean thinking tokens, one line per family, 95% CI error bars
  (s1's Figure 1 layout).
* `run.json`: the dataset, prompt template, seed and methods of the run, and the model's name and
  weights sha256 (a directory holding another model's results is refused).

Resuming: at start the existing `results.jsonl` is read and finished (id, method) pairs are
skipped. Each finished batch is appended in one write, then flushed and fsync'ed, so a crash
loses at most the batch in flight. A last line cut short by a crash (no trailing newline) is
truncated away before appending, so it is recomputed once and never duplicated. Running the
same command again therefore completes an interrupted comparison; an out dir holding another
dataset or prompt template is refused. A lock file keeps two runs from writing one out dir.

Work order: method by method (consecutive batches share one sampler/budget config, so the engine
compiles once per method), problems in dataset order, `batch_size` prompts per
`model.generate` call. The seed of a batch is derived from `seed`, the method name and the
batch's first problem id (independent of what has already run).

The model is duck-typed: it needs `generate(prompts, *, raw, sampler, budget, max_new_tokens,
seed, on_error) -> list[GenerationResult]` (one result per prompt, same order; `on_error="row"`:
a prompt that cannot run comes back as a row with `error` set, graded wrong and counted in the
summary's errors column, instead of stopping the comparison) and, optionally,
`default_budget` (a `Budget`, or a callable returning one) whose `think_start`/`think_end`/
`answer_prefix`/`cap_with_delimiter` are the model's format; they replace the placeholders of every
method budget (the numbers -- caps, waits, wait string -- stay the method's).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entropix_s1.errors import ConfigError
from entropix_s1.research.datasets import (
    PROMPT_TEMPLATES,
    Problem,
    load_dataset,
    render_prompt,
    template_for,
)
from entropix_s1.research.grading import extract_from_generation, is_correct
from entropix_s1.research.methods import Method, expand_specs, parse_method, parse_spec
from entropix_s1.research.s1_metrics import FamilyMetrics, MethodPoint, family_metrics, method_point

if TYPE_CHECKING:  # budget.py imports JAX; summarize() and the CLI parser must not need it
    from entropix_s1.core.budget import Budget

__all__ = [
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "PLOT_FILE",
    "RUN_FILE",
    "CompareSummary",
    "run_compare",
    "summarize",
    "read_results",
    "add_compare_arguments",
    "compare_main",
]

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.md"
PLOT_FILE = "scaling.png"
RUN_FILE = "run.json"
_LOCK_FILE = ".compare.lock"


@dataclasses.dataclass(frozen=True)
class CompareSummary:
    """What `summarize` computed and where it wrote it."""

    out_dir: Path
    dataset: str | None
    points: tuple[MethodPoint, ...]
    families: tuple[FamilyMetrics, ...]
    n_results: int
    summary_path: Path
    plot_path: Path | None

    def point(self, method: str) -> MethodPoint:
        for p in self.points:
            if p.method == method:
                return p
        raise KeyError(method)

    def family(self, family: str) -> FamilyMetrics:
        for f in self.families:
            if f.family == family:
                return f
        raise KeyError(family)


# --------------------------------------------------------------------------------------------
# results file


def _parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Complete records of a results file and the byte length of its complete lines.

    Only newline-terminated lines count; the tail after the last newline is an unfinished
    write. Complete lines that are not JSON objects are skipped (reported by the caller).
    """
    end = data.rfind(b"\n") + 1
    records: list[dict[str, Any]] = []
    bad = 0
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(obj, dict) and "id" in obj and "method" in obj:
            records.append(obj)
        else:
            bad += 1
    if bad:
        print(f"entropix-s1 compare: skipped {bad} unreadable line(s) in the results file", file=sys.stderr)
    return records, end


def _dedupe(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for r in records:
        key = (str(r["id"]), str(r["method"]))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def read_results(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of `out_dir/results.jsonl` (unfinished last line ignored, first of duplicates kept).
    Does not modify the file."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        return []
    records, _ = _parse_lines(path.read_bytes())
    return _dedupe(records)


def _repair_results(path: Path) -> list[dict[str, Any]]:
    """Read the results file and cut off an unfinished last line, so appends start clean."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    records, end = _parse_lines(data)
    if end != len(data):
        print(
            f"entropix-s1 compare: dropping an unfinished last line ({len(data) - end} bytes) of {path}",
            file=sys.stderr,
        )
        with path.open("r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return _dedupe(records)


def _append_records(path: Path, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    with path.open("ab") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with (out_dir / _LOCK_FILE).open("a") as lf:
        try:
            fcntl.flock(lf.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"another compare run is writing to {out_dir}; wait for it or use another --out") from None
        try:
            yield
        finally:
            fcntl.flock(lf.fileno(), fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# running


def _model_base_budget(model: Any, base_budget: Budget | None) -> Budget | None:
    from entropix_s1.core.budget import Budget

    if base_budget is not None:
        return base_budget
    b = getattr(model, "default_budget", None)
    if callable(b):
        b = b()
    return b if isinstance(b, Budget) else None


def _effective_budget(method: Method, base: Budget | None) -> Budget | None:
    if method.budget is None or base is None:
        return method.budget
    return dataclasses.replace(method.budget, think_start=base.think_start, think_end=base.think_end,
                               answer_prefix=base.answer_prefix, cap_with_delimiter=base.cap_with_delimiter)


def _batch_seed(seed: int, method: str, first_id: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(f"{method}\0{first_id}".encode())) % (2**31 - 1)


def _record(problem: Problem, method: Method, budget: Budget | None, result: Any, seconds: float) -> dict[str, Any]:
    error = getattr(result, "error", None)
    text = getattr(result, "text", "") or ""
    answer_text = getattr(result, "answer_text", "") or ""
    prediction = None if error else extract_from_generation(text, answer_text, problem.dataset)
    return {
        "id": problem.id,
        "dataset": problem.dataset,
        "method": method.name,
        "family": method.family,
        "prediction": prediction,
        "gold": problem.gold,
        "correct": bool(prediction is not None and is_correct(prediction, problem.gold, problem.dataset)),
        "thinking_tokens": int(getattr(result, "thinking_tokens", 0)),
        "answer_tokens": int(getattr(result, "answer_tokens", 0)),
        "waits": int(getattr(result, "waits_inserted", 0)),
        "pauses": int(getattr(result, "pauses_inserted", 0)),
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


def _check_run_file(out_dir: Path, dataset: str, template: str, seed: int, methods: list[str],
                    model_name: str | None, weights_sha256: str | None = None) -> None:
    path = out_dir / RUN_FILE
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("dataset") not in (None, dataset):
            raise ConfigError(
                f"{out_dir} holds a comparison on dataset {old['dataset']!r}, not {dataset!r}; use another --out"
            )
        if old.get("template") not in (None, template):
            raise ConfigError(
                f"{out_dir} holds results made with prompt template {old['template']!r}, not {template!r}; "
                "use another --out"
            )
        if weights_sha256 and old.get("weights_sha256") not in (None, weights_sha256):
            raise ConfigError(
                f"{out_dir} holds results of model {old.get('model')!r} with other weights (sha256 "
                f"{old['weights_sha256'][:12]}..., these are {weights_sha256[:12]}...); resuming would mix two "
                "models: use another --out, or delete the old results"
            )
        if old.get("seed") not in (None, seed):
            print(f"entropix-s1 compare: note: {out_dir} was started with seed {old['seed']}, resuming with {seed}",
                  file=sys.stderr)
    merged = list(old.get("methods", []))
    merged += [m for m in methods if m not in merged]
    info = {"dataset": dataset, "template": template, "seed": old.get("seed", seed), "methods": merged,
            "model": old.get("model") or model_name, "weights_sha256": old.get("weights_sha256") or weights_sha256}
    _write_atomic(path, (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


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
) -> CompareSummary:
    """Run every method on every problem (resuming from `out_dir`), then `summarize(out_dir)`.

    dataset: a built-in name, a JSONL path (with `question_field`/`answer_field`), or a list of
        Problems. `limit` keeps the first N problems.
    methods: spec strings (see `methods.py`) or Method objects.
    template: a PROMPT_TEMPLATES key or a string with `{question}`; default: the dataset's.
    base_budget: supplies the format fields (`think_start`/`think_end`/`answer_prefix`/
        `cap_with_delimiter`) of every method's budget; default the
        model's `default_budget` attribute if it has one, else the Budget defaults.
    Exceptions from `model.generate` propagate after everything finished so far is on disk.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(dataset, str):
        problems = load_dataset(dataset, data_dir=data_dir, question_field=question_field,
                                answer_field=answer_field, limit=limit)
    else:
        problems = list(dataset)[: limit if limit is not None else None]
    if not problems:
        raise ConfigError("no problems to run (empty dataset or --limit 0)")
    if len({p.id for p in problems}) != len(problems):
        raise ConfigError("problem ids must be unique (they key the resumable results file)")
    ds_name = problems[0].dataset
    tmpl = template if template is not None else template_for(ds_name)
    if tmpl not in PROMPT_TEMPLATES and "{question}" not in tmpl:
        raise ConfigError(f"prompt template {tmpl!r}: use one of {sorted(PROMPT_TEMPLATES)} or a string with {{question}}")
    built: list[Method] = []
    for m in methods:
        mm = parse_method(m)
        if mm.name not in {b.name for b in built}:
            built.append(mm)
    if not built:
        raise ConfigError("no methods given")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_FILE
    base = _model_base_budget(model, base_budget)
    with _locked(out):
        _check_run_file(out, ds_name, tmpl, seed, [m.name for m in built], getattr(model, "name", None),
                        getattr(model, "weights_sha256", None))
        done = {(str(r["id"]), str(r["method"])) for r in _repair_results(results_path)}
        plan = [(m, [p for p in problems if (p.id, m.name) not in done]) for m in built]
        total = sum(len(ps) for _, ps in plan)
        skipped = len(problems) * len(built) - total
        if progress and skipped:
            print(f"entropix-s1 compare: resuming, {skipped} of {len(problems) * len(built)} results already in "
                  f"{results_path}", file=sys.stderr)
        with _progress_bar(total, progress) as bar:
            for method, pending in plan:
                budget = _effective_budget(method, base)
                n_correct = n_done = 0
                for start in range(0, len(pending), batch_size):
                    batch = pending[start : start + batch_size]
                    bar.set_postfix_str(method.name, refresh=False)
                    prompts = [render_prompt(p, tmpl) for p in batch]
                    t0 = time.perf_counter()
                    results = model.generate(
                        prompts,
                        raw=False,
                        sampler=method.sampler,
                        budget=budget,
                        max_new_tokens=method.max_new_tokens,
                        seed=_batch_seed(seed, method.name, batch[0].id),
                        on_error="row",
                    )
                    elapsed = time.perf_counter() - t0
                    results = list(results)
                    if len(results) != len(batch):
                        raise RuntimeError(
                            f"model.generate returned {len(results)} results for {len(batch)} prompts"
                        )
                    records = [
                        _record(p, method, budget, r, elapsed / len(batch)) for p, r in zip(batch, results, strict=True)
                    ]
                    _append_records(results_path, records)
                    n_done += len(records)
                    n_correct += sum(r["correct"] for r in records)
                    bar.set_postfix_str(f"{method.name} acc={n_correct / n_done:.1%}", refresh=False)
                    bar.update(len(records))
    return summarize(out)


# --------------------------------------------------------------------------------------------
# summary


def _method_order(out_dir: Path, records: list[dict[str, Any]]) -> list[str]:
    order: list[str] = []
    run = out_dir / RUN_FILE
    if run.is_file():
        try:
            order = [str(m) for m in json.loads(run.read_text(encoding="utf-8")).get("methods", [])]
        except (OSError, json.JSONDecodeError, AttributeError):
            order = []
    present = []
    for r in records:
        if r["method"] not in present:
            present.append(r["method"])
    return [m for m in order if m in present] + [m for m in present if m not in order]


def _family_and_bounds(recs: list[dict[str, Any]], method: str) -> tuple[str, int | None, int | None]:
    first = recs[0]
    if "family" in first and "budget_max" in first:
        return str(first["family"]), first.get("budget_min"), first.get("budget_max")
    try:  # older / hand-made files: recover from the canonical name
        spec = parse_spec(method)
        return spec.family, spec.budget.min_thinking_tokens or None, spec.budget.max_thinking_tokens
    except ConfigError:
        return method, None, None


def _points(out_dir: Path, records: list[dict[str, Any]]) -> list[MethodPoint]:
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_method.setdefault(str(r["method"]), []).append(r)
    points = []
    for m in _method_order(out_dir, records):
        recs = by_method[m]
        family, bmin, bmax = _family_and_bounds(recs, m)
        points.append(
            method_point(
                m,
                family,
                [bool(r.get("correct")) for r in recs],
                [int(r.get("thinking_tokens") or 0) for r in recs],
                budget_min=bmin,
                budget_max=bmax,
                answer_tokens=[int(r.get("answer_tokens") or 0) for r in recs],
                waits=[int(r.get("waits") or 0) for r in recs],
                pauses=[int(r.get("pauses") or 0) for r in recs],
                errors=sum(1 for r in recs if r.get("error")),
                seconds=[float(r.get("seconds") or 0.0) for r in recs],
            )
        )
    return points


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def _summary_markdown(dataset: str | None, points: list[MethodPoint], families: list[FamilyMetrics],
                      n_results: int, plot: bool) -> str:
    lines = [f"# entropix-s1 compare: {dataset or 'unknown dataset'}", ""]
    lines.append(f"{n_results} results from `{RESULTS_FILE}`; accuracy intervals are 95% Wilson score intervals.")
    lines.append("")
    if not points:
        lines.append("No results yet.")
        return "\n".join(lines) + "\n"
    lines += [
        "## Methods",
        "",
        "| method | n | accuracy | 95% CI | mean thinking tokens | mean answer tokens | waits | pauses "
        "| Control | errors | s/problem |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| `{_md_escape(p.method)}` | {p.n} | {_pct(p.accuracy)} | {_pct(p.ci_low)} – {_pct(p.ci_high)} "
            f"| {p.mean_thinking_tokens:.1f} | {p.mean_answer_tokens:.1f} | {p.mean_waits:.2f} | {p.mean_pauses:.2f} "
            f"| {_pct(p.control)} | {p.errors} | {p.seconds_per_problem:.3f} |"
        )
    lines += [
        "",
        "## Families (s1 section 3.2)",
        "",
        "| family | methods | Scaling (acc. points per 1k thinking tokens) | Performance | Control |",
        "|---|---:|---:|---:|---:|",
    ]
    for f in families:
        sc = "—" if f.scaling is None else f"{f.scaling * 100 * 1000:+.2f}"
        lines.append(f"| `{_md_escape(f.family)}` | {len(f.methods)} | {sc} | {_pct(f.performance)} | {_pct(f.control)} |")
    lines += [
        "",
        "Control: share of runs whose thinking tokens stay within the method's [min, max] budget "
        "(— when no bound is set). Scaling: mean slope of accuracy over all pairs of a family's "
        "methods ordered by mean thinking tokens (— with fewer than two distinct points). "
        "Performance: the family's best accuracy.",
    ]
    if plot:
        lines += ["", f"![accuracy vs thinking tokens]({PLOT_FILE})"]
    return "\n".join(lines) + "\n"


def _short_label(method: str, family: str) -> str:
    if method == family:
        return ""
    head, _, opts = method.partition(":")
    fam_opts = set(family.partition(":")[2].split(","))
    return ",".join(o for o in opts.split(",") if o not in fam_opts)


def plot_points(ax: Any, points: Sequence[MethodPoint], families: Sequence[FamilyMetrics], title: str = "",
                colors: Any = None) -> None:
    """Accuracy (95% Wilson error bars) vs mean thinking tokens, one line per method family, on a
    matplotlib Axes: the picture of s1's Figure 1, shared by `scaling.png` and multi-panel reports.
    `colors`: optional callable family -> colour, to keep a family's colour across panels."""
    by_name = {p.method: p for p in points}
    xs_all = []
    for f in families:
        ps = sorted((by_name[m] for m in f.methods if by_name[m].n), key=lambda p: p.mean_thinking_tokens)
        if not ps:
            continue
        x = [p.mean_thinking_tokens for p in ps]
        y = [100 * p.accuracy for p in ps]
        yerr = [[max(0.0, 100 * (p.accuracy - p.ci_low)) for p in ps],
                [max(0.0, 100 * (p.ci_high - p.accuracy)) for p in ps]]
        xs_all += x
        ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, linewidth=1.5, label=f.family,
                    color=colors(f.family) if colors else None)
        for k, (p, xi, yi) in enumerate(zip(ps, x, y, strict=True)):
            lab = _short_label(p.method, f.family)
            if lab:  # staggered up/down so the labels of neighbouring points do not overprint
                ax.annotate(lab, (xi, yi), textcoords="offset points", xytext=(4, (4, -11, 14)[k % 3]), fontsize=7)
    if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) > 8:
        from matplotlib.ticker import ScalarFormatter

        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("mean thinking tokens")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if families:
        ax.legend(fontsize=8, loc="best")


def save_report(fig: Any, img: str | os.PathLike[str], md_lines: Sequence[str], md: str | os.PathLike[str]) -> None:
    """Write a multi-panel report: the figure (tight layout, 110 dpi) and its markdown, then print both paths."""
    img, md = Path(img), Path(md)
    fig.tight_layout()
    img.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(img, dpi=110)
    md.write_text("\n".join(md_lines) + "\n")
    print(img)
    print(md)


def _plot(path: Path, dataset: str | None, points: list[MethodPoint], families: list[FamilyMetrics]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    plot_points(fig.add_subplot(1, 1, 1), points, families,
                f"{dataset or ''}: accuracy vs thinking tokens (95% Wilson CI)".strip(": "))
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def summarize(out_dir: str | os.PathLike[str]) -> CompareSummary:
    """Rebuild summary.md and scaling.png of `out_dir` from its results.jsonl alone."""
    out = Path(out_dir)
    if not out.is_dir():
        raise ConfigError(f"{out} is not a directory with compare results")
    records = read_results(out)
    dataset = None
    run = out / RUN_FILE
    if run.is_file():
        with contextlib.suppress(OSError, json.JSONDecodeError, AttributeError):
            dataset = json.loads(run.read_text(encoding="utf-8")).get("dataset")
    if dataset is None and records:
        dataset = records[0].get("dataset")
    points = _points(out, records)
    families = family_metrics(points)
    plot_path: Path | None = None
    if points:
        plot_path = out / PLOT_FILE
        _plot(plot_path, dataset, points, families)
    summary_path = out / SUMMARY_FILE
    _write_atomic(summary_path,
                  _summary_markdown(dataset, points, families, len(records), plot_path is not None).encode("utf-8"))
    return CompareSummary(
        out_dir=out,
        dataset=dataset,
        points=tuple(points),
        families=tuple(families),
        n_results=len(records),
        summary_path=summary_path,
        plot_path=plot_path,
    )


# --------------------------------------------------------------------------------------------
# CLI glue (cli.py adds the subcommand)


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `entropix-s1 compare`."""
    parser.add_argument("--model", required=True, help="model name or checkpoint path (entropix_s1.load)")
    parser.add_argument(
        "--dataset", required=True,
        help="built-in dataset (gsm8k, math500, aime24, amc23, mawps_addsub, mawps_multiarith) or a .jsonl path",
    )
    parser.add_argument("--question-field", default=None, help="JSONL field holding the question (custom files)")
    parser.add_argument("--answer-field", default=None, help="JSONL field holding the gold answer (custom files)")
    parser.add_argument("--id-field", default=None, help="JSONL field holding a stable id (default: line index)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems")
    parser.add_argument(
        "--methods", action="append", required=True, metavar="LIST",
        help="decoding methods, separated by ';' (quote it) or given by repeating the flag; "
             "braces expand: --methods 'greedy;budget:max={64,128,256,512};entropix+budget:max=512'. "
             "Grammar: family[:k=v,...] with families greedy, sample, entropix, budget, adaptive-budget "
             "and X+budget (see entropix_s1/research/methods.py)",
    )
    parser.add_argument("--out", required=True, help="output directory (resumed if it holds results)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (default 8)")
    parser.add_argument("--data-dir", default=None, help="directory of the built-in dataset files "
                        "(default $ENTROPIX_S1_DATA or <repo>/../shared/data)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="max_new_tokens of methods without a thinking cap or max_new= (default 1024)")
    parser.add_argument("--template", default=None, choices=sorted(PROMPT_TEMPLATES),
                        help="prompt template (default: the dataset's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def compare_main(args: argparse.Namespace) -> int:
    """Validate everything cheap first (methods, dataset), then load the model and run."""
    specs = [parse_spec(s, default_max_new_tokens=args.max_new_tokens) for s in expand_specs(args.methods)]
    problems = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        question_field=args.question_field,
        answer_field=args.answer_field,
        id_field=getattr(args, "id_field", None),
        limit=args.limit,
    )
    methods = [parse_method(s) for s in specs]
    import entropix_s1  # lazy: loads JAX

    load = getattr(entropix_s1, "load", None)
    if load is None:  # package __init__ without the re-export
        from entropix_s1.host.engine import load
    model = load(args.model)
    summary = run_compare(
        model,
        problems,
        methods,
        args.out,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
        template=args.template,
    )
    print(summary.summary_path.read_text(encoding="utf-8"))
    print(f"results: {Path(args.out) / RESULTS_FILE}\nsummary: {summary.summary_path}"
          + (f"\nplot: {summary.plot_path}" if summary.plot_path else ""))
    return 0
