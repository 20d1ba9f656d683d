"""Measurements of the throughput harness: memory bandwidth, roofline, peak RSS, round-robin timing."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from entropix_s1.core.config import ModelConfig
from entropix_s1.core.decode import bucket
from entropix_s1.core.model import Params


def _best_time(f: Callable[[], Any], repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def measure_bandwidth(size_mb: int = 256, repeats: int = 5) -> dict[str, Any]:
    """Read bandwidth (GB/s) of a large-array sum: numpy (one thread) and jax on the default
    device. `best_gbps` is the larger on CPU, jax's on an accelerator."""
    n = size_mb * 2**20 // 4
    out: dict[str, Any] = {"size_mb": size_mb}
    a = np.ones(n, np.float32)
    a.sum()
    out["numpy_gbps"] = a.nbytes / _best_time(a.sum, repeats) / 1e9
    del a
    x = jnp.ones((n,), jnp.float32)
    f = jax.jit(jnp.sum)
    f(x).block_until_ready()
    out["jax_gbps"] = x.nbytes / _best_time(lambda: f(x).block_until_ready(), repeats) / 1e9
    out["backend"] = jax.default_backend()
    out["best_gbps"] = out["jax_gbps"] if out["backend"] != "cpu" else max(out["numpy_gbps"], out["jax_gbps"])
    return out


def param_bytes(params: Params) -> int:
    return int(sum(x.nbytes for x in jax.tree.leaves(params)))


def roofline(cfg: ModelConfig, params: Params, batch: int, prompt_len: int, new_tokens: int, bandwidth_gbps: float,
             windows: Sequence[int] = (), margin: int = 1) -> dict[str, Any]:
    """Memory-bound ideal decode tokens/s: batch * bandwidth / bytes read per step."""
    item = jnp.dtype(params.dtype).itemsize
    total = param_bytes(params)
    embed = int(params.embed_VD.nbytes)
    weights = total - (0 if cfg.tie_embeddings else embed)  # an untied input embedding is only a gather
    kv_slot = 2 * cfg.n_layers * batch * cfg.n_kv_heads * cfg.head_dim * item  # K and V of one slot, all layers
    mean_ctx = prompt_len + new_tokens / 2
    step_bytes = weights + kv_slot * mean_ctx
    ideal = batch * bandwidth_gbps * 1e9 / step_bytes
    r = {"weight_bytes": weights, "kv_bytes_per_step_mean": kv_slot * mean_ctx, "bytes_per_step": step_bytes,
         "bandwidth_gbps": bandwidth_gbps, "ideal_tokens_per_s": ideal}
    if windows:  # what our staged loop actually reads: the whole current window of slots every step
        p = bucket(prompt_len)
        ws = []
        for s in range(new_tokens):
            length = p + s
            ws.append(next((w for w in windows if length + margin <= w), windows[-1]))
        r["ours_mean_window"] = float(np.mean(ws))
        r["ours_kv_bytes_per_step_mean"] = kv_slot * float(np.mean(ws))
    return r


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def peak_rss_mb() -> float:
    """`getrusage(RUSAGE_SELF).ru_maxrss` in MiB."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def own_peak_rss_mb() -> float:
    """Peak RSS of this process's own address space: VmHWM from /proc/self/status. A child's
    ru_maxrss is useless here: Linux carries the parent's peak across fork/vfork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def timing_stats(full: list[float], pre: list[float], new_tokens: int, batch: int) -> dict[str, Any]:
    total, prefill = median(full), median(pre)
    decode = total - prefill
    return {
        "total_s": total, "prefill_s": prefill, "decode_s": decode,
        # None when noise swamps the decode time (t(N) <= t(1)): NaN would not be valid JSON
        "decode_tokens_per_s": batch * (new_tokens - 1) / decode if decode > 0 else None,
        "e2e_tokens_per_s": batch * new_tokens / total,
        "total_runs_s": full, "prefill_runs_s": pre,
    }


def time_interleaved(runs: dict[str, Callable[[int], Any]], new_tokens: int, batch: int, repeats: int,
                     time_budget: float | None = None,
                     on_full: Callable[[str, Any], None] | None = None) -> dict[str, dict[str, Any]]:
    """Time several runners round-robin: each repeat runs every entry's full (N tokens) then
    1-token call, entry after entry, so slow drifts of machine load hit every entry alike and the
    ratios between them stay fair. With `time_budget` (seconds), an entry stops repeating once
    another pair would not fit (each entry gets at least one pair). `on_full(name, output)` sees
    every full run's output. An entry that raises gets {"error": ...} and is dropped."""
    full: dict[str, list[float]] = {k: [] for k in runs}
    pre: dict[str, list[float]] = {k: [] for k in runs}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for k, run in runs.items():
            if k in errors:
                continue
            if time_budget is not None and full[k] and \
                    sum(full[k]) + sum(pre[k]) + full[k][-1] + pre[k][-1] > time_budget:
                continue
            try:
                t = time.perf_counter()
                out = run(new_tokens)
                full[k].append(time.perf_counter() - t)
                if on_full is not None:
                    on_full(k, out)
                del out
                t = time.perf_counter()
                run(1)
                pre[k].append(time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001 - recorded; the other entries go on
                errors[k] = f"{type(e).__name__}: {e}"[:2000]
    return {k: {"error": errors[k]} if k in errors else timing_stats(full[k], pre[k], new_tokens, batch) for k in runs}


def agreement(ours_tokens: np.ndarray, hf_tokens: np.ndarray) -> dict[str, float]:
    """Greedy parity: fraction of equal tokens and mean common-prefix fraction per row."""
    eq = ours_tokens == hf_tokens
    prefix = [int(np.argmin(r)) if not r.all() else len(r) for r in eq]
    return {"token_match": float(eq.mean()), "prefix_match": float(np.mean(prefix) / eq.shape[1])}
