"""LoRA SFT (`entropix_s1.train.sft`, `entropix_s1.io.lora`): training reduces the loss, adapters round-trip
into merged checkpoints, the loss mask is the assistant turn, resume replays the same run, and the
training selection never contains a GSM8K test question."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropix_s1.io import lora as L
from entropix_s1.train import sft
from entropix_s1.io.checkpoint import load_checkpoint
from entropix_s1.errors import CheckpointError, InputError
from entropix_s1.core.model import score_logits

from conftest import shared_dir
from tiny_models import save_tiny

DATA = shared_dir() / "data"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random llama (GQA: 4 query heads over 2 KV heads) and its params. Weights are drawn wider
    than HF's default (std 0.2, not 0.02): with a frozen std-0.02 head no adapter can move the
    logits by more than about one nat, so there would be nothing to overfit."""
    d = save_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama", initializer_range=0.2)
    cfg, params = load_checkpoint(d, jnp.float32)
    return d, cfg, params


def _batch(cfg, B=2, T=24, seed=0):
    rng = np.random.default_rng(seed)
    tokens = jnp.asarray(rng.integers(3, cfg.vocab_size, (B, T)), jnp.int32)
    valid = np.ones((B, T), bool)
    valid[1, -5:] = False  # right padding in one row
    mask = np.zeros((B, T), bool)
    mask[:, T // 3:] = True  # "assistant" part
    return tokens, jnp.asarray(valid), jnp.asarray(mask & valid)


def _trained(cfg, params, lcfg, steps, lr=1e-2, seed=0):
    opt = sft.make_optimizer(lr, total_steps=steps, warmup_steps=2)
    step = sft.make_train_step(cfg, lcfg, opt)
    lora = L.init_lora(cfg, lcfg, jax.random.key(seed))
    state = opt.init(lora)
    tokens, valid, mask = _batch(cfg)
    losses = []
    for _ in range(steps):
        lora, state, aux = step(lora, state, params, tokens, valid, mask)
        losses.append(float(aux["nll"]))
    return lora, losses, int(aux["targets"])


def test_fresh_adapter_is_the_base_model(tiny):
    _, cfg, params = tiny
    lcfg = L.LoraConfig(rank=4, alpha=8, targets=L.TARGETS)
    lora = L.init_lora(cfg, lcfg, jax.random.key(1))
    tokens, valid, _ = _batch(cfg)
    np.testing.assert_array_equal(score_logits(L.merge(params, lora, lcfg, cfg), cfg, tokens, valid),
                                  score_logits(params, cfg, tokens, valid))


def test_overfits_one_repeated_batch(tiny):
    _, cfg, params = tiny
    _, losses, n = _trained(cfg, params, L.LoraConfig(rank=8, alpha=16, targets=("wqkv", "wo")), steps=25)
    tokens, valid, mask = _batch(cfg)
    assert n == int((mask[:, 1:] & valid[:, 1:]).sum())  # targets: masked, valid, after position 0
    assert losses[0] > 3.0  # a random model
    assert losses[-1] < 0.2 * losses[0], losses


def test_unlikelihood_matches_a_loop_reference():
    """Welleck et al.'s token-level term, written out: candidates are the distinct earlier masked
    targets other than the current one; masked-out positions neither count nor give candidates."""
    rng = np.random.default_rng(0)
    B, T, V = 3, 12, 7
    logp = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(B, T, V)) * 2, jnp.float32), axis=-1)
    y = rng.integers(0, 5, (B, T))  # few symbols: many repeats
    w = rng.random((B, T)) > 0.25
    got = np.asarray(sft.unlikelihood_BT(logp, jnp.asarray(y), jnp.asarray(w)))
    want = np.zeros((B, T))
    p = np.exp(np.asarray(logp, np.float64))
    for b in range(B):
        for t in range(T):
            cands = {int(y[b, s]) for s in range(t) if w[b, s]} - {int(y[b, t])}
            want[b, t] = -sum(np.log(max(1 - p[b, t, c], 1e-5)) for c in cands)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert (want > 0).sum() > B * T // 2  # the case exercises real candidates


