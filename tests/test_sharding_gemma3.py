"""Gemma 3's shapes on a device mesh: one KV head for four query heads (270M, 1B). tp replicates
the KV head and splits the query heads (tp = 2, 4), tp = 8 is refused naming the sizes; and a tiny
random gemma3 checkpoint (1 KV head, sliding window 8, prompts past it) generates the same tokens,
forced reasons and metrics on meshes 1x4 and 2x2 as on one device. The multi-device run is a
subprocess with 8 simulated CPU devices (about a CPU-minute)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
MESHES = ("1x4", "2x2")  # tp 4 over one KV head (replicated); dp 2 x tp 2

SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[2])
    import entropix_s1
    from entropix_s1.core import sharding as SH
    from entropix_s1.core.entropix import EntropixConfig
    from entropix_s1.host import tokenizer as tokenizer_mod
    from scripted import WordTokenizer
    from tiny_models import save_tiny

    special = ["<pad>", "<eos>", "<think>", "</think>", "Wait", "\\nFinal Answer:"]
    vocab = special + [f"w{i}" for i in range(128 - len(special))]
    path = save_tiny("gemma3", sys.argv[1], tie=True, seed=1, vocab_size=128, hidden_size=64, num_attention_heads=4,
                     num_key_value_heads=1, intermediate_size=96, num_hidden_layers=3, initializer_range=0.15)
    tokenizer_mod.Tokenizer.from_dir = classmethod(lambda cls, p: WordTokenizer(vocab))
    prompts = [[6 + (7 * i + j) % 120 for j in range(n)] for i, n in enumerate((3, 11, 6, 14))]
    def budgets(delim):
        return [entropix_s1.Budget(think_start="<think>", think_end=(delim,), max_thinking_tokens=6 + 2 * i,
                                   num_waits=1, wait_text="Wait", answer_prefix="\\nFinal Answer:") for i in range(4)]

    # the delimiter: the token the model samples most while thinking, so waits really happen
    one = entropix_s1.load(path, compilation_cache=False)
    pilot = one.generate(prompts, budget=budgets("</think>"), max_new_tokens=20, ignore_eos=True)
    counts = {}
    for r in pilot:
        for t in r.trace:
            if t.forced is None and t.phase == "thinking" and t.token_id >= len(special):
                counts[t.token_id] = counts.get(t.token_id, 0) + 1
    delim = vocab[max(counts, key=counts.get)]
    ecfg = EntropixConfig(n_branches=2, branch_depth=2).with_thresholds(low_ent=0.5, med_ent=2.0, high_ent=4.0,
                                                                        low_vent=0.5, high_vent=2.0)
    out = {}
    for mesh in (None,) + tuple(sys.argv[3:]):
        m = one if mesh is None else entropix_s1.load(path, mesh=mesh, compilation_cache=False)
        for name, sampler in (("greedy", "greedy"), ("entropix", ecfg)):
            rs = m.generate(prompts, sampler=sampler, budget=budgets(delim), max_new_tokens=20, ignore_eos=True)
            out[f"{name}@{mesh or 'one'}"] = dict(
                tokens=[list(r.token_ids) for r in rs], forced=[[t.forced for t in r.trace] for r in rs],
                stats=[[[t.entropy, t.attn_entropy] for t in r.trace] for r in rs])
        if mesh is not None:
            out[f"specs@{mesh}"] = SH.describe(m.params)
            out[f"kv_replicas@{mesh}"] = m.config.kv_replicas
    print(json.dumps(out))
    """
)


def test_check_shape_of_gemma3_270m():
    from entropix_s1.core.sharding import check_shape
    from entropix_s1.errors import ConfigError
    from entropix_s1.testing import RANDOM_CONFIGS

    cfg = RANDOM_CONFIGS["gemma3-270m"]
    assert cfg.n_kv_heads == 1 and cfg.n_heads == 4
    for tp in (1, 2, 4):
        assert check_shape(cfg, tp) == (tp, "vocab")  # the one KV head replicated tp times
    with pytest.raises(ConfigError, match=r"replicating each of the n_kv_heads=1 KV heads 8 times.*4 query heads"):
        check_shape(cfg, 8)


def test_tiny_gemma3_sharded_matches_one_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), str(HERE), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "ckpt"), str(HERE), *MESHES], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("greedy", "entropix"):
        ref = res[f"{name}@one"]
        assert {"cap", "wait"} <= {f for row in ref["forced"] for f in row}  # the budget acted
        assert all(len(t) == 20 for t in ref["tokens"])  # with 3- to 14-token prompts: past the 8-token window
        for mesh in MESHES:
            got = res[f"{name}@{mesh}"]
            assert got["tokens"] == ref["tokens"] and got["forced"] == ref["forced"], (name, mesh)
            a, b = np.array(sum(got["stats"], []), float), np.array(sum(ref["stats"], []), float)
            assert (np.isnan(a) == np.isnan(b)).all()
            assert np.nan_to_num(np.abs(a - b)).max() <= 1e-4, (name, mesh)
    assert res["kv_replicas@1x4"] == 4 and res["kv_replicas@2x2"] == 2
    specs = res["specs@1x4"]
    assert specs[".layers[0].wqkv_DKCH"] == "P(None, 'tp', None, None)"  # the 4 copies of the KV head
    assert specs[".layers[0].post_attn_norm_D"] == specs[".layers[0].post_mlp_norm_D"] == "P(None,)"
    assert specs[".embed_VD"] == "P('tp', None)"
