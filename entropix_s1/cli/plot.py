"""`entropix-s1 plot TRACE.jsonl`: timeline.png, regimes.png, tokens.html from a trace."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "timeline.png, regimes.png, tokens.html from a trace"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("trace", type=Path, metavar="TRACE.jsonl", help="trace written with --trace")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output directory (default: <trace name>_plots next to the trace)")
    p.add_argument("--row", type=int, default=None, metavar="N", help="plot only this row (default: all)")
    p.add_argument("--config", type=Path, default=None, metavar="JSON",
                   help="EntropixConfig JSON whose entropy/varentropy thresholds are drawn on the plots")
    return p


def run(a: argparse.Namespace) -> int:
    """Write the three files and print their paths. Bad input raises `TraceError` / `InputError` /
    `ConfigError` (all `EntropixS1Error`) naming the file and line."""
    from entropix_s1.viz.plots import plot_trace, thresholds_from_config  # lazy: matplotlib

    thresholds = thresholds_from_config(a.config) if a.config is not None else None
    out = a.out if a.out is not None else a.trace.with_name(a.trace.stem + "_plots")
    for name, path in plot_trace(a.trace, out, thresholds=thresholds, row=a.row).items():
        print(f"{name}: {path}")
    return 0
