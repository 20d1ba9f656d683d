"""What the throughput harness writes: ratios between the sides, the markdown tables, the files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench_ours import MODES
from llamacpp_peer import cell as llamacpp_cell, status_line as llamacpp_status

#: The marker of a peer cell left out because one timed pair would not fit the time budget.
SKIPPED = "skipped (time budget)"


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
        "ours_hbm_fraction": _ratio(tps.get("greedy"), rec["roofline"].get("hbm_ideal_tokens_per_s")),
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
        f"{meta['new_tokens']} new tokens"
        + (f" ({meta['long_new_tokens']} in the long-context cells: prompt {meta['long_prompt_len']}, "
           f"{'/'.join(meta['long_modes'])})" if meta.get("long_new_tokens") else "")
        + f", median of {meta['repeats']} runs"
        + (f" (fewer where one mode's timed runs would pass {meta['time_budget_s']:g} s: a slow mode may have 1)"
           if meta.get("time_budget_s") else "")
        + ". Decode tok/s = batch·(N−1) / "
        "(t(N) − t(1)). Budget = think_end "
        f"{meta['budget']['think_end'][0]!r}, max {meta['budget']['max_thinking_tokens']} thinking tokens, "
        f"{meta['budget']['num_waits']} wait. Ideal = memory-bound roofline (weights + KV at prompt+N/2 per step)"
        + (f"; HBM = the same at the nominal {meta['hbm_gbs']:g} GB/s" if meta.get("hbm_gbs") else "")
        + "." + (f" HF is {SKIPPED} where one timed pair would pass {meta['peer_time_budget_s']:g} s."
                 if meta.get("peer_time_budget_s") and not meta.get("skip_hf") else ""),
        "",
    ]


def hf_cell(r: dict[str, Any] | None) -> tuple[float | None, str]:
    """(HF decode tokens/s or None, its table text): a number, SKIPPED, "error" or "–" (not run)."""
    if r is None:
        return None, "–"
    if "hf" in r:
        return r["hf"]["decode_tokens_per_s"], fmt(r["hf"]["decode_tokens_per_s"])
    if "hf_skipped" in r:
        return None, SKIPPED
    return None, ("error" if "hf_error" in r else "–")


def _decode_table(res: list[dict[str, Any]], hbm: bool = False) -> list[str]:
    lines = [
        "## Decode throughput (tokens/s)",
        "",
        "| dtype | batch | prompt | new | HF greedy | greedy | entropix | entropix+budget | budget+greedy "
        "| ours/HF | entropix/greedy | budget/greedy | ideal | ours % ideal | HF % ideal |" + (" ours % HBM |" if hbm else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if hbm else ""),
    ]
    for r in res:
        o, q = r["ours"], r["ratios"]

        def tps(m: str) -> str:
            return ("error" if "error" in o[m] else fmt(o[m]["decode_tokens_per_s"])) if m in o else "–"

        lines.append(
            f"| {r['dtype']} | {r['batch']} | {r['prompt_len']} | {r['new_tokens']} | {hf_cell(r)[1]} "
            f"| {tps('greedy')} | {tps('entropix')} | {tps('entropix+budget')} | {tps('budget+greedy')} "
            f"| {fmt(q['ours_vs_hf'], '{:.2f}×')} | {fmt(q['entropix_vs_greedy'], '{:.2f}')} | {fmt(q['budget_vs_greedy'], '{:.2f}')} "
            f"| {fmt(r['roofline']['ideal_tokens_per_s'])} | {fmt(_pct(q['ours_roofline_fraction']))} "
            f"| {fmt(_pct(q['hf_roofline_fraction']))} |" + (f" {fmt(_pct(q.get('ours_hbm_fraction')))} |" if hbm else "")
        )
    return lines


def _find(res: list[dict[str, Any]], dtype: str, batch: int, plen: int, n: int, cell: str) -> dict[str, Any] | None:
    return next((r for r in res if (r["dtype"], r["batch"], r["prompt_len"], r["new_tokens"]) == (dtype, batch, plen, n)
                 and r.get("cell", "main") == cell), None)


def _greedy(r: dict[str, Any] | None) -> float | None:
    g = (r or {}).get("ours", {}).get("greedy", {})
    return None if "error" in g else g.get("decode_tokens_per_s")


def scaling(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Batch and context scaling of greedy decode, one row per (dtype, batch) at the long-context
    prompt length: tokens/s at N (main cells) and at the long N, their ratio (long / N), the ratio
    to the previous batch size of the grid (e.g. 32/8) at both N, HF alike, and llama.cpp at batch 1
    (float32 rows: the peer runs the F32 GGUF) with ours / llama.cpp."""
    meta, res = doc["meta"], doc["results"]
    n, nl, pl = meta["new_tokens"], meta.get("long_new_tokens") or None, meta.get("long_prompt_len", 64)
    peer = doc.get("llamacpp")
    rows: list[dict[str, Any]] = []
    for dtype in meta["dtypes"]:
        prev: dict[str, Any] | None = None
        for batch in sorted(set(meta["batch_sizes"])):
            short, long = _find(res, dtype, batch, pl, n, "main"), (_find(res, dtype, batch, pl, nl, "long") if nl else None)
            if short is None and long is None:
                continue
            (hf_s, hf_s_txt), (hf_l, hf_l_txt) = hf_cell(short), hf_cell(long)
            row: dict[str, Any] = {
                "dtype": dtype, "batch": batch, "prompt_len": pl, "new_tokens": n, "long_new_tokens": nl,
                "ours_tps": _greedy(short), "ours_long_tps": _greedy(long),
                "hf_tps": hf_s, "hf_long_tps": hf_l, "hf_status": hf_s_txt, "hf_long_status": hf_l_txt,
                "prev_batch": prev["batch"] if prev else None,
            }
            row["ours_long_vs_short"] = _ratio(row["ours_long_tps"], row["ours_tps"])
            row["hf_long_vs_short"] = _ratio(hf_l, hf_s)
            row["ours_vs_prev_batch"] = _ratio(row["ours_tps"], prev["ours_tps"]) if prev else None
            row["ours_long_vs_prev_batch"] = _ratio(row["ours_long_tps"], prev["ours_long_tps"]) if prev else None
            lc_s = llamacpp_cell(peer, n, pl) if (batch == 1 and dtype == "float32") else None
            lc_l = llamacpp_cell(peer, nl, pl) if (batch == 1 and dtype == "float32" and nl) else None
            row["llamacpp_tps"] = lc_s["decode_tokens_per_s"] if lc_s else None
            row["llamacpp_long_tps"] = lc_l["decode_tokens_per_s"] if lc_l else None
            row["ours_vs_llamacpp"] = _ratio(row["ours_tps"], row["llamacpp_tps"])
            row["ours_long_vs_llamacpp"] = _ratio(row["ours_long_tps"], row["llamacpp_long_tps"])
            rows.append(row)
            prev = row
    return rows


