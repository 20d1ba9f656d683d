"""Throughput benchmark: our jitted decode loop against transformers `generate`, side by side.

    python benchmarks/throughput.py                       # SmolLM2, f32+bf16, batch 1/8, prompt 64/512
    python benchmarks/throughput.py --random-config llama-1b --skip-hf --dtypes bfloat16   # GPU runs
    entropix-s1 bench --random-config tiny --batch-sizes 2 --prompt-lens 16 --new-tokens 8 --repeats 1

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
- second-process compile: a child process (`python -m entropix_s1.bench --child SPEC`) loads the same
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

`--random-config NAME|config.json` benchmarks random weights of any ModelConfig (presets in
`RANDOM_CONFIGS`) with random token-id prompts and no tokenizer. With the HF side on, the random
model is built in transformers, saved with `save_pretrained` to a temporary directory and loaded by
both sides (only sensible at small sizes; use `--skip-hf` for big configs).

transformers and torch are imported only when the HF side runs (they are dev extras).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from entropix_s1.core import decode as D
from entropix_s1.core.budget import Budget
from entropix_s1.core.config import ModelConfig, RopeScaling
from entropix_s1.host.engine import Model
from entropix_s1.core.model import LayerParams, Params

DEFAULT_MODEL = "smollm2-135m-instruct"
MODES = ("greedy", "entropix", "entropix+budget", "budget+greedy")
REPO = Path(__file__).resolve().parent.parent


def default_out_dir() -> Path:
    """`<repo>/benchmarks/results/throughput` in a source checkout, else relative to the cwd."""
    if (REPO / "pyproject.toml").is_file() and (REPO / "entropix_s1").is_dir():
        return REPO / "benchmarks" / "results" / "throughput"
    return Path("benchmarks/results/throughput")


def default_data_file() -> Path:
    from entropix_s1.research.datasets import default_data_dir

    return default_data_dir() / "gsm8k_test.jsonl"


# ---------------------------------------------------------------------------------------------
# Random configs and weights

_LLAMA3_ROPE = dict(low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)

RANDOM_CONFIGS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(arch="llama", vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                        ffn_dim=128, norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=4096,
                        tie_embeddings=False, qkv_bias=False, qk_norm=False, bos_token_id=1, eos_token_ids=(2,)),
    "smollm2-135m": ModelConfig(arch="llama", vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3,
                                head_dim=64, ffn_dim=1536, norm_eps=1e-5, rope_theta=100000.0,
                                max_position_embeddings=8192, tie_embeddings=True, qkv_bias=False, qk_norm=False,
                                bos_token_id=1, eos_token_ids=(2,)),
    "llama-1b": ModelConfig(arch="llama", vocab_size=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8,
                            head_dim=64, ffn_dim=8192, norm_eps=1e-5, rope_theta=500000.0,
                            max_position_embeddings=131072, tie_embeddings=True, qkv_bias=False, qk_norm=False,
                            rope_scaling=RopeScaling(factor=32.0, **_LLAMA3_ROPE), bos_token_id=128000,
                            eos_token_ids=(128001, 128008, 128009)),
    "llama-3b": ModelConfig(arch="llama", vocab_size=128256, dim=3072, n_layers=28, n_heads=24, n_kv_heads=8,
                            head_dim=128, ffn_dim=8192, norm_eps=1e-5, rope_theta=500000.0,
                            max_position_embeddings=131072, tie_embeddings=True, qkv_bias=False, qk_norm=False,
                            rope_scaling=RopeScaling(factor=32.0, **_LLAMA3_ROPE), bos_token_id=128000,
                            eos_token_ids=(128001, 128008, 128009)),
    "llama-8b": ModelConfig(arch="llama", vocab_size=128256, dim=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                            head_dim=128, ffn_dim=14336, norm_eps=1e-5, rope_theta=500000.0,
                            max_position_embeddings=131072, tie_embeddings=False, qkv_bias=False, qk_norm=False,
                            rope_scaling=RopeScaling(factor=8.0, **_LLAMA3_ROPE), bos_token_id=128000,
                            eos_token_ids=(128001, 128008, 128009)),
    "qwen2.5-0.5b": ModelConfig(arch="qwen2", vocab_size=151936, dim=896, n_layers=24, n_heads=14, n_kv_heads=2,
                                head_dim=64, ffn_dim=4864, norm_eps=1e-6, rope_theta=1000000.0,
                                max_position_embeddings=32768, tie_embeddings=True, qkv_bias=True, qk_norm=False,
                                eos_token_ids=(151645, 151643)),
    "qwen3-0.6b": ModelConfig(arch="qwen3", vocab_size=151936, dim=1024, n_layers=28, n_heads=16, n_kv_heads=8,
                              head_dim=128, ffn_dim=3072, norm_eps=1e-6, rope_theta=1000000.0,
                              max_position_embeddings=40960, tie_embeddings=True, qkv_bias=False, qk_norm=True,
                              eos_token_ids=(151645, 151643)),
}


def get_random_config(name_or_path: str) -> ModelConfig:
    """A preset of `RANDOM_CONFIGS`, or the ModelConfig of a `config.json` (or a directory holding one)."""
    if name_or_path in RANDOM_CONFIGS:
        return RANDOM_CONFIGS[name_or_path]
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return ModelConfig.from_dir(p)
    if p.is_file():
        return ModelConfig.from_hf(json.loads(p.read_text()))
    from entropix_s1.errors import ConfigError

    raise ConfigError(f"--random-config {name_or_path!r}: not a preset ({', '.join(RANDOM_CONFIGS)}) "
                      "nor a config.json path")


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    d["eos_token_ids"] = list(cfg.eos_token_ids)
    return d


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    d = dict(d)
    if d.get("rope_scaling") is not None:
        d["rope_scaling"] = RopeScaling(**d["rope_scaling"])
    d["eos_token_ids"] = tuple(d.get("eos_token_ids") or ())
    return ModelConfig(**d)


def random_params(cfg: ModelConfig, dtype: Any = "float32", seed: int = 0, std: float = 0.02) -> Params:
    """Random weights of any ModelConfig in our layout, generated on the default device in `dtype`.

    Matrices ~ N(0, std^2) (the usual Llama init), norm weights 1, biases ~ N(0, std^2). One jitted
    program makes every leaf directly in the target dtype (one compile; a big config such as
    llama-8b in bfloat16 needs no float32 copy and never touches the host).
    """
    dt = jnp.dtype(_jnp_dtype(dtype))
    if jax.default_backend() != "cpu":
        return _random_params_jit(cfg, dt.name, float(std), jax.random.key(seed))
    # On CPU numpy's generator is far faster than compiling and running threefry for every leaf.
    rng = np.random.default_rng(seed)
    np_dt = ml_dtypes.bfloat16 if dt == jnp.bfloat16 else np.dtype(dt)
    return _build_params(cfg, lambda *shape: jnp.asarray((rng.standard_normal(shape, np.float32) * std).astype(np_dt)),
                         lambda *shape: jnp.ones(shape, dt))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _random_params_jit(cfg: ModelConfig, dtype: str, std: float, key: jax.Array) -> Params:
    dt = jnp.dtype(dtype)
    count = [0]

    def normal(*shape: int) -> jax.Array:
        count[0] += 1
        return (jax.random.normal(jax.random.fold_in(key, count[0]), shape, dt) * jnp.asarray(std, dt)).astype(dt)

    return _build_params(cfg, normal, lambda *shape: jnp.ones(shape, dt))


def _build_params(cfg: ModelConfig, normal: Callable[..., jax.Array], ones: Callable[..., jax.Array]) -> Params:
    D_, K, G, hd, F, V = cfg.dim, cfg.n_kv_heads, cfg.q_per_kv, cfg.head_dim, cfg.ffn_dim, cfg.vocab_size
    layers = tuple(
        LayerParams(
            attn_norm_D=ones(D_),
            wqkv_DKCH=normal(D_, K, G + 2, hd),
            bqkv_KCH=normal(K, G + 2, hd) if cfg.qkv_bias else None,
            q_norm_H=ones(hd) if cfg.qk_norm else None,
            k_norm_H=ones(hd) if cfg.qk_norm else None,
            wo_KGHD=normal(K, G, hd, D_),
            mlp_norm_D=ones(D_),
            w_gate_up_D2F=normal(D_, 2, F),
            w_down_FD=normal(F, D_),
        )
        for _ in range(cfg.n_layers)
    )
    return Params(embed_VD=normal(V, D_), layers=layers, final_norm_D=ones(D_),
                  lm_head_VD=None if cfg.tie_embeddings else normal(V, D_))


def hf_config_dict(cfg: ModelConfig) -> dict[str, Any]:
    """transformers config kwargs equivalent to `cfg` (round-trips through `ModelConfig.from_hf`)."""
    d: dict[str, Any] = dict(
        model_type=cfg.arch, vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=cfg.bos_token_id, eos_token_id=list(cfg.eos_token_ids) or None,
    )
    if cfg.arch == "llama":
        d["attention_bias"] = cfg.qkv_bias
    if cfg.rope_scaling is not None:
        d["rope_scaling"] = dict(rope_type="llama3", **dataclasses.asdict(cfg.rope_scaling))
    return d


def save_random_hf(cfg: ModelConfig, out: Path, seed: int = 0) -> Path:
    """A random transformers model of `cfg`, saved with `save_pretrained` (both sides load it)."""
    import torch
    import transformers as tf

    kw = hf_config_dict(cfg)
    model_type = kw.pop("model_type")
    torch.manual_seed(seed)
    hf_cfg = tf.AutoConfig.for_model(model_type, **kw)
    model = tf.AutoModelForCausalLM.from_config(hf_cfg)
    model.save_pretrained(out, safe_serialization=True)
    return Path(out)


class IdTokenizer:
    """Stand-in tokenizer for checkpoints without one (random weights): prompts are token ids
    already; the few strings the loop needs (budget delimiter, wait text, entropix pause text)
    become one id per character, so budget forcing runs the same state machine."""

    def __init__(self, vocab_size: int, eos_ids: Sequence[int] = ()):
        self.vocab = int(vocab_size)
        self.eos_ids = tuple(eos_ids)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        lo = min(3, self.vocab - 1)
        return [lo + ord(c) % max(1, self.vocab - lo) for c in text]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return " ".join(str(int(i)) for i in ids)

    def id_to_token(self, i: int) -> str:
        return str(int(i))

    def render(self, prompt: Any, **kw: Any) -> str:
        return str(prompt)


def _jnp_dtype(dtype: Any) -> Any:
    return {"float32": jnp.float32, "f32": jnp.float32, "bfloat16": jnp.bfloat16, "bf16": jnp.bfloat16}.get(dtype, dtype)


def load_model(source: dict[str, Any], dtype: str) -> Model:
    """Our model from a source spec: {"kind": "random", "config": {...}, "seed": s} or
    {"kind": "dir", "path": name-or-dir} (a tokenizer is used when the directory has one)."""
    from entropix_s1.io.catalog import resolve
    from entropix_s1.io.checkpoint import load_checkpoint
    from entropix_s1.host.engine import load

    if source["kind"] == "random":
        cfg = config_from_dict(source["config"])
        params = random_params(cfg, dtype, source.get("seed", 0))
        return Model(Path(f"random-{source.get('name', 'config')}"), cfg, params,
                     IdTokenizer(cfg.vocab_size, cfg.eos_token_ids))
    path = resolve(source["path"])
    if (path / "tokenizer.json").is_file():
        return load(path, dtype=dtype, compilation_cache=False)
    cfg, params = load_checkpoint(path, dtype=_jnp_dtype(dtype))
    return Model(path, cfg, params, IdTokenizer(cfg.vocab_size, cfg.eos_token_ids))


# ---------------------------------------------------------------------------------------------
# Prompts

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
            qs = []
            with open(data_file, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        row = json.loads(line)
                        qs.append(row.get("question") or row.get("problem") or row.get("input") or "")
            _corpus_cache[key] = tok.encode("\n\n".join(q for q in qs if q))
        ids = _corpus_cache[key]
        if len(ids) >= length:
            n_windows = len(ids) // length
            return [ids[(i % n_windows) * length:(i % n_windows + 1) * length] for i in range(batch)]
    rng = np.random.default_rng(seed + 7919 * length + batch)
    lo = min(3, model.config.vocab_size - 1)  # skip the usual special ids 0..2
    return rng.integers(lo, model.config.vocab_size, size=(batch, length)).tolist()


# ---------------------------------------------------------------------------------------------
# Measurements

def measure_bandwidth(size_mb: int = 256, repeats: int = 5) -> dict[str, Any]:
    """Read bandwidth (GB/s) of a large-array sum: numpy (one thread) and jax on the default
    device. `best_gbps` is the larger on CPU, jax's on an accelerator."""
    n = size_mb * 2**20 // 4
    out: dict[str, Any] = {"size_mb": size_mb}
    a = np.ones(n, np.float32)
    a.sum()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        a.sum()
        ts.append(time.perf_counter() - t)
    out["numpy_gbps"] = a.nbytes / min(ts) / 1e9
    del a
    x = jnp.ones((n,), jnp.float32)
    f = jax.jit(jnp.sum)
    f(x).block_until_ready()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(x).block_until_ready()
        ts.append(time.perf_counter() - t)
    out["jax_gbps"] = x.nbytes / min(ts) / 1e9
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
        p = D.bucket(prompt_len)
        ws = []
        for s in range(new_tokens):
            length = p + s
            ws.append(next((w for w in windows if length + margin <= w), windows[-1]))
        r["ours_mean_window"] = float(np.mean(ws))
        r["ours_kv_bytes_per_step_mean"] = kv_slot * float(np.mean(ws))
    return r


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _peak_rss_mb() -> float:
    """`getrusage(RUSAGE_SELF).ru_maxrss` in MiB."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def _own_peak_rss_mb() -> float:
    """Peak RSS of this process's own address space: VmHWM from /proc/self/status. A child's
    ru_maxrss is useless here: Linux carries the parent's peak across fork/vfork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return _peak_rss_mb()


