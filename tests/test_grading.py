"""Dataset loading, answer extraction and grading on hand-picked real lines of every data file.

No JAX: only entropix_s1.research.{datasets,grading} (and errors/budget) are imported. Math sets
are graded by math-verify; `test_math_verify_leniencies` pins the cases where it accepts what our
hand-written grader refused (docs/grading.md), so a math-verify upgrade that changes them is seen.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entropix_s1.research.datasets import (
    DATASETS,
    DatasetError,
    Problem,
    default_data_dir,
    load_dataset,
    render_prompt,
)
from entropix_s1.research.grading import (
    Grade,
    extract_answer,
    extract_from_generation,
    grade,
    grading_kind,
    is_correct,
    parse_number,
)

DATA = default_data_dir()
# The data files are part of the test environment (../shared/data): missing data fails, never skips.
assert (DATA / "math500_test.jsonl").is_file(), f"no data files in {DATA} (set ENTROPIX_S1_DATA)"


def _by_id(name: str) -> dict[str, Problem]:
    return {p.id: p for p in load_dataset(name)}


@pytest.fixture(scope="module")
def math500() -> dict[str, Problem]:
    return _by_id("math500")


# ------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize(
    ("name", "count", "first_id", "first_gold"),
    [
        ("gsm8k", 1319, "gsm8k-0", "18"),
        ("math500", 500, "math500-test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("aime24", 30, "aime24-60", "204"),
        ("amc23", 40, "amc23-0", "27"),
        ("mawps_addsub", 395, "mawps_addsub-0", "43"),
        ("mawps_multiarith", 600, "mawps_multiarith-0", "39"),
    ],
)
def test_builtin_datasets_load(name: str, count: int, first_id: str, first_gold: str) -> None:
    ps = load_dataset(name)
    assert len(ps) == count
    assert ps[0].id == first_id and ps[0].gold == first_gold and ps[0].dataset == name
    assert len({p.id for p in ps}) == count  # stable, unique ids
    assert all(p.question.strip() and p.gold for p in ps)
    assert [p.id for p in load_dataset(name, limit=3)] == [p.id for p in ps[:3]]


def test_prompt_templates() -> None:
    m = load_dataset("math500", limit=1)[0]
    g = load_dataset("gsm8k", limit=1)[0]
    assert render_prompt(m).startswith(m.question) and "\\boxed{}" in render_prompt(m)
    assert render_prompt(g).startswith(g.question) and "Final Answer:" in render_prompt(g)
    assert render_prompt(g, "plain") == g.question
    assert render_prompt(g, "Q: {question}\nA:") == f"Q: {g.question}\nA:"
    with pytest.raises(DatasetError):
        render_prompt(g, "no placeholder")


def test_unknown_dataset_lists_names() -> None:
    with pytest.raises(DatasetError) as e:
        load_dataset("gsm9k")
    for name in DATASETS:
        assert name in str(e.value)


def test_missing_file_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as e:
        load_dataset("aime24", data_dir=tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "aime24_test.jsonl" in msg and "--data-dir" in msg
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(str(tmp_path / "nope.jsonl"))


def test_env_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENTROPIX_S1_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    with pytest.raises(DatasetError, match="ENTROPIX_S1_DATA"):
        load_dataset("gsm8k")


def test_custom_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "mine.jsonl"
    f.write_text('{"q": "1+1?", "a": 2.0}\n\n{"q": "half?", "a": "\\\\frac12"}\n')
    ps = load_dataset(str(f), question_field="q", answer_field="a")
    assert ps == [Problem("mine-0", "1+1?", "2", "mine"), Problem("mine-2", "half?", "\\frac12", "mine")]
    with pytest.raises(DatasetError, match="--answer-field"):
        load_dataset(str(f), question_field="q")
    with pytest.raises(DatasetError, match="'nope'"):
        load_dataset(str(f), question_field="nope", answer_field="a")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x", "answer": "1"}\n{oops\n')
    with pytest.raises(DatasetError, match="bad.jsonl:2"):
        load_dataset(str(bad))


# ---------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16-3-4=9 eggs, so 9*2=$18 per day", "18"),
        ("Final Answer: $1,000.00 dollars", "1000"),
        ("Final Answer: 5 + 13 = 18", "18"),
        ("The total is \\boxed{\\$2,125}", "2125"),
        ("it drops by -10 degrees", "-10"),
        ("unclosed \\boxed{12", "12"),
        ("Final Answer: The answer is 18 dollars", "18"),
        ("Final Answer: 6 + 3", "9"),  # cut off after writing the sum: its value
        ("no numbers here", None),
        ("", None),
    ],
)
def test_extract_numeric_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text, "gsm8k") == expected


@pytest.mark.parametrize(
    ("text", "gold"),
    [
        ("so the answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("In polar form, \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
        ("blah\nFinal Answer: $\\dfrac{17}{50}$.\n", "\\frac{17}{50}"),
        ("we get 3 then 3/4", "\\frac34"),
        ("The final answer is $\\frac{1}{2}$.", "0.5"),
    ],
)
def test_extract_math_answer_grades_right(text: str, gold: str) -> None:
    prediction = extract_answer(text, "math500")
    assert prediction is not None and is_correct(prediction, gold, "math500"), prediction
    assert grade(text, "", gold, "math500") == Grade(prediction, True)


def test_several_boxes_are_one_set_answer() -> None:
    """math-verify reads several boxes as one answer, the set of them (docs/grading.md)."""
    assert not grade("first \\boxed{1} then \\boxed{2}", "", "2", "math500").correct
    assert grade("first \\boxed{1} then \\boxed{2}", "", "1, 2", "math500").correct


def test_extract_math_answer_none() -> None:
    assert extract_answer("no numbers here", "math500") is None and extract_answer("", "math500") is None
    assert grade("no numbers here", "", "5", "math500") == Grade(None, False)


def test_extract_prefers_answer_phase() -> None:
    # budget forcing: a box left in the thinking, then a forced "Final Answer:" and the real one
    text = "think... \\boxed{7} ... Wait, no.\nFinal Answer: \\frac{1}{2}"
    assert extract_from_generation(text, " \\frac{1}{2}", "math500") == "\\frac{1}{2}"
    assert grade(text, " \\frac{1}{2}", "1/2", "math500").correct
    # without an answer phase the last \\boxed wins (math-verify's boxed-first order)
    assert extract_from_generation(text, "", "math500") == "7"
    assert not grade(text, "", "1/2", "math500").correct
    assert extract_from_generation("answer 3", "", "gsm8k") == "3"
    assert grade("think 7\nFinal Answer: 18", "18", "18", "gsm8k") == Grade("18", True)


def test_gold_solutions_extract_to_gold() -> None:
    """The reference solutions grade as correct (all 500 MATH-500 under math-verify, all GSM8K)."""
    rows = [json.loads(x) for x in (DATA / "math500_test.jsonl").read_text().splitlines()]
    wrong = [r["unique_id"] for r in rows if not grade(r["solution"], "", r["answer"], "math500").correct]
    assert not wrong, wrong
    gsm = load_dataset("gsm8k")
    raw = [json.loads(x) for x in (DATA / "gsm8k_test.jsonl").read_text().splitlines()]
    assert all(extract_answer(r["answer"], "gsm8k") == p.gold for r, p in zip(raw, gsm, strict=True))


# ------------------------------------------------------------------------------------ grading


def test_parse_number() -> None:
    assert parse_number("\\frac{1}{2}") == 0.5
    assert parse_number("1/2") == 0.5
    assert parse_number("1,000") == 1000
    assert parse_number("-\\frac{35}{9}") == pytest.approx(-35 / 9)
    assert parse_number("50\\%") == 50 and parse_number("$18.90") == 18.9 and parse_number("\\$2{,}125") == 2125
    assert parse_number("18 dollars") == 18 and parse_number("5.4 \\text{ cents}") == 5.4
    assert parse_number("6 + 3") == 9 and parse_number("4 \\times 3") == 12
    assert parse_number("2k+2") is None
    assert parse_number("1,-2") is None
    assert parse_number("2**100000") is None and parse_number("2^{100000}") is None
    assert parse_number("1/0") is None
    assert parse_number("9.333394444444445e+24") == 9.333394444444445e24  # how the extractor writes big numbers


MATH500_CASES = [
    # (id, gold as in the file, predictions graded correct, predictions graded wrong)
    ("test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)",
     ["(3, \\frac{\\pi}{2})", "(3,\\pi/2)", "\\left(3, \\dfrac{\\pi}{2}\\right)", "(3, 1.5707963)"],
     ["(3, \\pi)", "3", "(\\frac{\\pi}{2}, 3)"]),
    ("test/algebra/2584.json", "\\frac{14}{3}", ["14/3", "\\dfrac{14}{3}", "4.666666667"], ["4.67", "14"]),
    ("test/prealgebra/572.json", "0.15", ["\\frac{3}{20}", ".15", "0.150"], ["15"]),
    ("test/algebra/1349.json", "\\text{Evelyn}", ["Evelyn", "\\text{Evelyn}", "evelyn"], ["Navin"]),
    ("test/precalculus/927.json", "90^\\circ", ["90", "90^{\\circ}", "90°", "90 degrees"], ["45^\\circ"]),
    ("test/counting_and_probability/508.json", "10,\\!080", ["10080", "10,080", "10{,}080", "10080.0"],
     ["10,800"]),
    ("test/number_theory/417.json", "11,\\! 111,\\! 111,\\! 100", ["11111111100", "11,111,111,100"], ["11111111000"]),
    ("test/algebra/2626.json", "\\$32,\\!348", ["32348", "\\$32,348", "$32,348"], ["32000"]),
    ("test/prealgebra/1655.json", "\\dfrac{17}{50}", ["\\frac{17}{50}", "0.34", "17/50"], ["0.35"]),
    ("test/prealgebra/1003.json", "\\frac{270}7\\text{ degrees}", ["\\frac{270}{7}", "270/7"], ["38"]),
    ("test/geometry/473.json", "864 \\mbox{ inches}^2", ["864", "864 \\text{ square inches}"], ["863"]),
    ("test/geometry/826.json", "1\\frac{4}{5}", ["\\frac{9}{5}", "1.8"], ["\\frac{4}{5}", "4"]),
    ("test/algebra/2470.json", "137 \\frac{1}{2}", ["137.5", "\\frac{275}{2}"], ["137"]),
    ("test/prealgebra/1044.json", "5.4 \\text{ cents}", ["5.4", "5.40"], ["54"]),
    ("test/precalculus/819.json", "\\text{(C)}", ["C", "(C)", "\\text{(C)}"], ["(D)"]),
    ("test/algebra/2193.json", "x=5", ["5", "x = 5"], ["x=6"]),
    ("test/intermediate_algebra/1388.json", "1,-2", ["-2, 1", "1, -2"], ["1", "1,2"]),
    ("test/intermediate_algebra/558.json", "(3,4]", ["(3, 4]", "\\left(3,4\\right]"], ["(3,4)", "[3,4]"]),
    ("test/intermediate_algebra/515.json", "\\frac43", ["\\frac{4}{3}", "4/3"], ["\\frac34"]),
    ("test/number_theory/847.json", "4210_{5}", ["4210_5"], ["4211_5"]),
    ("test/number_theory/598.json", ".0000672", ["0.0000672"], ["0.00067"]),
    ("test/algebra/2780.json", "\\$18.90", ["18.90", "18.9", "\\$18.90"], ["18.09"]),
    ("test/precalculus/1300.json", "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
     ["\\begin{pmatrix}-1/3\\\\2/3\\\\5/3\\end{pmatrix}", "\\begin{bmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{bmatrix}"],
     ["\\begin{pmatrix} 1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}"]),
]


@pytest.mark.parametrize(("pid", "gold", "right", "wrong"), MATH500_CASES, ids=[c[0] for c in MATH500_CASES])
def test_math500_real_lines(math500: dict[str, Problem], pid: str, gold: str, right: list[str], wrong: list[str]) -> None:
    p = math500[f"math500-{pid}"]
    assert p.gold == gold  # the line is the one we think it is
    assert grading_kind("math500") == "math"
    for pred in right:
        assert is_correct(pred, p.gold, "math500"), pred
        assert is_correct(extract_answer(f"So \\boxed{{{pred}}}.", "math500"), p.gold, "math500"), pred
    for pred in wrong:
        assert not is_correct(pred, p.gold, "math500"), pred


@pytest.mark.parametrize(
    ("gold", "prediction", "math_verify_says"),
    [
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "[3, \\frac{\\pi}{2}]", True),  # bracket shape ignored
        ("4210_{5}", "4210", True),  # the base subscript is dropped
        (".0000672", "0.000067", True),  # compared after rounding to 6 decimals
        (".0000672", "6.72e-5", False),  # e is Euler's number
    ],
)
def test_math_verify_leniencies(gold: str, prediction: str, math_verify_says: bool) -> None:
    """Where math-verify and our old hand-written grader part (it said the opposite each time)."""
    assert is_correct(prediction, gold, "math500") is math_verify_says


def test_gsm8k_real_lines() -> None:
    g = _by_id("gsm8k")
    assert g["gsm8k-0"].gold == "18"
    assert g["gsm8k-146"].gold == "2125"  # file says "#### 2,125"
    assert g["gsm8k-489"].gold == "-10"
    assert grading_kind("gsm8k") == "numeric"
    for pred in ["2125", "2,125", "$2,125", "2125.00", "\\$2{,}125", "2125.0"]:
        assert is_correct(pred, g["gsm8k-146"].gold, "gsm8k"), pred
    assert not is_correct("2126", g["gsm8k-146"].gold, "gsm8k")
    assert is_correct("18 dollars", "18", "gsm8k")
    assert is_correct("-10", g["gsm8k-489"].gold, "gsm8k") and not is_correct("10", g["gsm8k-489"].gold, "gsm8k")
    # integer golds are exact: 70001 is not 70000 even though the relative error is 1.4e-5
    assert g["gsm8k-2"].gold == "70000" and not is_correct("70001", "70000", "gsm8k")
    assert not is_correct(None, "18", "gsm8k")


def test_aime_amc_real_lines() -> None:
    aime, amc = _by_id("aime24"), _by_id("amc23")
    assert aime["aime24-60"].gold == "204"
    for pred in ["204", "204.0", "0204"]:
        assert is_correct(pred, "204", "aime24"), pred
    assert not is_correct("2040", "204", "aime24")
    assert amc["amc23-0"].gold == "27" and amc["amc23-17"].gold == "-1"
    assert is_correct("27", "27", "amc23") and is_correct("27.0", amc["amc23-0"].gold, "amc23")
    assert is_correct("-1", amc["amc23-17"].gold, "amc23") and not is_correct("1", amc["amc23-17"].gold, "amc23")


def test_mawps_real_lines() -> None:
    add, mul = _by_id("mawps_addsub"), _by_id("mawps_multiarith")
    assert add["mawps_addsub-0"].gold == "43"  # file says 43.0
    assert add["mawps_addsub-122"].gold == "9.43"
    assert add["mawps_addsub-175"].gold == "0.6666666667"
    assert is_correct("43", add["mawps_addsub-0"].gold, "mawps_addsub")
    assert is_correct("$9.43", add["mawps_addsub-122"].gold, "mawps_addsub")
    assert not is_correct("9.34", add["mawps_addsub-122"].gold, "mawps_addsub")
    for pred in ["2/3", "\\frac{2}{3}", "0.6667", "0.6666666667"]:
        assert is_correct(pred, add["mawps_addsub-175"].gold, "mawps_addsub"), pred
    assert not is_correct("0.67", add["mawps_addsub-175"].gold, "mawps_addsub")
    assert mul["mawps_multiarith-0"].gold == "39"
    assert is_correct(extract_answer("32+42=74, 74-35=39\nFinal Answer: 39", "mawps_multiarith"), "39",
                      "mawps_multiarith")