def test_unlikelihood_training_lowers_repeats_and_still_fits(tiny):
    """With the unlikelihood term on, the NLL still overfits the batch and the term itself falls."""
    _, cfg, params = tiny
    lcfg = L.LoraConfig(rank=8, alpha=16, targets=("wqkv", "wo"))
    opt = sft.make_optimizer(1e-2, total_steps=25, warmup_steps=2)
    step = sft.make_train_step(cfg, lcfg, opt, unlikelihood=1.0)
    lora = L.init_lora(cfg, lcfg, jax.random.key(0))
    state = opt.init(lora)
    tokens, valid, mask = _batch(cfg)
    hist = []
    for _ in range(25):
        lora, state, aux = step(lora, state, params, tokens, valid, mask)
        hist.append((float(aux["nll"]), float(aux["ul"])))
    assert hist[-1][0] < 0.2 * hist[0][0], hist
    assert 0 < hist[-1][1] < hist[0][1], hist
    with pytest.raises(InputError, match="unlikelihood"):
        sft.train(sft.SFTConfig(data="x.jsonl", unlikelihood=-1.0), "unused")


def test_adapter_round_trip_and_merged_checkpoint(tiny, tmp_path):
    d, cfg, params = tiny
    lcfg = L.LoraConfig(rank=4, alpha=8, targets=L.TARGETS)  # every target, so every HF mapping is checked
    lora, _, _ = _trained(cfg, params, lcfg, steps=3)
    tokens, valid, _ = _batch(cfg)
    want = score_logits(L.merge(params, lora, lcfg, cfg), cfg, tokens, valid)
    assert not np.allclose(want, score_logits(params, cfg, tokens, valid), atol=1e-3)  # training changed it

    L.save_adapter(tmp_path / "ad", lora, lcfg, {"base_model": "tiny", "steps": 3})
    lora2, lcfg2, meta = L.load_adapter(tmp_path / "ad")
    assert lcfg2 == lcfg and meta["steps"] == 3 and meta["adapter_sha256"] == L.adapter_digest(tmp_path / "ad")
    np.testing.assert_array_equal(score_logits(L.merge(params, lora2, lcfg2, cfg), cfg, tokens, valid), want)

    # float16 storage (how the committed adapter ships): half the bytes, logits within rounding.
    L.save_adapter(tmp_path / "ad16", lora, lcfg, {"base_model": "tiny"}, dtype="float16")
    size16, size32 = ((tmp_path / p / L.ADAPTER_FILE).stat().st_size for p in ("ad16", "ad"))
    assert size16 < 0.55 * size32
    lora16, _, meta16 = L.load_adapter(tmp_path / "ad16")
    assert meta16["dtype"] == "float16" and all(ab["a"].dtype == jnp.float32 for ab in lora16.values())
    got16 = score_logits(L.merge(params, lora16, lcfg, cfg), cfg, tokens, valid)
    assert not np.array_equal(got16, want)  # it did round
    np.testing.assert_allclose(got16, want, atol=2e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="dtype"):
        L.save_adapter(tmp_path / "bad", lora, lcfg, dtype="bfloat16")

    merged = L.merged_checkpoint(d, tmp_path / "ad", tmp_path / "merged")
    cfg3, params3 = load_checkpoint(merged, jnp.float32)
    assert cfg3 == cfg
    np.testing.assert_allclose(score_logits(params3, cfg3, tokens, valid), want, atol=2e-5, rtol=1e-5)
    from entropix_s1.host.engine import Model  # compare keys resumable results on this digest

    base_sha, merged_sha = (Model(p, cfg, params, None).weights_sha256 for p in (Path(d), merged))
    assert len(base_sha) == 64 and base_sha != merged_sha
    assert Model(merged, cfg, params, None).weights_sha256 == merged_sha
    assert not (merged / "entropix_s1.json").exists()  # no budget in the metadata: none written
    # Idempotent: the same adapter reuses the dir; a changed adapter rebuilds it.
    stamp = (merged / "model.safetensors").stat().st_mtime_ns
    assert L.merged_checkpoint(d, tmp_path / "ad", tmp_path / "merged") == merged
    assert (merged / "model.safetensors").stat().st_mtime_ns == stamp
    L.save_adapter(tmp_path / "ad", L.init_lora(cfg, lcfg, jax.random.key(3)), lcfg, {"budget": sft.THINK_BUDGET})
    L.merged_checkpoint(d, tmp_path / "ad", tmp_path / "merged")
    from entropix_s1.host.engine import checkpoint_budget

    b = checkpoint_budget(merged)  # what Model.default_budget returns: the trained delimiters
    assert (b.think_start, b.think_end, b.answer_prefix) == ("", ("</think>",), "\n\nFinal Answer:")
    assert b.cap_with_delimiter
    (merged / "entropix_s1.json").write_text('{"budget": {"think_ends": ["x"]}}')
    with pytest.raises(CheckpointError, match="entropix_s1.json"):
        checkpoint_budget(merged)
    _, params4 = load_checkpoint(merged, jnp.float32)
    np.testing.assert_allclose(score_logits(params4, cfg, tokens, valid), score_logits(params, cfg, tokens, valid),
                               atol=2e-5, rtol=1e-5)