def _budget(think_end: str, max_thinking: int, waits: int) -> Budget:
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
        rows, smp, tables, max_new, seed, _ = model._plan(prompts, sampler=kw["sampler"], budget=kw["budget"],
                                                          max_new_tokens=new_tokens, seed=seed, ignore_eos=True, raw=True)
        self.spec, self.params, self.tables, self.toks, self.valid, self.rb, _ = model._loop_args(rows, smp, tables, max_new)
        self.key = jax.random.key(seed)
        self.n = {new_tokens: jnp.asarray(new_tokens, jnp.int32), 1: jnp.asarray(1, jnp.int32)}
        self.new_tokens = new_tokens
        self.compiled: Any = None
        self.compile_s = self.trace_lower_s = float("nan")

    def args(self, n: int) -> tuple:
        return self.spec, self.params, self.tables, self.toks, self.valid, self.rb, self.n[n], self.key

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
        counts = np.zeros(len(D.REGIME_NAMES), np.int64)
        for i, n in enumerate(n_out):
            counts += np.bincount(regime[i, :n], minlength=len(D.REGIME_NAMES))
        return {"steps": int(step), "tokens_per_row": [int(x) for x in n_out],
                "regimes": {D.REGIME_NAMES[i]: int(c) for i, c in enumerate(counts) if c},
                "windows": list(self.spec.windows), "cache_len": self.spec.cache_len}


