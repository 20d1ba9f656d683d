"""Paired statistics for comparing two decoding methods on the same problems, and a power note.

* **Exact McNemar** (`mcnemar_exact`): for 0/1 outcomes per problem, only the discordant
  problems carry information: b (only the method right) and c (only the baseline right). Under
  the null each discordant problem goes either way with probability 1/2, so
  ``p = min(1, 2 * sum_{i <= min(b, c)} C(b+c, i) / 2^(b+c))`` (two-sided, exact binomial).
* **Paired bootstrap over problems** (`paired_bootstrap`; Efron & Tibshirani 1993, ch. 13/16):
  for per-problem values a_i, b_i (a method's mean accuracy over its samples, a maj@k, ...) the
  statistic is the mean difference d = mean(a_i - b_i). Problems are resampled with replacement
  B times (a seeded numpy Generator, so a summary is reproducible); the 95% interval is the
  2.5/97.5 percentiles of the resampled d*, and the two-sided p is twice the smaller tail,
  ``p = min(1, 2 * min(1 + #{d* <= 0}, 1 + #{d* >= 0}) / (B + 1))`` (the add-one keeps p > 0 for a
  finite B, the usual Monte-Carlo p-value; Davison & Hinkley 1997, ch. 4). `bootstrap_interval` is the same percentile
  interval for one method's mean.
* **Power** (`mcnemar_detectable_difference`, `detectable_difference`): the smallest true paired
  difference that n problems detect with power 1 - beta at two-sided level alpha. For McNemar,
  Connor (1987, Biometrics 43:207) gives the problems needed for a difference delta at
  discordance rate psi = (b + c)/n:
  ``n = (z_{1-alpha/2} sqrt(psi) + z_{1-beta} sqrt(psi - delta^2))^2 / delta^2``; we solve it for
  delta by bisection (the right side falls as delta grows). For averaged accuracies the normal
  approximation of the paired test, ``delta = (z_{1-alpha/2} + z_{1-beta}) sd(a_i - b_i) / sqrt(n)``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence

import numpy as np

__all__ = [
    "BootstrapResult",
    "mcnemar_exact",
    "paired_bootstrap",
    "bootstrap_interval",
    "mcnemar_detectable_difference",
    "detectable_difference",
]

#: bootstrap resamples: p-values resolve to about 1e-4, percentile limits to a few 1e-3
RESAMPLES = 10_000


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p from the discordant counts b and c (1.0 when b + c == 0)."""
    if b < 0 or c < 0:
        raise ValueError(f"McNemar: discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclasses.dataclass(frozen=True)
class BootstrapResult:
    """Mean paired difference, its percentile interval and two-sided bootstrap p."""

    diff: float
    low: float
    high: float
    p: float
    n: int
    resamples: int


def _resampled_means(values: np.ndarray, resamples: int, seed: int | Sequence[int]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(values)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // max(n, 1))  # bounded memory: ~16 MB of indices at a time
    for start in range(0, resamples, step):
        idx = rng.integers(0, n, size=(min(step, resamples - start), n))
        means[start : start + len(idx)] = values[idx].mean(axis=1)
    return means


def _percentiles(means: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _check(values: Sequence[float], name: str, level: float, resamples: int) -> np.ndarray:
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap: level={level} must be in (0, 1)")
    if resamples < 1:
        raise ValueError(f"bootstrap: resamples={resamples} must be >= 1")
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"bootstrap: {name} must be a non-empty list of per-problem values")
    return arr


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = RESAMPLES,
                     seed: int | Sequence[int] = 0, level: float = 0.95) -> BootstrapResult:
    """Paired bootstrap over problems of mean(a_i - b_i): percentile interval and two-sided p."""
    if len(a) != len(b):
        raise ValueError(f"paired bootstrap: {len(a)} values against {len(b)}; pair them by problem")
    d = _check(a, "a", level, resamples) - _check(b, "b", level, resamples)
    means = _resampled_means(d, resamples, seed)
    lo, hi = _percentiles(means, level)
    tail = min(1 + int(np.sum(means <= 0)), 1 + int(np.sum(means >= 0)))
    return BootstrapResult(float(d.mean()), lo, hi, min(1.0, 2 * tail / (resamples + 1)), len(d), resamples)


def bootstrap_interval(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int | Sequence[int] = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval over problems of the mean of per-problem values."""
    return _percentiles(_resampled_means(_check(values, "values", level, resamples), resamples, seed), level)


def _z(q: float) -> float:
    return statistics.NormalDist().inv_cdf(q)


def mcnemar_detectable_difference(n: int, discordance: float, *, alpha: float = 0.05,
                                  power: float = 0.8) -> float | None:
    """Smallest |p10 - p01| that McNemar detects on n problems at discordance rate psi (Connor
    1987, solved for delta); None when none can (psi == 0, or even delta = psi would need more
    problems). |delta| <= psi always: a difference needs discordant problems."""
    if n < 1:
        raise ValueError(f"power: n={n} problems must be >= 1")
    if not 0.0 <= discordance <= 1.0:
        raise ValueError(f"power: discordance={discordance} must be in [0, 1]")
    if discordance == 0.0:
        return None
    za, zb = _z(1 - alpha / 2), _z(power)

    def needed(delta: float) -> float:
        return (za * math.sqrt(discordance) + zb * math.sqrt(max(0.0, discordance - delta * delta))) ** 2 / delta**2

    if needed(discordance) > n:
        return None
    lo, hi = 0.0, discordance  # needed(lo) = inf > n >= needed(hi)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if needed(mid) > n else (lo, mid)
    return hi


def detectable_difference(n: int, sd: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest mean paired difference a two-sided level-alpha test detects with the given power
    on n problems whose differences have standard deviation sd (normal approximation)."""
    if n < 1:
        raise ValueError(f"power: n={n} problems must be >= 1")
    if sd < 0:
        raise ValueError(f"power: sd={sd} must be >= 0")
    return (_z(1 - alpha / 2) + _z(power)) * sd / math.sqrt(n)
