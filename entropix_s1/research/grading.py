"""Answer extraction and grading for the research datasets (host-side, pure Python).

Two conventions, by dataset (`grading_kind`):

* Math (MATH-500, AIME24, AMC23 and any custom JSONL file): Hugging Face's `math-verify`, what
  reasoning papers since s1 grade with. It extracts the answer (the last `\\boxed{}` first, then a
  stated final answer, then the last LaTeX or plain expression) and compares it with the gold as
  mathematics (sympy: `\\frac{1}{2}` = 0.5, `(3, \\pi/2)`, intervals, sets, matrices, units and
  `\\text{}` dropped). We keep two rules of our own on top: a generation's answer phase (what the
  model wrote after `</think>` or a forced `Final Answer:`) is read before the whole text, because
  budget forcing may leave a `\\boxed{}` from the thinking behind the answer the model committed to;
  and an answer phase with no box and no `$` has its first line read as one formula, because
  math-verify extracts bare LaTeX only between delimiters.
* Numeric (GSM8K, MAWPS): the last number, as their papers grade. Extraction: the content of the
  last `\\boxed{...}`, else the first line after the last `Final Answer:`, else the last number in
  the text; compared as numbers (`,`, `$`, `%`, `\\text{}` and unit words stripped; `a/b` and
  `\\frac{a}{b}` read as fractions) with a tight relative tolerance.

Everything here is deterministic and never raises on model output: unparseable predictions are
simply wrong. `docs/grading.md` lists where this grader and the hand-written one it replaced
disagree on our committed results, and which one is right (`benchmarks/grader_disagreements.py`).
"""

from __future__ import annotations

import ast
import dataclasses
import math
import operator
import re
import threading
from typing import Any

__all__ = [
    "NUMERIC_DATASETS",
    "Grade",
    "grading_kind",
    "grade",
    "extract_answer",
    "extract_from_generation",
    "parse_number",
    "is_correct",
]

#: Datasets graded numerically; every other name (math500, aime24, amc23, custom files) is
#: graded by math-verify, which also accepts plain numbers.
NUMERIC_DATASETS = frozenset({"gsm8k", "mawps_addsub", "mawps_multiarith"})

#: Relative tolerance against a non-integer gold (the Qwen2.5-Math evaluation suite's 1e-4:
#: MAWPS golds such as 0.6666666667 are rounded). Integer golds need `INT_REL_TOL`, so 70001 is
#: not accepted for 70000.
REL_TOL = 1e-4
INT_REL_TOL = 1e-9
ABS_TOL = 1e-9


@dataclasses.dataclass(frozen=True)
class Grade:
    """The prediction read from a generation (None: it states none) and whether it is right."""

    prediction: str | None
    correct: bool


def grading_kind(dataset: str) -> str:
    """'numeric' for GSM8K / MAWPS, 'math' for everything else."""
    return "numeric" if dataset in NUMERIC_DATASETS else "math"


# --------------------------------------------------------------------------------------------
# math: math-verify

def _timeout() -> int | None:
    """math-verify's time limit works by SIGALRM, which only the main thread may set."""
    return 5 if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> list[Any]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse  # imports sympy: lazily

    try:
        return parse(text, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
                     parsing_timeout=_timeout())
    except Exception:  # noqa: BLE001 - a prediction that breaks the parser is simply wrong
        return []


def _parse_gold(gold: str) -> list[Any]:
    """A dataset's gold answer is LaTeX without delimiters: read all of it as one formula."""
    return _parse(f"${gold}$")


def _verify(gold: list[Any], prediction: list[Any]) -> bool:
    from math_verify import verify

    if not gold or not prediction:
        return False
    try:
        return bool(verify(gold, prediction, timeout_seconds=_timeout()))
    except Exception:  # noqa: BLE001
        return False


def _math_prediction(text: str | None) -> tuple[str | None, list[Any]]:
    """(the extracted answer string, math-verify's parse of it) of one text."""
    parsed = _parse(text) if text and text.strip() else []
    return (str(parsed[-1]) if parsed else None), parsed


