"""The test-time-scaling metrics of the s1 paper (arXiv 2501.19393, section 3.2), plus Wilson
intervals for accuracy.

For a method family evaluated at a set A of thinking-token amounts a (one point per method:
its mean thinking tokens) with accuracy f(a):

* **Control** = (1/|A|) * sum_{a in A} 1[a_min <= a <= a_max]: how often thinking stays inside
  the budget that was set. Here it is computed over *runs* (one run = one problem under one
  method, a = that run's thinking tokens, [a_min, a_max] = the method's
  [min_thinking_tokens, max_thinking_tokens]); a family's Control pools its methods' runs. A
  method that sets no bound (no min and no max) has no Control (None).
* **Scaling** = (1 / C(|A|, 2)) * sum_{a, b in A, b > a} (f(b) - f(a)) / (b - a): the mean slope
  of accuracy over all pairs of the family's points, ordered by thinking tokens. Pairs with equal
  thinking tokens have no slope and are left out of the sum and the count; fewer than one pair
  gives None. Units: accuracy fraction per thinking token (`summary.md` shows it as accuracy
  percentage points per 1,000 thinking tokens).
* **Performance** = max_{a in A} f(a): the family's best accuracy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

__all__ = [
    "Z95",
    "MethodPoint",
    "FamilyMetrics",
    "wilson_interval",
    "sign_test",
    "control",
    "scaling",
    "performance",
    "method_point",
    "family_metrics",
]

#: two-sided 95% normal quantile
Z95 = 1.959963984540054


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's `binomtest(...).proportion_ci`,
    method "wilson"; scipy comes with JAX); (0, 1) when n == 0. `z` other than Z95 sets the
    confidence level 1 - 2 * (1 - Phi(z))."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= correct <= n:
        raise ValueError(f"correct must be in [0, n], got {correct}/{n}")
    from scipy.stats import binomtest, norm  # lazy: scipy.stats takes a while to import

    level = 0.95 if z == Z95 else float(2 * norm.cdf(z) - 1)
    interval = binomtest(correct, n).proportion_ci(confidence_level=level, method="wilson")
    p = correct / n
    # clamp rounding so that lo <= p <= hi exactly (p = 0 or 1 otherwise drifts by 1 ulp)
    return min(p, max(0.0, float(interval.low))), max(p, min(1.0, float(interval.high)))


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test (McNemar's exact test) for two methods graded on the same problems.

    `wins`: problems only the first method gets right; `losses`: only the second. Under the null
    that either method is equally likely to be the one right on a discordant problem, the wins are
    Binomial(wins + losses, 1/2); `stats.mcnemar_exact` computes the two-sided p exactly. Ties
    carry no information and are left out, so p = 1 with no discordant problem. Paired, it is far
    more sensitive than comparing two Wilson intervals when both methods see the same few problems.
    """
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be >= 0, got {wins}, {losses}")
    from entropix_s1.research.stats import mcnemar_exact  # numpy: imported when a test is run

    return mcnemar_exact(wins, losses)


def control(thinking_tokens: Iterable[int | float], a_min: int | None, a_max: int | None) -> float | None:
    """Fraction of runs with a_min <= thinking tokens <= a_max (None bound = unbounded).

    None when neither bound is set (nothing to control) or there are no runs.
    """
    if (a_min is None or a_min <= 0) and a_max is None:
        return None
    xs = list(thinking_tokens)
    if not xs:
        return None
    lo = a_min if a_min is not None else -math.inf
    hi = a_max if a_max is not None else math.inf
    return sum(1 for a in xs if lo <= a <= hi) / len(xs)


def scaling(points: Iterable[tuple[float, float]]) -> float | None:
    """Mean pairwise slope of (thinking tokens, accuracy) points, s1 section 3.2."""
    pts = sorted(points)
    total, pairs = 0.0, 0
    for i in range(len(pts)):
        for j in range(i + 1, len(pts)):
            a, fa = pts[i]
            b, fb = pts[j]
            if b > a:
                total += (fb - fa) / (b - a)
                pairs += 1
    return total / pairs if pairs else None


def performance(accuracies: Iterable[float]) -> float | None:
    """Best accuracy; None for no points."""
    xs = list(accuracies)
    return max(xs) if xs else None


@dataclasses.dataclass(frozen=True)
class MethodPoint:
    """One method's aggregate over its runs (problems)."""

    method: str
    family: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_thinking_tokens: float
    thinking_tokens: tuple[int, ...]
    budget_min: int | None = None
    budget_max: int | None = None
    control: float | None = None
    mean_answer_tokens: float = 0.0
    mean_waits: float = 0.0
    mean_pauses: float = 0.0
    mean_probes: float = 0.0
    errors: int = 0
    seconds_per_problem: float = 0.0


def method_point(
    method: str,
    family: str,
    correct: Sequence[bool],
    thinking_tokens: Sequence[int],
    *,
    budget_min: int | None = None,
    budget_max: int | None = None,
    answer_tokens: Sequence[int] = (),
    waits: Sequence[int] = (),
    pauses: Sequence[int] = (),
    probes: Sequence[int] = (),
    errors: int = 0,
    seconds: Sequence[float] = (),
) -> MethodPoint:
    """Aggregate per-problem outcomes of one method into a MethodPoint."""
    if len(correct) != len(thinking_tokens):
        raise ValueError("correct and thinking_tokens must have one entry per problem")
    n = len(correct)
    k = sum(1 for c in correct if c)

    def mean(xs: Sequence[float]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    lo, hi = wilson_interval(k, n)
    return MethodPoint(
        method=method,
        family=family,
        n=n,
        correct=k,
        accuracy=k / n if n else 0.0,
        ci_low=lo,
        ci_high=hi,
        mean_thinking_tokens=mean(thinking_tokens),
        thinking_tokens=tuple(int(t) for t in thinking_tokens),
        budget_min=budget_min,
        budget_max=budget_max,
        control=control(thinking_tokens, budget_min, budget_max),
        mean_answer_tokens=mean(answer_tokens),
        mean_waits=mean(waits),
        mean_pauses=mean(pauses),
        mean_probes=mean(probes),
        errors=errors,
        seconds_per_problem=mean(seconds),
    )


@dataclasses.dataclass(frozen=True)
class FamilyMetrics:
    """s1's three metrics for one family of methods."""

    family: str
    methods: tuple[str, ...]
    scaling: float | None
    performance: float | None
    control: float | None


def family_metrics(points: Sequence[MethodPoint]) -> list[FamilyMetrics]:
    """Group points by family (first-appearance order) and compute Control/Scaling/Performance."""
    groups: dict[str, list[MethodPoint]] = {}
    for p in points:
        groups.setdefault(p.family, []).append(p)
    out = []
    for fam, ps in groups.items():
        in_budget = [p for p in ps if p.control is not None]
        runs = sum(p.n for p in in_budget)
        ctrl = sum(p.control * p.n for p in in_budget) / runs if runs else None  # type: ignore[operator]
        out.append(
            FamilyMetrics(
                family=fam,
                methods=tuple(p.method for p in ps),
                scaling=scaling((p.mean_thinking_tokens, p.accuracy) for p in ps if p.n),
                performance=performance(p.accuracy for p in ps if p.n),
                control=ctrl,
            )
        )
    return out
