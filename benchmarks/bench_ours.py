"""Our side of the throughput harness: the model, the prompts, one runner per mode of our jitted
loop, and the second process that times compiles against a warm persistent cache.

    python benchmarks/bench_ours.py --child SPEC.json     # the second process (started by the harness)
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench_measure import own_peak_rss_mb
from entropix_s1.core import codes
from entropix_s1.core import decode as D
from entropix_s1.core.budget import Budget
from entropix_s1.core.config import ModelConfig, RopeScaling
from entropix_s1.host.engine import Model
from entropix_s1.jsonl import read_jsonl
from entropix_s1.testing import IdTokenizer, random_params

MODES = ("greedy", "entropix", "entropix+budget", "budget+greedy")
REPO = Path(__file__).resolve().parents[1]


def default_data_file() -> Path:
    from entropix_s1.research.datasets import default_data_dir

    return default_data_dir() / "gsm8k_test.jsonl"


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    d["eos_token_ids"] = list(cfg.eos_token_ids)
    return d


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    d = dict(d)
    if d.get("rope_scaling") is not None:
        d["rope_scaling"] = RopeScaling(**d["rope_scaling"])
    d["eos_token_ids"] = tuple(d.get("eos_token_ids") or ())
    d["sliding_windows"] = tuple(d.get("sliding_windows") or ())  # JSON makes tuples lists
    return ModelConfig(**d)


def load_model(source: dict[str, Any], dtype: str) -> Model:
    """Our model from a source spec: {"kind": "random", "config": {...}, "seed": s} or
    {"kind": "dir", "path": name-or-dir} (a tokenizer is used when the directory has one)."""
    from entropix_s1.host.engine import load
    from entropix_s1.io.checkpoint import load_checkpoint
    from entropix_s1.io.resolve import resolve

    if source["kind"] == "random":
        cfg = config_from_dict(source["config"])
        params = random_params(cfg, dtype, source.get("seed", 0))
        return Model(Path(f"random-{source.get('name', 'config')}"), cfg, params,
                     IdTokenizer(cfg.vocab_size, cfg.eos_token_ids))
    path = resolve(source["path"])
    if (path / "tokenizer.json").is_file():
        return load(path, dtype=dtype, compilation_cache=False)
    cfg, params = load_checkpoint(path, dtype=jnp.dtype(dtype))
    return Model(path, cfg, params, IdTokenizer(cfg.vocab_size, cfg.eos_token_ids))


_corpus_cache: dict[tuple[int, str], list[int]] = {}


def make_prompts(model: Model, batch: int, length: int, *, seed: int = 0, data_file: Path | None = None) -> list[list[int]]:
    """`batch` prompts of exactly `length` token ids, all different.

    With a real tokenizer and the data file present: consecutive windows of the tokenised GSM8K
    test questions, concatenated ("\\n\\n" between them). Otherwise random ids (seeded)."""
    tok = model.tokenizer
    data_file = Path(data_file) if data_file is not None else default_data_file()
    if not isinstance(tok, IdTokenizer) and data_file.is_file():
        key = (id(tok), str(data_file))
        if key not in _corpus_cache:
            qs = [row.get("question") or row.get("problem") or row.get("input") or "" for row in read_jsonl(data_file)]
            _corpus_cache[key] = tok.encode("\n\n".join(q for q in qs if q))
        ids = _corpus_cache[key]
        if len(ids) >= length:
            n_windows = len(ids) // length
            return [ids[(i % n_windows) * length:(i % n_windows + 1) * length] for i in range(batch)]
    rng = np.random.default_rng(seed + 7919 * length + batch)
    lo = min(3, model.config.vocab_size - 1)  # skip the usual special ids 0..2
    return rng.integers(lo, model.config.vocab_size, size=(batch, length)).tolist()


def make_budget(think_end: str, max_thinking: int, waits: int) -> Budget:
    return Budget(think_end=(think_end,), max_thinking_tokens=max_thinking, num_waits=waits)


def _mode_kwargs(mode: str, budget: Budget) -> dict[str, Any]:
    return {
        "greedy": dict(sampler="greedy", budget=None),
        "entropix": dict(sampler="entropix", budget=None),
        "entropix+budget": dict(sampler="entropix", budget=budget),
        "budget+greedy": dict(sampler="greedy", budget=budget),
    }[mode]


class OursRunner:
    """One mode of our loop on fixed prompts: the jitted `generate_arrays` program, called with
    `max_new` N (a full run) or 1 (prefill + one token) -- the same compiled program."""

    def __init__(self, model: Model, prompts: list[list[int]], mode: str, new_tokens: int, budget: Budget, seed: int = 0):
        kw = _mode_kwargs(mode, budget)
        plan = model.prepare(prompts, sampler=kw["sampler"], budget=kw["budget"], max_new_tokens=new_tokens, seed=seed,
                             ignore_eos=True, raw=True)
        self.spec, self.params = plan.spec, model.params
        self.inputs = {n: plan.inputs.replace(max_new=jnp.asarray(n, jnp.int32)) for n in (new_tokens, 1)}
        self.new_tokens = new_tokens
        self.compiled: Any = None
        self.compile_s = self.trace_lower_s = float("nan")

    def args(self, n: int) -> tuple:
        return self.spec, self.params, self.inputs[n]

    def compile(self) -> None:
        """Ahead-of-time trace + lower + XLA compile of `generate_arrays`, timed; the runs then
        call the compiled executable (what the first `generate` call would have built)."""
        t = time.perf_counter()
        lowered = D.generate_arrays.lower(*self.args(self.new_tokens))
        t1 = time.perf_counter()
        self.compiled = lowered.compile()
        self.trace_lower_s, self.compile_s = t1 - t, time.perf_counter() - t

    def __call__(self, n: int) -> D.DecodeState:
        if self.compiled is None:
            return jax.block_until_ready(D.generate_arrays(*self.args(n)))
        return jax.block_until_ready(self.compiled(*self.args(n)[1:]))  # the spec is static

    def summary(self, st: D.DecodeState) -> dict[str, Any]:
        n_out, step, regime = jax.device_get((st.n_out_B, st.step, st.regime_BN))
        counts = np.zeros(len(codes.REGIME_NAMES), np.int64)
        for i, n in enumerate(n_out):
            counts += np.bincount(regime[i, :n], minlength=len(codes.REGIME_NAMES))
        return {"steps": int(step), "tokens_per_row": [int(x) for x in n_out],
                "regimes": {codes.REGIME_NAMES[i]: int(c) for i, c in enumerate(counts) if c},
                "windows": list(self.spec.windows), "cache_len": self.spec.cache_len}


# ---------------------------------------------------------------------------------------------
# Second process: compile time with the persistent cache warm

def use_cache_dir(path: str | None) -> None:
    """Point JAX's persistent compilation cache at `path` (None: off), effective immediately."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    cc.reset_cache()


