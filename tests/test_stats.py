"""Exact McNemar, the paired bootstrap and the power note, against hand-computed values, the
exact bootstrap distribution (every one of the n^n resamples of a small set) and the exact power
of McNemar's test."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from entropix_s1.research.s1_metrics import sign_test
from entropix_s1.research.stats import (bootstrap_interval, detectable_difference, mcnemar_detectable_difference,
                                        mcnemar_exact, paired_bootstrap)

# ----------------------------------------------------------------------------------- McNemar


def test_mcnemar_hand_values() -> None:
    # 8 vs 3 discordant: 2 * (C(11,0)+C(11,1)+C(11,2)+C(11,3)) / 2^11 = 2 * 232 / 2048
    assert mcnemar_exact(8, 3) == pytest.approx(2 * 232 / 2048) and mcnemar_exact(3, 8) == mcnemar_exact(8, 3)
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(4, 4) == 1.0


def test_mcnemar_matches_scipy_and_the_sign_test() -> None:
    for n in range(1, 31):
        for b in range(n + 1):
            want = binomtest(b, n, 0.5).pvalue
            assert mcnemar_exact(b, n - b) == pytest.approx(want, rel=1e-9), (b, n)
            assert sign_test(b, n - b) == pytest.approx(mcnemar_exact(b, n - b), rel=1e-9)
    with pytest.raises(ValueError, match="b=-1"):
        mcnemar_exact(-1, 2)


# --------------------------------------------------------------------------------- bootstrap


def exact_bootstrap(d: list[float]) -> tuple[list[float], list[Fraction]]:
    """Every resample of d (n^n of them, equally likely): the distribution of its mean."""
    dist: dict[float, Fraction] = {}
    n = len(d)
    for idx in itertools.product(range(n), repeat=n):
        m = round(sum(d[i] for i in idx) / n, 12)
        dist[m] = dist.get(m, Fraction(0)) + Fraction(1, n**n)
    values = sorted(dist)
    return values, [dist[v] for v in values]


def exact_quantile(values: list[float], probs: list[Fraction], q: float) -> float:
    """The smallest value whose cumulative probability reaches q (the inverted CDF)."""
    acc = Fraction(0)
    for v, p in zip(values, probs):
        acc += p
        if acc >= Fraction(q):
            return v
    return values[-1]


def test_paired_bootstrap_hand_computed() -> None:
    # d = [1, 1, 1, 0]: a resample's sum is Binomial(4, 3/4), so P(mean <= 0) = (1/4)^4 = 1/256,
    # the 2.5% point is 0.25 (CDF 1/256 < 0.025 <= 13/256) and the 97.5% point 1.0
    r = paired_bootstrap([1, 1, 1, 0], [0, 0, 0, 0], resamples=20_000, seed=0)
    assert r.diff == 0.75 and (r.low, r.high) == (0.25, 1.0)
    assert r.p == pytest.approx(2 / 256, abs=0.003)
    assert (r.n, r.resamples) == (4, 20_000)


def test_paired_bootstrap_matches_the_exact_bootstrap_distribution() -> None:
    for a, b in [([1, 0, 1, 1, 0], [0, 0, 1, 0, 1]), ([0.5, 1.0, 0.25, 0.75, 0.0], [0.25, 0.5, 0.5, 0.0, 0.25])]:
        d = [x - y for x, y in zip(a, b)]
        values, probs = exact_bootstrap(d)
        le0 = float(sum(p for v, p in zip(values, probs) if v <= 0))
        ge0 = float(sum(p for v, p in zip(values, probs) if v >= 0))
        r = paired_bootstrap(a, b, resamples=40_000, seed=1)
        assert r.diff == pytest.approx(sum(d) / len(d))
        assert r.p == pytest.approx(min(1.0, 2 * min(le0, ge0)), abs=0.01)
        # percentile limits: between the exact quantiles just inside and outside the nominal level
        assert exact_quantile(values, probs, 0.02) <= r.low <= exact_quantile(values, probs, 0.03)
        assert exact_quantile(values, probs, 0.97) <= r.high <= exact_quantile(values, probs, 0.98)


def test_paired_bootstrap_identical_and_reproducible() -> None:
    r = paired_bootstrap([1, 0, 1], [1, 0, 1])
    assert (r.diff, r.low, r.high, r.p) == (0.0, 0.0, 0.0, 1.0)
    rng = np.random.default_rng(5)
    a, b = rng.random(50), rng.random(50)
    assert paired_bootstrap(a, b, seed=[3, 4]) == paired_bootstrap(a, b, seed=[3, 4])
    assert paired_bootstrap(a, b, seed=1) != paired_bootstrap(a, b, seed=2)
    assert bootstrap_interval([0.5] * 7) == (0.5, 0.5)
    lo, hi = bootstrap_interval(list(rng.random(200)))
    assert lo < 0.5 < hi and hi - lo < 0.1


def test_paired_bootstrap_errors() -> None:
    with pytest.raises(ValueError, match="pair them by problem"):
        paired_bootstrap([1, 0], [1])
    with pytest.raises(ValueError, match="non-empty"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([1.0], level=1.5)


# ------------------------------------------------------------------------------------- power


def connor_n(delta: float, psi: float) -> float:
    za, zb = 1.959963984540054, 0.8416212335729143
    return (za * math.sqrt(psi) + zb * math.sqrt(psi - delta**2)) ** 2 / delta**2


def exact_mcnemar_power(n: int, p10: float, p01: float, alpha: float = 0.05) -> float:
    """P(exact McNemar p < alpha) when each problem is discordant for the method w.p. p10 and for
    the baseline w.p. p01: over D ~ Binomial(n, psi) discordant problems, b | D ~ Binomial(D, p10/psi)."""
    psi = p10 + p01
    power = 0.0
    for d in range(1, n + 1):
        rejecting = [b for b in range(d + 1) if mcnemar_exact(b, d - b) < alpha]
        if rejecting:
            lo = max((b for b in rejecting if b < d / 2), default=-1)
            hi = min((b for b in rejecting if b > d / 2), default=d + 1)
            cond = binom.cdf(lo, d, p10 / psi) + binom.sf(hi - 1, d, p10 / psi)
            power += binom.pmf(d, n, psi) * cond
    return power


def test_mcnemar_detectable_difference() -> None:
    for n, psi in [(100, 0.2), (300, 0.1), (500, 0.4)]:
        delta = mcnemar_detectable_difference(n, psi)
        assert delta is not None and 0 < delta <= psi
        assert connor_n(delta, psi) == pytest.approx(n, rel=1e-6)  # solves Connor's equation
        assert delta == pytest.approx(2.8016 * math.sqrt(psi / n), rel=0.1)  # close to the simple form
    assert mcnemar_detectable_difference(32, 0.0) is None
    assert mcnemar_detectable_difference(32, 0.1) is None  # even delta = psi needs more than 32 problems
    with pytest.raises(ValueError, match="discordance"):
        mcnemar_detectable_difference(10, 1.5)


def test_the_detectable_difference_has_about_80_percent_exact_power() -> None:
    n, psi = 200, 0.3
    delta = mcnemar_detectable_difference(n, psi)
    power = exact_mcnemar_power(n, (psi + delta) / 2, (psi - delta) / 2)
    assert 0.72 < power < 0.86  # the exact test is a little conservative against Connor's normal approximation


def test_detectable_difference_normal_form() -> None:
    assert detectable_difference(100, 0.5) == pytest.approx((1.959963984540054 + 0.8416212335729143) * 0.05)
    assert detectable_difference(400, 0.5) == pytest.approx(detectable_difference(100, 0.5) / 2)
    with pytest.raises(ValueError, match="sd"):
        detectable_difference(10, -1)
