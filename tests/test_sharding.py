"""The decode loop sharded over a ("dp", "tp") mesh gives what one device gives.

The pytest process has one CPU device, so the multi-device checks run this file as a script in
subprocesses with `XLA_FLAGS=--xla_force_host_platform_device_count=8` (8 fake CPU devices). Each
worker builds a tiny random transformers checkpoint, loads it with `entropix_s1.load(path,
mesh=...)` for every mesh, runs greedy and entropix generation with per-row s1 budgets (caps,
waits) and prints one JSON line; the tests compare every mesh with the single-device run:
identical tokens, forced reasons, regimes and stop reasons; trace metrics within 1e-4.

Two shapes (the real SmolLM2-135M is too slow for 2 CPU cores; its 9 query / 3 KV heads are kept):
- "gqa8x4": qwen2 (q/k/v biases), 8 query / 4 KV heads, vocab 128 (vocab-sharded embeddings);
  meshes 1x4, 2x4, 8x1 and 1x8 (tp = 8 > 4 KV heads: each KV head replicated twice); entropix
  on 2x4.
- "smol9x3": llama shaped like SmolLM2 (9 query / 3 KV heads, head_dim 16, tied embeddings),
  vocab 100 (not divisible by 3: embeddings fall back to hidden-sharding), one layer, a larger
  init (so tied embeddings do not just repeat the last token); meshes 1x3 (3 of the 8 devices) and
  8x1 with a 6-row batch (not divisible by dp = 8: XLA pads the last shards); entropix on 1x3.
The two workers run concurrently: about 2 CPU-minutes in all (4 minutes wall on 2 busy shared cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
TOL = 1e-4

SHAPES = {
    "gqa8x4": dict(
        arch="qwen2", tie=False,
        hf=dict(vocab_size=128, hidden_size=64, num_attention_heads=8, num_key_value_heads=4,
                intermediate_size=96, num_hidden_layers=2),
        rows=(3, 5, 7, 4, 9, 2, 6, 8),
        greedy=(None, "1x4", "2x4", "8x1", "1x8"),
        entropix=(None, "2x4"),
    ),
    "smol9x3": dict(
        arch="llama", tie=True,
        hf=dict(vocab_size=100, hidden_size=144, num_attention_heads=9, num_key_value_heads=3, head_dim=16,
                intermediate_size=96, num_hidden_layers=1, rope_scaling=None, rope_theta=100000.0,
                initializer_range=0.15),
        rows=(4, 7, 2, 9, 5, 3),
        greedy=(None, "1x3", "8x1"),
        entropix=(None, "1x3"),
    ),
}
SPECIAL = ["<pad>", "<eos>", "<think>", "</think>", "Wait", "\nFinal Answer:"]


# =========================================================================== worker (subprocess)
def _vocab(n: int) -> list[str]:
    return SPECIAL + [f"w{i}" for i in range(n - len(SPECIAL))]


def _budgets(entropix_s1, delim: str, n_rows: int) -> list:
    """Per-row s1 budgets: different caps and wait counts, one row without a thinking phase."""
    out = []
    for i in range(n_rows):
        if i == 2:
            out.append(None)
            continue
        out.append(entropix_s1.Budget(think_start="<think>", think_end=(delim,), max_thinking_tokens=(6, 10, None, 14)[i % 4],
                                      num_waits=1 + i % 2, wait_text="Wait", answer_prefix="\nFinal Answer:"))
    return out


def _record(results, seconds: float) -> dict:
    return dict(
        tokens=[list(r.token_ids) for r in results],
        stats=[[[t.entropy, t.varentropy, t.attn_entropy, t.attn_varentropy, t.agreement, t.interaction]
                for t in r.trace] for r in results],
        forced=[[t.forced for t in r.trace] for r in results],
        regime=[[t.regime for t in r.trace] for r in results],
        stop=[r.stop_reason for r in results],
        waits=[r.waits_inserted for r in results],
        seconds=round(seconds, 2),
    )


def worker(shape_name: str, out_dir: Path) -> dict:
    import jax

    import entropix_s1
    from entropix_s1.core import decode as D
    from entropix_s1.core import sharding as SH
    from entropix_s1.host import tokenizer as tokenizer_mod
    from entropix_s1.core.entropix import EntropixConfig
    from entropix_s1.errors import ConfigError

    sys.path.insert(0, str(HERE))
    from scripted import WordTokenizer
    from tiny_models import save_tiny

    t_start = time.perf_counter()
    shape = SHAPES[shape_name]
    vocab = _vocab(shape["hf"]["vocab_size"])
    path = save_tiny(shape["arch"], out_dir / shape_name, tie=shape["tie"], seed=1, **shape["hf"])
    tokenizer_mod.Tokenizer.from_dir = classmethod(lambda cls, p: WordTokenizer(vocab))  # no tokenizer.json here
    prompts = [[6 + (7 * i + j) % (len(vocab) - 6) for j in range(n)] for i, n in enumerate(shape["rows"])]
    models = {}

    def model(mesh):
        if mesh not in models:
            models[mesh] = entropix_s1.load(path, mesh=mesh, compilation_cache=False)
        return models[mesh]

    def gen(mesh, sampler, budgets):
        t = time.perf_counter()
        res = model(mesh).generate(prompts, sampler=sampler, budget=budgets, max_new_tokens=24, ignore_eos=True)
        return res, time.perf_counter() - t

    out: dict = {"devices": jax.device_count(), "runs": {}, "info": {}}
    # Pilot (reuses the compiled program: token tables have fixed sizes): pick the token the model
    # samples most while thinking as the end-of-thinking delimiter, so waits really happen.
    pilot, _ = gen(None, "greedy", _budgets(entropix_s1, "</think>", len(prompts)))
    counts = np.bincount([t.token_id for r in pilot for t in r.trace if t.forced is None and t.phase == "thinking"],
                         minlength=len(vocab))
    counts[: len(SPECIAL)] = 0
    delim = vocab[int(np.argmax(counts))]
    budgets = _budgets(entropix_s1, delim, len(prompts))
    out["delimiter"] = delim

    for mesh in shape["greedy"]:
        res, dt = gen(mesh, "greedy", budgets)
        out["runs"][f"greedy@{mesh or 'one'}"] = _record(res, dt)
        if mesh is None:  # entropix thresholds at quantiles of this model's own metrics: every regime occurs
            st = np.array([s for r in out["runs"]["greedy@one"]["stats"] for s in r], float)
            ent, vent = st[:, 0], st[:, 1]
            ecfg = EntropixConfig(n_branches=2, branch_depth=2).with_thresholds(
                low_ent=float(np.quantile(ent, 0.25)), med_ent=float(np.quantile(ent, 0.5)),
                high_ent=float(np.quantile(ent, 0.9)), low_vent=float(np.quantile(vent, 0.25)),
                high_vent=float(np.quantile(vent, 0.75)))
    for mesh in shape["entropix"]:
        res, dt = gen(mesh, ecfg, budgets)
        out["runs"][f"entropix@{mesh or 'one'}"] = _record(res, dt)

    for mesh, m in models.items():
        if mesh is None:
            continue
        info = dict(param_specs=SH.describe(m.params), param_bytes_per_device=SH.per_device_bytes(m.params),
                    n_kv_heads=m.config.n_kv_heads, kv_replicas=m.config.kv_replicas,
                    embed_axis=m.config.embed_axis, mesh_shape=dict(m.mesh.shape),
                    mesh_devices=[d.id for d in m.mesh.devices.flat])
        # the state the loop returns (same program as generate: no recompilation)
        plan = m.prepare(prompts, sampler="greedy", budget=budgets, max_new_tokens=24, ignore_eos=True)
        st = D.generate_arrays(plan.spec, m.params, plan.inputs)
        info["state_specs"] = {k: v for k, v in SH.describe(st).items() if k.startswith((".cache", ".out_BN"))}
        info["kv_bytes_per_device"] = SH.per_device_bytes(st.cache.k)
        info["kv_bytes_total"] = sum(int(a.nbytes) for a in st.cache.k)
        out["info"][mesh] = info
    one = model(None)
    out["param_bytes_total"] = sum(int(a.nbytes) for a in jax.tree.leaves(one.params))
    out["unshardable"] = {}
    for mesh in ("1x2", "1x5"):
        try:
            entropix_s1.load(path, mesh=mesh, compilation_cache=False)
            out["unshardable"][mesh] = None
        except ConfigError as e:
            out["unshardable"][mesh] = str(e)
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    return out


# =========================================================================== the tests
def _spawn(shape_name: str, tmp: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), str(HERE), env.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), shape_name, str(tmp)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("sharding")
    procs = {name: _spawn(name, tmp) for name in SHAPES}  # concurrently: one core each
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=900)
        if p.returncode != 0:
            pytest.fail(f"sharding worker {name} failed (rc {p.returncode}):\n{stderr[-4000:]}")
        out[name] = json.loads(stdout.strip().splitlines()[-1])
    return out


CASES = [(s, f"{smp}@{mesh}") for s, cfg in SHAPES.items() for smp in ("greedy", "entropix")
         for mesh in cfg[smp] if mesh is not None]


@pytest.mark.parametrize("shape,run", CASES, ids=[f"{s}-{r}" for s, r in CASES])
def test_sharded_loop_matches_one_device(runs, shape, run):
    got = runs[shape]["runs"][run]
    ref = runs[shape]["runs"][run.split("@")[0] + "@one"]
    assert got["tokens"] == ref["tokens"], f"{shape} {run}: tokens differ from one device"
    for key in ("forced", "regime", "stop", "waits"):
        assert got[key] == ref[key], f"{shape} {run}: {key} differs from one device"
    # columns: entropy, varentropy, attn_entropy, attn_varentropy, agreement, interaction; greedy
    # computes no attention metrics (None -> nan), entropix computes all six
    a, b = np.array(sum(got["stats"], []), float), np.array(sum(ref["stats"], []), float)
    assert a.shape == b.shape and a.shape[1] == 6
    assert (np.isnan(a) == np.isnan(b)).all()
    assert not np.isnan(a).any() if run.startswith("entropix") else not np.isnan(a[:, :2]).any()
    err = np.nan_to_num(np.abs(a - b)).max(axis=0)
    assert (err <= TOL).all(), f"{shape} {run}: trace metrics differ by {err.tolist()}"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_reference_runs_exercise_budget_forcing_and_entropix(runs, shape):
    """Otherwise the equality above would prove little: caps, waits and entropix regimes happen."""
    greedy, ent = runs[shape]["runs"]["greedy@one"], runs[shape]["runs"]["entropix@one"]
    for r in (greedy, ent):
        forced = {f for row in r["forced"] for f in row}
        assert {"prefill", "cap", "wait"} <= forced, forced
        assert sum(r["waits"]) > 0
    regimes = {g for row in ent["regime"] for g in row}
    assert {"branch", "adaptive"} <= regimes, regimes  # branch roll-outs and random sampling
    assert all(len(set(map(len, (t, s)))) == 1 for t, s in zip(greedy["tokens"], greedy["stats"]))
    assert runs[shape]["devices"] == 8


def test_parameters_are_placed_on_their_shards(runs):
    info = runs["gqa8x4"]["info"]
    specs = info["1x4"]["param_specs"]
    assert specs[".layers[0].wqkv_DKCH"] == "P(None, 'tp', None, None)"  # KV heads: whole GQA groups
    assert specs[".layers[0].bqkv_KCH"] == "P('tp', None, None)"
    assert specs[".layers[0].wo_KGHD"] == "P('tp', None, None, None)"
    assert specs[".layers[0].w_gate_up_D2F"] == "P(None, None, 'tp')"  # MLP hidden F
    assert specs[".layers[0].w_down_FD"] == "P('tp', None)"
    assert specs[".embed_VD"] == specs[".lm_head_VD"] == "P('tp', None)"  # vocab
    assert specs[".layers[0].attn_norm_D"] == specs[".final_norm_D"] == "P(None,)"  # norms replicated
    total = runs["gqa8x4"]["param_bytes_total"]
    # tp=4: each device holds ~1/4 of the weights (norms and biases are tiny); dp replicates
    assert info["1x4"]["param_bytes_per_device"] < 0.3 * total
    assert info["2x4"]["param_bytes_per_device"] == info["1x4"]["param_bytes_per_device"]
    assert info["8x1"]["param_bytes_per_device"] == total
    smol = runs["smol9x3"]["info"]["1x3"]
    assert smol["embed_axis"] == "hidden" and smol["param_specs"][".embed_VD"] == "P(None, 'tp')"
    assert ".lm_head_VD" not in smol["param_specs"] and smol["mesh_devices"] == [0, 1, 2]  # tied


def test_kv_cache_is_sharded_batch_over_dp_heads_over_tp(runs):
    for shape, mesh, dp, tp in (("gqa8x4", "2x4", 2, 4), ("gqa8x4", "1x8", 1, 8), ("smol9x3", "1x3", 1, 3)):
        info = runs[shape]["info"][mesh]
        specs = info["state_specs"]  # a size-1 mesh axis prints as None
        assert specs[".cache.k[0]"] == ("P('dp', 'tp')" if dp > 1 else "P(None, 'tp')"), specs
        assert specs[".cache.valid_BS"] == ("P('dp',)" if dp > 1 else "P()"), specs
        assert info["kv_bytes_per_device"] * dp * tp == info["kv_bytes_total"]


def test_tp_beyond_kv_heads_replicates_them(runs):
    info = runs["gqa8x4"]["info"]["1x8"]
    assert info["kv_replicas"] == 2 and info["n_kv_heads"] == 8
    assert runs["gqa8x4"]["info"]["1x4"]["kv_replicas"] == 1


def test_batch_not_divisible_by_dp_is_padded(runs):
    info = runs["smol9x3"]["info"]["8x1"]
    assert info["mesh_shape"] == {"dp": 8, "tp": 1}
    assert len(runs["smol9x3"]["runs"]["greedy@8x1"]["tokens"]) == 6  # 6 rows over dp=8: compared above


def test_load_rejects_an_unshardable_mesh_naming_the_dimension(runs):
    err = runs["smol9x3"]["unshardable"]
    assert "n_kv_heads" in err["1x2"] and "=3" in err["1x2"] and "tp=2" in err["1x2"]
    assert "n_kv_heads" in err["1x5"] and "tp=5" in err["1x5"]
    assert runs["gqa8x4"]["unshardable"]["1x2"] is None  # 4 KV heads, F=96, V=128 all split over 2


# --------------------------------------------------------------------------- in-process (1 device)
def _cfg(**kw):
    from entropix_s1.core.config import ModelConfig

    base = dict(arch="llama", vocab_size=100, dim=144, n_layers=1, n_heads=9, n_kv_heads=3, head_dim=16, ffn_dim=96,
                norm_eps=1e-5, rope_theta=1e4, max_position_embeddings=64, tie_embeddings=True, qkv_bias=False,
                qk_norm=False)
    return ModelConfig(**{**base, **kw})


def test_check_shape_errors_name_the_dimension_and_sizes():
    from entropix_s1.errors import ConfigError
    from entropix_s1.core.sharding import check_shape

    with pytest.raises(ConfigError, match=r"tp=2.*n_kv_heads \(num_key_value_heads=3\)"):
        check_shape(_cfg(), 2)
    with pytest.raises(ConfigError, match=r"n_kv_heads=3 KV heads 2 times.*3 query heads"):
        check_shape(_cfg(), 6)  # 6 = 2 x 3 KV heads, but 3 query heads per group cannot split in 2
    with pytest.raises(ConfigError, match=r"ffn_dim \(intermediate_size=96\) is not divisible by 9"):
        check_shape(_cfg(), 9)
    assert check_shape(_cfg(), 3) == (1, "hidden")  # vocab 100 % 3 != 0 -> hidden 144 % 3 == 0
    assert check_shape(_cfg(dim=145), 3) == (1, "replicated")  # neither vocab nor hidden divides
    assert check_shape(_cfg(n_heads=8, n_kv_heads=4, dim=64, head_dim=8, vocab_size=128), 8) == (2, "vocab")


def test_mesh_arguments():
    from entropix_s1.errors import ConfigError
    from entropix_s1.core.sharding import make_mesh, parse_mesh_shape, plan

    assert parse_mesh_shape("1x8") == (1, 8) and parse_mesh_shape("2, 4") == (2, 4) and parse_mesh_shape((4, 2)) == (4, 2)
    for bad in ("8", "axb", "0x2", (1, 2, 3)):
        with pytest.raises(ConfigError, match="mesh"):
            parse_mesh_shape(bad)
    with pytest.raises(ConfigError, match=r"needs 64 devices, only 1"):
        make_mesh("8x8")
    with pytest.raises(ConfigError, match="n_kv_heads"):  # the shape is checked before the devices
        plan(_cfg(), "8x2")
    one = plan(_cfg(), "1x1")
    assert one.dp == one.tp == 1 and one.mesh.axis_names == ("dp", "tp") and one.base_config == _cfg()
    assert hash(one) == hash(plan(_cfg(), (1, 1))) and one == plan(_cfg(), (1, 1)) and one != _cfg()
    import jax
    from jax.sharding import Mesh

    with pytest.raises(ConfigError, match="axes must be named"):
        make_mesh(Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model")))


def test_replicated_kv_heads_compute_the_same_function():
    """GQA with each KV head repeated r times (and G/r query heads per copy) is the same model."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from entropix_s1.core.model import LayerParams, Params, score_logits
    from entropix_s1.core.sharding import replicate_kv_heads

    cfg = _cfg(n_heads=8, n_kv_heads=2, dim=32, head_dim=8, vocab_size=50, ffn_dim=16, qkv_bias=True, n_layers=2)
    rng = np.random.default_rng(0)

    def f(*s):
        return jnp.asarray(rng.normal(size=s).astype(np.float32) * 0.3)

    layers = tuple(LayerParams(attn_norm_D=1 + f(32), wqkv_DKCH=f(32, 2, 6, 8), bqkv_KCH=f(2, 6, 8), q_norm_H=None,
                               k_norm_H=None, wo_KGHD=f(2, 4, 8, 32), mlp_norm_D=1 + f(32), w_gate_up_D2F=f(32, 2, 16),
                               w_down_FD=f(16, 32)) for _ in range(2))
    params = Params(embed_VD=f(50, 32), layers=layers, final_norm_D=1 + f(32), lm_head_VD=None)
    toks = jnp.asarray(rng.integers(0, 50, (2, 7)), jnp.int32)
    valid = jnp.ones((2, 7), bool)
    ref = score_logits(params, cfg, toks, valid)
    for r in (2, 4):
        rep = jax.tree.map(jnp.asarray, replicate_kv_heads(params, r))
        assert rep.layers[0].wqkv_DKCH.shape == (32, 2 * r, 4 // r + 2, 8)
        got = score_logits(rep, dataclasses.replace(cfg, n_kv_heads=2 * r), toks, valid)
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-5)


def test_constrain_is_a_no_op_without_a_mesh():
    import jax.numpy as jnp

    from entropix_s1.core.sharding import constrain

    tree = (jnp.ones((2, 3)), jnp.zeros(()))
    assert constrain(_cfg(), tree) is tree


if __name__ == "__main__":  # worker: python tests/test_sharding.py SHAPE OUT_DIR
    print(json.dumps(worker(sys.argv[1], Path(sys.argv[2]))))
