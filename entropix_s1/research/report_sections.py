"""The markdown sections `summary.md` gains with samples: sample metrics, paired tests, and
sequential vs parallel scaling. Each function returns lines (empty when it has nothing to say)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from entropix_s1.research.paired import PairedRow
from entropix_s1.research.samples import VOTES, Estimate, SampleStats
from entropix_s1.research.scaling_figure import FIGURE_FILE, Curve
from entropix_s1.research.stats import mcnemar_detectable_difference

__all__ = ["samples_section", "paired_section", "scaling_section", "has_samples"]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _est(e: Estimate | None) -> str:
    return "—" if e is None else f"{100 * e.value:.1f}% [{100 * e.low:.1f}, {100 * e.high:.1f}]"


def _vote(e: Estimate | None, problems: int) -> str:
    """A vote's estimate, with its problem count when it covers fewer than the method's problems."""
    return _est(e) + (f" (n={e.n})" if e is not None and e.n < problems else "")


def _pts(x: float | None, sign: bool = False) -> str:
    return "—" if x is None else (f"{100 * x:+.1f}" if sign else f"{100 * x:.1f}")


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def _code(s: str) -> str:
    return "`" + s.replace("|", "\\|") + "`"


def has_samples(stats: Mapping[str, SampleStats]) -> bool:
    """Whether any method has several samples, several seeds or a confidence-weighted vote."""
    return any(st.max_samples > 1 or st.seeds > 1 or any(st.votes.values()) for st in stats.values())


def samples_section(stats: Mapping[str, SampleStats]) -> list[str]:
    """Per method: Pass@1, pass@K, maj@K, the confidence-weighted votes, the seed sds; then per k."""
    if not has_samples(stats):
        return []
    lines = [
        "## Samples (pass@k, maj@k, confidence-weighted votes)", "",
        "| method | problems | samples | seeds | Pass@1 [95% CI] | pass@K | maj@K | "
        + " | ".join(VOTES) + " | seed sd Pass@1 | seed sd maj | tokens/sample |",
        "|---|---:|---:|---:|---|---|---|" + "---|" * len(VOTES) + "---:|---:|---:|",
    ]
    for st in stats.values():
        k = st.samples
        votes = " | ".join(_vote(st.votes[v], st.problems) for v in VOTES)
        lines.append(f"| {_code(st.method)} | {st.problems} | {k}{'+' if st.max_samples > k else ''} | {st.seeds} "
                     f"| {_est(st.pass1)} | {_est(st.pass_at[k])} | {_est(st.maj_at[k])} | {votes} "
                     f"| {_pts(st.seed_sd_pass1)} | {_pts(st.seed_sd_maj)} | {st.mean_tokens:.1f} |")
    lines += ["", "K: the fewest samples of any problem (`+`: some have more). Pass@1: mean over problems of the "
              "share of correct samples. pass@K: Chen et al. 2021's unbiased estimator. maj@K: majority vote of K "
              "samples (expected over K-subsets; ties to the answer sampled first). " + _votes_note() + " Seed sd: "
              "sample standard deviation over seeds of the per-seed Pass@1 and majority vote, in points. 95% "
              "intervals: Wilson for 0/1 per-problem outcomes, else a percentile bootstrap over problems."]
    lines += _by_k(stats)
    return lines


def _votes_note() -> str:
    return ("conf: DeepConf's confidence-weighted vote (arXiv 2508.15260), each sample weighted by its mean token "
            "confidence; deepconf@90 / deepconf@10: the 90% / 10% most confident samples by lowest group confidence, "
            "weighted by it; over the problems whose samples carry confidences (— where none do).")


def _by_k(stats: Mapping[str, SampleStats]) -> list[str]:
    multi = [st for st in stats.values() if st.samples > 1]
    if not multi:
        return []
    lines = ["", "| method | k | tokens/problem | pass@k [95% CI] | maj@k [95% CI] |", "|---|---:|---:|---|---|"]
    for st in multi:
        for k in st.maj_at:
            lines.append(f"| {_code(st.method)} | {k} | {k * st.mean_tokens:.1f} | {_est(st.pass_at[k])} "
                         f"| {_est(st.maj_at[k])} |")
    return lines


def paired_section(rows: Sequence[PairedRow], baseline: str | None) -> list[str]:
    """The paired tests against the baseline and the power note."""
    if not rows or baseline is None:
        return []
    lines = [
        f"## Paired tests against {_code(baseline)}", "",
        "| method | metric | n | accuracy | baseline | Δ points [95% CI] | test | p | only method / only baseline "
        "right | detectable Δ (80% power) |",
        "|---|---|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        disc = "—" if r.wins is None else f"{r.wins} / {r.losses}"
        metric = "Pass@1" if r.metric == "pass1" else r.metric
        lines.append(f"| {_code(r.method)} | {metric} | {r.n} | {_pct(r.value)} | {_pct(r.baseline_value)} "
                     f"| {_pts(r.diff, True)} [{_pts(r.low, True)}, {_pts(r.high, True)}] | {r.test} | {_p(r.p)} "
                     f"| {disc} | {_pts(r.mde)} |")
    lines += ["", "Each row pairs the method's per-problem value (Pass@1, or maj@K) with the baseline's Pass@1 on the "
              "problems both have. Test: exact McNemar (two-sided binomial on the discordant problems) when both are "
              "0/1 per problem, else a paired bootstrap over problems (10,000 resamples, two-sided p); the interval "
              "is the paired bootstrap's 95% percentile interval either way. No correction for multiple comparisons."]
    lines += ["", _power_note(rows)]
    return lines


#: discordance rates of the planning half of the power note
PLANNING_PSI = (0.1, 0.2, 0.4)


def _power_note(rows: Sequence[PairedRow]) -> str:
    """What the last column means, the median observed case, and a planning line at fixed psi."""
    n = max(r.n for r in rows)
    note = ("Power: the last column is the smallest true difference a comparison on this many problems detects with "
            "80% power at two-sided α = 0.05 (McNemar: Connor 1987 at the observed discordance rate ψ, the share of "
            "problems only one side gets right, — when even Δ = ψ is out of reach; bootstrap: the normal approximation "
            "at the observed sd of per-problem differences).")
    psis = [(r.wins + r.losses) / r.n for r in rows if r.wins is not None and r.losses is not None and r.n == n]
    if psis:
        psi = statistics.median(psis)
        mde = mcnemar_detectable_difference(n, psi) if psi > 0 else None
        note += (f" Here n = {n} problems and the median ψ is {psi:.2f}: "
                 + ("no difference is detectable at it." if mde is None else f"Δ ≥ {100 * mde:.1f} points."))
    plan = [(psi, mcnemar_detectable_difference(n, psi)) for psi in PLANNING_PSI]
    note += " Planning, n = " + str(n) + ": " + "; ".join(
        f"ψ = {psi:.1f} → Δ ≥ {'—' if d is None else f'{100 * d:.1f}'} points" for psi, d in plan) + "."
    return note


def scaling_section(curves: Sequence[Curve], figure: bool) -> list[str]:
    """s1 Figure 4's comparison as a table: every curve's Scaling, Performance and Control."""
    if not any(c.kind == "parallel" for c in curves):
        return []
    lines = ["## Sequential vs parallel scaling (s1 Figure 4)", "",
             "| curve | kind | points | Scaling (points per 1k total tokens) | Performance | Control |",
             "|---|---|---:|---:|---:|---:|"]
    for c in curves:
        sc = "—" if c.scaling is None else f"{c.scaling * 100 * 1000:+.2f}"
        lines.append(f"| {_code(c.name)} | {c.kind} | {len(c.points)} | {sc} | {_pct(c.performance)} "
                     f"| {_pct(c.control)} |")
    lines += ["", "x axis: mean total generated tokens per problem (thinking + answer, summed over the k samples of a "
              "vote). Sequential: one line per method family (Pass@1); parallel: maj@k of a sampling method, k = 1, 2, "
              "4, ... K."]
    if figure:
        lines += ["", f"![sequential vs parallel scaling]({FIGURE_FILE})"]
    return lines
