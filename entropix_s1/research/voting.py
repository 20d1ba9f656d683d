"""Metrics over the K samples of one problem: pass@k, majority vote maj@k, confidence-weighted vote.

Pure Python on per-problem lists (no numpy, no JAX). An *answer* is any hashable vote key (the
harness uses the graded prediction, all correct predictions as one key: `samples.vote_key`);
`None` is an abstention (no answer extracted): it is drawn like any sample but votes for nothing.

* **pass@k** (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", eq. 1): with
  n samples of which c are correct, the unbiased estimate of "at least one of k samples is
  correct" is ``1 - C(n-c, k) / C(n, k)``, computed as the product
  ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` (their numerically stable form: no huge binomials).
* **maj@k**: the plurality answer of k samples is graded. For k < n we report the *expected*
  maj@k over all C(n, k) subsets of the n samples drawn without replacement (the estimate s1 and
  DeepConf get by repeated subsampling), computed exactly by counting (`maj_at_k`), so it has no
  Monte-Carlo noise and does not depend on which k samples happened to come first.
* **Ties** go to the answer whose first sample comes earliest in the problem's sample order (the
  harness orders samples by (seed, sample index)). The order is fixed per answer, not per
  subset, which keeps the expectation an exact count; since sample order is random, it favours
  no answer.
* **Confidence-weighted vote** (DeepConf, Fu et al. 2025, arXiv 2508.15260, section 3.2): each
  sample votes with weight equal to its trace confidence, ``V(a) = sum_t C_t 1[answer_t = a]``;
  with confidence filtering only the top ``keep`` fraction of samples by confidence vote
  (DeepConf's eta: 0.9 "high", 0.1 "low"). Samples without a confidence (records made before the
  engine reported one) take no part.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

__all__ = ["pass_at_k", "answer_order", "majority_vote", "maj_at_k", "weighted_vote"]

Answer = Hashable | None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al.'s unbiased pass@k, ``1 - C(n-c, k)/C(n, k)``, as the stable product
    ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``. Needs 1 <= k <= n and 0 <= c <= n."""
    if not 0 <= c <= n:
        raise ValueError(f"pass@k: correct samples c={c} must be in [0, n={n}]")
    if not 1 <= k <= n:
        raise ValueError(f"pass@k: k={k} must be in [1, n={n}] (n = samples of the problem)")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def answer_order(answers: Sequence[Answer]) -> dict[Hashable, int]:
    """Each distinct answer (abstentions left out) -> the index of its first sample: the tie order."""
    order: dict[Hashable, int] = {}
    for i, a in enumerate(answers):
        if a is not None and a not in order:
            order[a] = i
    return order


def _winner(tally: dict[Hashable, float], order: dict[Hashable, int]) -> Answer:
    if not tally:
        return None
    return max(tally, key=lambda a: (tally[a], -order[a]))


def majority_vote(answers: Sequence[Answer], weights: Sequence[float] | None = None) -> Answer:
    """The plurality answer (weights: the sum of its samples' weights); ties to the answer seen
    first; None when every sample abstains."""
    if weights is not None and len(weights) != len(answers):
        raise ValueError(f"majority_vote: {len(weights)} weights for {len(answers)} answers")
    tally: dict[Hashable, float] = {}
    for i, a in enumerate(answers):
        if a is not None:
            tally[a] = tally.get(a, 0.0) + (1.0 if weights is None else float(weights[i]))
    return _winner(tally, answer_order(answers))


def _truncated_product(polys: list[list[int]], degree: int) -> list[int]:
    """Coefficients 0..degree of the product of integer polynomials (coefficient lists)."""
    out = [1] + [0] * degree
    for p in polys:
        nxt = [0] * (degree + 1)
        for i, a in enumerate(out):
            if a:
                for j, b in enumerate(p[: degree + 1 - i]):
                    nxt[i + j] += a * b
        out = nxt
    return out


def _subsets_won(counts: dict[Hashable, int], order: dict[Hashable, int], abstain: int, target: Hashable,
                 k: int) -> int:
    """How many k-subsets of the samples elect `target`.

    `target` wins with x of its m samples when each answer b that ties-beats it (earlier first
    sample) has fewer than x samples in the subset and every later answer at most x; abstentions
    are free. So the count is sum_x C(m, x) * [t^(k-x)] prod_b (sum_{y <= lim_b} C(m_b, y) t^y) *
    (1 + t)^abstain, with lim_b = x - 1 (earlier b) or x (later b).
    """
    total = 0
    for x in range(1, min(counts[target], k) + 1):
        polys = [[math.comb(abstain, y) for y in range(abstain + 1)]]
        for b, m_b in counts.items():
            if b != target:
                lim = x - 1 if order[b] < order[target] else x
                polys.append([math.comb(m_b, y) for y in range(min(lim, m_b) + 1)])
        total += math.comb(counts[target], x) * _truncated_product(polys, k - x)[k - x]
    return total


def maj_at_k(answers: Sequence[Answer], correct: Sequence[bool], k: int) -> float:
    """Expected majority-vote accuracy of k of these n samples, drawn without replacement:
    (number of k-subsets whose plurality answer is correct) / C(n, k), counted exactly.

    `correct[i]` grades sample i; samples sharing an answer must share a grade. Abstentions
    (None) are drawn but vote for nothing; a subset of abstentions only is wrong. k = 1 gives the
    share of correct samples (mean pass@1); k = n the vote of all samples.
    """
    n = len(answers)
    if len(correct) != n:
        raise ValueError(f"maj@k: {len(correct)} grades for {n} answers")
    if not 1 <= k <= n:
        raise ValueError(f"maj@k: k={k} must be in [1, n={n}] (n = samples of the problem)")
    grade: dict[Hashable, bool] = {}
    counts: dict[Hashable, int] = {}
    for a, c in zip(answers, correct, strict=True):
        if a is None:
            continue
        if grade.setdefault(a, bool(c)) != bool(c):
            raise ValueError(f"maj@k: answer {a!r} is graded both right and wrong")
        counts[a] = counts.get(a, 0) + 1
    order = answer_order(answers)
    abstain = n - sum(counts.values())
    won = sum(_subsets_won(counts, order, abstain, a, k) for a in counts if grade[a])
    return won / math.comb(n, k)


def weighted_vote(answers: Sequence[Answer], confidences: Sequence[float | None], keep: float = 1.0) -> Answer:
    """DeepConf's confidence-weighted majority vote over the samples that carry a confidence.

    Filtering keeps the ceil(keep * m) most confident of those m samples (equal confidences: the
    earlier sample first); each kept sample votes with its confidence. None when no sample has a
    confidence or every kept one abstains. Confidences must be positive (DeepConf's token
    confidence, a mean negative log-probability, is)."""
    if len(confidences) != len(answers):
        raise ValueError(f"weighted_vote: {len(confidences)} confidences for {len(answers)} answers")
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"weighted_vote: keep={keep} must be in (0, 1]")
    scored = [(i, float(c)) for i, c in enumerate(confidences) if c is not None and math.isfinite(c)]
    if not scored:
        return None
    if any(c < 0 for _, c in scored):
        raise ValueError("weighted_vote: confidences must be >= 0")
    ranked = sorted(scored, key=lambda ic: -ic[1])  # stable: ties keep sample order
    kept = sorted(ranked[: max(1, math.ceil(keep * len(ranked) - 1e-9))])
    tally: dict[Hashable, float] = {}
    for i, c in kept:
        if answers[i] is not None:
            tally[answers[i]] = tally.get(answers[i], 0.0) + c
    return _winner(tally, answer_order(answers))