class HFRunner:
    """transformers greedy `generate` on the same prompt ids, exactly n new tokens."""

    def __init__(self, hf_model: Any, prompts: list[list[int]], device: str):
        import torch

        self.torch, self.model, self.device = torch, hf_model, device
        self.ids = torch.tensor(prompts, dtype=torch.long, device=device)
        self.mask = torch.ones_like(self.ids)
        gc = hf_model.generation_config
        eos = gc.eos_token_id if gc.eos_token_id is not None else hf_model.config.eos_token_id
        eos0 = eos[0] if isinstance(eos, (list, tuple)) and eos else eos
        self.pad = gc.pad_token_id if gc.pad_token_id is not None else (eos0 if eos0 is not None else 0)

    def __call__(self, n: int) -> Any:
        torch = self.torch
        with torch.inference_mode():
            out = self.model.generate(input_ids=self.ids, attention_mask=self.mask, max_new_tokens=n, min_new_tokens=n,
                                      do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=self.pad)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        assert out.shape[1] == self.ids.shape[1] + n, (out.shape, n)
        return out


def _timing_stats(full: list[float], pre: list[float], new_tokens: int, batch: int) -> dict[str, Any]:
    total, prefill = _median(full), _median(pre)
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
    return {k: {"error": errors[k]} if k in errors else _timing_stats(full[k], pre[k], new_tokens, batch) for k in runs}


