"""The figure and tables of docs/thinking_model.md's s1 experiment, from committed comparison results.

Reads the directories written by `benchmarks/s1_experiment.sh` (`s1_think_<dataset>` for the thinking
SmolLM2, `s1_base_<dataset>` for the base model), re-summarises them, and writes

* `docs/img/s1_scaling.png`: one panel per dataset, accuracy (95% Wilson interval) vs mean thinking
  tokens: s1's budget-forcing line (caps 32..512, then 1/2/4 "Wait" extensions at the 512 cap), the
  wait-string ablation points ("Hmm", "Alternatively", no string, 2 extensions each), entropix, and
  the base model's greedy accuracy as a grey band;
* `benchmarks/results/s1_experiment.md`: per dataset, every method with its interval, mean thinking
  tokens, the share of problems whose thinking hit the cap, waits per problem, seconds per problem,
  and s1's Control / Scaling / Performance for each method family; then, with more than one dataset,
  all problems pooled: every method's accuracy and interval over all sets, and a paired comparison
  with the plain 512 cap (problems only one of the two gets right, exact sign-test p), which is
  the test that 32 problems per set can afford.

    python benchmarks/s1_report.py [--results DIR] [--img PNG] [--md FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from entropix_s1.research import read_results, sign_test, summarize, wilson_interval
from entropix_s1.research.compare import plot_points, save_report

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("gsm8k", "mawps_addsub", "mawps_multiarith")
#: the paired reference: s1's plain cap, to which waits, the ablation and entropix each add one thing
REFERENCE = "budget:max=512"
COLORS = {"budget": "tab:orange", "budget:wait=Hmm": "tab:green", "budget:wait=Alternatively": "tab:purple",
          "budget:wait=none": "tab:brown", "entropix+budget": "tab:red"}


def family_color(family: str) -> str:
    return COLORS.get(family, "tab:gray")


def at_cap_share(records: list[dict], method: str) -> float | None:
    """Share of a method's problems whose thinking reached its cap (forced to end), None without a cap."""
    rs = [r for r in records if r["method"] == method and r.get("budget_max")]
    if not rs:
        return None
    return sum(1 for r in rs if r["thinking_tokens"] >= r["budget_max"]) / len(rs)


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def dataset_section(think_dir: Path, base_dir: Path | None, ax) -> list[str]:
    s = summarize(think_dir)
    recs = read_results(think_dir)
    base = summarize(base_dir) if base_dir is not None else None
    n = max((p.n for p in s.points), default=0)
    title = f"{s.dataset} (first {n} problems)"
    plot_points(ax, list(s.points), list(s.families), title, colors=family_color)
    rows = ["| model | method | n | accuracy | 95% CI | mean thinking tokens | at cap | waits | s/problem |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    if base is not None:
        for p in base.points:
            ax.axhspan(100 * p.ci_low, 100 * p.ci_high, color="0.85", alpha=0.5, zorder=0)
            ax.axhline(100 * p.accuracy, color="0.4", linestyle="--", linewidth=1,
                       label=f"base model, {p.method} ({100 * p.accuracy:.0f}%)")
            rows.append(f"| base | `{p.method}` | {p.n} | {100 * p.accuracy:.1f}% | "
                        f"{100 * p.ci_low:.1f}–{100 * p.ci_high:.1f}% | {p.mean_thinking_tokens:.1f} | – | "
                        f"{p.mean_waits:.2f} | {p.seconds_per_problem:.1f} |")
        ax.legend(fontsize=7, loc="best")
    for p in s.points:
        cap = at_cap_share(recs, p.method)
        rows.append(f"| think | `{p.method}` | {p.n} | {100 * p.accuracy:.1f}% | "
                    f"{100 * p.ci_low:.1f}–{100 * p.ci_high:.1f}% | {p.mean_thinking_tokens:.1f} | "
                    f"{_fmt(None if cap is None else 100 * cap, '.0f')}{'' if cap is None else '%'} | "
                    f"{p.mean_waits:.2f} | {p.seconds_per_problem:.1f} |")
    rows += ["", "| family (thinking model) | Control | Scaling (points per 1k tokens) | Performance |",
             "|---|---:|---:|---:|"]
    for f in s.families:
        rows.append(f"| `{f.family}` | {_fmt(None if f.control is None else 100 * f.control, '.0f')}"
                    f"{'' if f.control is None else '%'} | "
                    f"{_fmt(None if f.scaling is None else 100 * 1000 * f.scaling, '+.1f')} | "
                    f"{_fmt(None if f.performance is None else 100 * f.performance, '.1f')}"
                    f"{'' if f.performance is None else '%'} |")
    rel = think_dir.relative_to(ROOT) if think_dir.is_relative_to(ROOT) else think_dir
    return [f"## {title}", "", f"`{rel}`" + (f", base: `{base_dir.name}`" if base_dir else ""), "", *rows, ""]


def pooled_section(found: list[tuple[Path, Path | None]]) -> list[str]:
    """Every method over all datasets at once, paired against `REFERENCE` on the problems both ran."""
    runs: dict[tuple[str, str], dict[tuple[str, str], dict]] = {}  # (model, method) -> (dataset, id) -> record
    for think, base in found:
        for model, d in (("base", base), ("think", think)):
            for r in read_results(d) if d is not None else []:
                runs.setdefault((model, r["method"]), {})[(r.get("dataset", d.name), r["id"])] = r
    ref = runs.get(("think", REFERENCE), {})
    rows = [f"## All sets pooled ({len(found)} datasets)", "",
            f"Paired with `{REFERENCE}` on the same problems: problems only this method gets right / only "
            "the cap gets right, and the exact two-sided sign-test p (McNemar's exact test).", "",
            f"| model | method | n | accuracy | 95% CI | mean thinking tokens | only this / only `{REFERENCE}` | p |",
            "|---|---|---:|---:|---|---:|---:|---:|"]
    for (model, method), recs in runs.items():
        n, c = len(recs), sum(1 for r in recs.values() if r["correct"])
        lo, hi = wilson_interval(c, n)
        think = sum(r["thinking_tokens"] for r in recs.values()) / n
        shared = [k for k in recs if k in ref]
        if (model, method) == ("think", REFERENCE) or not shared:
            paired = "– | –"
        else:
            wins = sum(1 for k in shared if recs[k]["correct"] and not ref[k]["correct"])
            losses = sum(1 for k in shared if ref[k]["correct"] and not recs[k]["correct"])
            paired = f"{wins} / {losses} | {sign_test(wins, losses):.2f}"
        rows.append(f"| {model} | `{method}` | {n} | {100 * c / n:.1f}% | {100 * lo:.1f}–{100 * hi:.1f}% | "
                    f"{think:.1f} | {paired} |")
    return [*rows, ""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"), help="dir holding s1_think_*/s1_base_*")
    ap.add_argument("--img", default=str(ROOT / "docs" / "img" / "s1_scaling.png"))
    ap.add_argument("--md", default=None, help="default: <results>/s1_experiment.md")
    a = ap.parse_args(argv)
    root = Path(a.results)
    found = [(root / f"s1_think_{d}", root / f"s1_base_{d}") for d in DATASETS]
    found = [(t, b if (b / "results.jsonl").is_file() else None) for t, b in found if (t / "results.jsonl").is_file()]
    if not found:
        print(f"no s1_think_* results under {root}", file=sys.stderr)
        return 2
    fig = Figure(figsize=(6.2 * len(found), 4.6))
    FigureCanvasAgg(fig)
    md = ["# s1 at toy scale: budget forcing on the thinking SmolLM2 (generated by benchmarks/s1_report.py)", ""]
    for k, (t, b) in enumerate(found):
        md += dataset_section(t, b, fig.add_subplot(1, len(found), k + 1))
    if len(found) > 1:
        md += pooled_section(found)
    save_report(fig, a.img, md, a.md or root / "s1_experiment.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
