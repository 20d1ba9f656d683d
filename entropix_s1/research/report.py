"""The report of a comparison: `summary.md` and its figures, rebuilt from the results files alone.

`summary.md`: per method n (problems), accuracy (Pass@1: the mean over problems of the share of
correct samples) with a 95% interval, mean thinking/answer tokens, waits, pauses, probes,
Control; per family Scaling, Performance, Control (`s1_metrics`). With several samples, seeds or
trace confidences, the sample metrics (`samples`: pass@k, maj@k, DeepConf's weighted votes, seed
sds); with two methods or more, paired tests against a baseline with a power note (`paired`);
with a method of K >= 2 samples, sequential vs parallel scaling (`scaling_figure`).
`scaling.png`: accuracy vs mean thinking tokens, one line per family, 95% CI error bars (s1's
Figure 1 layout); `sequential_parallel.png`: accuracy vs total tokens, families and maj@k (s1's
Figure 4), when a method has samples. matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from entropix_s1.errors import ConfigError
from entropix_s1.research.methods import parse_spec
from entropix_s1.research.paired import PairedRow, choose_baseline, paired_rows
from entropix_s1.research.report_sections import paired_section, samples_section, scaling_section
from entropix_s1.research.s1_metrics import FamilyMetrics, MethodPoint, family_metrics, method_point
from entropix_s1.research.samples import SampleStats, group_samples, sample_stats
from entropix_s1.research.scaling_figure import FIGURE_FILE, Curve, finish_axes, save_figure, scaling_curves
from entropix_s1.research.store import RESULTS_FILE, read_results, read_run_info, results_files, write_atomic

__all__ = ["SUMMARY_FILE", "PLOT_FILE", "FIGURE_FILE", "CompareSummary", "summarize", "plot_points", "save_report"]

SUMMARY_FILE = "summary.md"
PLOT_FILE = "scaling.png"


@dataclasses.dataclass(frozen=True)
class CompareSummary:
    """What `summarize` computed and where it wrote it."""

    out_dir: Path
    dataset: str | None
    points: tuple[MethodPoint, ...]
    families: tuple[FamilyMetrics, ...]
    n_results: int
    summary_path: Path
    plot_path: Path | None
    samples: Mapping[str, SampleStats] = dataclasses.field(default_factory=dict)
    baseline: str | None = None
    paired: tuple[PairedRow, ...] = ()
    curves: tuple[Curve, ...] = ()
    figure_path: Path | None = None

    def point(self, method: str) -> MethodPoint:
        for p in self.points:
            if p.method == method:
                return p
        raise KeyError(method)

    def family(self, family: str) -> FamilyMetrics:
        for f in self.families:
            if f.family == family:
                return f
        raise KeyError(family)


def _method_order(out_dir: Path, records: list[dict[str, Any]]) -> list[str]:
    order = [str(m) for m in read_run_info(out_dir).get("methods", [])]
    present = []
    for r in records:
        if r["method"] not in present:
            present.append(r["method"])
    return [m for m in order if m in present] + [m for m in present if m not in order]


def _family_and_bounds(recs: list[dict[str, Any]], method: str) -> tuple[str, int | None, int | None]:
    first = recs[0]
    if "family" in first and "budget_max" in first:
        return str(first["family"]), first.get("budget_min"), first.get("budget_max")
    try:  # older / hand-made files: recover from the canonical name
        spec = parse_spec(method)
        return spec.family, spec.budget.min_thinking_tokens or None, spec.budget.max_thinking_tokens
    except ConfigError:
        return method, None, None


def _points(order: list[str], records: list[dict[str, Any]], stats: Mapping[str, SampleStats]) -> list[MethodPoint]:
    """One point per method over all its runs (samples); accuracy and interval are its Pass@1's."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_method.setdefault(str(r["method"]), []).append(r)
    points = []
    for m in order:
        recs = by_method[m]
        family, bmin, bmax = _family_and_bounds(recs, m)
        pass1 = stats[m].pass1
        point = method_point(
            m,
            family,
            [bool(r.get("correct")) for r in recs],
            [int(r.get("thinking_tokens") or 0) for r in recs],
            budget_min=bmin,
            budget_max=bmax,
            answer_tokens=[int(r.get("answer_tokens") or 0) for r in recs],
            waits=[int(r.get("waits") or 0) for r in recs],
            pauses=[int(r.get("pauses") or 0) for r in recs],
            probes=[int(r.get("probes") or 0) for r in recs],
            errors=sum(1 for r in recs if r.get("error")),
            seconds=[float(r.get("seconds") or 0.0) for r in recs],
        )
        points.append(dataclasses.replace(point, accuracy=pass1.value, ci_low=pass1.low, ci_high=pass1.high))
    return points


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def _source(s: CompareSummary) -> str:
    """The results files read, as the summary names them."""
    return " and ".join(f"`{p.name}`" for p in results_files(s.out_dir)) or f"`{RESULTS_FILE}`"