def time_runner(run: Callable[[int], Any], new_tokens: int, batch: int, repeats: int,
                warmup: Callable[[], Any] | None = None, time_budget: float | None = None) -> tuple[dict[str, Any], Any]:
    """One runner alone: `warmup()` (timed as first_call_s), then `time_interleaved` of it.
    Returns (stats, output of the last full run); errors propagate."""
    t = time.perf_counter()
    if warmup is not None:
        warmup()
    first = time.perf_counter() - t
    last: list[Any] = [None]
    (r,) = time_interleaved({"run": run}, new_tokens, batch, repeats, time_budget,
                            on_full=lambda _k, out: last.__setitem__(0, out)).values()
    if "error" in r:
        raise RuntimeError(r["error"])
    return {"first_call_s": first, **r}, last[0]


def _agreement(ours_tokens: np.ndarray, hf_tokens: np.ndarray) -> dict[str, float]:
    """Greedy parity: fraction of equal tokens and mean common-prefix fraction per row."""
    eq = ours_tokens == hf_tokens
    prefix = [int(np.argmin(r)) if not r.all() else len(r) for r in eq]
    return {"token_match": float(eq.mean()), "prefix_match": float(np.mean(prefix) / eq.shape[1])}


# ---------------------------------------------------------------------------------------------
# Second process: compile time with the persistent cache warm

def _use_cache_dir(path: str | None) -> None:
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
    _use_cache_dir(spec["cache_dir"])
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
    out["peak_rss_mb"] = _own_peak_rss_mb()
    Path(spec["out"]).write_text(json.dumps(out))
    return 0


