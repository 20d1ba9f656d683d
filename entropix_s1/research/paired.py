"""Paired tests of every method against one baseline, on the problems both have results for.

Each comparison pairs per-problem values (`samples.per_problem`): a method's Pass@1 (its share of
correct samples) and, for a method with K >= 2 samples of every problem, its maj@K (the majority
vote of K samples) and DeepConf's votes over them (`samples.VOTES`: confidence-weighted, and the
90% / 10% most confident), each against the baseline's Pass@1. Which test:

* both sides 0/1 on every problem (one sample each, or a vote against a one-sample baseline):
  **exact McNemar** on the discordant problems (`stats.mcnemar_exact`); its power note is
  Connor's smallest detectable difference at the observed discordance rate;
* otherwise (averaged accuracies): the **paired bootstrap over problems**
  (`stats.paired_bootstrap`); its power note is the normal approximation at the observed sd of
  the per-problem differences.

Every row has the 95% paired-bootstrap interval of the difference (method - baseline), so a row
reads the same whichever test gives its p. The power note (`mde`) is the smallest true
difference this n detects with 80% power at two-sided alpha = 0.05; None where none can be.

The default baseline is the plain cap (`budget:max=N`, the largest N if there are several:
s1's budget forcing without extensions, the method every test-time method modifies), else the
first method.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
import zlib
from collections.abc import Mapping, Sequence

from entropix_s1.errors import ConfigError
from entropix_s1.research.samples import VOTES, Sample, per_problem
from entropix_s1.research.stats import (detectable_difference, mcnemar_detectable_difference, mcnemar_exact,
                                        paired_bootstrap)

__all__ = ["PairedRow", "default_baseline", "choose_baseline", "paired_rows", "compare_pair"]

_PLAIN_CAP = re.compile(r"budget:max=(\d+)")


@dataclasses.dataclass(frozen=True)
class PairedRow:
    """One method metric against the baseline's Pass@1 on `n` shared problems."""

    method: str
    metric: str  # "pass1" or "maj@K"
    baseline: str
    n: int
    value: float
    baseline_value: float
    diff: float
    low: float
    high: float
    test: str  # "McNemar" or "bootstrap"
    p: float
    wins: int | None  # problems only the method gets right (McNemar)
    losses: int | None  # problems only the baseline gets right (McNemar)
    mde: float | None


def default_baseline(methods: Sequence[str]) -> str | None:
    """The largest plain cap `budget:max=N` among `methods`, else the first; None for none."""
    caps = [(int(m.group(1)), name) for name in methods if (m := _PLAIN_CAP.fullmatch(name))]
    if caps:
        return max(caps)[1]
    return methods[0] if methods else None


def choose_baseline(methods: Sequence[str], requested: str | None) -> str | None:
    """`requested` if it is one of `methods` (ConfigError naming it if not), else the default."""
    if requested is None:
        return default_baseline(methods)
    if requested not in methods:
        raise ConfigError(f"baseline {requested!r} has no results here; methods with results: {', '.join(methods)}")
    return requested


def _binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def compare_pair(method: str, metric: str, baseline: str, a: Mapping[str, float],
                 b: Mapping[str, float]) -> PairedRow | None:
    """Test per-problem values `a` (the method's) against `b` (the baseline's) on their shared
    problems; None when they share none."""
    ids = [pid for pid in a if pid in b]
    if not ids:
        return None
    xa, xb = [a[i] for i in ids], [b[i] for i in ids]
    n = len(ids)
    boot = paired_bootstrap(xa, xb, seed=[zlib.crc32(f"{method}\0{metric}\0{baseline}".encode()), n])
    wins = losses = None
    if _binary(xa) and _binary(xb):
        wins = sum(1 for u, v in zip(xa, xb, strict=True) if u > v)
        losses = sum(1 for u, v in zip(xa, xb, strict=True) if u < v)
        test, p = "McNemar", mcnemar_exact(wins, losses)
        mde = mcnemar_detectable_difference(n, (wins + losses) / n)
    else:
        diffs = [u - v for u, v in zip(xa, xb, strict=True)]
        sd = statistics.stdev(diffs) if n > 1 else 0.0
        test, p = "bootstrap", boot.p
        mde = detectable_difference(n, sd) if sd > 0 else None
    return PairedRow(method, metric, baseline, n, sum(xa) / n, sum(xb) / n, boot.diff, boot.low, boot.high, test, p,
                     wins, losses, mde)


def paired_rows(grouped: Mapping[str, Mapping[str, Sequence[Sample]]], baseline: str) -> list[PairedRow]:
    """Every other method's Pass@1 (and, with K >= 2 samples of every problem, its maj@K and
    DeepConf votes) against `baseline`'s Pass@1."""
    base = per_problem(grouped[baseline], "pass1")
    rows = []
    for method, by_id in grouped.items():
        if method == baseline:
            continue
        metrics = ["pass1"]
        k = min(len(ss) for ss in by_id.values())
        if k > 1:
            metrics += [f"maj@{k}", *VOTES]  # a vote without confidences has no per-problem values: no row
        for metric in metrics:
            row = compare_pair(method, metric, baseline, per_problem(by_id, metric), base)
            if row is not None:
                rows.append(row)
    return rows