def _summary_markdown(s: CompareSummary) -> str:
    lines = [f"# entropix-s1 compare: {s.dataset or 'unknown dataset'}", ""]
    if not s.points:
        lines += [f"{s.n_results} results from {_source(s)}.", "", "No results yet."]
        return "\n".join(lines) + "\n"
    lines += [_accuracy_note(s), ""]
    lines += _methods_and_families(s.points, s.samples, s.families, s.plot_path is not None)
    for section in (samples_section(s.samples), paired_section(s.paired, s.baseline),
                    scaling_section(s.curves, s.figure_path is not None)):
        if section:
            lines += [""] + section
    return "\n".join(lines) + "\n"


def _accuracy_note(s: CompareSummary) -> str:
    if all(st.max_samples == 1 for st in s.samples.values()):
        return f"{s.n_results} results from {_source(s)}; accuracy intervals are 95% Wilson score intervals."
    return (f"{s.n_results} results from {_source(s)}; n counts problems; accuracy is Pass@1 (the mean over "
            "problems of the share of correct samples) with a 95% Wilson interval for one sample per problem, else a "
            "percentile bootstrap over problems; token, wait, Control and time columns are per sample.")


def _methods_and_families(points: Sequence[MethodPoint], stats: Mapping[str, SampleStats],
                          families: Sequence[FamilyMetrics], plot: bool) -> list[str]:
    """The Methods table (n = problems) and s1's Families table, as before samples existed."""
    lines = [
        "## Methods",
        "",
        "| method | n | accuracy | 95% CI | mean thinking tokens | mean answer tokens | waits | pauses | probes "
        "| Control | errors | s/problem |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| `{_md_escape(p.method)}` | {stats[p.method].problems} | {_pct(p.accuracy)} "
            f"| {_pct(p.ci_low)} – {_pct(p.ci_high)} "
            f"| {p.mean_thinking_tokens:.1f} | {p.mean_answer_tokens:.1f} | {p.mean_waits:.2f} | {p.mean_pauses:.2f} "
            f"| {p.mean_probes:.2f} | {_pct(p.control)} | {p.errors} | {p.seconds_per_problem:.3f} |"
        )
    lines += [
        "",
        "## Families (s1 section 3.2)",
        "",
        "| family | methods | Scaling (acc. points per 1k thinking tokens) | Performance | Control |",
        "|---|---:|---:|---:|---:|",
    ]
    for f in families:
        sc = "—" if f.scaling is None else f"{f.scaling * 100 * 1000:+.2f}"
        lines.append(f"| `{_md_escape(f.family)}` | {len(f.methods)} | {sc} | {_pct(f.performance)} | {_pct(f.control)} |")
    lines += [
        "",
        "Control: share of runs whose thinking tokens stay within the method's [min, max] budget "
        "(— when no bound is set). Scaling: mean slope of accuracy over all pairs of a family's "
        "methods ordered by mean thinking tokens (— with fewer than two distinct points). "
        "Performance: the family's best accuracy.",
    ]
    if plot:
        lines += ["", f"![accuracy vs thinking tokens]({PLOT_FILE})"]
    return lines


def _short_label(method: str, family: str) -> str:
    if method == family:
        return ""
    head, _, opts = method.partition(":")
    fam_opts = set(family.partition(":")[2].split(","))
    return ",".join(o for o in opts.split(",") if o not in fam_opts)


