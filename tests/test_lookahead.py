"""Shared-prefix look-ahead and committed branch paths (core/lookahead.py, model.forward_paths,
decode._follow): a path computed over the shared cache, then committed, must equal decoding its
tokens one per step -- same tokens, logits, K/V, positions -- and the loop must count every token
of a committed path and cut it where a controller acts."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropix_s1 import Budget, EntropixConfig
from entropix_s1.core.entropix import EntropixSampler
from entropix_s1.core.lookahead import Lookahead, Path
from entropix_s1.core.model import KVCache, forward, score_logits
from entropix_s1.core.sampling import greedy
from entropix_s1.host.engine import Model
from entropix_s1.testing import IdTokenizer, random_config, random_params

CFG = dataclasses.replace(random_config("tiny"), eos_token_ids=(5,))
NEAR_TIE = 1e-4
#: every step branches (entropy < 100 nats and varentropy > 0 for any non-degenerate row)
ALWAYS_BRANCH = EntropixConfig(low_ent_thresh=0.0, med_ent_thresh=100.0, high_ent_thresh=100.0,
                               low_vent_thresh=0.0, high_vent_thresh=0.0, max_pauses=0)
#: about half the steps branch (high_vent near the tiny model's median varentropy), the rest sample
MIXED = EntropixConfig(low_ent_thresh=0.0, med_ent_thresh=10.0, high_ent_thresh=10.0, low_vent_thresh=0.0,
                       high_vent_thresh=3.1, max_pauses=0)


@pytest.fixture(scope="module")
def params():
    return random_params(CFG, std=0.35, seed=3)


def _prefilled(params, window: int = 32):
    """Two left-padded prompts (6 and 3 tokens) prefilled into a `window`-slot cache."""
    tokens = jnp.asarray([[11, 12, 13, 14, 15, 16], [0, 0, 0, 21, 22, 23]], jnp.int32)
    valid = tokens > 0
    cache = KVCache.init(CFG, 2, window, jnp.float32)
    _, cache, _ = forward(params, CFG, tokens, cache, window=window, token_valid_BT=valid, last_only=True)
    return cache


def test_paths_equal_decoding_each_candidate_one_token_at_a_time(params):
    cache = _prefilled(params)
    cand_BN = jnp.asarray([[40, 41, 42], [7, 7, 90]], jnp.int32)
    paths = Lookahead(params, CFG, cache, 32).greedy_paths(cand_BN, steps=4)
    assert paths.tokens_BND.shape == (2, 3, 4) and paths.logits_BNDV.shape == (2, 3, 3, CFG.vocab_size)
    for n in range(3):
        ref, tok_B = cache, cand_BN[:, n]
        for j in range(3):
            logits_BV, ref, _ = forward(params, CFG, tok_B[:, None], ref, window=32, last_only=True)
            np.testing.assert_allclose(paths.logits_BNDV[:, n, j], logits_BV, atol=2e-5, rtol=1e-5)
            for layer in range(CFG.n_layers):  # path token j's K/V is what decoding it wrote at its slot
                np.testing.assert_allclose(paths.suffix.k[layer][:, n, :, j], ref.k[layer][:, :, 6 + j], atol=2e-5)
                np.testing.assert_allclose(paths.suffix.v[layer][:, n, :, j], ref.v[layer][:, :, 6 + j], atol=2e-5)
            tok_B = greedy(logits_BV)
            np.testing.assert_array_equal(paths.tokens_BND[:, n, j + 1], tok_B)


def test_committed_path_leaves_the_cache_of_one_by_one_decoding(params):
    """Commit path tokens 0..2 for row 0 only, then feed token 3: the cache holds exactly what
    decoding the four tokens one per step leaves (row 0), row 1 only gains invalid slots."""
    cache = _prefilled(params)
    cand_BN = jnp.asarray([[40, 41, 42], [7, 8, 90]], jnp.int32)
    paths = Lookahead(params, CFG, cache, 32).greedy_paths(cand_BN, steps=4)
    take_B = jnp.asarray([True, False])
    path = Path.pick(paths, jnp.asarray([1, 2]), take_B)
    committed = cache
    for i in range(path.depth):
        committed = path.commit_kv(committed, i, take_B)
    last_B = jnp.where(take_B, path.tokens_BD[:, -1], 50)
    logits, committed, _ = forward(params, CFG, last_B[:, None], committed, window=32, last_only=True)

    ref = cache
    for tok in [41, *np.asarray(path.tokens_BD[0]).tolist()]:
        ref_logits, ref, _ = forward(params, CFG, jnp.asarray([[tok], [50]]), ref, window=32,
                                     token_valid_BT=jnp.asarray([[True], [False]]), last_only=True)
    np.testing.assert_allclose(logits[0], ref_logits[0], atol=2e-5, rtol=1e-5)
    assert int(committed.pos_B[0]) == int(ref.pos_B[0]) == 10 and int(committed.pos_B[1]) == int(cache.pos_B[1]) + 1
    np.testing.assert_array_equal(committed.valid_BS[0], ref.valid_BS[0])
    np.testing.assert_array_equal(committed.valid_BS[1, :6], cache.valid_BS[1, :6])
    assert not bool(committed.valid_BS[1, 6:9].any()) and bool(committed.valid_BS[1, 9])
    valid0 = np.asarray(ref.valid_BS[0])
    for layer in range(CFG.n_layers):
        np.testing.assert_allclose(np.asarray(committed.k[layer][0])[:, valid0], np.asarray(ref.k[layer][0])[:, valid0],
                                   atol=2e-5)
        np.testing.assert_allclose(np.asarray(committed.v[layer][0])[:, valid0], np.asarray(ref.v[layer][0])[:, valid0],
                                   atol=2e-5)


@pytest.fixture(scope="module")
def m(params):
    return Model("tiny-random", CFG, params, IdTokenizer(CFG.vocab_size, eos_ids=(5,)))


def _next_logits(m: Model, prompt: list[int], ids: tuple[int, ...], j: int) -> jax.Array:
    toks = jnp.asarray([prompt + list(ids[:j])], jnp.int32)
    return score_logits(m.params, m.config, toks, jnp.ones_like(toks, bool))[0, -1]


def test_loop_commits_branch_paths_that_equal_teacher_forced_greedy_decoding(m):
    """Every step branches; each committed path token is the argmax of the model run afresh on the
    prompt and the tokens before it, its recorded entropy that distribution's (so the commit
    wrote the right K/V at the right positions), and paths are taken whole."""
    prompts = [[30, 31, 32, 33], [40, 41, 42, 43, 44, 45, 46, 47, 48]]
    results = m.generate(prompts, sampler=EntropixSampler(ALWAYS_BRANCH), max_new_tokens=24, ignore_eos=True)
    for prompt, r in zip(prompts, results):
        regimes = [s.regime for s in r.trace]
        assert regimes[:8] == ["branch", "branch_path", "branch_path", "branch_path"] * 2, regimes
        assert len(r.token_ids) == 24
        for j, step in enumerate(r.trace):
            if step.regime != "branch_path":
                continue
            logits = _next_logits(m, prompt, r.token_ids, j)
            top2 = jax.lax.top_k(logits, 2)[0]
            assert r.token_ids[j] == int(jnp.argmax(logits)) or float(top2[0] - top2[1]) < NEAR_TIE, j
            probs = jax.nn.softmax(logits)
            assert step.entropy == pytest.approx(float(-jnp.sum(probs * jnp.log(probs))), abs=1e-4)
            top20 = jax.lax.top_k(jax.nn.log_softmax(logits), 20)[0]
            assert step.confidence == pytest.approx(float(-jnp.mean(top20)), abs=1e-4)  # DeepConf's
        assert r.confidence == pytest.approx(sum(s.confidence for s in r.trace) / len(r.trace))
        assert r.lowest_group_confidence <= r.confidence


def test_a_committed_path_is_counted_and_cut_by_the_budget(m):
    """A cap that falls inside a path cuts it there: exactly max_thinking_tokens thinking tokens,
    then the cap's forced tokens, and the path never resumes in the answer before its own step."""
    d = dict(think_end=("A",), wait_text="W", answer_prefix="F")
    for cap in (5, 6, 7):
        r = m.generate([[30, 31, 32, 33]], sampler=EntropixSampler(ALWAYS_BRANCH), max_new_tokens=20, ignore_eos=True,
                       budget=Budget(**d, max_thinking_tokens=cap))[0]
        forced = [s.forced for s in r.trace]
        assert r.thinking_tokens == cap, (cap, r.thinking_tokens)
        assert forced[cap] == "cap" and all(f is None for f in forced[:cap]), (cap, forced)
        assert [s.regime for s in r.trace[:4]] == ["branch", "branch_path", "branch_path", "branch_path"]


