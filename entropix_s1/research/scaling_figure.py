"""Sequential vs parallel scaling in one picture, as s1's Figure 4 (arXiv 2501.19393).

x: mean total generated tokens per problem (thinking + answer, summed over the samples a point
uses); y: accuracy with its 95% interval.

* A **sequential** curve per method family: each method's Pass@1 at its mean tokens per sample
  (budget caps and waits are one family, `budget`; every test-time method its own).
* A **parallel** curve per sampling method with K >= 2 samples of every problem: maj@k for
  k = 1, 2, 4, ... K at k times its mean tokens per sample (the expected total of k samples).

Each curve gets s1's metrics on this x axis (`s1_metrics`): Scaling, the mean pairwise slope of
accuracy over total tokens; Performance, its best accuracy; Control, the family's share of runs
within their thinking budget (sequential curves only: a vote has no budget to keep).
matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from entropix_s1.research.s1_metrics import FamilyMetrics, scaling
from entropix_s1.research.samples import Estimate, SampleStats

__all__ = ["FIGURE_FILE", "CurvePoint", "Curve", "scaling_curves", "plot_curves", "save_figure", "finish_axes"]

FIGURE_FILE = "sequential_parallel.png"


@dataclasses.dataclass(frozen=True)
class CurvePoint:
    label: str
    tokens: float
    accuracy: Estimate


@dataclasses.dataclass(frozen=True)
class Curve:
    """One line of the figure, with s1's metrics over total tokens."""

    name: str
    kind: str  # "sequential" | "parallel"
    points: tuple[CurvePoint, ...]
    control: float | None = None

    @property
    def scaling(self) -> float | None:
        return scaling((p.tokens, p.accuracy.value) for p in self.points)

    @property
    def performance(self) -> float:
        return max(p.accuracy.value for p in self.points)


def _sequential(family: FamilyMetrics, stats: Mapping[str, SampleStats]) -> Curve | None:
    pts = [CurvePoint(m, stats[m].mean_tokens, stats[m].pass1) for m in family.methods if m in stats]
    if not pts:
        return None
    return Curve(family.family, "sequential", tuple(sorted(pts, key=lambda p: p.tokens)), family.control)


def _parallel(st: SampleStats) -> Curve | None:
    if st.samples < 2:
        return None
    pts = tuple(CurvePoint(f"k={k}", k * st.mean_tokens, est) for k, est in sorted(st.maj_at.items()))
    return Curve(f"maj@k {st.method}", "parallel", pts)


def scaling_curves(families: Sequence[FamilyMetrics], stats: Mapping[str, SampleStats]) -> list[Curve]:
    """Sequential curves (one per family) then parallel ones (one per method with K >= 2)."""
    curves = [c for f in families if (c := _sequential(f, stats)) is not None]
    return curves + [c for st in stats.values() if (c := _parallel(st)) is not None]


def plot_curves(ax: Any, curves: Sequence[Curve], title: str = "", colors: Any = None) -> None:
    """The curves on a matplotlib Axes: solid sequential lines, dashed parallel ones, 95% error
    bars; log2 x when the tokens span more than 8x. `colors`: optional callable name -> colour."""
    xs = []
    for c in curves:
        x = [p.tokens for p in c.points]
        y = [100 * p.accuracy.value for p in c.points]
        err = [[max(0.0, 100 * (p.accuracy.value - p.accuracy.low)) for p in c.points],
               [max(0.0, 100 * (p.accuracy.high - p.accuracy.value)) for p in c.points]]
        xs += x
        ax.errorbar(x, y, yerr=err, marker="o" if c.kind == "sequential" else "s", capsize=3, linewidth=1.5,
                    linestyle="-" if c.kind == "sequential" else "--", label=c.name,
                    color=colors(c.name) if colors else None)
        if c.kind == "parallel":
            for p, xi, yi in zip(c.points, x, y, strict=True):
                ax.annotate(p.label, (xi, yi), textcoords="offset points", xytext=(4, -10), fontsize=7)
    finish_axes(ax, xs, "mean total generated tokens per problem", title, legend_size=7 if curves else None)


def finish_axes(ax: Any, xs: Sequence[float], xlabel: str, title: str, legend_size: int | None) -> None:
    """Labels, grid and legend of an accuracy-vs-tokens panel; token counts that span more than
    8x go on a log2 axis (with plain numbers), so both short and long methods stay readable."""
    if xs and min(xs) > 0 and max(xs) / min(xs) > 8:
        from matplotlib.ticker import ScalarFormatter

        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if legend_size is not None:
        ax.legend(fontsize=legend_size, loc="best")


def save_figure(path: str | os.PathLike[str], curves: Sequence[Curve], title: str) -> Path:
    """Draw the curves into a PNG at `path` (written atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    plot_curves(fig.add_subplot(1, 1, 1), curves, title)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    return path
