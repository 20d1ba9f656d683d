"""Throughput benchmark: our jitted decode loop against transformers `generate`, side by side.

    python benchmarks/throughput.py                       # SmolLM2, f32+bf16, batch 1/8/32, prompt 64/512, + 64 x 640
    python benchmarks/throughput.py --random-config llama-1b --skip-hf --dtypes bfloat16 --hbm-gbs 4800  # GPU runs
    entropix-s1 bench --random-config tiny --batch-sizes 2 --prompt-lens 16 --new-tokens 8 --repeats 1

The harness is benchmark code, not library code: it imports torch, writes into
`benchmarks/results/` and lives here, split by concern: `bench_ours.py` (our model, prompts,
runners, the second process), `bench_hf.py` (the transformers side), `bench_measure.py`
(bandwidth, roofline, RSS, round-robin timing), `bench_report.py` (ratios, tables, files). It
shares random configs and weights with the tests through `entropix_s1.testing`. The CLI imports
this file by path (`add_arguments(parser)`, `main(args)`, `run_bench(...)`).

For every (dtype, batch, prompt length) on the same weights and the same prompt token ids, in one
process, it times our loop in four modes (greedy, entropix, entropix + budget forcing, budget
forcing + greedy) and transformers greedy `generate` (same dtype, batch, prompt ids and new-token
count, `min_new_tokens == max_new_tokens`, EOS ignored on our side).

How each number is measured (all wall clock, `time.perf_counter`, medians of `--repeats` runs).
Every mode is compiled first; then each repeat runs every mode and HF once, one after the other
(round-robin), so a drift in machine load hits all of them alike and their ratios stay fair.

- total_s: one full generation of N new tokens (ours: the jitted `generate_arrays` program,
  blocked until ready; host-side tokenising/detokenising is excluded. HF: `model.generate`).
- prefill_s: the same call with 1 new token (ours: the SAME compiled program, `max_new` is a
  runtime argument, so no extra compile). It includes the prompt forward and one sampled token.
- decode tokens/s = batch * (N - 1) / (total_s - prefill_s): the steady per-token cost, prefill
  subtracted by the 1-token run for both sides alike.
- first-call compile: `generate_arrays.lower(...).compile()` timed (trace + lower + XLA compile: what
  the first `generate` call pays) against a FRESH persistent compilation cache (`--cache-dir`,
  default a new temporary directory); the timed runs then call that executable. HF is warmed up by
  a 2-token `generate` (its time is `first_call_s`).
- second-process compile: a child process (`python benchmarks/bench_ours.py --child SPEC`) loads the same
  weights, points JAX at the same cache directory and times `generate_arrays.lower(...).compile()`
  per mode (trace + lower + persistent-cache lookup): what a new process pays with the cache warm.
  It then runs each program once (1 new token); its peak RSS (VmHWM: a child's ru_maxrss would
  include the parent's, Linux keeps it across fork + exec) is ours alone.
- peak RSS: `resource.getrusage(RUSAGE_SELF).ru_maxrss` of the main process after each config
  (monotone over the run: it holds both our weights and HF's).
- roofline: decode is memory bound at small batch. Bytes read per step = weight bytes (the
  embedding counts once, as the LM head, when tied; an untied input embedding is a gather and does
  not count) + KV bytes at the mean context (prompt + N/2). Memory bandwidth is measured in the same
  run with a large-array sum (numpy and jax; the larger wins; on an accelerator, jax on the device).
  ideal tokens/s = batch * bandwidth / bytes per step; "fraction" = measured / ideal.

Long-context cells (prompt `--long-prompt-len` 64, `--long-new-tokens` 640, greedy by default) follow
each batch's main cells; `bench_report.scaling` divides them by the main cell (640/128) and each batch
by the previous one (32/8). HF is skipped in a cell, marked "skipped (time budget)", when one timed
pair is estimated to pass `--peer-time-budget` (default `--time-budget`). llama.cpp (optional,
`llamacpp_peer.py`) runs once at batch 1 on an F32 GGUF requantized from the shipped GGUF.
`--hbm-gbs` adds each cell's fraction of a nominal-bandwidth roofline.

`--random-config NAME|config.json` benchmarks random weights of any ModelConfig (presets in
`entropix_s1.testing.RANDOM_CONFIGS`) with random token-id prompts and no tokenizer. With the HF side on, the random
model is built in transformers, saved with `save_pretrained` to a temporary directory and loaded by
both sides (only sensible at small sizes; use `--skip-hf` for big configs).

transformers and torch are imported only when the HF side runs (they are dev extras).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE), str(_HERE.parent)):  # the sibling modules; entropix_s1 from a source checkout
    if _p not in sys.path:
        sys.path.insert(0, _p)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench_hf import HFRunner, auto_device, hf_load, save_random_hf  # noqa: E402
from bench_measure import agreement, measure_bandwidth, peak_rss_mb, roofline, time_interleaved  # noqa: E402
from bench_ours import (MODES, OursRunner, config_to_dict, load_model, make_budget, make_prompts,  # noqa: E402
                        second_process, use_cache_dir)
from bench_report import SKIPPED, fmt, ratios, scaling, to_markdown, write  # noqa: E402
from llamacpp_peer import run_peer as run_llamacpp, status_line as llamacpp_status  # noqa: E402
from entropix_s1 import testing  # noqa: E402
from entropix_s1.core.budget import Budget  # noqa: E402
from entropix_s1.errors import ConfigError  # noqa: E402
from entropix_s1.host.engine import Model  # noqa: E402
from entropix_s1.io.catalog import DEFAULT_MODEL  # noqa: E402

__all__ = ["DEFAULT_MODEL", "MODES", "run_bench", "add_arguments", "main", "default_out_dir", "pin_cpus"]

#: How each number is measured, recorded in every result file's meta.
METHOD = {
    "decode_tokens_per_s": "batch*(N-1)/(median total_s - median prefill_s); prefill_s is the same call with 1 new token",
    "ours_timed": "the jitted generate_arrays program (block_until_ready); host tokenise/detokenise excluded",
    "hf_timed": "model.generate(greedy, min_new_tokens=max_new_tokens=N)",
    "order": "all modes compiled first, then repeats round-robin over modes and HF (full run, then 1-token run)",
    "compile_s": "generate_arrays.lower(...).compile() wall time (trace + lower + XLA), fresh persistent cache",
    "hf_first_call_s": "HF warm-up: a 2-token generate before the timed runs",
    "second_process_compile_s": "child process, same cache dir: generate_arrays.lower().compile() wall time",
    "peak_rss_mb": "getrusage ru_maxrss of the main process (monotone, both sides loaded)",
    "roofline": "batch*bandwidth/(weight bytes + KV bytes at prompt+N/2); bandwidth from a large-array sum",
    "hbm_roofline": "the same with the nominal bandwidth --hbm-gbs (spec sheet) instead of the measured one",
    "long_context": "extra cells at prompt --long-prompt-len with --long-new-tokens N (modes --long-modes); "
                    "ratio = decode tok/s at the long N / at the main N, same batch, prompt and dtype",
    "batch_scaling": "decode tok/s at a batch / at the previous batch size of the grid (e.g. 32/8), same prompt and N",
    "hf_skip": "with a peer time budget, HF is skipped in a cell when one timed pair (t(N) + t(1)) is estimated "
               "to pass it: 2*prefill scaled by batch*prompt from an earlier cell, else a probe t(1), t(k)",
    "llamacpp": "llama-cpp-python, F32 GGUF requantized from the shipped GGUF, batch 1, greedy, EOS ignored, "
                "decode = (N-1)/(t(N)-t(1))",
}


def default_out_dir() -> Path:
    """`benchmarks/results/throughput` next to this file."""
    return _HERE / "results" / "throughput"


def pin_cpus(cpus: Sequence[int]) -> None:
    """Pin every thread of this process (and so every thread and process started later) to `cpus`."""
    mask = set(int(c) for c in cpus)
    tasks = Path("/proc/self/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, mask)
        except OSError:
            pass
    os.sched_setaffinity(0, mask)


@dataclasses.dataclass(frozen=True)
class _Run:
    """What every (batch, prompt length, dtype) config of one benchmark run shares."""

    source: dict[str, Any]  # where the weights come from; the child process rebuilds the model from it
    modes: list[str]
    new_tokens: int
    repeats: int
    time_budget: float | None
    peer_time_budget: float | None  # HF is skipped in a cell where one timed pair would not fit
    budget: Budget
    seed: int
    data_file: str | os.PathLike | None
    hf_device: str
    second_process: bool
    cache: str
    tmp: Path
    bandwidth_gbps: float
    hbm_gbps: float | None
    say: Callable[[str], None]


def _source(model: str | os.PathLike | None, random_config: str | None, want_hf: bool, tmp: Path, seed: int,
            say: Callable[[str], None]) -> tuple[dict[str, Any], str]:
    """(source spec, label): a random config (saved by transformers when HF runs too) or a model dir."""
    if random_config is None:
        model = DEFAULT_MODEL if model is None else model
        return {"kind": "dir", "path": str(model)}, Path(str(model)).name
    cfg = testing.random_config(random_config)
    rc_name = Path(random_config).stem if random_config not in testing.RANDOM_CONFIGS else random_config
    if not want_hf:
        return {"kind": "random", "config": config_to_dict(cfg), "seed": seed, "name": rc_name}, f"random-{rc_name}"
    t = time.perf_counter()
    hf_dir = save_random_hf(cfg, tmp / "hf_random", seed=seed)
    say(f"[bench] random {rc_name} built in transformers and saved ({time.perf_counter() - t:.1f} s)")
    return {"kind": "dir", "path": str(hf_dir)}, f"random-{rc_name}"


def _use_torch(meta: dict[str, Any], torch_threads: int | None, cpus: Sequence[int] | None) -> int | None:
    """Record torch and transformers in `meta`, set torch's threads; returns the old thread count to restore."""
    import torch
    import transformers

    old = None
    if torch_threads or cpus:
        old = torch.get_num_threads()
        torch.set_num_threads(torch_threads or len(cpus))
    meta.update(transformers=transformers.__version__, torch=torch.__version__, torch_threads=torch.get_num_threads())
    return old


