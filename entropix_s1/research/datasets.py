"""Evaluation datasets for research comparisons, and the prompt templates used to ask them.

Built-in datasets (JSON Lines files in the data directory, see `../shared/data/README.md`):

| name               | file                          | question  | gold                          | id                    |
|--------------------|-------------------------------|-----------|-------------------------------|-----------------------|
| `gsm8k`            | `gsm8k_test.jsonl`            | question  | number after `####` in answer | `gsm8k-<line>`        |
| `math500`          | `math500_test.jsonl`          | problem   | answer (LaTeX)                | `math500-<unique_id>` |
| `aime24`           | `aime24_test.jsonl`           | problem   | answer (integer)              | `aime24-<id>`         |
| `amc23`            | `amc23_test.jsonl`            | problem   | answer (float -> "27")        | `amc23-<id>`          |
| `mawps_addsub`     | `mawps_addsub_test.jsonl`     | input     | target (float -> "43")        | `mawps_addsub-<line>` |
| `mawps_multiarith` | `mawps_multiarith_test.jsonl` | input     | target                        | `mawps_multiarith-<line>` |

`<line>` is the 0-based physical line index in the file, so ids are stable across runs and
`--limit`. Any other `PATH.jsonl` loads with explicit `question_field` / `answer_field` (or, when
omitted, the first present of `question`/`problem`/`input` and `answer`/`target`/`gold`); its
dataset name is the file stem and it is graded as math (which also accepts plain numbers).

The data directory is `$ENTROPIX_S1_DATA` if set, else `<repo>/../shared/data`, where `<repo>`
is the directory holding the `entropix_s1` package.

Prompt templates (`PROMPT_TEMPLATES`) follow s1's evaluation format: the question alone as the
user turn; the model then thinks (budget forcing acts on that phase) and, after `Final Answer:`
(written by the model or forced at the budget cap), states the answer. Math datasets ask for the
answer in `\\boxed{}` (the grader reads the last box first); arithmetic datasets ask for a bare
number after `Final Answer:`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from entropix_s1.jsonl import JSONLError, iter_jsonl

__all__ = [
    "Problem",
    "DatasetInfo",
    "DatasetError",
    "DATASETS",
    "PROMPT_TEMPLATES",
    "dataset_names",
    "default_data_dir",
    "load_dataset",
    "render_prompt",
]


class DatasetError(JSONLError):
    """A dataset name, file or field that cannot be loaded (a bad line is named `path:line`)."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One evaluation problem. `gold` is the reference answer as a string (LaTeX or number)."""

    id: str
    question: str
    gold: str
    dataset: str


#: User-turn templates; the literal `{question}` is replaced by the problem text (no other
#: formatting, so braces such as `\\boxed{}` are written as they are).
PROMPT_TEMPLATES: dict[str, str] = {
    # MATH-500 / AIME / AMC (and custom files): s1-style, boxed answer.
    "math": (
        "{question}\n\n"
        "Think step by step, then give your final answer within \\boxed{}."
    ),
    # GSM8K / MAWPS: a number after "Final Answer:" (the string s1's budget forcing appends).
    "arithmetic": (
        "{question}\n\n"
        'Think step by step, then write "Final Answer:" followed by the final number only.'
    ),
    # The bare question (s1's own evaluation passes the question unchanged).
    "plain": "{question}",
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """How to read one built-in dataset file."""

    name: str
    filename: str
    question_field: str
    answer_field: str
    id_field: str | None  # None: the 0-based line index
    template: str  # key of PROMPT_TEMPLATES
    gsm8k_gold: bool = False  # gold = the number after '####'
    description: str = ""


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("gsm8k", "gsm8k_test.jsonl", "question", "answer", None, "arithmetic", True,
                    "GSM8K test split, 1319 grade-school word problems"),
        DatasetInfo("math500", "math500_test.jsonl", "problem", "answer", "unique_id", "math", False,
                    "MATH-500, the s1 paper's MATH subset"),
        DatasetInfo("aime24", "aime24_test.jsonl", "problem", "answer", "id", "math", False,
                    "AIME 2024 I and II, 30 problems"),
        DatasetInfo("amc23", "amc23_test.jsonl", "problem", "answer", "id", "math", False,
                    "AMC 2023, 40 problems"),
        DatasetInfo("mawps_addsub", "mawps_addsub_test.jsonl", "input", "target", None, "arithmetic", False,
                    "MAWPS AddSub, one-step addition/subtraction"),
        DatasetInfo("mawps_multiarith", "mawps_multiarith_test.jsonl", "input", "target", None, "arithmetic",
                    False, "MAWPS MultiArith, two-step arithmetic"),
    )
}

_QUESTION_DEFAULTS = ("question", "problem", "input", "prompt")
_ANSWER_DEFAULTS = ("answer", "target", "gold", "solution")


def dataset_names() -> list[str]:
    """Names of the built-in datasets."""
    return list(DATASETS)


def default_data_dir() -> Path:
    """`$ENTROPIX_S1_DATA`, else `<repo>/../shared/data`."""
    env = os.environ.get("ENTROPIX_S1_DATA")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    return (repo.parent / "shared" / "data").resolve()


