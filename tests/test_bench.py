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
import bench_report  # noqa: E402
import harness as bench  # noqa: E402
import llamacpp_peer  # noqa: E402
TINY = dict(dtypes=("float32",), batch_sizes=(2,), prompt_lens=(16,), new_tokens=64, long_new_tokens=0, repeats=3,
            bandwidth_mb=32, log=None)
LLAMA_CPP_INSTALLED = llamacpp_peer.import_llama_cpp() is not None


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


def _finite_pos(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def _check_files(doc: dict, out: Path, name: str) -> tuple[dict, str]:
    js, md = out / f"{name}.json", out / f"{name}.md"
    assert js.is_file() and md.is_file()
    on_disk = json.loads(js.read_text())
    assert set(on_disk) == {"meta", "results", "llamacpp", "scaling"}
    assert on_disk["results"] == json.loads(json.dumps(doc["results"]))
    for k in ("bandwidth", "loadavg_start", "loadavg_end", "method", "jax", "new_tokens", "repeats", "modes"):
        assert k in on_disk["meta"], k
    assert on_disk["meta"]["bandwidth"]["best_gbps"] > 0
    text = md.read_text()
    assert "## Decode throughput (tokens/s)" in text and "## Prefill, compile, memory" in text
    assert "## Batch and context scaling" in text
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
    row = next(line for line in text.splitlines() if line.startswith("| float32 | 2 | 16 | 64 |"))
    assert row.count("|") == 16


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
    row = next(line for line in text.splitlines() if line.startswith("| float32 | 2 | 16 | 64 |"))
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
    for flag in ("--random-config", "--skip-hf", "--repeats", "--dtypes", "--batch-sizes", "--prompt-lens", "--out",
                 "--long-new-tokens", "--long-prompt-len", "--hbm-gbs", "--peer-time-budget", "--no-llamacpp"):
        assert flag in proc.stdout


# ---------------------------------------------------------------------------------------------
# Batch 32 / long-context columns, the HF time-budget skip, llama.cpp, gpu.sh

def test_bench_scaling_columns(tmp_path, cache_dir):
    """Batch 1 and 2, N=16 and the long N=48 at the same prompt: the scaling rows' ratios are the
    quotients of the decode tokens/s of the cells they name; HBM fraction; llama.cpp status."""
    doc = bench.run_bench(random_config="tiny", skip_hf=True, modes=("greedy",), second_process=False, out=tmp_path,
                          name="scaling", cache_dir=cache_dir, dtypes=("float32",), batch_sizes=(1, 2),
                          prompt_lens=(16,), new_tokens=16, long_new_tokens=48, long_prompt_len=16, repeats=2,
                          bandwidth_mb=32, hbm_gbs=1000.0, log=None)
    on_disk, text = _check_files(doc, tmp_path, "scaling")
    meta, res = on_disk["meta"], on_disk["results"]
    assert (meta["long_new_tokens"], meta["long_prompt_len"], meta["long_modes"], meta["hbm_gbs"]) == (48, 16, ["greedy"], 1000.0)
    # grid order: batch -> (main prompts, long) -> dtype
    assert [(r["batch"], r["prompt_len"], r["new_tokens"], r["cell"]) for r in res] == \
        [(1, 16, 16, "main"), (1, 16, 48, "long"), (2, 16, 16, "main"), (2, 16, 48, "long")]
    tps = {(r["batch"], r["new_tokens"]): r["ours"]["greedy"]["decode_tokens_per_s"] for r in res}
    assert all(_finite_pos(v) for v in tps.values()), tps
    for r in res:
        assert r["ours"]["greedy"]["tokens_per_row"] == [r["new_tokens"]] * r["batch"]
        rf = r["roofline"]
        assert rf["hbm_gbps"] == 1000.0
        assert rf["hbm_ideal_tokens_per_s"] == pytest.approx(rf["ideal_tokens_per_s"] * 1000.0 / rf["bandwidth_gbps"])
        assert r["ratios"]["ours_hbm_fraction"] == pytest.approx(tps[r["batch"], r["new_tokens"]] / rf["hbm_ideal_tokens_per_s"])
    rows = on_disk["scaling"]
    assert [(x["dtype"], x["batch"], x["prompt_len"], x["new_tokens"], x["long_new_tokens"]) for x in rows] == \
        [("float32", 1, 16, 16, 48), ("float32", 2, 16, 16, 48)]
    one, two = rows
    for x in rows:
        b = x["batch"]
        assert x["ours_tps"] == tps[b, 16] and x["ours_long_tps"] == tps[b, 48]
        assert x["ours_long_vs_short"] == pytest.approx(tps[b, 48] / tps[b, 16])
        assert x["hf_tps"] is None and x["hf_long_vs_short"] is None and x["hf_status"] == "–"
        assert x["llamacpp_tps"] is None and x["ours_vs_llamacpp"] is None  # random weights: no GGUF
    assert one["prev_batch"] is None and one["ours_vs_prev_batch"] is None
    assert two["prev_batch"] == 1
    assert two["ours_vs_prev_batch"] == pytest.approx(tps[2, 16] / tps[1, 16])
    assert two["ours_long_vs_prev_batch"] == pytest.approx(tps[2, 48] / tps[1, 48])
    assert on_disk["llamacpp"]["status"] == ("not applicable" if LLAMA_CPP_INSTALLED else "not installed")
    if not LLAMA_CPP_INSTALLED:
        assert "llama.cpp: not installed" in text
    # the markdown shows the same numbers
    hdr = next(line for line in text.splitlines() if line.startswith("| dtype | batch | greedy N=16 | greedy N=48 | 48/16 |"))
    assert hdr.count("|") == 15
    row2 = next(line for line in text.splitlines() if line.startswith("| float32 | 2 | ") and line.count("|") == 15)
    cells = [c.strip() for c in row2.strip("|").split("|")]
    assert cells[2] == bench_report.fmt(tps[2, 16]) and cells[3] == bench_report.fmt(tps[2, 48])
    assert cells[4] == f"{tps[2, 48] / tps[2, 16]:.2f}"
    assert cells[8] == f"{tps[2, 16] / tps[1, 16]:.2f} (2/1)"
    decode_rows = [line for line in text.splitlines() if line.startswith("| float32 | ") and line.count("|") == 17]
    assert len(decode_rows) == 4  # one per cell, with the "% HBM" column


def _run_for_hf(budget):
    return bench._Run(source={}, modes=["greedy"], new_tokens=8, repeats=1, time_budget=budget,
                      peer_time_budget=budget, budget=None, seed=0, data_file=None, hf_device="cpu",
                      second_process=False, cache="", tmp=Path("."), bandwidth_gbps=1.0, hbm_gbps=None,
                      say=lambda s: None)


def test_hf_skipped_when_one_pair_passes_the_peer_budget(monkeypatch):
    """The probe (t(1), t(9)) estimates one pair; over the budget, HF is left out with the marker."""
    import time

    class FakeHF:  # 1 ms prefill + 2 ms per new token
        def __init__(self, model, prompts, device):
            pass

        def __call__(self, n):
            time.sleep(0.001 + 0.002 * n)

    monkeypatch.setattr(bench, "HFRunner", FakeHF)
    prompts = [[1] * 16] * 2
    run = _run_for_hf(0.2)
    runs, rec = {}, {"dtype": "float32"}
    bench._add_hf(run, object(), prompts, rec, runs, "t", (), new_tokens=8)  # ~2*0.003 + 7*0.002 s: fits
    assert "hf" in runs and "hf_skipped" not in rec and rec["hf"]["probe"]["estimate_pair_s"] < 0.2
    runs, rec = {}, {"dtype": "float32"}
    bench._add_hf(run, object(), prompts, rec, runs, "t", (), new_tokens=640)  # ~1.3 s: skipped
    assert "hf" not in runs and "hf" not in rec
    assert rec["hf_skipped"]["reason"] == bench.SKIPPED == "skipped (time budget)"
    assert rec["hf_skipped"]["estimate_pair_s"] > 0.2 and rec["hf_skipped"]["basis"].startswith("probe")
    # an earlier cell's prefill, scaled by batch*prompt, rules a big cell out without running anything
    prior = [{"dtype": "float32", "batch": 1, "prompt_len": 16, "hf": {"prefill_s": 0.05}}]
    assert bench.hf_prefill_estimate(prior, "float32", 8, 64) == pytest.approx(0.05 * 32)
    assert bench.hf_prefill_estimate(prior, "bfloat16", 8, 64) is None

    class Boom(FakeHF):
        def __call__(self, n):
            raise AssertionError("must not run")

    monkeypatch.setattr(bench, "HFRunner", Boom)
    runs, rec = {}, {"dtype": "float32"}
    bench._add_hf(run, object(), [[1] * 64] * 8, rec, runs, "t", prior, new_tokens=8)
    assert rec["hf_skipped"]["estimate_pair_s"] == pytest.approx(2 * 0.05 * 32) and not runs
    assert bench.pair_estimate(0.5, 1.3, 9, 129) == pytest.approx(1.0 + 128 * 0.1)
    # no budget: HF always runs
    monkeypatch.setattr(bench, "HFRunner", FakeHF)
    runs, rec = {}, {"dtype": "float32"}
    bench._add_hf(_run_for_hf(None), object(), prompts, rec, runs, "t", prior, new_tokens=640)
    assert "hf" in runs and "probe" not in rec["hf"]


def _record(dtype, batch, plen, n, cell, ours_tps, hf=None, skipped=False):
    r = {"dtype": dtype, "batch": batch, "prompt_len": plen, "new_tokens": n, "cell": cell,
         "ours": {"greedy": {"decode_tokens_per_s": ours_tps, "prefill_s": 0.01, "compile_s": 1.0}},
         "roofline": {"ideal_tokens_per_s": 1000.0}, "peak_rss_mb": 1.0}
    if hf is not None:
        r["hf"] = {"decode_tokens_per_s": hf, "prefill_s": 0.02, "first_call_s": 0.1}
    if skipped:
        r["hf_skipped"] = {"reason": bench_report.SKIPPED, "estimate_pair_s": 99.0}
    r["ratios"] = bench_report.ratios(r)
    return r


def test_scaling_table_markers_and_llamacpp_ratio():
    """A synthetic run: batch 1, 8, 32; HF skipped at batch 32 x 640; llama.cpp at batch 1."""
    res = []
    for b, s, l_, hs, hl in [(1, 40.0, 30.0, 20.0, 15.0), (8, 200.0, 150.0, 80.0, 60.0), (32, 500.0, 400.0, 100.0, None)]:
        res += [_record("float32", b, 64, 128, "main", s, hs), _record("float32", b, 64, 640, "long", l_, hl, hl is None)]
    peer = {"status": "ok", "version": "0.3.36", "gguf_src": "/x/SmolLM2.Q4_1.gguf", "n_threads": 2,
            "cells": [{"batch": 1, "prompt_len": 64, "new_tokens": 128, "decode_tokens_per_s": 60.0},
                      {"batch": 1, "prompt_len": 64, "new_tokens": 640, "decode_tokens_per_s": 50.0}]}
    meta = {"name": "x", "started": "now", "jax": "0", "jax_backend": "cpu", "cpu_count": 2, "loadavg_start": [0.0],
            "loadavg_end": [0.0], "new_tokens": 128, "long_new_tokens": 640, "long_prompt_len": 64, "long_modes": ["greedy"],
            "repeats": 3, "budget": {"think_end": ["e"], "max_thinking_tokens": 1, "num_waits": 1},
            "dtypes": ["float32"], "batch_sizes": [1, 8, 32], "peer_time_budget_s": 20.0}
    doc = {"meta": meta, "results": res, "llamacpp": peer}
    rows = bench_report.scaling(doc)
    assert [r["batch"] for r in rows] == [1, 8, 32]
    r1, r8, r32 = rows
    assert r1["ours_vs_llamacpp"] == pytest.approx(40 / 60) and r1["ours_long_vs_llamacpp"] == pytest.approx(30 / 50)
    assert r8["llamacpp_tps"] is None and r8["ours_vs_llamacpp"] is None  # llama.cpp is batch 1 only
    assert r32["ours_vs_prev_batch"] == pytest.approx(500 / 200) and r32["prev_batch"] == 8
    assert r32["ours_long_vs_prev_batch"] == pytest.approx(400 / 150)
    assert r32["ours_long_vs_short"] == pytest.approx(400 / 500) and r8["hf_long_vs_short"] == pytest.approx(60 / 80)
    assert r32["hf_long_tps"] is None and r32["hf_long_status"] == "skipped (time budget)" and r32["hf_long_vs_short"] is None
    text = bench_report.to_markdown(doc)
    assert "llama.cpp 0.3.36 (llama-cpp-python): F32 GGUF requantized from SmolLM2.Q4_1.gguf, 2 threads" in text
    row32 = next(line for line in text.splitlines() if line.startswith("| float32 | 32 | 500.0 |"))
    assert "| 2.50 (32/8) |" in row32 and "| skipped (time budget) |" in row32 and "| 0.80 |" in row32
    row1 = next(line for line in text.splitlines() if line.startswith("| float32 | 1 | 40.0 |"))
    assert row1.endswith("| 60.0 | 50.0 | 0.67× | 0.60× |")
    decode32 = next(line for line in text.splitlines() if line.startswith("| float32 | 32 | 64 | 640 |"))
    assert "| skipped (time budget) |" in decode32
    doc["llamacpp"] = {"status": "not installed"}
    text = bench_report.to_markdown(doc)
    assert "llama.cpp: not installed" in text
    assert next(line for line in text.splitlines() if line.startswith("| float32 | 1 | 40.0 |")).endswith("| – | – | – | – |")


def test_llamacpp_not_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(llamacpp_peer, "import_llama_cpp", lambda: None)
    r = llamacpp_peer.run_peer("smollm2-135m-instruct", [1, 2, 3], [8], workdir=tmp_path)
    assert r == {"status": "not installed"}
    assert llamacpp_peer.status_line(r) == "llama.cpp: not installed" and llamacpp_peer.cell(r, 8) is None
    assert llamacpp_peer.status_line(None) == "llama.cpp: off"
    if not LLAMA_CPP_INSTALLED:  # the real import, as the harness does it
        monkeypatch.undo()
        assert llamacpp_peer.run_peer("smollm2-135m-instruct", [1], [8]) == {"status": "not installed"}


def test_llamacpp_peer_against_the_documented_api(tmp_path):
    """A stand-in for llama_cpp with the documented names and signatures: the F32 requantize
    params, a reset before every call (no prompt-prefix KV reuse), greedy, exactly N tokens."""
    import ctypes
    import time
    import types

    calls = {"quantize": [], "reset": 0, "generate": []}

    class Params(ctypes.Structure):
        _fields_ = [("nthread", ctypes.c_int32), ("ftype", ctypes.c_int), ("allow_requantize", ctypes.c_bool)]

    def quantize(src, dst, params_ref):
        p = ctypes.cast(params_ref, ctypes.POINTER(Params)).contents
        calls["quantize"].append((src, dst, p.ftype, p.allow_requantize))
        Path(dst.decode()).write_bytes(b"GGUF")
        return 0

    class Llama:
        def __init__(self, model_path, n_threads, n_threads_batch, n_ctx, n_batch, n_gpu_layers, verbose):
            assert Path(model_path).name.endswith(".F32.gguf") and n_threads == n_threads_batch == 2 and n_ctx >= 3 + 40

        def reset(self):
            calls["reset"] += 1

        def generate(self, tokens, temp, top_k, **kw):
            calls["generate"].append((list(tokens), temp, top_k))
            time.sleep(0.002)  # prompt
            i = 0
            while True:  # like llama_cpp: no EOS check in generate
                time.sleep(0.001)
                yield 2 if i % 5 == 0 else 7  # 2 is "EOS"
                i += 1

    fake = types.SimpleNamespace(__version__="0.0-fake", LLAMA_FTYPE_ALL_F32=0, Llama=Llama,
                                 llama_model_quantize_default_params=lambda: Params(nthread=0, ftype=15, allow_requantize=False),
                                 llama_model_quantize=quantize)
    src = tmp_path / "m.Q4_1.gguf"
    src.write_bytes(b"GGUF")
    r = llamacpp_peer.run_peer("x", [5, 6, 7], [8, 40], repeats=2, n_threads=2, workdir=tmp_path, gguf_src=src,
                               llama_cpp=fake)
    assert r["status"] == "ok", r
    assert calls["quantize"] == [(str(src).encode(), str(tmp_path / "m.Q4_1.F32.gguf").encode(), 0, True)]
    assert not (tmp_path / "m.Q4_1.F32.gguf").exists()  # the F32 copy is removed afterwards
    assert calls["reset"] == len(calls["generate"]) == 1 + 2 * 2 * 2  # warm-up + (full, 1-token) x repeats x N
    assert all(g == ([5, 6, 7], 0.0, 1) for g in calls["generate"])
    assert [(c["batch"], c["prompt_len"], c["new_tokens"]) for c in r["cells"]] == [(1, 3, 8), (1, 3, 40)]
    for c in r["cells"]:
        assert len(c["tokens"]) == c["new_tokens"] and len(c["total_runs_s"]) == 2 and _finite_pos(c["decode_tokens_per_s"])
    assert llamacpp_peer.cell(r, 40)["decode_tokens_per_s"] == r["cells"][1]["decode_tokens_per_s"]
    assert "0.0-fake" in llamacpp_peer.status_line(r) and "m.Q4_1.gguf" in llamacpp_peer.status_line(r)
    # no GGUF: not applicable; a failing quantize: an error record, not an exception
    assert llamacpp_peer.run_peer(tmp_path / "nowhere", [1], [8], llama_cpp=fake)["status"] == "not applicable"
    fake.llama_model_quantize = lambda s, d, p: 1
    bad = llamacpp_peer.run_peer("x", [1], [8], workdir=tmp_path, gguf_src=src, llama_cpp=fake)
    assert bad["status"] == "error" and "returned 1" in bad["error"]


def test_gpu_script_is_valid_bash():
    script = REPO / "benchmarks" / "gpu.sh"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    for needle in ("JAX_PLATFORMS=cuda", "--random-config", "llama-1b", "llama-8b", "--dtypes bfloat16", "1,8,32",
                   "--hbm-gbs", "HBM_GBS:-4800", "OUT:-", "tests/test_model.py", "timeout"):
        assert needle in text, needle
    proc = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "8 minutes" in proc.stdout