def test_an_eos_inside_a_path_ends_the_row_there(m):
    """A path whose greedy roll-out reaches EOS stops at it: nothing after, stop reason eos."""
    prompts = [[30 + i, 31, 32 + i] for i in range(12)]
    results = m.generate(prompts, sampler=EntropixSampler(ALWAYS_BRANCH), max_new_tokens=40)
    for r in results:
        if 5 in r.token_ids:
            assert r.token_ids.index(5) == len(r.token_ids) - 1 and r.stop_reason == "eos"
        else:
            assert len(r.token_ids) == 40
    assert any(r.stop_reason == "eos" for r in results), "no row reached EOS: the test checks nothing"


def test_a_cache_filled_by_other_rows_paths_is_compacted_in_the_loop(m):
    """About half the steps branch, per row: a row off its path leaves empty slots while another
    commits one. In a cache too small for all the slots used, the loop compacts and goes on:
    the same tokens as with a cache big enough, every row to max_new_tokens."""
    from entropix_s1.core import decode

    plan = m.prepare([[30 + i, 31, 32 + i, 40] for i in range(4)], sampler=EntropixSampler(MIXED), max_new_tokens=40,
                     ignore_eos=True, seed=1)
    def with_room(room: int):  # a spec whose cache holds `room` slots after the prompt
        return dataclasses.replace(plan.spec, cache_len=plan.spec.prompt_len + room, windows=(plan.spec.prompt_len + room,))

    big = decode.generate_arrays(with_room(4 * 40 + 4), m.params, plan.inputs)  # never full: no compaction
    small = decode.generate_arrays(with_room(48), m.params, plan.inputs)
    assert int(big.cache.length) - plan.spec.prompt_len > 48 + 8, "the small cache would not have filled"
    np.testing.assert_array_equal(np.asarray(big.n_out_B), 40)
    np.testing.assert_array_equal(np.asarray(small.n_out_B), 40)
    np.testing.assert_array_equal(np.asarray(small.out_BN)[:, :40], np.asarray(big.out_BN)[:, :40])
    np.testing.assert_array_equal(np.asarray(small.regime_BN)[:, :40], np.asarray(big.regime_BN)[:, :40])


