"""Where the hand-written grader and today's grader (math-verify for math sets) disagree, per
committed results file. Writes `docs/grading_disagreements.md` (the list that `docs/grading.md`
gives verdicts for).

    python benchmarks/grader_disagreements.py            # every results file under benchmarks/results
    python benchmarks/grader_disagreements.py --out -    # to stdout

The old grader is the 577-line `research/grading.py` as of commit `OLD_GRADER_REF`, read from git
(it was pure Python: `re` and `math`), so the comparison can be rerun after it is gone. For every
generation three verdicts are computed:

* old: the old grader (also checked against the `correct` stored in the file);
* new: `research.grading.grade`, what `compare` records now (math-verify for MATH-500, AIME, AMC
  and custom files; the numeric grader for GSM8K and MAWPS);
* math-verify: math-verify on every file, numeric sets included, to show what our numeric
  convention changes there.

`think_close_rate/*.jsonl` store no answer phase; it is taken as the text after the last
`</think>` when the row closed its thinking, as `benchmarks/think_close_rate.py` graded it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from entropix_s1.research.grading import grade, grading_kind  # noqa: E402

#: the last commit whose research/grading.py is the hand-written grader
OLD_GRADER_REF = "69af6eb"
DEFAULT_OUT = REPO / "docs" / "grading_disagreements.md"


def old_grader(ref: str = OLD_GRADER_REF) -> types.ModuleType:
    """The hand-written grader of commit `ref`, loaded from git as a module."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:entropix_s1/research/grading.py"],
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("old_grading")
    exec(compile(source, f"{ref}:entropix_s1/research/grading.py", "exec"), module.__dict__)  # noqa: S102
    return module


def _rows(path: Path) -> list[dict]:
    """(text, answer_text, gold, dataset, stored correct, id, method) of every line of a results file."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if "answer_text" in record:
            answer_text = record.get("answer_text") or ""
        else:  # think_close_rate: the answer phase is after the closing delimiter
            text = record.get("text") or ""
            answer_text = text.rsplit("</think>", 1)[1] if record.get("closed") and "</think>" in text else ""
        rows.append({"id": record.get("id") or record.get("question", "")[:40], "method": record.get("method", "greedy"),
                     "dataset": record.get("dataset", "gsm8k"), "gold": str(record["gold"]),
                     "text": record.get("text") or "", "answer_text": answer_text,
                     "stored": bool(record.get("correct")), "error": record.get("error")})
    return rows


def compare_file(path: Path, old: types.ModuleType) -> dict:
    """Counts and the disagreeing cases of one results file."""
    counts: Counter[str] = Counter()
    cases = []
    for row in _rows(path):
        if row["error"]:
            continue
        dataset = row["dataset"]
        old_prediction = old.extract_from_generation(row["text"], row["answer_text"], dataset)
        old_correct = bool(old_prediction is not None and old.is_correct(old_prediction, row["gold"], dataset))
        new = grade(row["text"], row["answer_text"], row["gold"], dataset)
        verify = grade(row["text"], row["answer_text"], row["gold"], dataset, kind="math")
        counts["rows"] += 1
        counts["old correct"] += old_correct
        counts["new correct"] += new.correct
        counts["math-verify correct"] += verify.correct
        counts["stored != old"] += old_correct != row["stored"]
        if old_correct != new.correct or old_correct != verify.correct:
            counts["old != new"] += old_correct != new.correct
            counts["old != math-verify"] += old_correct != verify.correct
            cases.append({"id": row["id"], "method": row["method"], "gold": row["gold"], "old": old_prediction,
                          "old_correct": old_correct, "new": new.prediction, "new_correct": new.correct,
                          "math_verify": verify.prediction, "math_verify_correct": verify.correct,
                          "kind": grading_kind(dataset)})
    return {"counts": counts, "cases": cases}


def _cell(value: object) -> str:
    text = "—" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return f"`{text[:60]}`" if value is not None else text


def report(files: list[Path], old: types.ModuleType) -> str:
    lines = ["# Grader disagreements on the committed results", "",
             f"Generated by `python benchmarks/grader_disagreements.py` (old grader: `research/grading.py` at "
             f"`{OLD_GRADER_REF}`). Verdicts per kind of case: `docs/grading.md`.", "",
             "| results file | grading | rows | old correct | new correct | math-verify correct | old ≠ new | "
             "old ≠ math-verify | stored ≠ old |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    sections = []
    for path in files:
        result = compare_file(path, old)
        c = result["counts"]
        if not c["rows"]:
            continue
        name = str(path.relative_to(REPO))
        kinds = sorted({case["kind"] for case in result["cases"]}) or [grading_kind(_rows(path)[0]["dataset"])]
        lines.append(f"| `{name}` | {', '.join(kinds)} | {c['rows']} | {c['old correct']} | {c['new correct']} | "
                     f"{c['math-verify correct']} | {c['old != new']} | {c['old != math-verify']} | {c['stored != old']} |")
        if result["cases"]:
            sections += ["", f"## `{name}`", "",
                         "| id | method | gold | old prediction | old | new prediction | new | math-verify prediction | math-verify |",
                         "|---|---|---|---|---|---|---|---|---|"]
            for case in result["cases"]:
                sections.append(
                    f"| {_cell(case['id'])} | {_cell(case['method'])} | {_cell(case['gold'])} | {_cell(case['old'])} | "
                    f"{'✓' if case['old_correct'] else '✗'} | {_cell(case['new'])} | {'✓' if case['new_correct'] else '✗'} | "
                    f"{_cell(case['math_verify'])} | {'✓' if case['math_verify_correct'] else '✗'} |")
    return "\n".join(lines + sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="results files (default: every committed one)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="markdown file to write, or - for stdout")
    parser.add_argument("--old-ref", default=OLD_GRADER_REF, help="git commit holding the hand-written grader")
    args = parser.parse_args(argv)
    files = args.files or sorted((REPO / "benchmarks" / "results").glob("**/*.jsonl"))
    files = [f.resolve() for f in files if f.name == "results.jsonl" or f.parent.name == "think_close_rate"]
    text = report(files, old_grader(args.old_ref))
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