# --------------------------------------------------------------------------------------------
# numeric: extraction

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE_RE = re.compile(r"\\boxed ([^\s$]+)")  # "\boxed 5" (no braces)
_FINAL_RE = re.compile(r"final\s+answer\s*(?:is\s*[:：]?|[:：])", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"\banswer\s+is\s*:?\s*(.+)$", re.IGNORECASE)
_INLINE_MATH_RE = re.compile(r"\$([^$]+)\$|\\\((.+?)\\\)")
_MATH_DELIMITER_RE = re.compile(r"(?<!\\)\$|\\\(|\\\[")  # $ (not the \$ of dollars), \( or \[
# A number: optional sign (not a hyphen between two tokens), thousands groups or digits,
# optional decimals; or a bare decimal like .35
_NUM = r"(?:(?<![\w.)\]}])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?:(?<![\w.)\]}])-)?\.\d+"
_NUMBER_RE = re.compile(_NUM)


def _boxed_contents(text: str) -> list[str]:
    """Contents of every closed `\\boxed{...}` / `\\fbox{...}` in order (nested braces kept)."""
    found: list[tuple[int, str]] = []
    for match in _BOXED_RE.finditer(text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            char = text[i]
            if char == "\\" and i + 1 < len(text):  # skip escaped braces \{ \}
                i += 2
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
            i += 1
        if depth == 0:
            found.append((match.start(), text[match.end() : i - 1]))
    for match in _BOXED_BARE_RE.finditer(text):
        found.append((match.start(), match.group(1)))
    found.sort()
    return [content for _, content in found]


def _clean_segment(segment: str) -> str:
    """'The answer is $18$.' -> '18': the stated answer without prose, delimiters, punctuation."""
    segment = segment.strip()
    maths = _INLINE_MATH_RE.findall(segment)
    if maths and re.search(r"[A-Za-z]{2,}", _INLINE_MATH_RE.sub("", segment)):
        dollar, paren = maths[-1]
        segment = dollar or paren
    else:
        match = _ANSWER_IS_RE.search(segment)
        if match:
            segment = match.group(1)
    for opening, closing in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**")):
        if segment.startswith(opening) and segment.endswith(closing) and len(segment) >= len(opening) + len(closing):
            segment = segment[len(opening) : len(segment) - len(closing)].strip()
    segment = segment.rstrip(" .;:")
    if segment.endswith("$"):
        segment = segment[:-1].rstrip(" .")
    if segment.startswith("$"):
        segment = segment[1:].lstrip()
    return segment.strip()


def _format_number(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _numeric_from_segment(segment: str) -> str | None:
    """The number a short answer segment states, formatted canonically ('18', '0.5')."""
    value = parse_number(segment)
    if value is not None:
        return _format_number(value)
    tail = segment.rsplit("=", 1)[-1]  # "5 + 13 = 18 dollars" -> after the last '='
    match = _NUMBER_RE.search(tail)
    return None if match is None else _format_number(float(match.group(0).replace(",", "")))


def _numeric_answer(text: str, answer_segment: bool) -> str | None:
    segment: str | None = None
    boxes = _boxed_contents(text)
    if boxes:
        segment = boxes[-1]
    else:
        finals = list(_FINAL_RE.finditer(text))
        rest = text[finals[-1].end() :] if finals else (text if answer_segment else "")
        lines = [line for line in rest.splitlines() if line.strip()]
        if lines:
            segment = lines[0]
    if segment is not None:
        number = _numeric_from_segment(_clean_segment(segment))
        if number is not None:
            return number
    found = _NUMBER_RE.findall(text)
    return _format_number(float(found[-1].replace(",", ""))) if found else None


def _math_answer_phase(answer_text: str) -> tuple[str | None, list[Any]]:
    """math-verify's reading of an answer phase. After a forced `Final Answer:` models write bare
    LaTeX ('\\left( 3, \\frac{\\pi}{2} \\right)'), which math-verify only extracts between `$`s:
    without a box or `$`, the first line (prose such as 'The answer is' dropped) is read as one
    formula; the answer phase as a whole is the fallback."""
    if not _BOXED_RE.search(answer_text) and not _MATH_DELIMITER_RE.search(answer_text):
        finals = list(_FINAL_RE.finditer(answer_text))
        rest = answer_text[finals[-1].end() :] if finals else answer_text
        lines = [line for line in rest.splitlines() if line.strip()]
        segment = _clean_segment(lines[0]) if lines else ""
        if segment:
            prediction, parsed = _math_prediction(f"${segment}$")
            if parsed:
                return prediction, parsed
    return _math_prediction(answer_text)


def extract_answer(text: str | None, dataset: str = "math500", *, answer_segment: bool = False) -> str | None:
    """The final answer stated in `text`, or None if it states none.

    Math datasets: math-verify's extraction (the answer as written, e.g. '\\frac{1}{2}').
    Numeric datasets: the last `\\boxed{...}`; else the first non-empty line after the last
    `Final Answer:`; else the last number; reduced to a canonical number ("1,000" -> "1000").
    answer_segment=True means `text` is already the answer part of a generation: with no box and
    no marker its first line is the answer (numeric datasets)."""
    if not text:
        return None
    if grading_kind(dataset) == "math":
        return (_math_answer_phase(text) if answer_segment else _math_prediction(text))[0]
    return _numeric_answer(text, answer_segment)


def extract_from_generation(text: str, answer_text: str, dataset: str) -> str | None:
    """Grade-ready prediction for one generation: the answer phase first, then the whole text."""
    if answer_text and answer_text.strip():
        answer = extract_answer(answer_text, dataset, answer_segment=True)
        if answer is not None:
            return answer
    return extract_answer(text, dataset)


# --------------------------------------------------------------------------------------------
# numeric: values

_STRIP_RE = re.compile(r"\\[!,;: ]|\\left|\\right|\\\$|\$|\\%|%|\\text\s*\{[^{}]*\}|\\mbox\s*\{[^{}]*\}|\s+")
_PLAIN_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")  # 1e+24: as we format it
_FRAC_CMD_RE = re.compile(r"\\[dt]?frac\{([\d.]+)\}\{([\d.]+)\}")
_ARITHMETIC_RE = re.compile(r"[\d.+\-*/()]+")
_UNIT_SUFFIX_RE = re.compile(r"^(.*?\d)\s*[A-Za-z][A-Za-z .]*$")
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _evaluate(node: ast.AST) -> float:
    """Value of an arithmetic expression tree (numbers, + - * /, unary minus); ValueError otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    raise ValueError("not arithmetic")


def parse_number(text: str | None) -> float | None:
    """The value of a numeric answer, or None: '18', '1,000', '$18.90', '50%', '18 dollars',
    '2/3', '\\frac{2}{3}', '-10', '2125.00', '\\$2{,}125', and arithmetic of numbers such as
    '6 + 3' (a model cut off after writing its sum). Anything else (a variable, a list) gives None."""
    if text is None:
        return None
    text = str(text).strip().replace("{,}", ",").replace("\u2212", "-").rstrip(".")
    unit = _UNIT_SUFFIX_RE.match(text) if "\\" not in text else None
    if unit:  # "18 dollars" -> "18"
        text = unit.group(1)
    text = _STRIP_RE.sub("", text).rstrip(".")
    if _PLAIN_RE.fullmatch(text):
        return float(text.replace(",", ""))
    text = _FRAC_CMD_RE.sub(r"(\1)/(\2)", text)
    for times in ("\\times", "\\cdot", "\u00d7"):
        text = text.replace(times, "*")
    text = text.replace("\\div", "/").replace("\u00f7", "/")
    if not _ARITHMETIC_RE.fullmatch(text):
        return None
    try:
        value = _evaluate(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None
    return value if math.isfinite(value) else None


def _num_equal(prediction: float, gold: float) -> bool:
    rel = INT_REL_TOL if gold == int(gold) else REL_TOL
    return math.isclose(prediction, gold, rel_tol=rel, abs_tol=ABS_TOL)


# --------------------------------------------------------------------------------------------
# grading

def is_correct(prediction: str | None, gold: str | float | int | None, dataset: str) -> bool:
    """Whether an extracted prediction matches `gold` under the dataset's convention."""
    if prediction is None or gold is None:
        return False
    if grading_kind(dataset) == "numeric":
        predicted, expected = parse_number(str(prediction)), parse_number(str(gold))
        return predicted is not None and expected is not None and _num_equal(predicted, expected)
    return _verify(_parse_gold(str(gold)), _parse(f"${prediction}$"))


def grade(text: str, answer_text: str, gold: str, dataset: str, *, kind: str | None = None) -> Grade:
    """Grade one generation (`text` whole, `answer_text` its answer phase): what `compare` records.
    `kind` ("math" | "numeric") overrides the dataset's convention (the grader report uses it)."""
    if (kind or grading_kind(dataset)) == "numeric":
        prediction = extract_from_generation(text, answer_text, dataset)
        return Grade(prediction, is_correct(prediction, gold, dataset))
    for prediction, parsed in (_math_answer_phase(answer_text or ""), _math_prediction(text)):
        if parsed:
            return Grade(prediction, _verify(_parse_gold(str(gold)), parsed))
    return Grade(None, False)