def _second_process(source: dict[str, Any], dtype: str, cache_dir: str, prompts, new_tokens: int, modes, budget: Budget,
                    seed: int, workdir: Path, timeout: float = 3600) -> dict[str, Any]:
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
        proc = subprocess.run([sys.executable, "-m", "entropix_s1.bench", "--child", str(spec_path)], env=env,
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


# ---------------------------------------------------------------------------------------------
# The benchmark

def _hf_load(path: Path, dtype: str, device: str) -> Any:
    import torch
    import transformers as tf

    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    m = tf.AutoModelForCausalLM.from_pretrained(str(path), dtype=tdt)
    return m.to(device).eval()


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
        return None
    return a / b


def run_bench(
    model: str | os.PathLike | None = DEFAULT_MODEL,
    *,
    random_config: str | None = None,
    dtypes: Sequence[str] = ("float32", "bfloat16"),
    batch_sizes: Sequence[int] = (1, 8),
    prompt_lens: Sequence[int] = (64, 512),
    new_tokens: int = 128,
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
    log: Callable[[str], None] | None = functools.partial(print, flush=True),
) -> dict[str, Any]:
    """Run the side-by-side benchmark; write `<out>/<name>.json` and `.md`; return the JSON dict.

    model: catalog name or HF checkpoint dir (ignored when `random_config` is given).
    random_config: preset name (`RANDOM_CONFIGS`) or config.json path: random weights, token-id prompts.
    out: output directory (default `default_out_dir()`); "" disables writing. The files are
        rewritten after every config, so a long run that dies keeps what it measured.
    cpus: pin this process (every thread, and the child process) to these CPU ids; torch then
        uses len(cpus) threads. XLA sizes its thread pool from the affinity when its backend starts,
        so pin before any JAX computation (the CLI does) for both sides to get the same cores.
    torch_threads: torch intra-op threads (default: torch's own choice, or len(cpus)).
    time_budget: seconds of timed runs per mode and config; fewer than `repeats` pairs run when
        the next would not fit (at least one). The runs done are in `total_runs_s`.
    """
    say = log or (lambda s: None)
    modes = list(modes)
    bad = [m for m in modes if m not in MODES]
    if bad:
        from entropix_s1.errors import ConfigError

        raise ConfigError(f"unknown bench modes {bad}; choose from {', '.join(MODES)}")
    if new_tokens < 2:
        from entropix_s1.errors import ConfigError

        raise ConfigError("new_tokens must be >= 2 (decode time is total minus a 1-token run)")
    out_dir = default_out_dir() if out is None else (Path(out) if str(out) else None)
    budget = _budget(think_end, budget_max_thinking, budget_waits)
    tmp = Path(tempfile.mkdtemp(prefix="entropix-bench-"))
    own_cache = cache_dir is None
    cache = str(tmp / "jax_cache") if own_cache else str(Path(cache_dir).expanduser())
    Path(cache).mkdir(parents=True, exist_ok=True)
    old_cache = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs,
                 jax.config.jax_persistent_cache_min_entry_size_bytes)
    _use_cache_dir(cache)
    want_hf = not skip_hf
    old_torch_threads = None
    if cpus:
        pin_cpus(cpus)

    hf_device_ = hf_device
    if want_hf and hf_device == "auto":
        import torch

        hf_device_ = "cuda" if (torch.cuda.is_available() and jax.default_backend() == "gpu") else "cpu"

    # Where the weights come from (the child process rebuilds the same model from this).
    if random_config is not None:
        cfg = get_random_config(random_config)
        rc_name = Path(random_config).stem if random_config not in RANDOM_CONFIGS else random_config
        label = f"random-{rc_name}"
        if want_hf:
            t = time.perf_counter()
            hf_dir = save_random_hf(cfg, tmp / "hf_random", seed=seed)
            say(f"[bench] random {rc_name} built in transformers and saved ({time.perf_counter() - t:.1f} s)")
            source: dict[str, Any] = {"kind": "dir", "path": str(hf_dir)}
        else:
            source = {"kind": "random", "config": config_to_dict(cfg), "seed": seed, "name": rc_name}
    else:
        if model is None:
            model = DEFAULT_MODEL
        source = {"kind": "dir", "path": str(model)}
        label = Path(str(model)).name
    name = name or label

    meta: dict[str, Any] = {
        "name": name, "model": label, "source": source.get("path", "random"), "random_config": random_config,
        "dtypes": list(dtypes), "batch_sizes": list(batch_sizes), "prompt_lens": list(prompt_lens),
        "new_tokens": new_tokens, "repeats": repeats, "time_budget_s": time_budget, "modes": modes, "skip_hf": skip_hf,
        "budget": {"think_end": [think_end], "max_thinking_tokens": budget_max_thinking, "num_waits": budget_waits},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "loadavg_start": list(os.getloadavg()),
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "jax": jax.__version__, "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()], "hf_device": hf_device_ if want_hf else None,
        "method": {
            "decode_tokens_per_s": "batch*(N-1)/(median total_s - median prefill_s); prefill_s is the same call with 1 new token",
            "ours_timed": "the jitted generate_arrays program (block_until_ready); host tokenise/detokenise excluded",
            "hf_timed": "model.generate(greedy, min_new_tokens=max_new_tokens=N)",
            "order": "all modes compiled first, then repeats round-robin over modes and HF (full run, then 1-token run)",
            "compile_s": "generate_arrays.lower(...).compile() wall time (trace + lower + XLA), fresh persistent cache",
            "hf_first_call_s": "HF warm-up: a 2-token generate before the timed runs",
            "second_process_compile_s": "child process, same cache dir: generate_arrays.lower().compile() wall time",
            "peak_rss_mb": "getrusage ru_maxrss of the main process (monotone, both sides loaded)",
            "roofline": "batch*bandwidth/(weight bytes + KV bytes at prompt+N/2); bandwidth from a large-array sum",
        },
    }
    if want_hf:
        import torch
        import transformers

        if torch_threads or cpus:
            old_torch_threads = torch.get_num_threads()
            torch.set_num_threads(torch_threads or len(cpus))
        meta.update(transformers=transformers.__version__, torch=torch.__version__, torch_threads=torch.get_num_threads())
    meta["cpu_affinity"] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    say(f"[bench] {name}: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; cache {cache}")
    bw = measure_bandwidth(bandwidth_mb)
    meta["bandwidth"] = bw
    say(f"[bench] memory bandwidth: numpy {bw['numpy_gbps']:.1f} GB/s, jax {bw['jax_gbps']:.1f} GB/s")

    results = []
    try:
        models: dict[str, tuple[Model, Any, float, float | None]] = {}
        for dtype in dtypes:  # every dtype stays loaded: the grid runs batch -> prompt -> dtype
            t = time.perf_counter()
            ours_model = load_model(source, dtype)
            ours_load = time.perf_counter() - t
            hf_model, hf_load = None, None
            if want_hf:
                t = time.perf_counter()
                hf_model = _hf_load(ours_model.path, dtype, hf_device_)
                hf_load = time.perf_counter() - t
            models[dtype] = (ours_model, hf_model, ours_load, hf_load)
            say(f"[bench] {dtype}: ours loaded in {ours_load:.1f} s" + (f", HF in {hf_load:.1f} s" if want_hf else ""))
        for batch in batch_sizes:
            for plen in prompt_lens:
                for dtype in dtypes:
                    ours_model, hf_model, ours_load, hf_load = models[dtype]
                    prompts = make_prompts(ours_model, batch, plen, seed=seed, data_file=data_file)
                    rec: dict[str, Any] = {"dtype": dtype, "batch": batch, "prompt_len": plen, "new_tokens": new_tokens,
                                           "ours_load_s": ours_load, "hf_load_s": hf_load, "ours": {}}
                    tag = f"{dtype} b={batch} p={plen}"
                    runs: dict[str, Callable[[int], Any]] = {}
                    for mode in modes:  # compile every mode first; the timed runs are interleaved below
                        jax.clear_caches()  # an honest compile even if this program was built before
                        try:
                            runner = OursRunner(ours_model, prompts, mode, new_tokens, budget, seed)
                            runner.compile()
                        except Exception as e:  # noqa: BLE001 - a long run records the failure and goes on
                            rec["ours"][mode] = {"error": f"{type(e).__name__}: {e}"[:2000]}
                            say(f"[bench] {tag} ours {mode} FAILED to compile: {rec['ours'][mode]['error'][:300]}")
                            continue
                        rec["ours"][mode] = {"first_call_s": runner.compile_s, "compile_s": runner.compile_s,
                                             "trace_lower_s": runner.trace_lower_s}
                        runs[mode] = runner
                        say(f"[bench] {tag} ours {mode:16s} compiled in {runner.compile_s:6.1f} s "
                            f"(trace+lower {runner.trace_lower_s:.1f} s)")
                    if hf_model is not None:
                        try:
                            hf_run = HFRunner(hf_model, prompts, hf_device_)
                            t = time.perf_counter()
                            hf_run(2)  # warm-up, excluded
                            rec["hf"] = {"first_call_s": time.perf_counter() - t}
                            runs["hf"] = hf_run
                        except Exception as e:  # noqa: BLE001
                            rec["hf_error"] = f"{type(e).__name__}: {e}"[:2000]
                            say(f"[bench] {tag} HF FAILED: {rec['hf_error'][:300]}")
                    outputs: dict[str, Any] = {}

                    def keep(k: str, out: Any) -> None:
                        if k == "hf":
                            outputs[k] = out[:, plen:].cpu().numpy()
                        else:
                            outputs[k] = runs[k].summary(out)
                            if k == "greedy":
                                outputs["greedy_tokens"] = np.asarray(out.out_BN)[:, :new_tokens]

                    timed = time_interleaved(runs, new_tokens, batch, repeats, time_budget, on_full=keep)
                    for k, r in timed.items():
                        dst = rec["hf"] if k == "hf" else rec["ours"][k]
                        dst.update(r)
                        if "error" in r:
                            say(f"[bench] {tag} {'HF' if k == 'hf' else 'ours ' + k} FAILED: {r['error'][:300]}")
                            continue
                        if k != "hf":
                            dst.update(outputs[k])
                        say(f"[bench] {tag} {'HF   greedy' if k == 'hf' else 'ours ' + k:21s} decode "
                            f"{_f(r['decode_tokens_per_s']):>9s} tok/s  prefill {r['prefill_s'] * 1e3:8.1f} ms  "
                            f"runs {len(r['total_runs_s'])}")
                    if "hf" in rec and "error" in rec["hf"]:
                        rec["hf_error"] = rec.pop("hf")["error"]
                    if "greedy_tokens" in outputs and "hf" in outputs:
                        rec["greedy_agreement"] = _agreement(outputs["greedy_tokens"], outputs["hf"])
                    del runs, outputs
                    spec = next((v for v in rec["ours"].values() if "windows" in v), None)
                    rec["roofline"] = roofline(ours_model.config, ours_model.params, batch, plen, new_tokens,
                                               bw["best_gbps"], spec["windows"] if spec else ())
                    if second_process:
                        rec["second_process"] = _second_process(source, dtype, cache, prompts, new_tokens, modes, budget,
                                                                seed, tmp)
                        if "error" in rec["second_process"]:
                            say(f"[bench] second process failed: {rec['second_process']['error'][:500]}")
                    rec["peak_rss_mb"] = _peak_rss_mb()
                    rec["loadavg"] = list(os.getloadavg())
                    rec["ratios"] = _ratios(rec)
                    results.append(rec)
                    if out_dir is not None:  # partial results survive a long run that dies
                        _write(out_dir, name, {"meta": {**meta, "partial": True, "finished": None,
                                                        "loadavg_end": list(os.getloadavg())}, "results": results})
        del models
    finally:
        jax.config.update("jax_compilation_cache_dir", old_cache[0])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", old_cache[1])
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", old_cache[2])
        from jax.experimental.compilation_cache import compilation_cache as cc

        cc.reset_cache()
        shutil.rmtree(tmp, ignore_errors=True)
        if old_torch_threads is not None:
            import torch

            torch.set_num_threads(old_torch_threads)

    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    meta["loadavg_end"] = list(os.getloadavg())
    doc = {"meta": meta, "results": results}
    if out_dir is not None:
        doc["paths"] = _write(out_dir, name, doc)
    say(to_markdown(doc))
    return doc