def _scaling_table(doc: dict[str, Any]) -> list[str]:
    meta = doc["meta"]
    rows = doc["scaling"] if "scaling" in doc else scaling(doc)
    n, nl = meta["new_tokens"], meta.get("long_new_tokens") or "–"
    lines = [
        f"## Batch and context scaling (greedy decode tokens/s, prompt {meta.get('long_prompt_len', 64)})",
        "",
        llamacpp_status(doc.get("llamacpp")) + f". \"÷ prev batch\" = tok/s at this batch / at the previous "
        "batch size (32/8: the batch-32 goal). llama.cpp runs batch 1 on F32 weights: compared with float32 rows.",
        "",
        f"| dtype | batch | greedy N={n} | greedy N={nl} | {nl}/{n} | HF N={n} | HF N={nl} | HF {nl}/{n} "
        f"| ÷ prev batch N={n} | ÷ prev batch N={nl} | llama.cpp N={n} | llama.cpp N={nl} "
        f"| ours/llama.cpp N={n} | ours/llama.cpp N={nl} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        pb = f" ({r['batch']}/{r['prev_batch']})" if r["prev_batch"] else ""
        lines.append(
            f"| {r['dtype']} | {r['batch']} | {fmt(r['ours_tps'])} | {fmt(r['ours_long_tps'])} "
            f"| {fmt(r['ours_long_vs_short'], '{:.2f}')} | {r['hf_status']} | {r['hf_long_status']} "
            f"| {fmt(r['hf_long_vs_short'], '{:.2f}')} "
            f"| {fmt(r['ours_vs_prev_batch'], '{:.2f}') + (pb if r['ours_vs_prev_batch'] is not None else '')} "
            f"| {fmt(r['ours_long_vs_prev_batch'], '{:.2f}') + (pb if r['ours_long_vs_prev_batch'] is not None else '')} "
            f"| {fmt(r['llamacpp_tps'])} | {fmt(r['llamacpp_long_tps'])} "
            f"| {fmt(r['ours_vs_llamacpp'], '{:.2f}×')} | {fmt(r['ours_long_vs_llamacpp'], '{:.2f}×')} |"
        )
    return lines


def _prefill_table(res: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Prefill, compile, memory",
        "",
        "| dtype | batch | prompt | new | prefill ours ms | prefill HF ms | compile 1st s (greedy/entropix/ent+bud/bud) "
        "| compile 2nd process s | HF warm-up s | peak RSS MB | ours-only peak RSS MB | greedy match vs HF |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in res:
        o, hf = r["ours"], r.get("hf")
        o = {m: v for m, v in o.items() if "error" not in v}
        hf_txt = SKIPPED if "hf_skipped" in r else "–"
        sp = r.get("second_process") or {}
        first = "/".join(fmt(o[m]["compile_s"]) if m in o else "–" for m in MODES)
        second = "/".join(fmt(sp["modes"][m]["compile_s"]) if m in sp.get("modes", {}) else "–" for m in MODES) \
            if "modes" in sp else ("error" if "error" in sp else "–")
        ag = r.get("greedy_agreement")
        lines.append(
            f"| {r['dtype']} | {r['batch']} | {r['prompt_len']} | {r['new_tokens']} "
            f"| {fmt(o['greedy']['prefill_s'] * 1e3) if 'greedy' in o else '–'} "
            f"| {fmt(hf['prefill_s'] * 1e3) if hf else hf_txt} | {first} | {second} "
            f"| {fmt(hf['first_call_s'], '{:.2f}') if hf else '–'} "
            f"| {fmt(r['peak_rss_mb'], '{:.0f}')} | {fmt(sp.get('peak_rss_mb'), '{:.0f}')} "
            f"| {fmt(ag['token_match'] * 100, '{:.0f}%') if ag else '–'} |"
        )
    return lines


def to_markdown(doc: dict[str, Any]) -> str:
    """Three tables: decode throughput with ratios and roofline; batch and context scaling (with
    llama.cpp); prefill, compile and memory."""
    res, meta = doc["results"], doc["meta"]
    return "\n".join([*_header(meta), *_decode_table(res, bool(meta.get("hbm_gbs"))), "", *_scaling_table(doc), "",
                      *_prefill_table(res), ""])


def write(out_dir: Path, name: str, doc: dict[str, Any]) -> dict[str, str]:
    """`<out_dir>/<name>.json` (meta, results, llamacpp, scaling) and `.md`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    doc = {**doc, "scaling": doc["scaling"] if "scaling" in doc else scaling(doc), "llamacpp": doc.get("llamacpp")}
    js.write_text(json.dumps({k: doc[k] for k in ("meta", "results", "llamacpp", "scaling")}, indent=1))
    md.write_text(to_markdown(doc))
    return {"json": str(js), "markdown": str(md)}
