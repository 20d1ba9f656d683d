"""Profile of one greedy decode step at several batch sizes and attention windows (issue 17, item 3).

    taskset -c 0,1 .venv/bin/python benchmarks/profile_decode.py            # the default grid, ~4 min
    .venv/bin/python benchmarks/profile_decode.py --batches 32 --windows 768 --trace 32,768

A random SmolLM2-135M-shaped model (float32) runs `steps` decode steps of `model.forward` inside
one jitted `lax.while_loop` (a fori_loop; the cache is carried and donated, as in
`core/decode.py`), over a `--cache-len` cache with a static window shorter than it, as the
decode loop's stages do. For each (batch, window) both attention paths are compiled and timed
interleaved (`model.LEGACY_ATTENTION` True = before the fix, False = now): median ms/step, tokens/s
and the fraction of the bytes roofline (weights + the K/V window read once per step, at
`--bandwidth` GB/s). The compiled HLO of each is searched for copies of whole cache buffers inside
the loop, and `--trace` adds a `jax.profiler` breakdown of one step by HLO op (the op's JAX name
from the HLO metadata). Results go to `benchmarks/results/profile_decode/<name>.json`.

Other processes share this machine: the runs are interleaved and the median is taken.
"""

from __future__ import annotations

import argparse
import collections
import functools
import glob
import gzip
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from entropix_s1.core import model as model_lib
from entropix_s1.core.model import KVCache, forward
from entropix_s1.testing import random_config, random_params

RESULTS = Path(__file__).resolve().parent / "results" / "profile_decode"
PATHS = {"before": True, "after": False}  # name -> model_lib.LEGACY_ATTENTION


def make_loop(cfg, batch: int, window: int, steps: int, legacy: bool):
    """A jitted program of `steps` greedy decode steps (params as arguments, cache donated)."""

    def body(_, carry):
        params, tok_B, cache = carry
        logits, cache, _ = forward(params, cfg, tok_B[:, None], cache, window=window,
                                   token_valid_BT=jnp.ones((batch, 1), bool), last_only=True)
        return params, jnp.argmax(logits, -1).astype(jnp.int32), cache

    @functools.partial(jax.jit, donate_argnums=(2,))
    def run(params, tok_B, cache):
        _, tok_B, cache = jax.lax.fori_loop(0, steps, body, (params, tok_B, cache))
        return tok_B, cache

    def call(*args):  # the flag is read while tracing
        return _with_flag(legacy, run, *args)

    call.lower = lambda *args: _with_flag(legacy, run.lower, *args)
    return call


def _with_flag(legacy: bool, fn, *args):
    old = model_lib.LEGACY_ATTENTION
    model_lib.LEGACY_ATTENTION = legacy
    try:
        return fn(*args)
    finally:
        model_lib.LEGACY_ATTENTION = old


def start_cache(cfg, batch: int, cache_len: int, window: int, steps: int) -> KVCache:
    """A cache whose `steps` next writes end just inside `window`, every slot valid."""
    c = KVCache.init(cfg, batch, cache_len, jnp.float32)
    return c.replace(length=jnp.asarray(window - steps, jnp.int32), valid_BS=jnp.ones((batch, cache_len), bool),
                     pos_B=jnp.full((batch,), window - steps, jnp.int32))


def whole_cache_copies(hlo: str, cfg, batch: int, cache_len: int) -> int:
    shape = rf"f32\[{batch},{cfg.n_kv_heads},{cache_len},{cfg.head_dim}\]"
    return len(re.findall(rf"= {shape}\{{3,2,1,0\}} copy\(", hlo))


def roofline_ms(cfg, params, batch: int, window: int, gbps: float) -> float:
    weight_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    kv_bytes = batch * window * cfg.n_layers * 2 * cfg.n_kv_heads * cfg.head_dim * 4
    return (weight_bytes + kv_bytes) / (gbps * 1e9) * 1e3


