"""Pictures of a generation trace for researchers: timeline, regime scatter, shaded token text.

    from entropix_s1.viz.plots import plot_trace
    paths = plot_trace("run.jsonl", "plots/", thresholds={"low_ent": 0.1, "high_vent": 5.0})
    # {"timeline": .../timeline.png, "regimes": .../regimes.png, "tokens": .../tokens.html}

CLI: `entropix-s1 plot TRACE.jsonl --out DIR [--row N] [--config ENTROPIX_CONFIG.json]`
(`entropix_s1.cli.plot`: the arguments and the run, over `plot_trace` and `thresholds_from_config`).

Matplotlib is used through `Figure` + the Agg canvas only: no pyplot, no global backend switch,
no display needed. The HTML is self-contained (inline CSS, no scripts, no network references).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap, PowerNorm, to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from entropix_s1.errors import ConfigError, InputError
from entropix_s1.results import GenerationResult, TraceStep
from entropix_s1.viz.trace import read_trace, trace_rows, trace_steps, trace_summary

__all__ = [
    "plot_trace",
    "plot_timeline",
    "plot_regimes",
    "write_tokens_html",
    "thresholds_from_config",
    "REGIME_COLORS",
    "FORCED_STYLES",
]

# ----------------------------------------------------------------------------------------------
# styling (Okabe-Ito based: distinguishable with the common colour-vision deficiencies)

#: Background / point colour per regime. Unknown regimes get colours from `_EXTRA_COLORS`.
REGIME_COLORS: dict[str, str] = {
    "argmax": "#56B4E9",  # sky blue: confident
    "adaptive": "#009E73",  # bluish green
    "pause": "#F0E442",  # yellow
    "branch": "#CC79A7",  # reddish purple
    "branch_path": "#E3B5CF",  # light reddish purple: the committed roll-out after a branch
    "hot": "#D55E00",  # vermillion
    "greedy": "#0072B2",  # blue
    "sample": "#8C510A",  # brown
    "forced": "#9E9E9E",  # grey
}
_EXTRA_COLORS = ("#8C564B", "#17BECF", "#BCBD22", "#7F7F7F", "#393B79", "#AD494A")
_REGIME_ORDER = ("argmax", "adaptive", "pause", "branch", "branch_path", "hot", "greedy", "sample", "forced")

#: Marker, colour and legend label per forced reason.
FORCED_STYLES: dict[str, dict[str, str]] = {
    "prefill": {"marker": "s", "color": "#616161", "label": "prefill"},
    "wait": {"marker": "v", "color": "#0072B2", "label": "Wait inserted (s1)"},
    "wait:uncertain": {"marker": "v", "color": "#CC79A7", "label": "Wait inserted (uncertain)"},
    "cap": {"marker": "X", "color": "#D50000", "label": "cap: thinking ended"},
    "end:confident": {"marker": "*", "color": "#009E73", "label": "thinking ended (confident)"},
    "pause": {"marker": "P", "color": "#E69F00", "label": "pause inserted"},
}
_FORCED_ORDER = ("prefill", "wait", "wait:uncertain", "pause", "cap", "end:confident")
_EXTRA_FORCED = ("D", "h", "8", "p")

_ENT_KEYS = ("low_ent", "med_ent", "high_ent")
_VENT_KEYS = ("low_vent", "med_vent", "high_vent")
_THRESH_STYLE = {"low": ":", "med": "--", "high": "-."}

# Light part of YlOrRd so black token text stays readable on the darkest shade.
_HTML_CMAP = LinearSegmentedColormap.from_list(
    "entropy_html", ["#ffffff", "#fff3b0", "#fed976", "#fd8d3c", "#f4564a"]
)
_NO_METRIC_BG = "#ececec"

_MAX_TIMELINE_ROWS = 16


def _regime_palette(regimes: Iterable[str]) -> dict[str, str]:
    pal: dict[str, str] = {}
    extra = 0
    for r in regimes:
        if r in REGIME_COLORS:
            pal[r] = REGIME_COLORS[r]
        elif r not in pal:
            pal[r] = _EXTRA_COLORS[extra % len(_EXTRA_COLORS)]
            extra += 1
    return pal


def _forced_style(reason: str, extra_index: int = 0) -> dict[str, str]:
    if reason in FORCED_STYLES:
        return FORCED_STYLES[reason]
    return {
        "marker": _EXTRA_FORCED[extra_index % len(_EXTRA_FORCED)],
        "color": _EXTRA_COLORS[extra_index % len(_EXTRA_COLORS)],
        "label": reason,
    }


def _ordered(keys: Iterable[str], order: Sequence[str]) -> list[str]:
    ks = set(keys)
    return [k for k in order if k in ks] + sorted(ks - set(order))


def _forced_styles(reasons: Iterable[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    extra = 0
    for r in _ordered(reasons, _FORCED_ORDER):
        if r not in FORCED_STYLES:
            out[r] = _forced_style(r, extra)
            extra += 1
        else:
            out[r] = FORCED_STYLES[r]
    return out


# ----------------------------------------------------------------------------------------------
# inputs


def _load_steps(src: str | os.PathLike[str] | Iterable[TraceStep | GenerationResult]) -> list[TraceStep]:
    return read_trace(src) if isinstance(src, (str, os.PathLike)) else trace_steps(src)


def _select_rows(steps: list[TraceStep], row: int | None) -> dict[int, list[TraceStep]]:
    if not steps:
        raise InputError("the trace has no steps (was generation run with tracing on?)")
    rows = trace_rows(steps)
    if row is None:
        return rows
    if row not in rows:
        raise InputError(f"row {row} is not in the trace; rows present: {_fmt_rows(list(rows))}")
    return {row: rows[row]}


def _fmt_rows(rows: list[int]) -> str:
    if len(rows) <= 12:
        return ", ".join(map(str, rows))
    return ", ".join(map(str, rows[:10])) + f", ... ({len(rows)} rows)"


def _canon_threshold_key(key: str) -> str | None:
    k = key.strip().lower().replace("-", "_")
    if "attn" in k or "attention" in k:
        return None
    for suffix in ("_threshold", "_thresh", "_thr"):
        if k.endswith(suffix):
            k = k[: -len(suffix)]
    k = k.replace("varentropy", "vent").replace("entropy", "ent").replace("medium", "med").replace("mid", "med")
    return k if k in _ENT_KEYS + _VENT_KEYS else None


def _as_mapping(obj: Any) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if hasattr(obj, "__dict__"):
        return vars(obj)
    raise ConfigError(f"cannot read thresholds from a {type(obj).__name__}")


def thresholds_from_config(config: Any) -> dict[str, float]:
    """Entropy/varentropy thresholds (nats) from an entropix sampler config.

    `config`: a path to a JSON file, a dict (as loaded from JSON), or a config object/dataclass.
    Keys are recognised in the common spellings (`low_ent`, `low_ent_thresh`, `low_entropy`,
    `high_varentropy_threshold`, ...) and returned as `low_ent`, `med_ent`, `high_ent`,
    `low_vent`, `med_vent`, `high_vent`. Nested sections (e.g. `{"entropix": {...}}`) are searched
    after the top level; attention thresholds are ignored. Returns only the keys found.
    """
    if isinstance(config, (str, os.PathLike)):
        p = Path(config)
        try:
            config = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {p}") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: invalid JSON ({e.msg} at line {e.lineno})") from e
    found: dict[str, float] = {}
    queue: list[Mapping[str, Any]] = [_as_mapping(config)]
    while queue:  # breadth first: outer keys win over nested ones
        nxt: list[Mapping[str, Any]] = []
        for m in queue:
            for key, value in m.items():
                if not isinstance(key, str):
                    continue
                if isinstance(value, Mapping) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
                    if "attn" not in key.lower() and "attention" not in key.lower():
                        nxt.append(_as_mapping(value))
                    continue
                canon = _canon_threshold_key(key)
                if canon is None or canon in found:
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ConfigError(f"threshold {key!r} must be a finite number, got {value!r}")
                found[canon] = float(value)
        queue = nxt
    return found


def _normalise_thresholds(thresholds: Mapping[str, float] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (thresholds or {}).items():
        canon = _canon_threshold_key(key)
        if canon is None:
            warnings.warn(f"ignoring unknown threshold {key!r} (expected one of {_ENT_KEYS + _VENT_KEYS})", stacklevel=3)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"threshold {key!r} must be a finite number, got {value!r}")
        out[canon] = float(value)
    return out


# ----------------------------------------------------------------------------------------------
# helpers


def _runs(values: Sequence[Any], xs: Sequence[int]) -> list[tuple[Any, int, int]]:
    """(value, first x, last x) for maximal runs of equal values over consecutive xs."""
    runs: list[tuple[Any, int, int]] = []
    for v, x in zip(values, xs):
        if runs and runs[-1][0] == v and runs[-1][2] == x - 1:
            runs[-1] = (v, runs[-1][1], x)
        else:
            runs.append((v, x, x))
    return runs


def _arr(rs: Sequence[TraceStep], field: str) -> np.ndarray:
    return np.array([np.nan if getattr(t, field) is None else getattr(t, field) for t in rs], dtype=float)


def _save(fig: Figure, path: Path, dpi: int) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


def _nice_top(values: np.ndarray, extra: Iterable[float] = ()) -> float:
    finite = values[np.isfinite(values)]
    top = max([float(finite.max()) if finite.size else 0.0, *extra, 1e-3])
    return top


# ----------------------------------------------------------------------------------------------
# timeline.png


def plot_timeline(
    rows: Mapping[int, Sequence[TraceStep]],
    path: str | os.PathLike[str],
    *,
    thresholds: Mapping[str, float] | None = None,
    dpi: int = 150,
) -> Path:
    """Entropy and varentropy per step, one pair of panels per row.

    Background: regime of each step. Markers along the top of the entropy panel: forced tokens by
    reason. Dashed vertical line: first answer-phase token. Dotted lines: thresholds, if given.
    At most 16 rows are drawn (a note says so); plot others with `row=`.
    """
    path = Path(path)
    th = _normalise_thresholds(thresholds)
    row_ids = list(rows)
    shown = row_ids[:_MAX_TIMELINE_ROWS]
    if len(row_ids) > len(shown):
        warnings.warn(
            f"timeline shows the first {len(shown)} of {len(row_ids)} rows; pass row= for the others",
            stacklevel=2,
        )
    all_steps = [t for r in shown for t in rows[r]]
    palette = _regime_palette(_ordered({t.regime for t in all_steps}, _REGIME_ORDER))
    fstyles = _forced_styles({t.forced for t in all_steps if t.forced is not None})
    summaries = trace_summary(all_steps)
    max_len = max(len(rows[r]) for r in shown)

    width = float(np.clip(8.0 + max_len / 60.0, 11.0, 18.0))
    per_row_h, header_h = 4.4, 1.05
    fig = Figure(figsize=(width, per_row_h * len(shown) + header_h), layout="constrained")
    subs = fig.subfigures(len(shown) + 1, 1, squeeze=False, height_ratios=[header_h] + [per_row_h] * len(shown))
    header, sub = subs[0, 0], subs[1:, 0]
    fig.get_layout_engine().set(h_pad=0.03, hspace=0.0)
    for sf, r in zip(sub, shown):
        _timeline_row(sf, r, rows[r], summaries[r], th, palette, fstyles)
    _timeline_header(header, all_steps, palette, fstyles, summaries, shown, row_ids)
    return _save(fig, path, dpi)


def _timeline_row(sf: Any, r: int, rs: Sequence[TraceStep], s: Mapping[str, Any], th: Mapping[str, float],
                  palette: Mapping[str, str], fstyles: Mapping[str, Mapping[str, Any]]) -> None:
    """The entropy and varentropy panels of one row in subfigure `sf` (`s`: the row's trace summary)."""
    xs = np.array([t.step for t in rs])
    ent, vent = _arr(rs, "entropy"), _arr(rs, "varentropy")
    sf.set_edgecolor("#c8c8c8")
    sf.set_linewidth(0.8)
    ax_e, ax_v = sf.subplots(2, 1, sharex=True)
    dot = {"marker": "o", "markersize": 2.6} if len(rs) <= 400 else {}
    lw = 1.3 if len(rs) <= 400 else 0.7
    ax_e.plot(xs, ent, color="#1a1a1a", lw=lw, zorder=3, **dot)
    ax_v.plot(xs, vent, color="#3b3b98", lw=lw, zorder=3, **dot)
    ax_e.set_ylabel("entropy\n(nats)")
    ax_v.set_ylabel("varentropy\n(nats²)")
    ax_v.set_xlabel("generation step")
    for ax in (ax_e, ax_v):
        _regime_background(ax, rs, xs, palette)

    # headroom for forced markers above the entropy curve
    e_top = _nice_top(ent, [th[k] for k in _ENT_KEYS if k in th])
    ax_e.set_ylim(0, e_top * 1.32)
    v_top = _nice_top(vent, [th[k] for k in _VENT_KEYS if k in th])
    ax_v.set_ylim(0, v_top * 1.12)
    _threshold_lines(ax_e, th, _ENT_KEYS)
    _threshold_lines(ax_v, th, _VENT_KEYS)

    for reason, st in fstyles.items():
        fx = [t.step for t in rs if t.forced == reason]
        if fx:
            ax_e.scatter(
                fx, [0.9] * len(fx), transform=ax_e.get_xaxis_transform(), marker=st["marker"],
                s=46, color=st["color"], edgecolors="black", linewidths=0.5, zorder=5, clip_on=False,
            )
    if s["first_answer_step"] is not None and s["first_answer_step"] > xs.min():
        _answer_boundary(ax_e, ax_v, s["first_answer_step"] - 0.5)
    ax_e.set_title(f"row {r}  ·  " + "  ·  ".join(_row_facts(s)), loc="left", fontsize=10)


def _regime_background(ax: Any, rs: Sequence[TraceStep], xs: np.ndarray, palette: Mapping[str, str]) -> None:
    """The regime of each step as the panel's background: one broken_barh collection per regime."""
    by_regime: dict[str, list[tuple[float, float]]] = {}
    for regime, a, b in _runs([t.regime for t in rs], list(xs)):
        by_regime.setdefault(regime, []).append((a - 0.5, b - a + 1.0))
    for regime, spans in by_regime.items():
        ax.broken_barh(
            spans, (0, 1), transform=ax.get_xaxis_transform(),
            facecolors=palette[regime], alpha=0.32, linewidth=0, zorder=0,
        )
    ax.grid(axis="y", color="white", lw=0.8, alpha=0.9, zorder=1)
    ax.set_xlim(xs.min() - 0.5, xs.max() + 0.5)


def _threshold_lines(ax: Any, th: Mapping[str, float], keys: Sequence[str]) -> None:
    for key in keys:
        if key in th:
            ax.axhline(th[key], color="#444", lw=0.9, ls=_THRESH_STYLE[key.split("_")[0]], zorder=2)
            ax.annotate(key, (1.0, th[key]), xycoords=("axes fraction", "data"), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7, color="#444")


def _answer_boundary(ax_e: Any, ax_v: Any, bx: float) -> None:
    """Dashed line at the first answer token, labelled thinking | answer."""
    for ax in (ax_e, ax_v):
        ax.axvline(bx, color="black", ls="--", lw=1.4, zorder=4)
    for label, dx, ha in (("◂ thinking", -6, "right"), ("answer ▸", 6, "left")):
        ax_v.annotate(label, (bx, 0.97), xycoords=("data", "axes fraction"), xytext=(dx, 0),
                      textcoords="offset points", ha=ha, va="top", fontsize=8, style="italic",
                      bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
                      zorder=2.5)  # under the data line: never hides a point


def _row_facts(s: Mapping[str, Any]) -> list[str]:
    parts = [f"{s['tokens']} tokens", f"{s['thinking_tokens']} thinking", f"{s['answer_tokens']} answer"]
    if s["waits_inserted"]:
        parts.append(f"{s['waits_inserted']} wait{'s' if s['waits_inserted'] != 1 else ''}")
    if s["pauses_inserted"]:
        parts.append(f"{s['pauses_inserted']} pause{'s' if s['pauses_inserted'] != 1 else ''}")
    if s["mean_entropy"] is not None:
        parts.append(f"mean H = {s['mean_entropy']:.2f} nats")
    return parts


def _timeline_header(header: Any, all_steps: Sequence[TraceStep], palette: Mapping[str, str],
                     fstyles: Mapping[str, Mapping[str, Any]], summaries: Mapping[int, Mapping[str, Any]],
                     shown: Sequence[int], row_ids: Sequence[int]) -> None:
    """Title and two legends (regime backgrounds | forced-token markers and boundary)."""
    counts = Counter(t.regime for t in all_steps)
    fcounts = Counter(t.forced for t in all_steps if t.forced is not None)
    regime_handles = [
        Patch(facecolor=c, alpha=0.5, edgecolor="#777", linewidth=0.4, label=f"{reg} ({counts[reg]})")
        for reg, c in palette.items()
    ]
    marker_handles: list[Any] = [
        Line2D([], [], ls="none", marker=st["marker"], markersize=8, markerfacecolor=st["color"],
               markeredgecolor="black", markeredgewidth=0.5, label=f"{st['label']} ({fcounts[rsn]})")
        for rsn, st in fstyles.items()
    ]
    if any(summaries[r]["first_answer_step"] is not None for r in shown):
        marker_handles.append(Line2D([], [], color="black", ls="--", lw=1.4, label="thinking → answer"))
    title = "Per-token entropy and varentropy"
    if len(row_ids) > len(shown):
        title += f"  (rows {shown[0]}–{shown[-1]} of {len(row_ids)}; use --row for the others)"
    header.suptitle(title, fontsize=12, fontweight="bold")
    hax = header.add_subplot()
    hax.axis("off")
    leg1 = hax.legend(handles=regime_handles, title="sampler regime (background, tokens)", loc="center left",
                      bbox_to_anchor=(0.0, 0.42), ncol=min(4, len(regime_handles)), fontsize=8.5,
                      title_fontsize=9, frameon=False, handlelength=1.8, columnspacing=1.2)
    hax.add_artist(leg1)
    if marker_handles:
        hax.legend(handles=marker_handles, title="forced tokens (markers, tokens)", loc="center right",
                   bbox_to_anchor=(1.0, 0.42), ncol=min(3, len(marker_handles)), fontsize=8.5,
                   title_fontsize=9, frameon=False, handlelength=1.6, columnspacing=1.2)


# ----------------------------------------------------------------------------------------------
# regimes.png


def plot_regimes(
    steps: Sequence[TraceStep],
    path: str | os.PathLike[str],
    *,
    thresholds: Mapping[str, float] | None = None,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Entropy (x) vs varentropy (y) per token coloured by regime, with threshold lines.

    Forced tokens that carry metrics are drawn as grey crosses; tokens without metrics are skipped
    (the legend counts the tokens drawn).
    """
    path = Path(path)
    th = _normalise_thresholds(thresholds)
    pts = [t for t in steps if t.entropy is not None and t.varentropy is not None]
    palette = _regime_palette(_ordered({t.regime for t in pts}, _REGIME_ORDER))
    fig = Figure(figsize=(8.0, 6.4), layout="constrained")
    ax = fig.add_subplot()

    counts = Counter(t.regime for t in pts)
    size = float(np.clip(26.0 * math.sqrt(400.0 / max(len(pts), 1)), 5.0, 26.0))
    edge = 0.35 if len(pts) <= 1500 else 0.0
    alpha = 0.85 if len(pts) <= 1500 else 0.55
    # big groups first so small (interesting) regimes stay on top
    for regime in sorted(palette, key=lambda k: -counts[k]):
        sel = [t for t in pts if t.regime == regime]
        x = [t.entropy for t in sel]
        y = [t.varentropy for t in sel]
        if regime == "forced":
            ax.scatter(x, y, marker="x", s=max(size, 12.0), color="#6b6b6b", linewidths=1.1, zorder=3,
                       label=f"forced ({len(sel)})")
        else:
            ax.scatter(x, y, s=size, color=palette[regime], edgecolors="black", linewidths=edge,
                       alpha=alpha, zorder=3, label=f"{regime} ({len(sel)})")

    xmax = max([t.entropy for t in pts] + [th[k] for k in _ENT_KEYS if k in th] + [1e-3])
    ymax = max([t.varentropy for t in pts] + [th[k] for k in _VENT_KEYS if k in th] + [1e-3])
    ax.set_xlim(-0.03 * xmax, xmax * 1.1)
    ax.set_ylim(-0.03 * ymax, ymax * 1.12)

    for key in _ENT_KEYS:
        if key in th:
            ax.axvline(th[key], color="#333", lw=1.1, ls=_THRESH_STYLE[key.split("_")[0]], zorder=2)
            ax.annotate(f"{key} = {th[key]:g}", (th[key], 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -4), textcoords="offset points", rotation=90, ha="left", va="top",
                        fontsize=8, color="#333")
    for key in _VENT_KEYS:
        if key in th:
            ax.axhline(th[key], color="#333", lw=1.1, ls=_THRESH_STYLE[key.split("_")[0]], zorder=2)
            ax.annotate(f"{key} = {th[key]:g}", (1.0, th[key]), xycoords=("axes fraction", "data"),
                        xytext=(-4, 3), textcoords="offset points", ha="right", va="bottom",
                        fontsize=8, color="#333")

    ax.set_xlabel("entropy (nats)")
    ax.set_ylabel("varentropy (nats²)")
    ax.grid(color="#e6e6e6", lw=0.8, zorder=0)
    ax.set_axisbelow(True)
    ax.set_title(title or "Entropy vs varentropy per token, coloured by regime", fontsize=11, fontweight="bold")
    if pts:
        by_label = {h.get_label().split(" (")[0]: h for h in ax.collections}
        ax.legend(handles=[by_label[k] for k in palette if k in by_label], title="regime (tokens)", loc="upper left", fontsize=8.5, title_fontsize=9,
                  framealpha=0.92, bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, "no tokens with entropy/varentropy in this trace", ha="center", va="center",
                transform=ax.transAxes, color="#666")
    return _save(fig, path, dpi)


# ----------------------------------------------------------------------------------------------
# tokens.html

_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 1.5rem auto; max-width: 60rem; padding: 0 1rem; color: #1a1a1a; background: #fff; }
h1 { font-size: 1.25rem; margin-bottom: .25rem; }
h2 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; }
p.note { color: #555; font-size: .85rem; margin-top: 0; }
.legend { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; font-size: .8rem;
          border: 1px solid #ddd; border-radius: 6px; padding: .6rem .8rem; background: #fafafa; }
.scale { width: 16rem; }
.bar { height: .9rem; border: 1px solid #bbb; border-radius: 2px; }
.ticks { display: flex; justify-content: space-between; color: #444; margin-top: 2px; }
.keys { display: flex; flex-wrap: wrap; gap: .35rem .9rem; max-width: 30rem; }
.key { white-space: nowrap; }
.sw { display: inline-block; width: 1.6rem; height: .9rem; vertical-align: middle; margin-right: .3rem;
      border-radius: 2px; }
table.summary { border-collapse: collapse; font-size: .8rem; margin: .3rem 0 .6rem; }
table.summary td, table.summary th { border: 1px solid #ddd; padding: .15rem .5rem; text-align: right; }
table.summary th { background: #f3f3f3; font-weight: 600; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.95; font-size: .95rem;
        border: 1px solid #ddd; border-radius: 6px; padding: .7rem .8rem; }
.tok { border-radius: 2px; box-shadow: inset -1px 0 0 rgba(0,0,0,.10); }
.tok:hover { box-shadow: inset 0 0 0 2px #000; }
.tok.forced { outline: 2px solid var(--fc, #000); outline-offset: -1px; }
.nometric { background-image: repeating-linear-gradient(135deg, rgba(0,0,0,.07) 0 3px, transparent 3px 6px); }
.tok:empty::after { content: "\\2205"; color: #999; font-size: .75em; }
.nl::before { content: "\\21B5"; color: #9a9a9a; font-size: .8em; }
.ctl { color: #b00; font-size: .8em; }
.phase { display: inline-block; font-size: .72rem; font-weight: 600; color: #fff; background: #333;
         border-radius: 3px; padding: 0 .35rem; margin: 0 .3rem; line-height: 1.4; vertical-align: middle; }
"""


def _clean_text(s: str) -> str:
    """Text that is safe and visible in HTML: lone surrogates and control chars made visible."""
    out = []
    for ch in s:
        o = ord(ch)
        if ch in "\n\t":
            out.append(ch)
        elif o < 0x20:
            out.append(chr(0x2400 + o))  # control pictures: ␀ ␍ ␛ ...
        elif o == 0x7F:
            out.append("\u2421")
        elif 0x80 <= o <= 0x9F or 0xD800 <= o <= 0xDFFF or (o & 0xFFFE) == 0xFFFE or 0xFDD0 <= o <= 0xFDEF:
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def _token_html(token: str) -> str:
    text = html.escape(_clean_text(token), quote=False)
    return text.replace("\n", '<span class="nl"></span>\n')


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _tooltip(t: TraceStep) -> str:
    lines = [
        f"step {t.step} · row {t.row} · token id {t.token_id}",
        f"token {json.dumps(t.token, ensure_ascii=False)}",
        f"entropy {_fmt(t.entropy)} nats · varentropy {_fmt(t.varentropy)} nats²",
    ]
    if t.attn_entropy is not None or t.attn_varentropy is not None:
        lines.append(f"attn entropy {_fmt(t.attn_entropy)} · attn varentropy {_fmt(t.attn_varentropy)}")
    if t.agreement is not None or t.interaction is not None:
        lines.append(f"agreement {_fmt(t.agreement)} · interaction {_fmt(t.interaction)}")
    lines.append(f"regime {t.regime} · forced {t.forced or '—'} · phase {t.phase}")
    return html.escape(_clean_text("\n".join(lines)), quote=True)


def write_tokens_html(
    rows: Mapping[int, Sequence[TraceStep]],
    path: str | os.PathLike[str],
    *,
    title: str = "entropix-s1 trace",
) -> Path:
    """The generated text, one `<span class="tok">` per trace step, shaded by entropy.

    Shade: entropy on one square-root scale for all rows shown (0 to the max entropy, legend at
    the top), so differences below 1 nat stay visible.
    Forced tokens: outlined in their reason's colour; tokens without metrics: hatched grey.
    Tooltip (`title`): step, token id, metrics, regime, forced reason, phase. Newlines in tokens
    are kept as line breaks and marked with a grey ↵. No scripts, no external resources.
    """
    path = Path(path)
    all_steps = [t for rs in rows.values() for t in rs]
    ents = [t.entropy for t in all_steps if t.entropy is not None]
    vmax = max(ents) if ents else 1.0
    vmax = vmax if vmax > 0 else 1.0
    # square-root scale: the 0-1 nat range, where most tokens live, stays visibly graded
    norm = PowerNorm(0.5, 0.0, vmax, clip=True)
    fstyles = _forced_styles({t.forced for t in all_steps if t.forced is not None})
    summaries = trace_summary(all_steps)

    stops = ", ".join(f"{to_hex(_HTML_CMAP(i / 10))} {i * 10}%" for i in range(11))
    ticks = "".join(f"<span>{float(norm.inverse(i / 4)):.2f}</span>" for i in range(5))
    keys = [
        f'<span class="key"><span class="sw" style="outline: 2px solid {st["color"]}; outline-offset: -2px"></span>'
        f"{html.escape(st['label'])}</span>"
        for st in fstyles.values()
    ]
    keys.append(
        f'<span class="key"><span class="sw nometric" style="background-color: {_NO_METRIC_BG}"></span>'
        "no entropy (forced)</span>"
    )

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        '<p class="note">Each token is shaded by the entropy of the distribution it was sampled from; '
        "hover a token for its step, id, metrics, regime and forced reason.</p>",
        '<div class="legend">',
        '<div class="scale"><div>entropy (nats, square-root scale)</div>'
        f'<div class="bar" style="background: linear-gradient(to right, {stops})"></div>'
        f'<div class="ticks">{ticks}</div></div>',
        f'<div><div>forced tokens (outline)</div><div class="keys">{"".join(keys)}</div></div>',
        "</div>",
    ]
    for r, rs in rows.items():
        s = summaries[r]
        mean_h = "—" if s["mean_entropy"] is None else f"{s['mean_entropy']:.3f}"
        parts += [
            f'<section id="row-{r}">',
            f"<h2>Row {r}</h2>",
            '<table class="summary"><tr><th>tokens</th><th>thinking</th><th>answer</th><th>waits</th>'
            "<th>pauses</th><th>forced</th><th>mean entropy (nats)</th></tr>",
            f"<tr><td>{s['tokens']}</td><td>{s['thinking_tokens']}</td><td>{s['answer_tokens']}</td>"
            f"<td>{s['waits_inserted']}</td><td>{s['pauses_inserted']}</td><td>{s['forced_tokens']}</td>"
            f"<td>{mean_h}</td></tr></table>",
        ]
        spans = []
        for t in rs:
            if s["first_answer_step"] is not None and t.step == s["first_answer_step"] and t is not rs[0]:
                spans.append('<span class="phase">answer ▸</span>')
            cls = ["tok"]
            style = []
            if t.entropy is None:
                cls.append("nometric")
                style.append(f"background-color: {_NO_METRIC_BG}")
            else:
                style.append(f"background-color: {to_hex(_HTML_CMAP(norm(t.entropy)))}")
            if t.forced is not None:
                cls.append("forced")
                style.append(f"--fc: {fstyles[t.forced]['color']}")
            spans.append(
                f'<span class="{" ".join(cls)}" data-step="{t.step}" data-row="{t.row}" '
                f'style="{"; ".join(style)}" title="{_tooltip(t)}">{_token_html(t.token)}</span>'
            )
        # `.text` is pre-wrap: no whitespace between spans except what the tokens carry
        parts.append(f'<div class="text">{"".join(spans)}</div>')
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------
# all three


def plot_trace(
    trace_path_or_steps: str | os.PathLike[str] | Iterable[TraceStep | GenerationResult],
    out_dir: str | os.PathLike[str],
    *,
    thresholds: Mapping[str, float] | None = None,
    row: int | None = None,
) -> dict[str, Path]:
    """Write `timeline.png`, `regimes.png` and `tokens.html` for a trace into `out_dir`.

    `trace_path_or_steps`: a JSONL trace path, or TraceSteps / GenerationResults in memory.
    `thresholds`: entropy/varentropy thresholds in nats (`low_ent`, `med_ent`, `high_ent`,
    `low_vent`, `med_vent`, `high_vent`; whichever are present are drawn). See
    `thresholds_from_config` to take them from an entropix config.
    `row`: only this row (default: all rows; the timeline draws at most 16).
    Returns `{"timeline": path, "regimes": path, "tokens": path}`.
    """
    steps = _load_steps(trace_path_or_steps)
    rows = _select_rows(steps, row)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    selected = [t for rs in rows.values() for t in rs]
    which = f"row {row}" if row is not None else (f"{len(rows)} rows" if len(rows) > 1 else f"row {next(iter(rows))}")
    return {
        "timeline": plot_timeline(rows, out / "timeline.png", thresholds=thresholds),
        "regimes": plot_regimes(
            selected, out / "regimes.png", thresholds=thresholds,
            title=f"Entropy vs varentropy per token ({which}), coloured by regime",
        ),
        "tokens": write_tokens_html(rows, out / "tokens.html", title=f"entropix-s1 trace ({which})"),
    }
