"""What the throughput harness writes: ratios between the sides, the markdown tables, the files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench_ours import MODES


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
        return None
    return a / b


def ratios(rec: dict[str, Any]) -> dict[str, float | None]:
    """Decode throughput ratios of one config's record: ours vs HF, modes vs greedy, vs the roofline."""
    ours = {m: v for m, v in rec["ours"].items() if "error" not in v}
    tps = {m: ours[m]["decode_tokens_per_s"] for m in ours}
    hf = rec.get("hf")
    hf_tps = hf["decode_tokens_per_s"] if hf else None
    ideal = rec["roofline"]["ideal_tokens_per_s"]
    r: dict[str, float | None] = {
        "ours_vs_hf": _ratio(tps.get("greedy"), hf_tps),
        "prefill_speedup_vs_hf": _ratio(hf["prefill_s"], ours["greedy"]["prefill_s"]) if hf and "greedy" in ours else None,
        "entropix_vs_greedy": _ratio(tps.get("entropix"), tps.get("greedy")),
        "budget_vs_greedy": _ratio(tps.get("budget+greedy"), tps.get("greedy")),
        "entropix_budget_vs_greedy": _ratio(tps.get("entropix+budget"), tps.get("greedy")),
        "ours_roofline_fraction": _ratio(tps.get("greedy"), ideal),
        "hf_roofline_fraction": _ratio(hf_tps, ideal),
    }
    for m in ("entropix", "entropix+budget", "budget+greedy"):
        r[f"{m}_vs_hf"] = _ratio(tps.get(m), hf_tps)
    return r


def fmt(x: Any, spec: str = "{:.1f}") -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else spec.format(x)


def _pct(x: float | None) -> float | None:
    return None if x is None else 100 * x


def _header(meta: dict[str, Any]) -> list[str]:
    bw = meta.get("bandwidth", {})
    return [
        f"# Throughput: {meta['name']}",
        "",
        f"{meta['started']} · jax {meta['jax']} ({meta['jax_backend']})"
        + (f" · transformers {meta['transformers']} / torch {meta['torch']} ({meta['hf_device']}, {meta['torch_threads']} threads)"
           if meta.get("transformers") else "")
        + f" · {meta['cpu_count']} CPUs (pinned to {meta.get('cpu_affinity')}), load average "
        f"{meta['loadavg_start'][0]:.2f} → {meta['loadavg_end'][0]:.2f}"
        + f" · memory bandwidth {fmt(bw.get('best_gbps'))} GB/s",
        "",
        f"{meta['new_tokens']} new tokens, median of {meta['repeats']} runs"
        + (f" (fewer where one mode's timed runs would pass {meta['time_budget_s']:g} s: a slow mode may have 1)"
           if meta.get("time_budget_s") else "")
        + ". Decode tok/s = batch·(N−1) / "
        "(t(N) − t(1)). Budget = think_end "
        f"{meta['budget']['think_end'][0]!r}, max {meta['budget']['max_thinking_tokens']} thinking tokens, "
        f"{meta['budget']['num_waits']} wait. Ideal = memory-bound roofline (weights + KV at prompt+N/2 per step).",
        "",
    ]


def _decode_table(res: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Decode throughput (tokens/s)",
        "",
        "| dtype | batch | prompt | HF greedy | greedy | entropix | entropix+budget | budget+greedy "
        "| ours/HF | entropix/greedy | budget/greedy | ideal | ours % ideal | HF % ideal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res:
        o, hf, q = r["ours"], r.get("hf"), r["ratios"]

        def tps(m: str) -> str:
            return ("error" if "error" in o[m] else fmt(o[m]["decode_tokens_per_s"])) if m in o else "–"

        lines.append(
            f"| {r['dtype']} | {r['batch']} | {r['prompt_len']} | {fmt(hf['decode_tokens_per_s']) if hf else '–'} "
            f"| {tps('greedy')} | {tps('entropix')} | {tps('entropix+budget')} | {tps('budget+greedy')} "
            f"| {fmt(q['ours_vs_hf'], '{:.2f}×')} | {fmt(q['entropix_vs_greedy'], '{:.2f}')} | {fmt(q['budget_vs_greedy'], '{:.2f}')} "
            f"| {fmt(r['roofline']['ideal_tokens_per_s'])} | {fmt(_pct(q['ours_roofline_fraction']))} "
            f"| {fmt(_pct(q['hf_roofline_fraction']))} |"
        )
    return lines


def _prefill_table(res: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Prefill, compile, memory",
        "",
        "| dtype | batch | prompt | prefill ours ms | prefill HF ms | compile 1st s (greedy/entropix/ent+bud/bud) "
        "| compile 2nd process s | HF warm-up s | peak RSS MB | ours-only peak RSS MB | greedy match vs HF |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in res:
        o, hf = r["ours"], r.get("hf")
        o = {m: v for m, v in o.items() if "error" not in v}
        sp = r.get("second_process") or {}
        first = "/".join(fmt(o[m]["compile_s"]) if m in o else "–" for m in MODES)
        second = "/".join(fmt(sp["modes"][m]["compile_s"]) if m in sp.get("modes", {}) else "–" for m in MODES) \
            if "modes" in sp else ("error" if "error" in sp else "–")
        ag = r.get("greedy_agreement")
        lines.append(
            f"| {r['dtype']} | {r['batch']} | {r['prompt_len']} | {fmt(o['greedy']['prefill_s'] * 1e3) if 'greedy' in o else '–'} "
            f"| {fmt(hf['prefill_s'] * 1e3) if hf else '–'} | {first} | {second} | {fmt(hf['first_call_s'], '{:.2f}') if hf else '–'} "
            f"| {fmt(r['peak_rss_mb'], '{:.0f}')} | {fmt(sp.get('peak_rss_mb'), '{:.0f}')} "
            f"| {fmt(ag['token_match'] * 100, '{:.0f}%') if ag else '–'} |"
        )
    return lines


def to_markdown(doc: dict[str, Any]) -> str:
    """Two tables: decode throughput with ratios and roofline; prefill, compile and memory."""
    res = doc["results"]
    return "\n".join([*_header(doc["meta"]), *_decode_table(res), "", *_prefill_table(res), ""])


def write(out_dir: Path, name: str, doc: dict[str, Any]) -> dict[str, str]:
    """`<out_dir>/<name>.json` (meta and results) and `.md`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    js.write_text(json.dumps({k: doc[k] for k in ("meta", "results")}, indent=1))
    md.write_text(to_markdown(doc))
    return {"json": str(js), "markdown": str(md)}
