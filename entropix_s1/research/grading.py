"""Answer extraction and grading for the research datasets (host-side, pure Python).

Conventions (those of the s1 paper and its peers, see `../shared/data/README.md`):

* Extraction (`extract_answer`): the content of the last `\\boxed{...}` (nested braces allowed),
  else the text after the last `Final Answer:` (the string s1's budget forcing appends at the
  cap), else the last number in the text.
* Numeric datasets (GSM8K, MAWPS): prediction and gold compared as numbers (`,`, `$`, `%` and
  trailing unit words stripped) with a tight relative tolerance.
* Math datasets (MATH-500, AIME24, AMC23, and any custom JSONL file): equal after
  `normalize_latex`, OR equal as numbers where both sides evaluate (`\\frac{a}{b}`, `a/b`,
  decimals, `1,000`, mixed numbers, `\\sqrt`, `\\pi`), OR element-wise equal as tuples /
  intervals (`\\left( 3, \\frac{\\pi}{2} \\right)`; bracket shapes must match) or as unordered
  comma lists (`1,-2` vs `-2, 1`).

Everything here is deterministic and never raises on model output: unparseable predictions are
simply wrong.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "NUMERIC_DATASETS",
    "grading_kind",
    "extract_answer",
    "extract_from_generation",
    "normalize_latex",
    "parse_number",
    "is_correct",
]

#: Datasets graded numerically; every other name (math500, aime24, amc23, custom files) is
#: graded as LaTeX math, which also accepts plain numbers.
NUMERIC_DATASETS = frozenset({"gsm8k", "mawps_addsub", "mawps_multiarith"})

#: Relative tolerance against a non-integer gold (the Qwen2.5-Math evaluation suite's 1e-4:
#: MAWPS golds such as 0.6666666667 are rounded). Integer golds need `INT_REL_TOL`, so 70001 is
#: not accepted for 70000.
REL_TOL = 1e-4
INT_REL_TOL = 1e-9
ABS_TOL = 1e-9


def grading_kind(dataset: str) -> str:
    """'numeric' for GSM8K / MAWPS, 'math' for everything else."""
    return "numeric" if dataset in NUMERIC_DATASETS else "math"


# --------------------------------------------------------------------------------------------
# extraction

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE_RE = re.compile(r"\\boxed ([^\s$]+)")  # "\boxed 5" (no braces)
_FINAL_RE = re.compile(r"final\s+answer\s*(?:is\s*[:：]?|[:：])", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"\banswer\s+is\s*:?\s*(.+)$", re.IGNORECASE)
_INLINE_MATH_RE = re.compile(r"\$([^$]+)\$|\\\((.+?)\\\)")
# A number: optional sign (not a hyphen between two tokens), thousands groups or digits,
# optional decimals; or a bare decimal like .35
_NUM = r"(?:(?<![\w.)\]}])-)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|(?:(?<![\w.)\]}])-)?\.\d+"
_NUMBER_RE = re.compile(_NUM)
_NUMBER_OR_FRACTION_RE = re.compile(rf"(?:{_NUM})(?:\s*/\s*(?:\d+(?:\.\d+)?))?")


def _boxed_contents(text: str) -> list[str]:
    """Contents of every closed `\\boxed{...}` / `\\fbox{...}` in order (nested braces kept)."""
    out: list[tuple[int, str]] = []
    for m in _BOXED_RE.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\" and i + 1 < len(text):  # skip escaped braces \{ \}
                i += 2
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            i += 1
        if depth == 0:
            out.append((m.start(), text[m.end() : i - 1]))
    for m in _BOXED_BARE_RE.finditer(text):
        out.append((m.start(), m.group(1)))
    out.sort()
    return [s for _, s in out]


def _clean_segment(s: str) -> str:
    s = s.strip()
    # "The answer is $\frac{1}{2}$." -> the last inline formula when prose surrounds it
    maths = _INLINE_MATH_RE.findall(s)
    if maths and re.search(r"[A-Za-z]{2,}", _INLINE_MATH_RE.sub("", s)):
        a, b = maths[-1]
        s = a or b
    else:
        m = _ANSWER_IS_RE.search(s)
        if m:
            s = m.group(1)
    # strip surrounding math delimiters and trailing punctuation
    for a, b in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**")):
        if s.startswith(a) and s.endswith(b) and len(s) >= len(a) + len(b):
            s = s[len(a) : len(s) - len(b)].strip()
    s = s.rstrip(" .;:")
    if s.endswith("$"):
        s = s[:-1].rstrip(" .")
    if s.startswith("$"):
        s = s[1:].lstrip()
    return s.strip()


def _numeric_from_segment(seg: str) -> str | None:
    """The number a short answer segment states, formatted canonically ('18', '0.5')."""
    v = parse_number(seg)
    if v is not None:
        return _format_number(v)
    # "5 + 13 = 18 dollars" -> after the last '='; then the first number there
    tail = seg.rsplit("=", 1)[-1]
    m = _NUMBER_RE.search(tail)
    if m is None:
        return None
    return _format_number(float(m.group(0).replace(",", "")))


def _format_number(v: float) -> str:
    if math.isfinite(v) and v == int(v) and abs(v) < 1e16:
        return str(int(v))
    return repr(v)


def extract_answer(text: str | None, dataset: str = "math500", *, answer_segment: bool = False) -> str | None:
    """The final answer stated in `text`, or None if it states none.

    Order: the last `\\boxed{...}` (nested braces); else the first non-empty line after the last
    `Final Answer:`; else the last number (`a/b` fractions included for math datasets). For
    numeric datasets the result is reduced to a canonical number string ("1,000" -> "1000").

    answer_segment=True means `text` is already the answer part of a generation (e.g. what the
    model wrote after a forced `Final Answer:`): then, with no box and no marker, its first
    non-empty line is the answer (so `\\frac{1}{2}` is not reduced to its last number "2").
    """
    if not text:
        return None
    numeric = grading_kind(dataset) == "numeric"
    seg: str | None = None
    boxes = _boxed_contents(text)
    if boxes:
        seg = boxes[-1]
    else:
        finals = list(_FINAL_RE.finditer(text))
        if finals:
            rest = text[finals[-1].end() :]
            lines = [ln for ln in rest.splitlines() if ln.strip()]
            if lines:
                seg = lines[0]
        elif answer_segment:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if lines:
                seg = lines[0]
    if seg is not None:
        seg = _clean_segment(seg)
        if seg:
            if numeric:
                n = _numeric_from_segment(seg)
                if n is not None:
                    return n
            else:
                return seg
    # last number anywhere
    rx = _NUMBER_RE if numeric else _NUMBER_OR_FRACTION_RE
    found = rx.findall(text)
    if not found:
        return None
    last = re.sub(r"\s+", "", found[-1])
    if numeric:
        return _format_number(float(last.replace(",", "")))
    return last


def extract_from_generation(text: str, answer_text: str, dataset: str) -> str | None:
    """Grade-ready prediction for one generation: prefer the answer phase, then the whole text.

    Budget forcing may leave a `\\boxed{}` from the thinking phase behind a forced
    `Final Answer:`; the answer phase is what the model committed to, so it is read first.
    """
    if answer_text and answer_text.strip():
        a = extract_answer(answer_text, dataset, answer_segment=True)
        if a is not None:
            return a
    return extract_answer(text, dataset)


# --------------------------------------------------------------------------------------------
# normalisation

_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textrm|textit|mbox|mathrm|mathbf|operatorname)\s*\{")
_UNIT_WORDS_RE = re.compile(r"^[A-Za-z][A-Za-z .]*$")


def _match_brace(s: str, open_idx: int) -> int:
    """Index of the '}' closing the '{' at open_idx, or -1."""
    depth = 0
    for i in range(open_idx, len(s)):
        if s[i] == "{":
            depth += 1
        elif s[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _strip_text_commands(s: str) -> str:
    """Unwrap `\\text{X}`; drop it when it is a unit following other content ('5.4 \\text{ cents}')."""
    while True:
        m = _TEXT_CMD_RE.search(s)
        if m is None:
            return s
        close = _match_brace(s, m.end() - 1)
        if close < 0:
            return s[: m.start()] + s[m.end() :]
        inner = s[m.end() : close]
        before, after = s[: m.start()], s[close + 1 :]
        is_unit = bool(before.strip()) and bool(_UNIT_WORDS_RE.match(inner.strip())) and re.search(r"[\d}]\s*$", before)
        if is_unit:
            after = re.sub(r"^\s*\^\s*\{?[23]\}?", "", after)  # cm^2, inches^{3}
            s = before.rstrip() + after
        else:
            s = before + inner + after


_SPACING_RE = re.compile(r"(?<!\\)\\[!,;: ]|\\quad|\\qquad|\\displaystyle|~")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right|big|Big|bigl|bigr|Bigl|Bigr)(?![A-Za-z])")
_UNIT_SUFFIX_RE = re.compile(
    r"^(-?(?:\d[\d,]*(?:\.\d+)?|\.\d+))\s+(?:[A-Za-z]+\.?\s*)+(?:\^\s*\{?[23]\}?)?$"
)


def normalize_latex(s: str | None) -> str:
    """Canonical string form of a LaTeX answer, for string equality.

    Removes `$`/`\\$`, `\\left`/`\\right`, spacing commands (`\\!`, `\\,`, ...), `^\\circ`,
    `%`, all whitespace, `\\text{}` units after a number (other `\\text{X}` unwrap to X),
    trailing periods and trailing decimal zeros ("27.0" -> "27"); maps `\\dfrac`/`\\tfrac` to
    `\\frac` and braces `\\frac12`, `\\frac 59`, `\\frac{270}7`, `\\sqrt2`; strips thousands
    separators from a lone number ("10,\\!080" -> "10080"); drops a single-letter left-hand side
    ("x=5" -> "5"); reduces "(C)" / "\\text{(C)}" to "c"; lower-cases plain words.
    """
    if s is None:
        return ""
    s = str(s).strip()
    s = (
        s.replace("\u03c0", "\\pi")
        .replace("\u2212", "-")
        .replace("\u00d7", "\\times")
        .replace("\u221a", "\\sqrt")
        .replace("\u00b0", "")
    )
    s = s.replace("\\$", "").replace("$", "").replace("{,}", ",")
    s = _LEFT_RIGHT_RE.sub("", s)
    s = _SPACING_RE.sub(" ", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("bmatrix", "pmatrix")
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ", "", s)
    s = re.sub(r"\\%|%", "", s)
    s = _strip_text_commands(s)
    s = s.strip()
    m = _UNIT_SUFFIX_RE.match(s)  # "18 dollars", "90 degrees", "15 cm^2"
    if m:
        s = m.group(1)
    s = re.sub(r"\s+", "", s)
    s = s.rstrip(".")
    s = re.sub(r"\\\.$", "", s)
    # \frac12, \frac{270}7, \frac9{19}, \sqrt2
    s = re.sub(r"\\frac(\d)", r"\\frac{\1}", s)
    s = re.sub(r"\\frac(\{[^{}]*\})(\d)", r"\\frac\1{\2}", s)
    s = re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", s)
    # single-character super/subscripts: ^{2} -> ^2, _{5} -> _5
    s = re.sub(r"([\^_])\{(\w)\}", r"\1\2", s)
    # a lone number with thousands separators
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    # trailing decimal zeros: 27.0 -> 27, 2.50 -> 2.5
    s = re.sub(r"(\d)\.0+(?![\d])", r"\1", s)
    s = re.sub(r"(\d\.\d*?[1-9])0+(?![\d])", r"\1", s)
    # x=5 -> 5 (single-letter left-hand side only)
    s = re.sub(r"^[A-Za-z]=(?=.)", "", s)
    m = re.fullmatch(r"\(([A-Za-z])\)", s)
    if m:
        s = m.group(1)
    if re.fullmatch(r"[A-Za-z]+", s):
        s = s.lower()
    return s


# --------------------------------------------------------------------------------------------
# numeric evaluation of a small LaTeX subset (no eval(): a recursive-descent parser)

_TOKEN_RE = re.compile(r"\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|\\[A-Za-z]+|[-+*/^(){}\[\]])")


class _ParseError(Exception):
    pass


def _tokenize(s: str) -> list[str]:
    out, i = [], 0
    s = s.strip()
    while i < len(s):
        m = _TOKEN_RE.match(s, i)
        if m is None:
            raise _ParseError(s[i:])
        out.append(m.group(1))
        i = m.end()
        while i < len(s) and s[i].isspace():
            i += 1
    return out


class _Parser:
    def __init__(self, tokens: list[str]):
        self.t = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise _ParseError(f"expected {expected!r}, got {tok!r}")
        self.i += 1
        return tok

    def parse(self) -> float:
        v = self.expr()
        if self.peek() is not None:
            raise _ParseError(f"trailing {self.peek()!r}")
        return v

    def expr(self) -> float:
        v = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            r = self.term()
            v = v + r if op == "+" else v - r
        return v

    def _starts_primary(self, tok: str | None) -> bool:
        return tok is not None and (
            tok[0].isdigit() or tok[0] == "." or tok in ("(", "{", "\\frac", "\\sqrt", "\\pi")
        )

    def term(self) -> float:
        v = self.unary()
        while True:
            tok = self.peek()
            if tok in ("*", "/", "\\cdot", "\\times", "\\div"):
                self.take()
                r = self.unary()
                if tok in ("/", "\\div"):
                    if r == 0:
                        raise _ParseError("division by zero")
                    v = v / r
                else:
                    v = v * r
            elif self._starts_primary(tok):  # implicit multiplication: 3\sqrt{13}, 2\pi
                v = v * self.power()
            else:
                return v

    def unary(self) -> float:
        tok = self.peek()
        if tok == "-":
            self.take()
            return -self.unary()
        if tok == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> float:
        base = self.primary()
        if self.peek() == "^":
            self.take()
            e = self.unary()
            if abs(e) > 64 or (base == 0 and e < 0):
                raise _ParseError("exponent out of range")
            v = base**e
            if isinstance(v, complex):
                raise _ParseError("complex")
            return float(v)
        return base

    def group(self) -> float:
        tok = self.peek()
        if tok == "{":
            self.take()
            v = self.expr()
            self.take("}")
            return v
        if tok is not None and (tok[0].isdigit()):
            # \frac12 style single digit arguments
            self.take()
            return float(tok)
        raise _ParseError("expected a group")

    def primary(self) -> float:
        tok = self.peek()
        if tok is None:
            raise _ParseError("unexpected end")
        if tok[0].isdigit() or tok[0] == ".":
            self.take()
            return float(tok)
        if tok == "\\pi":
            self.take()
            return math.pi
        if tok in ("(", "{", "["):
            close = {"(": ")", "{": "}", "[": "]"}[tok]
            self.take()
            v = self.expr()
            self.take(close)
            return v
        if tok == "\\frac":
            self.take()
            a = self.group()
            b = self.group()
            if b == 0:
                raise _ParseError("division by zero")
            return a / b
        if tok == "\\sqrt":
            self.take()
            n = 2.0
            if self.peek() == "[":
                self.take()
                n = self.expr()
                self.take("]")
            x = self.group() if self.peek() == "{" else self.primary()
            if x < 0 or n == 0:
                raise _ParseError("bad root")
            return x ** (1.0 / n)
        raise _ParseError(f"unsupported token {tok!r}")


_MIXED_RE = re.compile(r"(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}")


def parse_number(s: str | None) -> float | None:
    """The value of a numeric answer, or None.

    Accepts integers, decimals (".35"), thousands separators ("1,000"), `$`, `%` and unit
    words (stripped), `\\frac{a}{b}` / `\\dfrac` / `a/b`, mixed numbers ("1\\frac{4}{5}" = 1.8),
    `\\sqrt{}`, `\\pi`, `^`, products and sums of those. Anything with a variable, a comma list
    or unknown command gives None.
    """
    if s is None:
        return None
    n = normalize_latex(s)
    if not n or "," in n:
        return None
    m = _MIXED_RE.fullmatch(n)
    if m:
        sign = -1.0 if m.group(1) else 1.0
        den = int(m.group(4))
        if den == 0:
            return None
        return sign * (int(m.group(2)) + int(m.group(3)) / den)
    try:
        v = _Parser(_tokenize(n)).parse()
    except (_ParseError, OverflowError, ValueError, ZeroDivisionError, RecursionError):
        return None
    if not math.isfinite(v):
        return None
    return v


def _num_equal(pred: float, gold: float) -> bool:
    rel = INT_REL_TOL if gold == int(gold) else REL_TOL
    return math.isclose(pred, gold, rel_tol=rel, abs_tol=ABS_TOL)


# --------------------------------------------------------------------------------------------
# comparison

_OPEN, _CLOSE = "([", ")]"


def _split_top_level(s: str) -> list[str]:
    parts, depth, cur = [], 0, []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "{}":
            cur.append(s[i : i + 2])
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _outer_brackets(s: str) -> tuple[str, str, str] | None:
    """('(', inner, ']') when s is one bracketed group like (a,b] (mixed shapes allowed)."""
    if len(s) < 2 or s[0] not in _OPEN or s[-1] not in _CLOSE:
        return None
    depth = 0
    for i, c in enumerate(s):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return None
    return s[0], s[1:-1], s[-1]


def _scalar_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    va, vb = parse_number(a), parse_number(b)
    return va is not None and vb is not None and _num_equal(va, vb)


def _math_equal(a: str, b: str, depth: int = 0) -> bool:
    """a, b already normalised."""
    if _scalar_equal(a, b):
        return True
    if depth > 3:
        return False
    ba, bb = _outer_brackets(a), _outer_brackets(b)
    if ba is not None and bb is not None:
        if (ba[0], ba[2]) != (bb[0], bb[2]):
            return False
        pa, pb = _split_top_level(ba[1]), _split_top_level(bb[1])
        if len(pa) != len(pb) or len(pa) < 2:
            return len(pa) == len(pb) == 1 and _math_equal(pa[0], pb[0], depth + 1)
        return all(_math_equal(x, y, depth + 1) for x, y in zip(pa, pb, strict=True))
    if ba is None and bb is None:
        pa, pb = _split_top_level(a), _split_top_level(b)
        if len(pa) >= 2 and len(pa) == len(pb):
            # unordered list of solutions: "1,-2" == "-2,1"
            remaining = list(pb)
            for x in pa:
                for j, y in enumerate(remaining):
                    if _math_equal(x, y, depth + 1):
                        del remaining[j]
                        break
                else:
                    return False
            return True
    return False


def is_correct(pred: str | None, gold: str | float | int | None, dataset: str) -> bool:
    """Whether prediction `pred` matches `gold` under the dataset's grading convention."""
    if pred is None or gold is None:
        return False
    pred, gold = str(pred), str(gold)
    if grading_kind(dataset) == "numeric":
        vp, vg = parse_number(pred), parse_number(gold)
        if vp is not None and vg is not None:
            return _num_equal(vp, vg)
        return normalize_latex(pred) == normalize_latex(gold) != ""
    np_, ng = normalize_latex(pred), normalize_latex(gold)
    if not np_ or not ng:
        return False
    return _math_equal(np_, ng)