def _cache_entries(cache_dir: str) -> set[str]:
    p = Path(cache_dir)
    return {e.name for e in p.iterdir()} if p.is_dir() else set()


def _child_main(spec_path: str) -> int:
    """Entry of the second process: load, run each mode twice against the shared cache dir."""
    spec = json.loads(Path(spec_path).read_text())
    use_cache_dir(spec["cache_dir"])
    t = time.perf_counter()
    model = load_model(spec["source"], spec["dtype"])
    out: dict[str, Any] = {"load_s": time.perf_counter() - t, "modes": {}}
    budget = Budget(**{**spec["budget"], "think_end": tuple(spec["budget"]["think_end"])})
    for mode in spec["modes"]:
        run = OursRunner(model, spec["prompts"], mode, spec["new_tokens"], budget, spec.get("seed", 0))
        before = _cache_entries(spec["cache_dir"])
        t = time.perf_counter()
        lowered = D.generate_arrays.lower(*run.args(spec["new_tokens"]))
        t1 = time.perf_counter()
        compiled = lowered.compile()  # a persistent-cache hit when the main process compiled it
        t2 = time.perf_counter()
        new = {e for e in _cache_entries(spec["cache_dir"]) - before if "generate_arrays" in e}
        jax.block_until_ready(compiled(*run.args(1)[1:]))  # run it (spec is static; 1 new token) for the RSS figure
        out["modes"][mode] = {"trace_lower_s": t1 - t, "compile_s": t2 - t, "cache_hit": not new,
                              "prefill_run_s": time.perf_counter() - t2}
    out["peak_rss_mb"] = own_peak_rss_mb()
    Path(spec["out"]).write_text(json.dumps(out))
    return 0


def second_process(source: dict[str, Any], dtype: str, cache_dir: str, prompts, new_tokens: int, modes, budget: Budget,
                   seed: int, workdir: Path, timeout: float = 3600) -> dict[str, Any]:
    """Run `_child_main` in a fresh Python process on the same spec; its result dict or {"error": ...}."""
    spec_path = workdir / f"child-{os.getpid()}-{time.monotonic_ns()}.json"
    out_path = spec_path.with_suffix(".out.json")
    spec = dict(source=source, dtype=dtype, cache_dir=cache_dir, prompts=prompts, new_tokens=new_tokens,
                modes=list(modes), seed=seed, out=str(out_path),
                budget={**dataclasses.asdict(budget), "think_end": list(budget.think_end)})
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(spec_path)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            return {"error": f"child exited {proc.returncode}: {proc.stderr[-2000:]}"}
        r = json.loads(out_path.read_text())
        r["process_wall_s"] = time.perf_counter() - t
        return r
    except subprocess.TimeoutExpired:
        return {"error": f"child timed out after {timeout} s"}
    finally:
        for p in (spec_path, out_path):
            p.unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--child":
        sys.exit(f"usage: python {Path(__file__).name} --child SPEC.json (started by benchmarks/harness.py)")
    sys.exit(_child_main(sys.argv[2]))