def _write(out_dir: Path, name: str, doc: dict[str, Any]) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{name}.json", out_dir / f"{name}.md"
    js.write_text(json.dumps({k: doc[k] for k in ("meta", "results")}, indent=1))
    md.write_text(to_markdown(doc))
    return {"json": str(js), "markdown": str(md)}


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


def _ratios(rec: dict[str, Any]) -> dict[str, float | None]:
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


def _f(x: Any, fmt: str = "{:.1f}") -> str:
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def to_markdown(doc: dict[str, Any]) -> str:
    """Two tables: decode throughput with ratios and roofline; prefill, compile and memory."""
    meta, res = doc["meta"], doc["results"]
    bw = meta.get("bandwidth", {})
    lines = [
        f"# Throughput: {meta['name']}",
        "",
        f"{meta['started']} · jax {meta['jax']} ({meta['jax_backend']})"
        + (f" · transformers {meta['transformers']} / torch {meta['torch']} ({meta['hf_device']}, {meta['torch_threads']} threads)"
           if meta.get("transformers") else "")
        + f" · {meta['cpu_count']} CPUs (pinned to {meta.get('cpu_affinity')}), load average "
        f"{meta['loadavg_start'][0]:.2f} → {meta['loadavg_end'][0]:.2f}"
        + f" · memory bandwidth {_f(bw.get('best_gbps'))} GB/s",
        "",
        f"{meta['new_tokens']} new tokens, median of {meta['repeats']} runs"
        + (f" (fewer where one mode's timed runs would pass {meta['time_budget_s']:g} s: a slow mode may have 1)"
           if meta.get("time_budget_s") else "")
        + ". Decode tok/s = batch·(N−1) / "
        "(t(N) − t(1)). Budget = think_end "
        f"{meta['budget']['think_end'][0]!r}, max {meta['budget']['max_thinking_tokens']} thinking tokens, "
        f"{meta['budget']['num_waits']} wait. Ideal = memory-bound roofline (weights + KV at prompt+N/2 per step).",
        "",
        "## Decode throughput (tokens/s)",
        "",
        "| dtype | batch | prompt | HF greedy | greedy | entropix | entropix+budget | budget+greedy "
        "| ours/HF | entropix/greedy | budget/greedy | ideal | ours % ideal | HF % ideal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res:
        o, hf, q = r["ours"], r.get("hf"), r["ratios"]

        def tps(m: str) -> str:
            return ("error" if "error" in o[m] else _f(o[m]["decode_tokens_per_s"])) if m in o else "–"

        lines.append(
            f"| {r['dtype']} | {r['batch']} | {r['prompt_len']} | {_f(hf['decode_tokens_per_s']) if hf else '–'} "
            f"| {tps('greedy')} | {tps('entropix')} | {tps('entropix+budget')} | {tps('budget+greedy')} "
            f"| {_f(q['ours_vs_hf'], '{:.2f}×')} | {_f(q['entropix_vs_greedy'], '{:.2f}')} | {_f(q['budget_vs_greedy'], '{:.2f}')} "
            f"| {_f(r['roofline']['ideal_tokens_per_s'])} | {_f(_pct(q['ours_roofline_fraction']))} "
            f"| {_f(_pct(q['hf_roofline_fraction']))} |"
        )
    lines += [
        "",
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
        first = "/".join(_f(o[m]["compile_s"]) if m in o else "–" for m in MODES)
        second = "/".join(_f(sp["modes"][m]["compile_s"]) if m in sp.get("modes", {}) else "–" for m in MODES) \
            if "modes" in sp else ("error" if "error" in sp else "–")
        ag = r.get("greedy_agreement")
        lines.append(
            f"| {r['dtype']} | {r['batch']} | {r['prompt_len']} | {_f(o['greedy']['prefill_s'] * 1e3) if 'greedy' in o else '–'} "
            f"| {_f(hf['prefill_s'] * 1e3) if hf else '–'} | {first} | {second} | {_f(hf['first_call_s'], '{:.2f}') if hf else '–'} "
            f"| {_f(r['peak_rss_mb'], '{:.0f}')} | {_f(sp.get('peak_rss_mb'), '{:.0f}')} "
            f"| {_f(ag['token_match'] * 100, '{:.0f}%') if ag else '–'} |"
        )
    lines.append("")
    return "\n".join(lines)


def _pct(x: float | None) -> float | None:
    return None if x is None else 100 * x


# ---------------------------------------------------------------------------------------------
# Command line

def _ints(s: str) -> list[int]:
    try:
        v = [int(x) for x in s.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from e
    if not v or any(x < 1 for x in v):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return v


def _strs(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(s: str) -> list[str]:
        v = [x.strip() for x in s.split(",") if x.strip()]
        bad = [x for x in v if x not in choices]
        if not v or bad:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (comma-separated), got {s!r}")
        return v

    return parse


def _cpu_ids(s: str) -> list[int]:
    try:
        v = [int(x) for x in s.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated CPU ids, got {s!r}") from e
    if not v or any(x < 0 for x in v):
        raise argparse.ArgumentTypeError(f"expected CPU ids >= 0, got {s!r}")
    return v


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `entropix-s1 bench` / `benchmarks/throughput.py`."""
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"catalog name or HF checkpoint dir (default {DEFAULT_MODEL})")
    parser.add_argument("--random-config", default=None, metavar="NAME|CONFIG.json",
                        help=f"random weights instead of --model: {', '.join(RANDOM_CONFIGS)} or a config.json path")
    parser.add_argument("--dtypes", type=_strs(("float32", "bfloat16")), default=["float32", "bfloat16"],
                        help="weight dtypes, comma-separated (default float32,bfloat16)")
    parser.add_argument("--batch-sizes", type=_ints, default=[1, 8], help="default 1,8")
    parser.add_argument("--prompt-lens", type=_ints, default=[64, 512], help="prompt lengths in tokens (default 64,512)")
    parser.add_argument("--new-tokens", type=int, default=128, help="new tokens per row (default 128)")
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
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice, or the number of --cpus)")
    return parser


def bench_main(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    run_bench(
        args.model, random_config=args.random_config, dtypes=args.dtypes, batch_sizes=args.batch_sizes,
        prompt_lens=args.prompt_lens, new_tokens=args.new_tokens, repeats=args.repeats, modes=args.modes,
        skip_hf=args.skip_hf, second_process=not args.no_second_process, out=args.out, name=args.name, seed=args.seed,
        data_file=args.data, cache_dir=args.cache_dir, think_end=args.think_end,
        budget_max_thinking=args.budget_max_thinking, budget_waits=args.budget_waits, hf_device=args.hf_device,
        bandwidth_mb=args.bandwidth_mb, cpus=args.cpus, torch_threads=args.torch_threads,
        time_budget=args.time_budget,
    )
    return 0


if __name__ == "__main__":  # the second-process child: python -m entropix_s1.bench --child SPEC.json
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child_main(sys.argv[2]))
    ap = argparse.ArgumentParser(prog="python -m entropix_s1.bench", description="throughput vs transformers")
    add_bench_arguments(ap)
    sys.exit(bench_main(ap.parse_args()))