def test_adapter_that_does_not_fit_is_rejected(tiny, tmp_path):
    d, cfg, _ = tiny
    lcfg = L.LoraConfig(rank=2, targets=("wo",))
    lora = L.init_lora(cfg, lcfg, jax.random.key(0))
    del lora["layers.1.wo"]
    L.save_adapter(tmp_path / "ad", lora, lcfg, {})
    with pytest.raises(CheckpointError, match="does not fit"):
        L.merged_checkpoint(d, tmp_path / "ad", tmp_path / "merged")


def test_catalog_name_resolves_to_merged_dir(tiny, tmp_path, monkeypatch):
    from entropix_s1.io import catalog
    from entropix_s1.io.resolve import resolve

    d, cfg, params = tiny
    lcfg = L.LoraConfig(rank=2, targets=("wqkv",))
    lora, _, _ = _trained(cfg, params, lcfg, steps=2)
    monkeypatch.setenv("ENTROPIX_S1_HOME", str(tmp_path))
    L.save_adapter(tmp_path / "tiny-think", lora, lcfg, {"base_model": "tiny"})
    monkeypatch.setitem(catalog.ADAPTED, "tiny-think", (str(d), "tiny-think"))
    path = resolve("tiny-think")
    assert path == tmp_path / "tiny-think-merged" and (path / "config.json").is_file()
    tokens, valid, _ = _batch(cfg)
    _, merged = load_checkpoint(path, jnp.float32)
    np.testing.assert_allclose(score_logits(merged, cfg, tokens, valid),
                               score_logits(L.merge(params, lora, lcfg, cfg), cfg, tokens, valid), atol=2e-5, rtol=1e-5)

    # An adapter dir as `sft --out` writes it loads like a checkpoint: merged onto its base_model
    # beside it (the same dir the catalog name uses here), and a missing base is named.
    L.save_adapter(tmp_path / "run1", lora, lcfg, {"base_model": str(d)})
    assert L.is_adapter_dir(tmp_path / "run1") and not L.is_adapter_dir(d)
    got = resolve(tmp_path / "run1")
    assert got == tmp_path / "run1-merged" and resolve(d) == Path(d)
    _, merged2 = load_checkpoint(got, jnp.float32)
    chex.assert_trees_all_equal(merged2, merged)
    L.save_adapter(tmp_path / "run2", lora, lcfg, {"base_model": str(tmp_path / "gone")})
    with pytest.raises(CheckpointError, match=r"run2: its base model .*gone.* cannot be found"):
        resolve(tmp_path / "run2")


