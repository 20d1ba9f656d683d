"""Per-method metrics over K samples per problem (and S seeds): what `compare --samples K` reports.

Records of one method are grouped by problem; a problem's samples are ordered by (seed, sample
index), the order `voting` breaks ties in. All seeds pool: S seeds of K samples are S*K samples.

* **Pass@1**: the mean over problems of each problem's share of correct samples (the mean
  accuracy over samples, weighting problems equally).
* **pass@k** (`voting.pass_at_k`) and expected **maj@k** (`voting.maj_at_k`) for k = 1, 2, 4, ...
  up to the fewest samples any problem has (`sample_ks`), averaged over problems.
* **Confidence-weighted votes** (DeepConf, arXiv 2508.15260): `conf` weights every sample by its
  mean token confidence; `deepconf@90` / `deepconf@10` keep the 90% / 10% most confident samples
  by lowest group confidence and weight by it (DeepConf-high / -low). Averaged over the problems
  with at least one sample that carries the confidence; None where none does.
* **Seed sd**: the sample standard deviation over seeds of the per-seed Pass@1 and of the
  per-seed majority vote of all that seed's samples (None with one seed).
* **95% intervals**: the Wilson interval where every per-problem value is 0/1 (one sample, a vote
  of all samples), else a percentile bootstrap over problems (`stats.bootstrap_interval`, seeded
  by the method and metric names, so a summary is reproducible and adding a method changes no
  other method's interval).

A vote counts answers, not strings: all predictions graded correct are one answer (each equals
the gold); wrong numeric predictions vote by value (`1,000` = `1000`), other wrong ones by their
text without spaces. Wrong math answers that are equal but written differently therefore split
their vote, which can only help the correct answer, never the other way round.
"""

from __future__ import annotations

import dataclasses
import statistics
import zlib
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from entropix_s1.research import voting
from entropix_s1.research.grading import grading_kind, parse_number
from entropix_s1.research.s1_metrics import wilson_interval
from entropix_s1.research.stats import bootstrap_interval

__all__ = [
    "Sample",
    "Estimate",
    "SampleStats",
    "VOTES",
    "vote_key",
    "group_samples",
    "sample_ks",
    "per_problem",
    "estimate",
    "sample_stats",
]

#: the vote key of every correct prediction
CORRECT = ("correct",)
#: confidence-weighted votes: name -> (record field weighting the vote, keep fraction)
VOTES: dict[str, tuple[str, float]] = {
    "conf": ("confidence", 1.0),
    "deepconf@90": ("lowest_group_confidence", 0.9),
    "deepconf@10": ("lowest_group_confidence", 0.1),
}


@dataclasses.dataclass(frozen=True)
class Sample:
    """One sample's outcome, as the metrics need it."""

    seed: int
    sample: int
    correct: bool
    answer: Hashable | None
    tokens: int  # thinking + answer tokens
    confidence: float | None = None
    lowest_group_confidence: float | None = None


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A metric averaged over problems with its 95% interval (`n` problems)."""

    value: float
    low: float
    high: float
    n: int


@dataclasses.dataclass(frozen=True)
class SampleStats:
    """One method's sample metrics (see the module docstring)."""

    method: str
    problems: int
    samples: int  # the fewest samples of any problem: the largest k reported
    max_samples: int
    seeds: int
    pass1: Estimate
    pass_at: Mapping[int, Estimate]
    maj_at: Mapping[int, Estimate]
    votes: Mapping[str, Estimate | None]
    seed_sd_pass1: float | None
    seed_sd_maj: float | None
    mean_tokens: float  # per sample (thinking + answer), mean over problems


def vote_key(record: Mapping[str, Any], dataset: str | None) -> Hashable | None:
    """The answer a record votes for; None (abstain) when it has no prediction or failed."""
    pred = record.get("prediction")
    if record.get("error") or pred is None:
        return None
    if record.get("correct"):
        return CORRECT
    if grading_kind(dataset or "") == "numeric":
        value = parse_number(str(pred))
        if value is not None:
            return ("num", float(f"{value:.9g}"))
    return ("text", "".join(str(pred).split()))


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def _sample(record: Mapping[str, Any], dataset: str | None) -> Sample:
    return Sample(
        seed=int(record.get("seed") or 0),
        sample=int(record.get("sample") or 0),
        correct=bool(record.get("correct")),
        answer=vote_key(record, dataset),
        tokens=int(record.get("thinking_tokens") or 0) + int(record.get("answer_tokens") or 0),
        confidence=_float(record.get("confidence")),
        lowest_group_confidence=_float(record.get("lowest_group_confidence")),
    )