def _restore(old_cache: tuple, tmp: Path, old_torch_threads: int | None) -> None:
    from jax.experimental.compilation_cache import compilation_cache as cc

    jax.config.update("jax_compilation_cache_dir", old_cache[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", old_cache[1])
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", old_cache[2])
    cc.reset_cache()
    shutil.rmtree(tmp, ignore_errors=True)
    if old_torch_threads is not None:
        import torch

        torch.set_num_threads(old_torch_threads)


def _load_models(run: _Run, dtypes: Sequence[str], want_hf: bool) -> dict[str, tuple[Model, Any, float, float | None]]:
    """dtype -> (ours, HF model or None, ours load s, HF load s): every dtype stays loaded, as the
    grid runs batch -> prompt -> dtype."""
    models = {}
    for dtype in dtypes:
        t = time.perf_counter()
        ours_model = load_model(run.source, dtype)
        ours_load = time.perf_counter() - t
        hf_model, hf_load_s = None, None
        if want_hf:
            t = time.perf_counter()
            hf_model = hf_load(ours_model.path, dtype, run.hf_device)
            hf_load_s = time.perf_counter() - t
        models[dtype] = (ours_model, hf_model, ours_load, hf_load_s)
        run.say(f"[bench] {dtype}: ours loaded in {ours_load:.1f} s" + (f", HF in {hf_load_s:.1f} s" if want_hf else ""))
    return models


def _compile_modes(run: _Run, model: Model, prompts: list[list[int]], rec: dict[str, Any], tag: str,
                   modes: Sequence[str], new_tokens: int) -> dict[str, Callable[[int], Any]]:
    """A compiled runner per mode (compile times into `rec["ours"]`; a failure is recorded, not raised)."""
    runs: dict[str, Callable[[int], Any]] = {}
    for mode in modes:  # compile every mode first; the timed runs are interleaved afterwards
        jax.clear_caches()  # an honest compile even if this program was built before
        try:
            runner = OursRunner(model, prompts, mode, new_tokens, run.budget, run.seed)
            runner.compile()
        except Exception as e:  # noqa: BLE001 - a long run records the failure and goes on
            rec["ours"][mode] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            run.say(f"[bench] {tag} ours {mode} FAILED to compile: {rec['ours'][mode]['error'][:300]}")
            continue
        rec["ours"][mode] = {"first_call_s": runner.compile_s, "compile_s": runner.compile_s,
                             "trace_lower_s": runner.trace_lower_s}
        runs[mode] = runner
        run.say(f"[bench] {tag} ours {mode:16s} compiled in {runner.compile_s:6.1f} s "
                f"(trace+lower {runner.trace_lower_s:.1f} s)")
    return runs


def hf_prefill_estimate(prior: Sequence[dict[str, Any]], dtype: str, batch: int, plen: int) -> float | None:
    """HF prefill seconds at (batch, plen), scaled by batch*plen from the earlier measured HF cell of
    `dtype` with the largest batch*plen (None when there is none)."""
    done = [r for r in prior if r["dtype"] == dtype and "hf" in r and r["hf"].get("prefill_s")]
    if not done:
        return None
    r = max(done, key=lambda r: (r["batch"] * r["prompt_len"], r["batch"]))
    return r["hf"]["prefill_s"] * (batch * plen) / (r["batch"] * r["prompt_len"])


def pair_estimate(t1: float, tk: float, k: int, n: int) -> float:
    """Seconds of one timed pair t(n) + t(1), from a 1-token run t1 and a k-token run tk."""
    step = max(tk - t1, 0.0) / max(k - 1, 1)
    return 2 * t1 + (n - 1) * step


def _add_hf(run: _Run, hf_model: Any, prompts: list[list[int]], rec: dict[str, Any], runs: dict, tag: str,
            prior: Sequence[dict[str, Any]], new_tokens: int) -> None:
    """Warm HF up and add it to `runs`, unless one timed pair would pass the peer time budget
    (then `rec["hf_skipped"]` says why, with the estimate)."""
    budget = run.peer_time_budget
    batch, plen = len(prompts), len(prompts[0])
    if budget is not None:
        est = hf_prefill_estimate(prior, rec["dtype"], batch, plen)
        if est is not None and 2 * est > budget:
            rec["hf_skipped"] = {"reason": SKIPPED, "estimate_pair_s": 2 * est, "budget_s": budget,
                                 "basis": "2 x prefill scaled by batch*prompt from an earlier cell (a lower bound)"}
            run.say(f"[bench] {tag} HF {SKIPPED}: one pair >= {2 * est:.1f} s > {budget:g} s")
            return
    try:
        hf_run = HFRunner(hf_model, prompts, run.hf_device)
        t = time.perf_counter()
        hf_run(2)  # warm-up, excluded
        rec["hf"] = {"first_call_s": time.perf_counter() - t}
        if budget is not None:
            k = min(new_tokens, 9)
            t = time.perf_counter()
            hf_run(1)
            t1 = time.perf_counter() - t
            t = time.perf_counter()
            hf_run(k)
            tk = time.perf_counter() - t
            est = pair_estimate(t1, tk, k, new_tokens)
            rec["hf"]["probe"] = {"t1_s": t1, f"t{k}_s": tk, "estimate_pair_s": est}
            if est > budget:
                rec["hf_skipped"] = {"reason": SKIPPED, "estimate_pair_s": est, "budget_s": budget,
                                     "basis": f"probe: 2*t(1) + (N-1)*(t({k})-t(1))/{k - 1}",
                                     "first_call_s": rec.pop("hf")["first_call_s"]}
                run.say(f"[bench] {tag} HF {SKIPPED}: one pair ~{est:.1f} s > {budget:g} s")
                return
        runs["hf"] = hf_run
    except Exception as e:  # noqa: BLE001
        rec.pop("hf", None)
        rec["hf_error"] = f"{type(e).__name__}: {e}"[:2000]
        run.say(f"[bench] {tag} HF FAILED: {rec['hf_error'][:300]}")


def _time_runs(run: _Run, runs: dict[str, Callable[[int], Any]], rec: dict[str, Any], batch: int, plen: int,
               tag: str, new_tokens: int) -> None:
    """Time every runner round-robin into `rec`, with each mode's summary and greedy parity with HF."""
    outputs: dict[str, Any] = {}

    def keep(k: str, out: Any) -> None:
        if k == "hf":
            outputs[k] = out[:, plen:].cpu().numpy()
        else:
            outputs[k] = runs[k].summary(out)
            if k == "greedy":
                outputs["greedy_tokens"] = np.asarray(out.out_BN)[:, :new_tokens]

    timed = time_interleaved(runs, new_tokens, batch, run.repeats, run.time_budget, on_full=keep)
    for k, r in timed.items():
        dst = rec["hf"] if k == "hf" else rec["ours"][k]
        dst.update(r)
        if "error" in r:
            run.say(f"[bench] {tag} {'HF' if k == 'hf' else 'ours ' + k} FAILED: {r['error'][:300]}")
            continue
        if k != "hf":
            dst.update(outputs[k])
        run.say(f"[bench] {tag} {'HF   greedy' if k == 'hf' else 'ours ' + k:21s} decode "
                f"{fmt(r['decode_tokens_per_s']):>9s} tok/s  prefill {r['prefill_s'] * 1e3:8.1f} ms  "
                f"runs {len(r['total_runs_s'])}")
    if "hf" in rec and "error" in rec["hf"]:
        rec["hf_error"] = rec.pop("hf")["error"]
    if "greedy_tokens" in outputs and "hf" in outputs:
        rec["greedy_agreement"] = agreement(outputs["greedy_tokens"], outputs["hf"])


def _bench_config(run: _Run, loaded: tuple[Model, Any, float, float | None], dtype: str, batch: int,
                  plen: int, new_tokens: int | None = None, modes: Sequence[str] | None = None, cell: str = "main",
                  prior: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The record of one (dtype, batch, prompt length, new tokens): compile, time, roofline, second process."""
    ours_model, hf_model, ours_load, hf_load_s = loaded
    new_tokens = run.new_tokens if new_tokens is None else new_tokens
    modes = run.modes if modes is None else list(modes)
    prompts = make_prompts(ours_model, batch, plen, seed=run.seed, data_file=run.data_file)
    rec: dict[str, Any] = {"dtype": dtype, "batch": batch, "prompt_len": plen, "new_tokens": new_tokens, "cell": cell,
                           "ours_load_s": ours_load, "hf_load_s": hf_load_s, "ours": {}}
    tag = f"{dtype} b={batch} p={plen} N={new_tokens}"
    runs = _compile_modes(run, ours_model, prompts, rec, tag, modes, new_tokens)
    if hf_model is not None:
        _add_hf(run, hf_model, prompts, rec, runs, tag, prior, new_tokens)
    _time_runs(run, runs, rec, batch, plen, tag, new_tokens)
    del runs  # free the compiled programs before the child process runs
    spec = next((v for v in rec["ours"].values() if "windows" in v), None)
    rec["roofline"] = roofline(ours_model.config, ours_model.params, batch, plen, new_tokens,
                               run.bandwidth_gbps, spec["windows"] if spec else ())
    if run.hbm_gbps:
        rec["roofline"]["hbm_gbps"] = run.hbm_gbps
        rec["roofline"]["hbm_ideal_tokens_per_s"] = \
            rec["roofline"]["ideal_tokens_per_s"] * run.hbm_gbps / run.bandwidth_gbps
    if run.second_process:
        rec["second_process"] = second_process(run.source, dtype, run.cache, prompts, new_tokens, modes,
                                               run.budget, run.seed, run.tmp)
        if "error" in rec["second_process"]:
            run.say(f"[bench] second process failed: {rec['second_process']['error'][:500]}")
    rec["peak_rss_mb"] = peak_rss_mb()
    rec["loadavg"] = list(os.getloadavg())
    rec["ratios"] = ratios(rec)
    return rec


def _llamacpp(run: _Run, models: dict, random_config: str | None, model: Any, plen: int, new_tokens: list[int],
              cpus: Sequence[int] | None) -> dict[str, Any]:
    """The llama.cpp peer at batch 1 on our batch-1 prompt of length `plen` (see llamacpp_peer.py)."""
    from llamacpp_peer import import_llama_cpp

    if import_llama_cpp() is None:
        rec: dict[str, Any] = {"status": "not installed"}
    elif random_config is not None:
        rec = {"status": "not applicable", "reason": "random weights have no GGUF"}
    else:
        ours = models.get("float32", next(iter(models.values())))[0]
        prompt = make_prompts(ours, 1, plen, seed=run.seed, data_file=run.data_file)[0]
        rec = run_llamacpp(DEFAULT_MODEL if model is None else model, prompt, new_tokens, repeats=run.repeats,
                           time_budget=run.time_budget, n_threads=len(cpus) if cpus else 2, workdir=run.tmp,
                           say=run.say)
    run.say(f"[bench] {llamacpp_status(rec)}")
    return rec


def run_bench(
    model: str | os.PathLike | None = DEFAULT_MODEL,
    *,
    random_config: str | None = None,
    dtypes: Sequence[str] = ("float32", "bfloat16"),
    batch_sizes: Sequence[int] = (1, 8, 32),
    prompt_lens: Sequence[int] = (64, 512),
    new_tokens: int = 128,
    long_new_tokens: int = 640,
    long_prompt_len: int = 64,
    long_modes: Sequence[str] = ("greedy",),
    repeats: int = 3,
    modes: Sequence[str] = MODES,
    skip_hf: bool = False,
    second_process: bool = True,
    out: str | os.PathLike | None = None,
    name: str | None = None,
    seed: int = 0,
    data_file: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    think_end: str = "<|im_end|>",
    budget_max_thinking: int = 64,
    budget_waits: int = 1,
    hf_device: str = "auto",
    bandwidth_mb: int = 256,
    cpus: Sequence[int] | None = None,
    torch_threads: int | None = None,
    time_budget: float | None = None,
    peer_time_budget: float | None = None,
    hbm_gbs: float | None = None,
    llamacpp: bool = True,
    log: Callable[[str], None] | None = functools.partial(print, flush=True),
) -> dict[str, Any]:
    """Run the side-by-side benchmark; write `<out>/<name>.json` and `.md`; return the JSON dict.

    model: catalog name or HF checkpoint dir (ignored when `random_config` is given).
    random_config: preset name (`testing.RANDOM_CONFIGS`) or config.json path: random weights, token-id prompts.
    out: output directory (default `default_out_dir()`); "" disables writing. The files are
        rewritten after every config, so a long run that dies keeps what it measured.
    cpus: pin this process (every thread, and the child process) to these CPU ids; torch then
        uses len(cpus) threads. XLA sizes its thread pool from the affinity when its backend starts,
        so pin before any JAX computation (the CLI does) for both sides to get the same cores.
    torch_threads: torch intra-op threads (default: torch's own choice, or len(cpus)).
    time_budget: seconds of timed runs per mode and config; fewer than `repeats` pairs run when
        the next would not fit (at least one). The runs done are in `total_runs_s`.
    long_new_tokens: the long-context cells: for every batch and dtype, prompt `long_prompt_len`
        with this many new tokens, modes `long_modes` (0: none). The scaling table divides their
        decode tokens/s by the main cell at the same batch, prompt and dtype.
    peer_time_budget: HF is skipped in a cell ("skipped (time budget)") when one timed pair is
        estimated to pass this many seconds (default: `time_budget`; None and no time_budget: never).
    hbm_gbs: nominal memory bandwidth in GB/s (e.g. 4800 for H200 HBM3e): each cell also gets its
        fraction of that roofline.
    llamacpp: measure llama.cpp at batch 1 (float32 only) when llama-cpp-python is importable and
        the model has a source GGUF (`benchmarks/llamacpp_peer.py`).
    """
    say = log or (lambda s: None)
    modes, long_modes = list(modes), list(long_modes)
    bad = [m for m in modes + long_modes if m not in MODES]
    if bad:
        raise ConfigError(f"unknown bench modes {bad}; choose from {', '.join(MODES)}")
    if new_tokens < 2 or (long_new_tokens and long_new_tokens < 2):
        raise ConfigError("new_tokens must be >= 2 (decode time is total minus a 1-token run)")
    peer_time_budget = time_budget if peer_time_budget is None else peer_time_budget
    out_dir = default_out_dir() if out is None else (Path(out) if str(out) else None)
    tmp = Path(tempfile.mkdtemp(prefix="entropix-bench-"))
    cache = str(tmp / "jax_cache") if cache_dir is None else str(Path(cache_dir).expanduser())
    Path(cache).mkdir(parents=True, exist_ok=True)
    old_cache = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs,
                 jax.config.jax_persistent_cache_min_entry_size_bytes)
    use_cache_dir(cache)
    want_hf, old_torch_threads = not skip_hf, None
    if cpus:
        pin_cpus(cpus)
    hf_device_ = auto_device(hf_device) if want_hf else hf_device
    source, label = _source(model, random_config, want_hf, tmp, seed, say)
    name = name or label
    meta: dict[str, Any] = {
        "name": name, "model": label, "source": source.get("path", "random"), "random_config": random_config,
        "dtypes": list(dtypes), "batch_sizes": list(batch_sizes), "prompt_lens": list(prompt_lens),
        "new_tokens": new_tokens, "long_new_tokens": long_new_tokens, "long_prompt_len": long_prompt_len,
        "long_modes": long_modes, "repeats": repeats, "time_budget_s": time_budget,
        "peer_time_budget_s": peer_time_budget, "hbm_gbs": hbm_gbs, "modes": modes, "skip_hf": skip_hf,
        "budget": {"think_end": [think_end], "max_thinking_tokens": budget_max_thinking, "num_waits": budget_waits},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "loadavg_start": list(os.getloadavg()),
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "jax": jax.__version__, "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()], "hf_device": hf_device_ if want_hf else None,
        "method": METHOD,
    }
    if want_hf:
        old_torch_threads = _use_torch(meta, torch_threads, cpus)
    meta["cpu_affinity"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    say(f"[bench] {name}: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; cache {cache}")
    bw = meta["bandwidth"] = measure_bandwidth(bandwidth_mb)
    say(f"[bench] memory bandwidth: numpy {bw['numpy_gbps']:.1f} GB/s, jax {bw['jax_gbps']:.1f} GB/s")
    run = _Run(source=source, modes=modes, new_tokens=new_tokens, repeats=repeats, time_budget=time_budget,
               peer_time_budget=peer_time_budget,
               budget=make_budget(think_end, budget_max_thinking, budget_waits), seed=seed, data_file=data_file,
               hf_device=hf_device_, second_process=second_process, cache=cache, tmp=tmp,
               bandwidth_gbps=bw["best_gbps"], hbm_gbps=hbm_gbs, say=say)
    cells = [(batch, plen, new_tokens, modes, "main") for batch in batch_sizes for plen in prompt_lens]
    if long_new_tokens:  # after each batch's main cells: batch -> prompt (-> long) -> dtype
        cells = [c for batch in batch_sizes for c in
                 [c for c in cells if c[0] == batch] + [(batch, long_prompt_len, long_new_tokens, long_modes, "long")]]
    results: list[dict[str, Any]] = []
    peer: dict[str, Any] | None = None

    def partial_doc() -> dict[str, Any]:
        return {"meta": {**meta, "partial": True, "finished": None, "loadavg_end": list(os.getloadavg())},
                "results": results, "llamacpp": peer}

    try:
        models = _load_models(run, dtypes, want_hf)
        if llamacpp:
            peer = _llamacpp(run, models, random_config, model, long_prompt_len,
                             [n for n in (new_tokens, long_new_tokens) if n], cpus)
        for batch, plen, n, cell_modes, kind in cells:
            for dtype in dtypes:
                results.append(_bench_config(run, models[dtype], dtype, batch, plen, n, cell_modes, kind, results))
                if out_dir is not None:  # partial results survive a long run that dies
                    write(out_dir, name, partial_doc())
        del models
    finally:
        _restore(old_cache, tmp, old_torch_threads)
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    meta["loadavg_end"] = list(os.getloadavg())
    doc = {"meta": meta, "results": results, "llamacpp": peer}
    doc["scaling"] = scaling(doc)
    if out_dir is not None:
        doc["paths"] = write(out_dir, name, doc)
    say(to_markdown(doc))
    return doc


# ---------------------------------------------------------------------------------------------
# Command line

def _int_list(minimum: int, what: str, bound: str) -> Callable[[str], list[int]]:
    """Parser of a comma-separated list of integers >= `minimum` (errors name `what` and `bound`)."""
    def parse(s: str) -> list[int]:
        try:
            v = [int(x) for x in s.split(",") if x.strip()]
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {s!r}") from e
        if not v or any(x < minimum for x in v):
            raise argparse.ArgumentTypeError(f"expected {bound}, got {s!r}")
        return v

    return parse


_ints = _int_list(1, "integers", "positive integers")
_cpu_ids = _int_list(0, "CPU ids", "CPU ids >= 0")


def _strs(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(s: str) -> list[str]:
        v = [x.strip() for x in s.split(",") if x.strip()]
        bad = [x for x in v if x not in choices]
        if not v or bad:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (comma-separated), got {s!r}")
        return v

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `entropix-s1 bench` / `benchmarks/throughput.py`."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"catalog name or HF checkpoint dir (default {DEFAULT_MODEL})")
    parser.add_argument("--random-config", default=None, metavar="NAME|CONFIG.json",
                        help=f"random weights instead of --model: {', '.join(testing.RANDOM_CONFIGS)} or a config.json path")
    parser.add_argument("--dtypes", type=_strs(("float32", "bfloat16")), default=["float32", "bfloat16"],
                        help="weight dtypes, comma-separated (default float32,bfloat16)")
    parser.add_argument("--batch-sizes", type=_ints, default=[1, 8, 32], help="default 1,8,32")
    parser.add_argument("--prompt-lens", type=_ints, default=[64, 512], help="prompt lengths in tokens (default 64,512)")
    parser.add_argument("--new-tokens", type=int, default=128, help="new tokens per row (default 128)")
    parser.add_argument("--long-new-tokens", type=int, default=640,
                        help="long-context cells: new tokens per row at --long-prompt-len, every batch and dtype "
                             "(default 640; 0: none)")
    parser.add_argument("--long-prompt-len", type=int, default=64, help="prompt length of the long-context cells (default 64)")
    parser.add_argument("--long-modes", type=_strs(MODES), default=["greedy"],
                        help="our modes in the long-context cells (default greedy)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the median is reported (default 3)")
    parser.add_argument("--modes", type=_strs(MODES), default=list(MODES), help=f"our modes (default {','.join(MODES)})")
    parser.add_argument("--skip-hf", action="store_true", help="no transformers comparison")
    parser.add_argument("--no-second-process", action="store_true", help="skip the compile-with-warm-cache child process")
    parser.add_argument("--out", default=None, help="output directory (default benchmarks/results/throughput/)")
    parser.add_argument("--name", default=None, help="output file stem (default: the model name)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="JSONL of questions for real-text prompts (default ../shared/data/gsm8k_test.jsonl)")
    parser.add_argument("--cache-dir", default=None, help="persistent compilation cache dir (default: a fresh temporary one)")
    parser.add_argument("--think-end", default="<|im_end|>", help="budget modes: end-of-thinking delimiter")
    parser.add_argument("--budget-max-thinking", type=int, default=64, help="budget modes: max thinking tokens (default 64)")
    parser.add_argument("--budget-waits", type=int, default=1, help="budget modes: num_waits (default 1)")
    parser.add_argument("--hf-device", default="auto", help="torch device of the HF side (default: cuda if jax is on GPU, else cpu)")
    parser.add_argument("--bandwidth-mb", type=int, default=256, help="array size of the bandwidth probe (default 256 MiB)")
    parser.add_argument("--cpus", type=_cpu_ids, default=None,
                        help="pin the run (both sides, and the child process) to these CPU ids, e.g. 0 or 0,1")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="cap on timed runs per mode and config: fewer repeats when the next would not fit")
    parser.add_argument("--peer-time-budget", type=float, default=None, metavar="SECONDS",
                        help="skip HF in a cell where one timed pair is estimated to pass this (default: --time-budget)")
    parser.add_argument("--hbm-gbs", type=float, default=None, metavar="GB/S",
                        help="nominal memory bandwidth: each cell's fraction of that roofline too (H200 HBM: 4800)")
    parser.add_argument("--no-llamacpp", action="store_true",
                        help="skip the llama.cpp peer (it runs at batch 1 when llama-cpp-python is importable)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice, or the number of --cpus)")
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the benchmark the parsed `add_arguments` flags describe."""
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    run_bench(
        args.model, random_config=args.random_config, dtypes=args.dtypes, batch_sizes=args.batch_sizes,
        prompt_lens=args.prompt_lens, new_tokens=args.new_tokens, long_new_tokens=args.long_new_tokens,
        long_prompt_len=args.long_prompt_len, long_modes=args.long_modes, repeats=args.repeats, modes=args.modes,
        skip_hf=args.skip_hf, second_process=not args.no_second_process, out=args.out, name=args.name, seed=args.seed,
        data_file=args.data, cache_dir=args.cache_dir, think_end=args.think_end,
        budget_max_thinking=args.budget_max_thinking, budget_waits=args.budget_waits, hf_device=args.hf_device,
        bandwidth_mb=args.bandwidth_mb, cpus=args.cpus, torch_threads=args.torch_threads,
        time_budget=args.time_budget, peer_time_budget=args.peer_time_budget, hbm_gbs=args.hbm_gbs,
        llamacpp=not args.no_llamacpp,
    )
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python benchmarks/harness.py", description="throughput vs transformers")
    sys.exit(main(add_arguments(ap).parse_args()))