def _is_path(spec: str) -> bool:
    return spec.endswith((".jsonl", ".json")) or os.sep in spec or "/" in spec or Path(spec).is_file()


def _canonical_name(spec: str) -> str:
    return spec.strip().lower().replace("-", "_")


def _gold_string(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return str(value).strip()


def _gsm8k_gold(answer: str) -> str:
    if "####" not in answer:
        raise ValueError("no '####' in the answer field")
    return answer.rsplit("####", 1)[1].strip().replace(",", "").replace("$", "")


def template_for(dataset: str) -> str:
    """The PROMPT_TEMPLATES key used for a dataset name ('math' for custom files)."""
    info = DATASETS.get(dataset)
    return info.template if info else "math"


def render_prompt(problem: Problem, template: str | None = None) -> str:
    """The user message for `problem`: its dataset's template (or `template`, a key of
    PROMPT_TEMPLATES or a literal string containing `{question}`)."""
    t = template if template is not None else template_for(problem.dataset)
    t = PROMPT_TEMPLATES.get(t, t)
    if "{question}" not in t:
        raise DatasetError(
            f"prompt template {template!r} is neither one of {sorted(PROMPT_TEMPLATES)} nor a string "
            "containing '{question}'"
        )
    return t.replace("{question}", problem.question)


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(0-based physical line index, object) per non-blank line: the index is what ids are made of."""
    return [(lineno - 1, obj) for lineno, obj in iter_jsonl(path, error=DatasetError)]


def _pick_field(rows: list[tuple[int, dict[str, Any]]], given: str | None, defaults: tuple[str, ...],
                what: str, path: Path, flag: str) -> str:
    fields = sorted({k for _, r in rows[:50] for k in r})
    if given is not None:
        if rows and given not in rows[0][1]:
            raise DatasetError(f"{path}: no field {given!r} for the {what} (fields: {', '.join(fields)}); "
                               f"choose one with {flag}")
        return given
    for d in defaults:
        if rows and d in rows[0][1]:
            return d
    raise DatasetError(f"{path}: cannot tell which field holds the {what} (fields: {', '.join(fields)}); "
                       f"name it with {flag}")


def load_dataset(
    dataset: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    question_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """Problems of a built-in dataset (by name) or of any JSONL file (by path), in file order.

    `limit` keeps the first N problems. For a built-in dataset the field arguments override the
    built-in ones. Raises DatasetError for unknown names (listing the known ones), missing
    files (saying where it looked and how to point elsewhere), bad lines and missing fields.
    """
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0, got {limit}")
    name = _canonical_name(dataset)
    info = DATASETS.get(name)
    gsm8k_gold = False
    if info is not None:
        base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        path = base / info.filename
        if not path.is_file():
            where = "--data-dir" if data_dir is not None else "$ENTROPIX_S1_DATA or --data-dir"
            raise DatasetError(
                f"dataset {info.name!r}: {path} not found (looked in {base}). Point {where} at the "
                f"directory holding {info.filename}, or pass the file's path as the dataset."
            )
        qf = question_field or info.question_field
        af = answer_field or info.answer_field
        idf = id_field if id_field is not None else info.id_field
        ds_name = info.name
        gsm8k_gold = info.gsm8k_gold and answer_field is None
    elif _is_path(dataset):
        path = Path(dataset).expanduser()
        if not path.is_absolute() and not path.exists() and data_dir is not None:
            path = Path(data_dir).expanduser() / path
        if not path.is_file():
            raise DatasetError(
                f"dataset file {dataset!r} not found (resolved to {path.resolve()}); give an existing "
                f"JSONL path or one of the built-in names: {', '.join(DATASETS)}"
            )
        ds_name = path.stem
        qf, af, idf = question_field, answer_field, id_field
    else:
        raise DatasetError(
            f"unknown dataset {dataset!r}; built-in datasets: {', '.join(DATASETS)} "
            "(or give the path of a .jsonl file with --question-field/--answer-field)"
        )

    rows = _read_jsonl(path)
    qf = _pick_field(rows, qf, _QUESTION_DEFAULTS, "question", path, "--question-field")
    af = _pick_field(rows, af, _ANSWER_DEFAULTS, "answer", path, "--answer-field")
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if limit is not None and len(problems) >= limit:
            break
        for field in (qf, af):
            if field not in row:
                raise DatasetError(f"{path}:{line + 1}: missing field {field!r}")
        raw_gold = row[af]
        if gsm8k_gold or (info is None and isinstance(raw_gold, str) and "####" in raw_gold):
            try:
                gold = _gsm8k_gold(str(raw_gold))
            except ValueError as e:
                raise DatasetError(f"{path}:{line + 1}: {e}") from None
        else:
            gold = _gold_string(raw_gold)
        if idf is not None:
            if idf not in row:
                raise DatasetError(f"{path}:{line + 1}: missing id field {idf!r}")
            pid = f"{ds_name}-{row[idf]}"
        else:
            pid = f"{ds_name}-{line}"
        if pid in seen:
            raise DatasetError(f"{path}:{line + 1}: duplicate id {pid!r} (also on line {seen[pid] + 1})")
        seen[pid] = line
        problems.append(Problem(id=pid, question=str(row[qf]), gold=gold, dataset=ds_name))
    return problems