def group_samples(records: Iterable[Mapping[str, Any]],
                  dataset: str | None = None) -> dict[str, dict[str, list[Sample]]]:
    """method -> problem id -> its samples in (seed, sample) order; dataset: records' own if None."""
    out: dict[str, dict[str, list[Sample]]] = {}
    for r in records:
        out.setdefault(str(r["method"]), {}).setdefault(str(r["id"]), []).append(
            _sample(r, dataset if dataset is not None else r.get("dataset")))
    for by_id in out.values():
        for ss in by_id.values():
            ss.sort(key=lambda s: (s.seed, s.sample))
    return out


def sample_ks(n: int) -> list[int]:
    """k = 1, 2, 4, 8, ... up to n, and n itself."""
    ks = [1 << i for i in range(max(n, 1).bit_length()) if 1 << i <= n]
    return ks + [n] if n >= 1 and ks[-1] != n else ks


def _vote_value(ss: Sequence[Sample], vote: str) -> float | None:
    field, keep = VOTES[vote]
    confs = [getattr(s, field) for s in ss]
    if all(c is None for c in confs):
        return None
    winner = voting.weighted_vote([s.answer for s in ss], confs, keep)
    return float(winner is not None and winner == CORRECT)


def per_problem(by_id: Mapping[str, Sequence[Sample]], metric: str) -> dict[str, float]:
    """Per-problem values of `metric`: "pass1", "pass@K", "maj@K", "vote" (all samples' plain
    majority), or a VOTES name (problems without confidences left out)."""
    out: dict[str, float] = {}
    for pid, ss in by_id.items():
        value = _value(ss, metric)
        if value is not None:
            out[pid] = value
    return out


def _value(ss: Sequence[Sample], metric: str) -> float | None:
    correct = [s.correct for s in ss]
    if metric == "pass1":
        return sum(correct) / len(ss)
    if metric == "vote":
        return float(voting.majority_vote([s.answer for s in ss]) == CORRECT)
    if metric in VOTES:
        return _vote_value(ss, metric)
    name, _, k = metric.partition("@")
    if name == "pass":
        return voting.pass_at_k(len(ss), sum(correct), int(k))
    if name == "maj":
        return voting.maj_at_k([s.answer for s in ss], correct, int(k))
    raise ValueError(f"unknown sample metric {metric!r}")


def estimate(values: Sequence[float], key: str) -> Estimate:
    """Mean of per-problem values with a 95% interval: Wilson when all are 0/1, else a percentile
    bootstrap over problems seeded by `key`."""
    n = len(values)
    mean = sum(values) / n
    if all(v in (0.0, 1.0) for v in values):
        lo, hi = wilson_interval(int(sum(values)), n)
    else:
        lo, hi = bootstrap_interval(values, seed=[zlib.crc32(key.encode()), n])
        lo, hi = min(lo, mean), max(hi, mean)
    return Estimate(mean, lo, hi, n)


def _seed_sd(by_id: Mapping[str, Sequence[Sample]], metric: str) -> float | None:
    seeds = sorted({s.seed for ss in by_id.values() for s in ss})
    if len(seeds) < 2:
        return None
    per_seed = []
    for seed in seeds:
        vals = [_value(sub, metric) for ss in by_id.values() if (sub := [s for s in ss if s.seed == seed])]
        per_seed.append(sum(vals) / len(vals))
    return statistics.stdev(per_seed)


def _mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def sample_stats(method: str, by_id: Mapping[str, Sequence[Sample]]) -> SampleStats:
    """Every sample metric of one method (its samples grouped by problem, as `group_samples`)."""
    if not by_id:
        raise ValueError(f"method {method!r} has no samples")
    k_max = min(len(ss) for ss in by_id.values())

    def est(metric: str) -> Estimate:
        return estimate(list(per_problem(by_id, metric).values()), f"{method}\0{metric}")

    votes: dict[str, Estimate | None] = {}
    for vote in VOTES:
        vals = list(per_problem(by_id, vote).values())
        votes[vote] = estimate(vals, f"{method}\0{vote}") if vals else None
    ks = sample_ks(k_max)
    return SampleStats(
        method=method,
        problems=len(by_id),
        samples=k_max,
        max_samples=max(len(ss) for ss in by_id.values()),
        seeds=len({s.seed for ss in by_id.values() for s in ss}),
        pass1=est("pass1"),
        pass_at={k: est(f"pass@{k}") for k in ks},
        maj_at={k: est(f"maj@{k}") for k in ks},
        votes=votes,
        seed_sd_pass1=_seed_sd(by_id, "pass1"),
        seed_sd_maj=_seed_sd(by_id, "vote"),
        mean_tokens=_mean(_mean(s.tokens for s in ss) for ss in by_id.values()),
    )