def test_only_the_chosen_rows_roll_out_and_get_the_paths_of_a_full_roll_out(params):
    """Rows 1, 4, 6 and 7 of 8 roll out in groups of two (ceil(8 / 4)); their paths equal those
    of rolling out every row, and the other rows' are zeros."""
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(6, CFG.vocab_size, size=(8, 5)), jnp.int32)
    cache = KVCache.init(CFG, 8, 24, jnp.float32)
    _, cache, _ = forward(params, CFG, tokens, cache, window=24, last_only=True)
    cand_BN = jnp.asarray(rng.integers(6, CFG.vocab_size, size=(8, 3)), jnp.int32)
    look = Lookahead(params, CFG, cache, 24)
    rows_B = jnp.asarray([False, True, False, False, True, False, True, True])
    some, every = look.greedy_paths(cand_BN, 3, rows_B), look.greedy_paths(cand_BN, 3)
    chosen = np.asarray(rows_B)
    np.testing.assert_array_equal(np.asarray(some.tokens_BND)[chosen], np.asarray(every.tokens_BND)[chosen])
    np.testing.assert_allclose(np.asarray(some.logits_BNDV)[chosen], np.asarray(every.logits_BNDV)[chosen], atol=2e-5)
    np.testing.assert_allclose(np.asarray(some.suffix.k[1])[chosen], np.asarray(every.suffix.k[1])[chosen], atol=2e-5)
    assert not np.asarray(some.tokens_BND)[~chosen].any() and not np.asarray(some.logits_BNDV)[~chosen].any()


def test_committed_paths_do_not_depend_on_the_schedule_or_batch_mates(m):
    """Branch paths, sampled steps and budgets under continuous batching in 2 slots (refills,
    compaction) give each prompt the tokens of its solo run."""
    rng = np.random.default_rng(7)
    prompts = [rng.integers(6, CFG.vocab_size, size=int(rng.integers(3, 30))).tolist() for _ in range(6)]
    d = dict(think_end=("A",), wait_text="W", answer_prefix="F")
    budgets = [None, Budget(**d, max_thinking_tokens=7), Budget(**d, num_waits=1, max_thinking_tokens=20)] * 2
    kw = dict(sampler=EntropixSampler(MIXED), max_new_tokens=28, seed=2)
    alone = [m.generate([p], budget=b, prompt_ids=[i], **kw)[0] for i, (p, b) in enumerate(zip(prompts, budgets))]
    together = m.generate(prompts, budget=budgets, batch_size=2, **kw)
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert sum(s.regime == "branch_path" for r in together for s in r.trace) > 20