def test_plan_batches_covers_every_example_once_and_is_deterministic():
    lengths = list(np.random.default_rng(0).integers(40, 250, 101))
    plan = sft.plan_batches(lengths, batch_tokens=512, seed=3, epoch=1)
    seen = sorted(i for _, idx in plan for i in idx)
    assert seen == list(range(101))
    for T, idx in plan:
        assert T % 32 == 0 and all(lengths[i] <= T < lengths[i] + 32 for i in idx) and len(idx) <= 512 // T
    assert plan == sft.plan_batches(lengths, batch_tokens=512, seed=3, epoch=1)
    assert plan != sft.plan_batches(lengths, batch_tokens=512, seed=3, epoch=2)


def test_assistant_turn_format():
    ans = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nSo 48+24 = <<48+24=72>>72 clips.\n#### 72"
    row = {"question": "Q?", "answer": ans}
    clean, num, ops = sft._parse(row)
    assert sft.assistant_turn(clean, num) == (
        "<think>\nNatalia sold 48/2 = 24 clips in May.\nSo 48+24 = 72 clips.\n</think>\n\nFinal Answer: 72")
    assert ops == 2
    assert sft._parse({"question": "Q?", "answer": "no marker"}) is None
    assert sft._parse({"question": "Q?", "answer": "It is 5.\n#### 7"}) is None  # solution never reaches 7


# ------------------------------------------------------------------- with the SmolLM2 tokenizer
@pytest.fixture(scope="module")
def smol_tok(smollm2_dir):
    from entropix_s1.host.tokenizer import Tokenizer

    return Tokenizer.from_dir(smollm2_dir)


@pytest.mark.slow
def test_loss_mask_is_exactly_the_assistant_turn(smol_tok):
    q = "Weng earns $12 an hour. She worked 50 minutes. How much did she earn?"
    a = sft.assistant_turn("Weng earns 12/60 = $0.2 per minute.\nShe earned 0.2 x 50 = $10.", "10")
    ids, mask = sft.render_example(smol_tok, q, a)
    prompt = smol_tok.render(q)  # exactly what generate() feeds the model
    assert smol_tok.decode(ids[~mask]) == prompt
    assert list(ids[~mask]) == smol_tok.encode(prompt)
    assert smol_tok.decode(ids[mask]) == a + "<|im_end|>"
    assert mask[len(smol_tok.encode(prompt)):].all() and not mask[: len(smol_tok.encode(prompt))].any()
    assert ids[-1] == smol_tok.token_id("<|im_end|>")
    # The split tokenisation is the one of the whole rendered conversation (no boundary artefacts).
    full = smol_tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                        add_generation_prompt=False)
    assert list(ids) == smol_tok.encode(full)[: len(ids)]
    # "</think>" stays the three tokens budget forcing looks for.
    close = smol_tok.encode("</think>")
    k = len(close)
    assert any(list(ids[i: i + k]) == close for i in range(len(ids) - k))


@pytest.mark.slow
def test_selection_never_contains_a_test_question(smol_tok):
    train = sft.read_gsm8k(DATA / "gsm8k_train.jsonl")
    test = [r["question"] for r in sft.read_gsm8k(DATA / "gsm8k_test.jsonl")]
    # The shipped selection (the defaults of `entropix-s1 sft`).
    chosen = sft.select_examples(train, 1000, smol_tok, max_len=256, exclude_questions=test, seed=0)
    assert len(chosen) == 1000 and len({e.question for e in chosen}) == 1000
    test_set = {" ".join(q.lower().split()) for q in test}
    assert not [e.question for e in chosen if " ".join(e.question.lower().split()) in test_set]
    assert all(e.length <= 256 for e in chosen)
    ops = np.bincount([min(e.n_ops, 7) for e in chosen])
    assert ops[1:6].min() >= 150  # difficulty spread: equal quotas for 1..5 operations
    cfg_file = REPO / "weights" / "smollm2-135m-think" / L.CONFIG_FILE
    if cfg_file.is_file():  # the committed adapter was trained on exactly this selection
        assert json.loads(cfg_file.read_text())["data"]["selection_sha256"] == sft.selection_digest(chosen)
    # A test question slipped into the training file (other case and spacing) is still excluded.
    planted = dict(train[0], question="  " + test[5].upper().replace(" ", "  ") + " ")
    small = sft.select_examples([planted] + train[1:60], 20, smol_tok, max_len=256, exclude_questions=test)
    assert all(e.index != 0 for e in small)


