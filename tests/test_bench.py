"""The throughput benchmark end to end at a tiny size: random weights, our loop alone and side by
side with transformers (a random LlamaForCausalLM saved with `save_pretrained`, loaded by both),
the JSON and markdown it writes, and the helpers (random params of every arch, config round trip).

Compiling the decode loop dominates the cost, so the two end-to-end runs share one persistent
compilation cache: the HF run reuses the greedy program the first run compiled."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropix_s1 import testing
from entropix_s1.core.config import ModelConfig
from entropix_s1.core.model import KVCache, forward

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the harness is benchmark code, not part of the package
import bench_hf  # noqa: E402
import bench_measure  # noqa: E402
import bench_ours  # noqa: E402
import harness as bench  # noqa: E402
TINY = dict(dtypes=("float32",), batch_sizes=(2,), prompt_lens=(16,), new_tokens=64, repeats=3, bandwidth_mb=32, log=None)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


def _finite_pos(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def _check_files(doc: dict, out: Path, name: str) -> tuple[dict, str]:
    js, md = out / f"{name}.json", out / f"{name}.md"
    assert js.is_file() and md.is_file()
    on_disk = json.loads(js.read_text())
    assert set(on_disk) == {"meta", "results"}
    assert on_disk["results"] == json.loads(json.dumps(doc["results"]))
    for k in ("bandwidth", "loadavg_start", "loadavg_end", "method", "jax", "new_tokens", "repeats", "modes"):
        assert k in on_disk["meta"], k
    assert on_disk["meta"]["bandwidth"]["best_gbps"] > 0
    text = md.read_text()
    assert "## Decode throughput (tokens/s)" in text and "## Prefill, compile, memory" in text
    return on_disk, text


def test_bench_ours_only(tmp_path, cache_dir):
    doc = bench.run_bench(random_config="tiny", skip_hf=True, modes=("greedy", "entropix", "budget+greedy"),
                          out=tmp_path, cache_dir=cache_dir, **TINY)
    on_disk, text = _check_files(doc, tmp_path, "random-tiny")
    assert on_disk["meta"]["random_config"] == "tiny" and on_disk["meta"]["skip_hf"]
    (r,) = on_disk["results"]
    assert (r["dtype"], r["batch"], r["prompt_len"], r["new_tokens"]) == ("float32", 2, 16, 64)
    assert set(r["ours"]) == {"greedy", "entropix", "budget+greedy"} and "hf" not in r
    for mode, m in r["ours"].items():
        for k in ("decode_tokens_per_s", "e2e_tokens_per_s", "prefill_s", "total_s", "first_call_s"):
            assert _finite_pos(m[k]), (mode, k, m[k])
        assert m["compile_s"] >= m["trace_lower_s"] > 0 and m["tokens_per_row"] == [64, 64] and m["steps"] >= 64
        assert len(m["total_runs_s"]) == len(m["prefill_runs_s"]) == 3
    assert sum(r["ours"]["greedy"]["regimes"].values()) == 128 and set(r["ours"]["greedy"]["regimes"]) == {"greedy"}
    
    q = r["ratios"]
    assert _finite_pos(q["entropix_vs_greedy"]) and _finite_pos(q["budget_vs_greedy"])
    assert _finite_pos(q["ours_roofline_fraction"]) and q["ours_vs_hf"] is None and q["entropix_budget_vs_greedy"] is None
    rf = r["roofline"]
    assert rf["weight_bytes"] > 0 and rf["ideal_tokens_per_s"] > 0 and rf["ours_mean_window"] >= 16
    sp = r["second_process"]
    assert "error" not in sp, sp
    assert set(sp["modes"]) == set(r["ours"]) and sp["peak_rss_mb"] > 0
    assert all(v["compile_s"] >= v["trace_lower_s"] > 0 and v["prefill_run_s"] > 0 for v in sp["modes"].values())
    assert any(v["cache_hit"] for v in sp["modes"].values())  # the child reads what this process compiled
    assert r["peak_rss_mb"] > 0
    row = next(line for line in text.splitlines() if line.startswith("| float32 | 2 | 16 |"))
    assert row.count("|") == 15


def test_bench_side_by_side_with_transformers(tmp_path, cache_dir):
    import torch  # dev extra: the reference must be installed, a missing one fails the test

    threads = torch.get_num_threads()
    # one torch thread: on a shared, busy machine OpenMP's spinning threads slow HF down many fold
    doc = bench.run_bench(random_config="tiny", modes=("greedy",), second_process=False, out=tmp_path,
                          name="tiny-vs-hf", cache_dir=cache_dir, torch_threads=1, **TINY)
    assert torch.get_num_threads() == threads  # restored
    on_disk, text = _check_files(doc, tmp_path, "tiny-vs-hf")
    assert on_disk["meta"]["transformers"] and on_disk["meta"]["hf_device"] == "cpu" and on_disk["meta"]["torch_threads"] == 1
    (r,) = on_disk["results"]
    hf = r["hf"]
    for k in ("decode_tokens_per_s", "prefill_s", "total_s", "first_call_s"):
        assert _finite_pos(hf[k]), (k, hf[k])
    q = r["ratios"]
    assert _finite_pos(q["ours_vs_hf"]) and _finite_pos(q["prefill_speedup_vs_hf"]) and _finite_pos(q["hf_roofline_fraction"])
    # same random weights on both sides (saved by transformers, loaded by us), float32: same greedy tokens
    assert r["greedy_agreement"]["token_match"] >= 0.75, r["greedy_agreement"]
    assert "second_process" not in r
    row = next(line for line in text.splitlines() if line.startswith("| float32 | 2 | 16 |"))
    assert "×" in row


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_random_params_every_arch(arch):
    cfg = ModelConfig(arch=arch, vocab_size=50, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, ffn_dim=48,
                      norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=64, tie_embeddings=arch != "llama",
                      qkv_bias=arch == "qwen2", qk_norm=arch == "qwen3")
    for dtype in ("float32", "bfloat16"):
        p = testing.random_params(cfg, dtype, seed=1)
        assert p.dtype == jnp.dtype(dtype)
        assert (p.layers[0].bqkv_KCH is not None) == cfg.qkv_bias and (p.layers[0].q_norm_H is not None) == cfg.qk_norm
        assert (p.lm_head_VD is None) == cfg.tie_embeddings
        assert p.layers[0].wqkv_DKCH.shape == (32, 2, 4, 8) and p.layers[0].wo_KGHD.shape == (2, 2, 8, 32)
        logits, _, _ = forward(p, cfg, jnp.arange(6)[None], KVCache.init(cfg, 1, 8, p.dtype), window=8)
        assert logits.shape == (1, 6, 50) and bool(jnp.isfinite(logits).all())
    a, b = testing.random_params(cfg, seed=3), testing.random_params(cfg, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert bench_measure.param_bytes(testing.random_params(cfg, "bfloat16")) * 2 == bench_measure.param_bytes(a)


@pytest.mark.parametrize("name", sorted(testing.RANDOM_CONFIGS))
def test_random_configs_round_trip_through_hf_config(name):
    cfg = testing.RANDOM_CONFIGS[name]
    assert ModelConfig.from_hf(bench_hf.hf_config_dict(cfg)) == cfg
    assert bench_ours.config_from_dict(json.loads(json.dumps(bench_ours.config_to_dict(cfg)))) == cfg


def test_random_config_from_file_and_errors(tmp_path):
    from entropix_s1.errors import ConfigError

    (tmp_path / "config.json").write_text(json.dumps(bench_hf.hf_config_dict(testing.RANDOM_CONFIGS["qwen3-0.6b"])))
    assert testing.random_config(str(tmp_path / "config.json")) == testing.RANDOM_CONFIGS["qwen3-0.6b"]
    assert testing.random_config(str(tmp_path)) == testing.RANDOM_CONFIGS["qwen3-0.6b"]
    with pytest.raises(ConfigError, match="not a preset"):
        testing.random_config("llama-99b")
    with pytest.raises(ConfigError, match="unknown bench modes"):
        bench.run_bench(random_config="tiny", modes=("beam",), out="", log=None)


def test_roofline_counts_weights_and_kv():
    cfg = testing.RANDOM_CONFIGS["tiny"]
    p = testing.random_params(cfg)
    r = bench_measure.roofline(cfg, p, batch=4, prompt_len=64, new_tokens=128, bandwidth_gbps=10.0, windows=(100, 193))
    kv_slot = 2 * cfg.n_layers * 4 * cfg.n_kv_heads * cfg.head_dim * 4
    assert r["weight_bytes"] == bench_measure.param_bytes(p) - p.embed_VD.nbytes  # untied: the embedding is a gather
    assert r["bytes_per_step"] == r["weight_bytes"] + kv_slot * 128
    assert r["ideal_tokens_per_s"] == pytest.approx(4 * 10e9 / r["bytes_per_step"])
    # step s writes slot 64 + s and needs 64 + s + 1 <= window: 36 steps in the first stage
    assert r["ours_mean_window"] == pytest.approx((36 * 100 + 92 * 193) / 128)


def test_prompts_random_ids_exact_length():
    from entropix_s1.host.engine import Model

    cfg = testing.RANDOM_CONFIGS["tiny"]
    m = Model(Path("x"), cfg, None, testing.IdTokenizer(cfg.vocab_size))
    ps = bench_ours.make_prompts(m, 3, 20, seed=0)
    assert len(ps) == 3 and all(len(p) == 20 for p in ps) and all(0 <= t < cfg.vocab_size for p in ps for t in p)
    assert ps[0] != ps[1]


def test_prompts_from_gsm8k_text(shared):
    from entropix_s1.host.tokenizer import Tokenizer

    tok_dir = next((p.parent for p in sorted((shared / "tokenizers").rglob("tokenizer.json"))), None)
    assert tok_dir is not None, f"no tokenizer.json under {shared / 'tokenizers'}"
    from entropix_s1.host.engine import Model

    tok = Tokenizer.from_dir(tok_dir)
    cfg = testing.RANDOM_CONFIGS["tiny"]
    m = Model(Path("x"), cfg, None, tok)
    ps = bench_ours.make_prompts(m, 2, 64, data_file=shared / "data" / "gsm8k_test.jsonl")
    assert [len(p) for p in ps] == [64, 64] and ps[0] != ps[1]
    assert "duck" in tok.decode(ps[0]).lower() or "eggs" in tok.decode(ps[0]).lower()


def test_script_help():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for flag in ("--random-config", "--skip-hf", "--repeats", "--dtypes", "--batch-sizes", "--prompt-lens", "--out"):
        assert flag in proc.stdout