def plot_points(ax: Any, points: Sequence[MethodPoint], families: Sequence[FamilyMetrics], title: str = "",
                colors: Any = None) -> None:
    """Accuracy (95% Wilson error bars) vs mean thinking tokens, one line per method family, on a
    matplotlib Axes: the picture of s1's Figure 1, shared by `scaling.png` and multi-panel reports.
    `colors`: optional callable family -> colour, to keep a family's colour across panels."""
    by_name = {p.method: p for p in points}
    xs_all = []
    for f in families:
        ps = sorted((by_name[m] for m in f.methods if by_name[m].n), key=lambda p: p.mean_thinking_tokens)
        if not ps:
            continue
        x = [p.mean_thinking_tokens for p in ps]
        y = [100 * p.accuracy for p in ps]
        yerr = [[max(0.0, 100 * (p.accuracy - p.ci_low)) for p in ps],
                [max(0.0, 100 * (p.ci_high - p.accuracy)) for p in ps]]
        xs_all += x
        ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, linewidth=1.5, label=f.family,
                    color=colors(f.family) if colors else None)
        for k, (p, xi, yi) in enumerate(zip(ps, x, y, strict=True)):
            lab = _short_label(p.method, f.family)
            if lab:  # staggered up/down so the labels of neighbouring points do not overprint
                ax.annotate(lab, (xi, yi), textcoords="offset points", xytext=(4, (4, -11, 14)[k % 3]), fontsize=7)
    finish_axes(ax, xs_all, "mean thinking tokens", title, legend_size=8 if families else None)


def save_report(fig: Any, img: str | os.PathLike[str], md_lines: Sequence[str], md: str | os.PathLike[str]) -> None:
    """Write a multi-panel report: the figure (tight layout, 110 dpi) and its markdown, then print both paths."""
    img, md = Path(img), Path(md)
    fig.tight_layout()
    img.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(img, dpi=110)
    md.write_text("\n".join(md_lines) + "\n")
    print(img)
    print(md)


def _plot(path: Path, dataset: str | None, points: list[MethodPoint], families: list[FamilyMetrics]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    plot_points(fig.add_subplot(1, 1, 1), points, families,
                f"{dataset or ''}: accuracy vs thinking tokens (95% Wilson CI)".strip(": "))
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def _baseline(out: Path, order: list[str], requested: str | None) -> str | None:
    """`requested` (ConfigError if it has no results), else run.json's if it has results, else the default."""
    if requested is not None:
        return choose_baseline(order, requested)
    stored = read_run_info(out).get("baseline")
    return choose_baseline(order, stored if stored in order else None)


def summarize(out_dir: str | os.PathLike[str], *, baseline: str | None = None) -> CompareSummary:
    """Rebuild summary.md and the figures of `out_dir` from its results files alone (the archive
    `results.jsonl.gz`, then the live `results.jsonl`).

    baseline: the method of the paired tests (default: the one `run.json` names, else the
    largest plain cap `budget:max=N`, else the first method)."""
    out = Path(out_dir)
    if not out.is_dir():
        raise ConfigError(f"{out} is not a directory with compare results")
    records = read_results(out)
    dataset = read_run_info(out).get("dataset")
    if dataset is None and records:
        dataset = records[0].get("dataset")
    order = _method_order(out, records)
    grouped = group_samples(records, dataset)
    stats = {m: sample_stats(m, grouped[m]) for m in order}
    points = _points(order, records, stats)
    families = family_metrics(points)
    base = _baseline(out, order, baseline)
    curves = scaling_curves(families, stats)
    plot_path = figure_path = None
    if points:
        plot_path = out / PLOT_FILE
        _plot(plot_path, dataset, points, families)
    if any(c.kind == "parallel" for c in curves):
        figure_path = save_figure(out / FIGURE_FILE, curves,
                                  f"{dataset or ''}: sequential vs parallel scaling (95% CI)".strip(": "))
    summary = CompareSummary(
        out_dir=out,
        dataset=dataset,
        points=tuple(points),
        families=tuple(families),
        n_results=len(records),
        summary_path=out / SUMMARY_FILE,
        plot_path=plot_path,
        samples=stats,
        baseline=base,
        paired=tuple(paired_rows(grouped, base)) if base is not None else (),
        curves=tuple(curves),
        figure_path=figure_path,
    )
    write_atomic(summary.summary_path, _summary_markdown(summary).encode("utf-8"))
    return summary