@pytest.mark.slow
def test_train_resumes_where_it_stopped(smollm2_dir, tmp_path):
    """Kill-and-rerun: a run stopped after one step and re-run ends with the same adapter as an
    uninterrupted run (a tiny random model with the SmolLM2 tokenizer; 6 examples of one length
    bucket, so one compiled shape)."""
    from entropix_s1.host.tokenizer import Tokenizer

    base = save_tiny("llama", tmp_path / "base", vocab_size=49152, tie=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2_dir / f, base / f)
    tok = Tokenizer.from_dir(base)
    rows = []
    for r in sft.read_gsm8k(DATA / "gsm8k_train.jsonl")[:100]:
        parsed = sft._parse(r)
        if parsed and 160 < len(sft.render_example(tok, r["question"], sft.assistant_turn(*parsed[:2]))[0]) <= 192:
            rows.append(r)
    data = tmp_path / "mini_train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:8]))
    cfg = sft.SFTConfig(model=str(base), data=str(data), exclude=str(DATA / "gsm8k_test.jsonl"), limit=6,
                        epochs=1, batch_tokens=384, max_len=256, lr=1e-2, warmup_steps=1)
    full = sft.train(cfg, tmp_path / "a", log=lambda m: None)
    assert full["finished"] and full["step"] == full["total_steps"] >= 3
    part = sft.train(cfg, tmp_path / "b", max_minutes=0.0, log=lambda m: None)  # stops after one step
    assert not part["finished"] and part["step"] == 1
    assert json.loads((tmp_path / "b" / L.CONFIG_FILE).read_text())["finished"] is False
    done = sft.train(cfg, tmp_path / "b", log=lambda m: None)
    assert done["finished"] and done["loss_curve"] == full["loss_curve"]
    a, _, meta = L.load_adapter(tmp_path / "a")
    b, _, _ = L.load_adapter(tmp_path / "b")
    for k in a:
        np.testing.assert_array_equal(a[k]["b"], b[k]["b"])
    assert meta["data"]["examples"] == 6 and meta["train"]["steps"] == full["total_steps"]

    # A further stage starts from the trained adapter (lower loss on the same first batch than the
    # fresh start had), records it, and refuses an adapter of another shape.
    stage2 = sft.train(dataclasses.replace(cfg, init_adapter=str(tmp_path / "a")), tmp_path / "c", log=lambda m: None)
    assert stage2["finished"] and stage2["first_loss"] < full["first_loss"] - 0.05  # seen: fresh 10.71, from a 10.63
    assert stage2["init_adapter"]["adapter_sha256"] == L.adapter_digest(tmp_path / "a")
    assert stage2["init_adapter"]["loss_curve"] == full["loss_curve"]
    with pytest.raises(InputError, match="init-adapter.*rank 8 .*differ.*rank 4"):
        sft.train(dataclasses.replace(cfg, lora_rank=4, init_adapter=str(tmp_path / "a")), tmp_path / "d",
                  log=lambda m: None)


def test_cli_has_sft():
    from entropix_s1.cli import build_parser

    a = build_parser().parse_args(["sft", "--data", "x.jsonl", "--out", "o", "--epochs", "2", "--lora-rank", "4"])
    assert a.fn.__name__ == "sft_main" and a.epochs == 2 and a.lora_rank == 4 and a.limit == 1000
