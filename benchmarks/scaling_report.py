"""Every figure and table of the scaling experiment, regenerated from its committed results alone.

    python benchmarks/scaling_report.py [--results DIR] [--img PNG] [--md FILE]

For every `<model>_<dataset>/` under `--results` (default `benchmarks/results/scaling/`, written by
`benchmarks/scaling_experiment.py`) it re-summarises the directory (`summarize`: its `summary.md`,
`scaling.png` and `sequential_parallel.png`, paired tests against the baseline in its `run.json`),
then writes

* `docs/img/scaling_experiment.png`: one panel per (model, dataset), accuracy (95% intervals) vs
  mean total generated tokens per problem: a solid line per sequential method family, a dashed
  maj@k line (k = 1 .. K) for sampling (s1's Figure 4);
* `benchmarks/results/scaling_experiment.md`: the headline of each panel (n, the baseline, the
  best method with its paired difference, interval and p, every difference at p < 0.05
  uncorrected, maj@K against the baseline), then per panel every method's Pass@1 and tokens, the
  paired tests with the power note, s1's Scaling / Performance / Control per curve, and the
  sample metrics (pass@k, maj@k, DeepConf votes, seed sds).

Nothing here runs a model; the same results give the same files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a source checkout without installing

from entropix_s1.research.compare import CompareSummary, save_report, summarize  # noqa: E402
from entropix_s1.research.report_sections import paired_section, samples_section, scaling_section  # noqa: E402
from entropix_s1.research.samples import VOTES  # noqa: E402
from entropix_s1.research.scaling_figure import plot_curves  # noqa: E402
from entropix_s1.research.store import ARCHIVE_FILE, RESULTS_FILE, results_files  # noqa: E402

MODEL_NAMES = {"think": "thinking SmolLM2-135M", "qwen": "Qwen2.5-Coder-0.5B-Instruct"}
PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
           "tab:cyan", "tab:gray", "gold", "navy", "teal", "maroon")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _title(run_dir: Path, s: CompareSummary) -> str:
    model, _, dataset = run_dir.name.partition("_")
    n = max((st.problems for st in s.samples.values()), default=0)
    return f"{MODEL_NAMES.get(model, model)} on {s.dataset or dataset} (n = {n})"


def _metric(metric: str) -> str:
    return "Pass@1" if metric == "pass1" else metric


def _tokens(s: CompareSummary, method: str, metric: str) -> float:
    """Mean generated tokens per problem behind a paired row's value (k samples for a maj@k, all K
    for a DeepConf vote)."""
    st = s.samples[method]
    k = int(metric.partition("@")[2]) if metric.startswith("maj@") else st.samples if metric in VOTES else 1
    return k * st.mean_tokens


def headline(s: CompareSummary) -> str:
    """A few honest sentences: the baseline, the best row (with its token cost), entropix against
    the baseline (the experiment's question), what differs at p < 0.05."""
    if not s.paired or s.baseline is None:
        return "Fewer than two methods: nothing to compare yet."
    base = s.samples[s.baseline].pass1
    best = max(s.paired, key=lambda r: r.value)
    lead = "Best" if best.diff > 0 else "No method scores above it; the closest"
    text = (f"Baseline `{s.baseline}`: {_pct(base.value)} [{_pct(base.low)}, {_pct(base.high)}] at "
            f"{_tokens(s, s.baseline, 'pass1'):.0f} tokens per problem. {lead}: `{best.method}` {_metric(best.metric)} "
            f"{_pct(best.value)} at {_tokens(s, best.method, best.metric):.0f} tokens, Δ {100 * best.diff:+.1f} points "
            f"[{100 * best.low:+.1f}, {100 * best.high:+.1f}], {best.test} p = {best.p:.2g} (n = {best.n}).")
    entropix = [r for r in s.paired if "entropix" in r.method and r.metric == "pass1"]
    for r in entropix:  # the question the experiment is for: entropy-adaptive decoding vs the plain cap
        text += (f" Entropy-adaptive `{r.method}`: {_pct(r.value)} at {_tokens(s, r.method, 'pass1'):.0f} tokens, "
                 f"Δ {100 * r.diff:+.1f} points [{100 * r.low:+.1f}, {100 * r.high:+.1f}]"
                 + (f", {r.wins} problems only it solves and {r.losses} only the baseline" if r.wins is not None
                    else "") + f", {r.test} p = {r.p:.2g}.")
    sig = [r for r in s.paired if r.p < 0.05]
    if sig:
        text += " At p < 0.05 (uncorrected): " + "; ".join(
            f"`{r.method}` {_metric(r.metric)} {100 * r.diff:+.1f} points (p = {r.p:.2g})" for r in sig) + "."
    else:
        text += " No method differs from the baseline at p < 0.05."
    return text


def _overview(s: CompareSummary) -> list[str]:
    lines = ["| method | problems | samples | Pass@1 [95% CI] | mean tokens per sample |", "|---|---:|---:|---|---:|"]
    for st in s.samples.values():
        lines.append(f"| `{st.method}` | {st.problems} | {st.max_samples} | {_pct(st.pass1.value)} "
                     f"[{_pct(st.pass1.low)}, {_pct(st.pass1.high)}] | {st.mean_tokens:.1f} |")
    return lines


def _demote(lines: list[str]) -> list[str]:
    return ["#" + x if x.startswith("## ") else x for x in lines]


def panel_section(run_dir: Path, s: CompareSummary) -> list[str]:
    rel = run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir
    lines = [f"## {_title(run_dir, s)}", "", f"`{rel}`", "", headline(s), "", *_overview(s)]
    for section in (paired_section(s.paired, s.baseline), scaling_section(s.curves, False), samples_section(s.samples)):
        if section:
            lines += ["", *_demote(section)]
    return lines + [""]


def _colors(summaries: list[CompareSummary]):
    names = sorted({c.name for s in summaries for c in s.curves})
    table = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    return table.__getitem__


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "scaling"))
    ap.add_argument("--img", default=str(ROOT / "docs" / "img" / "scaling_experiment.png"))
    ap.add_argument("--md", default=str(ROOT / "benchmarks" / "results" / "scaling_experiment.md"))
    a = ap.parse_args(argv)
    dirs = sorted(d for d in Path(a.results).glob("*_*") if results_files(d))
    if not dirs:
        print(f"no <model>_<dataset>/ with {ARCHIVE_FILE} or {RESULTS_FILE} under {a.results}: "
              "run benchmarks/scaling_experiment.py first",
              file=sys.stderr)
        return 2
    summaries = [summarize(d) for d in dirs]
    cols = min(2, len(dirs))
    rows = -(-len(dirs) // cols)
    fig = Figure(figsize=(7.2 * cols, 4.8 * rows))
    FigureCanvasAgg(fig)
    colors = _colors(summaries)
    md = ["# Sequential vs parallel scaling (generated by `benchmarks/scaling_report.py`)", "", "## Headlines", ""]
    md += [f"- **{_title(d, s)}**: {headline(s)}" for d, s in zip(dirs, summaries)] + [""]
    for k, (d, s) in enumerate(zip(dirs, summaries)):
        plot_curves(fig.add_subplot(rows, cols, k + 1), s.curves, _title(d, s), colors=colors)
        md += panel_section(d, s)
    save_report(fig, a.img, md, a.md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