def trace_breakdown(run, args, steps: int, hlo: str, top: int = 12) -> list[dict]:
    """One traced call; per HLO op name (numbering stripped): ms per step and share of the step."""
    names = {m.group(1): m.group(2) for m in re.finditer(r"^\s*(?:ROOT )?%(\S+) = (\S+) ", hlo, re.M)}
    for m in re.finditer(r"^\s*(?:ROOT )?%(\S+) = (\S+) .*?op_name=\"([^\"]+)\"", hlo, re.M):
        names[m.group(1)] = "/".join(m.group(3).split("/")[-2:]) + " " + m.group(2)  # with its JAX op
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            out = run(*args)
            jax.block_until_ready(out)
        events = json.load(gzip.open(glob.glob(d + "/**/*.trace.json.gz", recursive=True)[0]))["traceEvents"]
    tot, cnt, step_us = collections.Counter(), collections.Counter(), 0.0
    for e in events:
        if e.get("ph") != "X":
            continue
        if e["name"] == "ThunkExecutor::Execute (wait for completion)":
            step_us = max(step_us, e.get("dur", 0))
        if e["name"] in names:
            key = re.sub(r"\.\d+$", "", e["name"]) + " | " + names[e["name"]]
            tot[key] += e.get("dur", 0)
            cnt[key] += 1
    total = sum(tot.values())
    return [dict(op=k, ms_per_step=round(v / 1e3 / steps, 2), per_step=cnt[k] // steps,
                 share_of_op_time=round(v / total, 3)) for k, v in tot.most_common(top)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="smollm2-135m", help="a preset of entropix_s1.testing.RANDOM_CONFIGS")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--windows", default="128,256,512,768")
    ap.add_argument("--cache-len", type=int, default=1024, help="slots of the preallocated cache (> the windows)")
    ap.add_argument("--steps", type=int, default=4, help="decode steps per timed call")
    ap.add_argument("--reps", type=int, default=5, help="timed calls per path (interleaved); the median is kept")
    ap.add_argument("--bandwidth", type=float, default=35.0, help="GB/s of the bytes roofline")
    ap.add_argument("--trace", default="32,768", help="'B,W' to profile with jax.profiler ('' for none)")
    ap.add_argument("--name", default="smollm2_f32", help="results file name (without .json)")
    a = ap.parse_args(argv)

    cfg = random_config(a.config)
    params = random_params(cfg, "float32", seed=0)
    batches = [int(x) for x in a.batches.split(",")]
    windows = [int(x) for x in a.windows.split(",")]
    trace = tuple(int(x) for x in a.trace.split(",")) if a.trace else None
    rows = []
    print(f"{a.config} float32, cache {a.cache_len} slots, {a.steps} steps per call, median of {a.reps}; "
          f"roofline at {a.bandwidth:g} GB/s", flush=True)
    print(f"{'batch':>5} {'window':>6} | {'before ms':>9} {'tok/s':>6} {'roof':>5} {'copies':>6} | "
          f"{'after ms':>9} {'tok/s':>6} {'roof':>5} {'copies':>6} | speedup", flush=True)
    for b in batches:
        for w in windows:
            if w > a.cache_len:
                continue
            runs = {}
            for name, legacy in PATHS.items():
                run = make_loop(cfg, b, w, a.steps, legacy)
                tok = jnp.zeros((b,), jnp.int32)
                hlo = run.lower(params, tok, start_cache(cfg, b, a.cache_len, w, a.steps)).compile().as_text()
                tok, _ = run(params, tok, start_cache(cfg, b, a.cache_len, w, a.steps))  # compile + warm up
                jax.block_until_ready(tok)
                runs[name] = dict(run=run, tok=tok, hlo=hlo, times=[])
            for _ in range(a.reps):
                for name, r in runs.items():
                    cache = start_cache(cfg, b, a.cache_len, w, a.steps)
                    jax.block_until_ready(cache)
                    t0 = time.perf_counter()
                    r["tok"], _ = r["run"](params, r["tok"], cache)
                    jax.block_until_ready(r["tok"])
                    r["times"].append((time.perf_counter() - t0) / a.steps)
            roof = roofline_ms(cfg, params, b, w, a.bandwidth)
            row = dict(batch=b, window=w, cache_len=a.cache_len, roofline_ms=round(roof, 2))
            for name, r in runs.items():
                ms = statistics.median(r["times"]) * 1e3
                row[name] = dict(ms_per_step=round(ms, 2), tokens_per_s=round(b / ms * 1e3, 1),
                                 roofline_fraction=round(roof / ms, 3),
                                 whole_cache_copies_in_program=whole_cache_copies(r["hlo"], cfg, b, a.cache_len),
                                 ms_all=[round(t * 1e3, 2) for t in r["times"]])
                if trace == (b, w):
                    args = (params, r["tok"], start_cache(cfg, b, a.cache_len, w, a.steps))
                    row[name]["trace"] = trace_breakdown(r["run"], args, a.steps, r["hlo"])
            bf, af = row["before"], row["after"]
            print(f"{b:5d} {w:6d} | {bf['ms_per_step']:9.1f} {bf['tokens_per_s']:6.0f} {bf['roofline_fraction']:5.2f} "
                  f"{bf['whole_cache_copies_in_program']:6d} | {af['ms_per_step']:9.1f} {af['tokens_per_s']:6.0f} "
                  f"{af['roofline_fraction']:5.2f} {af['whole_cache_copies_in_program']:6d} | "
                  f"{bf['ms_per_step'] / af['ms_per_step']:.2f}x", flush=True)
            for name in PATHS:
                for t in row[name].get("trace", []):
                    print(f"      {name:6s} {t['ms_per_step']:8.2f} ms/step  x{t['per_step']:<3d} "
                          f"{t['share_of_op_time']:6.1%}  {t['op']}", flush=True)
            rows.append(row)
            del runs
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{a.name}.json"
    meta = dict(config=a.config, dtype="float32", cache_len=a.cache_len, steps_per_call=a.steps, reps=a.reps,
                bandwidth_gbps=a.bandwidth, jax=jax.__version__, backend=jax.default_backend(),
                devices=str(jax.devices()), argv=sys.argv[1:] if argv is None else list(argv))
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
