"""pass@k, maj@k and DeepConf's weighted vote against hand-computed values and brute force over
every k-subset of small sample sets."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from fractions import Fraction

import pytest

from entropix_s1.research.voting import answer_order, maj_at_k, majority_vote, pass_at_k, weighted_vote


def brute_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Share of k-subsets of n samples (the first c correct) holding a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(1 for s in subsets if any(i < c for i in s)), len(subsets))


def brute_vote(answers: list, subset: tuple[int, ...]) -> object:
    """Plurality of the subset; ties to the answer whose first sample (in the whole list) is earliest."""
    counts = Counter(answers[i] for i in subset if answers[i] is not None)
    if not counts:
        return None
    first = {a: answers.index(a) for a in counts}
    top = max(counts.values())
    return min((a for a, c in counts.items() if c == top), key=first.__getitem__)


def brute_maj_at_k(answers: list, correct: list[bool], k: int) -> Fraction:
    grade = {a: c for a, c in zip(answers, correct) if a is not None}
    subsets = list(itertools.combinations(range(len(answers)), k))
    won = sum(1 for s in subsets if (w := brute_vote(answers, s)) is not None and grade[w])
    return Fraction(won, len(subsets))


# ------------------------------------------------------------------------------------ pass@k


def test_pass_at_k_hand_values() -> None:
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # k = 1: the share of correct samples
    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 4, 3) == 1.0
    assert pass_at_k(4, 2, 3) == 1.0  # n - c < k: every 3-subset holds a correct one
    assert pass_at_k(16, 1, 8) == pytest.approx(0.5)


def test_pass_at_k_matches_brute_force() -> None:
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(brute_pass_at_k(n, c, k)), abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_for_large_n() -> None:
    # C(1000, 500) overflows a float; the product form does not
    assert pass_at_k(1000, 1, 500) == pytest.approx(0.5)
    assert 0.0 < pass_at_k(1000, 3, 10) < 1.0


@pytest.mark.parametrize(("n", "c", "k", "match"), [(3, 4, 1, "c=4"), (3, 1, 0, "k=0"), (3, 1, 4, "k=4")])
def test_pass_at_k_errors(n: int, c: int, k: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pass_at_k(n, c, k)


# -------------------------------------------------------------------------------- majority vote


def test_majority_vote_hand_cases() -> None:
    assert majority_vote(["a", "b", "b"]) == "b"
    assert majority_vote(["a", "b"]) == "a" and majority_vote(["b", "a"]) == "b"  # tie: first seen
    assert majority_vote(["a", "b", "b", "a"]) == "a"
    assert majority_vote([None, "b", None, None]) == "b"  # abstentions vote for nothing
    assert majority_vote([None, None]) is None and majority_vote([]) is None
    assert majority_vote(["a", "b", "b"], weights=[3.0, 1.0, 1.0]) == "a"
    assert answer_order([None, "b", "a", "b"]) == {"b": 1, "a": 2}


def test_maj_at_k_hand_values() -> None:
    answers, correct = ["A", "B", "B"], [True, False, False]
    assert maj_at_k(answers, correct, 1) == pytest.approx(1 / 3)
    # {A,B} twice: a tie, won by A (sampled first); {B,B}: B
    assert maj_at_k(answers, correct, 2) == pytest.approx(2 / 3)
    assert maj_at_k(answers, correct, 3) == 0.0
    # the same samples with B sampled first: both {A,B} ties go to B
    assert maj_at_k(["B", "A", "B"], [False, True, False], 2) == 0.0
    # abstentions: {A, None} -> A, {None, None} -> nobody
    assert maj_at_k(["A", None, None], [True, False, False], 2) == pytest.approx(2 / 3)


def test_maj_at_k_matches_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(250):
        n = rng.randint(1, 8)
        answers = [rng.choice(["A", "B", "C", "D", None]) for _ in range(n)]
        correct = [a == "A" for a in answers]
        for k in range(1, n + 1):
            assert maj_at_k(answers, correct, k) == pytest.approx(float(brute_maj_at_k(answers, correct, k)),
                                                                  abs=1e-12), (answers, k)


def test_maj_at_k_extremes() -> None:
    answers = ["A", "B", "A", "C", "B", "A", None, "A"]
    correct = [a == "A" for a in answers]
    assert maj_at_k(answers, correct, 1) == pytest.approx(4 / 8)  # k = 1: the share of correct samples
    assert maj_at_k(answers, correct, 8) == float(majority_vote(answers) == "A")  # k = n: one vote
    # a 16-sample problem is counted exactly, in well under a second
    big = ["A"] * 6 + ["B"] * 5 + ["C"] * 3 + [None] * 2
    assert 0.0 < maj_at_k(big, [a == "A" for a in big], 8) < 1.0
    assert maj_at_k(big, [a == "A" for a in big], 16) == 1.0


def test_maj_at_k_errors() -> None:
    with pytest.raises(ValueError, match="both right and wrong"):
        maj_at_k(["A", "A"], [True, False], 1)
    with pytest.raises(ValueError, match="k=3"):
        maj_at_k(["A", "B"], [True, False], 3)
    with pytest.raises(ValueError, match="grades"):
        maj_at_k(["A", "B"], [True], 1)


# ----------------------------------------------------------------------------- weighted vote


def test_weighted_vote_hand_cases() -> None:
    answers = ["A", "B", "B"]
    assert weighted_vote(answers, [0.9, 0.3, 0.4]) == "A"  # 0.9 against 0.7
    assert weighted_vote(answers, [0.5, 0.3, 0.4]) == "B"  # 0.5 against 0.7
    # keep the top ceil(keep * 3): 1/3 -> A alone; 2/3 -> A (0.5) and B (0.4)
    assert weighted_vote(answers, [0.5, 0.3, 0.4], keep=1 / 3) == "A"
    assert weighted_vote(answers, [0.5, 0.3, 0.4], keep=0.6) == "A"
    # samples without a confidence take no part; none at all: no vote
    assert weighted_vote(answers, [None, 0.3, None]) == "B"
    assert weighted_vote(answers, [None, None, None]) is None
    # equal confidences: the top fraction keeps the earlier samples, ties go to the first seen
    assert weighted_vote(["B", "A", "A"], [1.0, 1.0, 1.0], keep=0.5) == "B"
    assert weighted_vote([None, "A"], [5.0, 1.0], keep=0.5) is None  # the kept sample abstains


def test_weighted_vote_with_equal_weights_is_the_majority() -> None:
    rng = random.Random(1)
    for _ in range(200):
        answers = [rng.choice("ABC") for _ in range(rng.randint(1, 9))]
        assert weighted_vote(answers, [0.7] * len(answers)) == majority_vote(answers)


def test_weighted_vote_filter_matches_brute_force() -> None:
    """The filtered vote is the weighted plurality of the ceil(keep*m) highest-confidence samples."""
    rng = random.Random(2)
    for _ in range(200):
        m = rng.randint(1, 9)
        answers = [rng.choice("AB") for _ in range(m)]
        confs = [rng.choice([0.2, 0.5, 0.9, 1.3]) for _ in range(m)]
        for keep in (0.1, 0.5, 0.9, 1.0):
            n_keep = max(1, math.ceil(keep * m - 1e-9))
            kept = sorted(range(m), key=lambda i: (-confs[i], i))[:n_keep]
            tally = Counter()
            for i in sorted(kept):  # summed in sample order, as weighted_vote sums
                tally[answers[i]] += confs[i]
            top = max(tally.values())
            want = min((a for a in tally if tally[a] == top), key=answers.index)
            assert weighted_vote(answers, confs, keep) == want


def test_weighted_vote_errors() -> None:
    with pytest.raises(ValueError, match="keep=0"):
        weighted_vote(["A"], [1.0], keep=0)
    with pytest.raises(ValueError, match=">= 0"):
        weighted_vote(["A"], [-1.0])
    with pytest.raises(ValueError, match="confidences for"):
        weighted_vote(["A", "B"], [1.0])
