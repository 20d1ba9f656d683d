"""The one jitted decode loop: model -> metrics -> sampler -> budget -> state, per row.

`generate_arrays` is a single `jax.jit` program: prefill of the left-padded prompts, then a few
`lax.while_loop` stages that each attend over a static window of the cache (the filled part grows,
so later stages read more slots; early tokens never pay for the whole preallocated cache). Every
step, for every row independently:

1. logit entropy/varentropy of the current distribution (attention metrics came with the forward);
2. the sampler proposes a token and a regime (entropix may ask for a pause or a branch roll-out);
3. s1 budget forcing: a forced-token queue (think_start, the cap tail `think_end + answer_prefix`,
   `wait_text`, the entropix pause text) overrides the proposal; the cap is checked first;
4. the token is appended; if it completes an end-of-thinking delimiter while waits remain (or
   below `min_thinking_tokens`) the delimiter is dropped -- its cache slots are invalidated and
   the row's RoPE position moved back, exactly as if s1 had stopped, stripped it and resubmitted
   -- and `wait_text` is emitted in its place; otherwise the row enters the answer phase;
5. EOS / stop sequences / answer budget / max_new_tokens end the row; the token is fed forward.

With an empty `wait_text` (s1's "no extension string" ablation) there is nothing to append, so the
delimiter's last token is suppressed at sampling time instead (the model must continue).
Host work (tokenising, results) lives in `engine.py`; nothing here reads files or strings.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Union

import jax
import jax.numpy as jnp
from flax import struct

from entropix_s1.core import budget as B_
from entropix_s1.core import entropix as ex
from entropix_s1.core.config import ModelConfig
from entropix_s1.core.metrics import AttentionMetrics, logit_metrics
from entropix_s1.core.model import KVCache, Params, forward
from entropix_s1.core.sampling import Greedy, Sample, split_rows

Array = jax.Array
Sampler = Union[Greedy, Sample, ex.EntropixSampler]

REGIME_GREEDY, REGIME_SAMPLE, REGIME_FORCED = 5, 6, 7
REGIME_NAMES: tuple[str, ...] = ex.REGIME_NAMES + ("greedy", "sample", "forced")
STOP_RUNNING, STOP_EOS, STOP_STRING, STOP_MAX_NEW, STOP_ANSWER_BUDGET, STOP_CONTEXT = range(6)
STOP_NAMES = ("context", "eos", "stop_string", "max_new_tokens", "answer_budget", "context")
#: Per-token statistics recorded in the trace, in this order.
STAT_NAMES = ("entropy", "varentropy", "attn_entropy", "attn_varentropy", "agreement", "interaction")


@struct.dataclass
class RowBudget:
    """Numeric budgets per row ([B] int32; B_.NO_LIMIT where unset). Strings are in TokenTables."""

    thinking_B: Array  # bool: the row has a thinking phase (a Budget was given)
    min_think_B: Array
    max_think_B: Array
    num_waits_B: Array
    max_answer_B: Array
    # adaptive budget forcing (Budget.mode == "adaptive"); see Budget's field docs
    adaptive_B: Array
    uncertain_ent_B: Array
    uncertain_vent_B: Array
    uncertain_win_B: Array
    window_B: Array
    confident_min_B: Array
    soft_think_B: Array
    confident_ent_B: Array


@struct.dataclass
class DecodeState:
    step: Array
    cache: KVCache
    logits_BV: Array
    attn: AttentionMetrics
    out_BN: Array  # generated tokens (forced included), dropped delimiters overwritten
    forced_BN: Array  # reason code per token (budget.FORCED_*; 0 sampled)
    regime_BN: Array  # REGIME_NAMES index per token
    stats_BNS: Array  # STAT_NAMES per token, float32
    n_out_B: Array
    phase_B: Array
    boundary_B: Array  # output index where the answer phase starts (the delimiter's first token)
    think_B: Array
    answer_B: Array
    waits_B: Array
    pauses_B: Array
    last_pause_B: Array
    q_seq_B: Array  # active forced sequence (budget.SEQ_*), -1 none
    q_pos_B: Array
    done_B: Array
    stop_B: Array


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    """Everything static about one compiled loop; hashable, so equal specs reuse the program."""

    cfg: ModelConfig
    sampler: Sampler
    batch: int
    prompt_len: int  # bucketed
    out_len: int  # bucketed capacity of the output buffer (>= max_new_tokens)
    cache_len: int
    windows: tuple[int, ...]
    metric_layers: tuple[int, ...]
    wait_empty: bool = False

    @property
    def max_pauses(self) -> int:
        return self.sampler.cfg.max_pauses if isinstance(self.sampler, ex.EntropixSampler) else 0

    @property
    def pause_cooldown(self) -> int:
        return self.sampler.cfg.pause_cooldown if isinstance(self.sampler, ex.EntropixSampler) else 0

    @property
    def margin(self) -> int:
        """Slots a step may write beyond the current one (a branch roll-out writes depth)."""
        if isinstance(self.sampler, ex.EntropixSampler):
            return max(1, self.sampler.cfg.branch_depth)
        return 1


def bucket(n: int, minimum: int = 16) -> int:
    """Next power of two >= n (>= minimum): new lengths reuse a handful of compiled programs."""
    b = minimum
    while b < n:
        b *= 2
    return b


def stage_windows(prompt_len: int, cache_len: int, first: int = 128) -> tuple[int, ...]:
    """Attention windows of the loop's stages: prompt + 128, + 256, ... up to the whole cache.

    Each stage compiles the model body once more, so a last step shorter than half the previous
    one is merged into it (e.g. a 193-slot cache is one stage, not 192 + 193)."""
    ws, extra = [], first
    while prompt_len + extra < cache_len:
        ws.append(prompt_len + extra)
        extra *= 2
    if ws and cache_len - ws[-1] < (ws[-1] - (ws[-2] if len(ws) > 1 else prompt_len)) // 2:
        ws.pop()
    ws.append(cache_len)
    return tuple(ws)


def _zero_attn(b: int) -> AttentionMetrics:
    z = jnp.zeros((b,), jnp.float32)
    return AttentionMetrics(entropy_B=z, varentropy_B=z, agreement_B=z, interaction_B=z)


def _row_keys(key: Array, step: Array, b: int) -> Array:
    """One key per row and step; a row's randomness depends only on (seed, row, step)."""
    k = jax.random.fold_in(key, step)
    return jax.vmap(lambda r: jax.random.fold_in(k, r))(jnp.arange(b))


def _propose(spec: LoopSpec, params: Params, st: DecodeState, logits_BV: Array, lm, rng_B: Array, window: int):
    """The sampler's token and regime for every row (entropix branch roll-outs included)."""
    s = spec.sampler
    b = spec.batch
    if not isinstance(s, ex.EntropixSampler):
        code = REGIME_GREEDY if isinstance(s, Greedy) or getattr(s, "temperature", 1) == 0 else REGIME_SAMPLE
        return s.get_next_tokens(logits_BV, rng_B), jnp.full((b,), code, jnp.int32)
    keys_B2 = split_rows(rng_B, 2)  # distinct keys for the sampler and the branch candidates
    tok_B, regime_B = s.get_next_tokens(logits_BV, lm, st.attn, keys_B2[:, 0])
    branch_B = (regime_B == ex.BRANCH) & ~st.done_B

    def roll_out(_):
        cfg = s.cfg
        n = cfg.n_branches
        cand_BN = ex.branch_candidates(logits_BV, keys_B2[:, 1], cfg, st.attn)
        logp_BV = jax.nn.log_softmax(logits_BV)
        lps = [jnp.take_along_axis(logp_BV, cand_BN, axis=1)]
        ents = [jnp.broadcast_to(lm.entropy_B[:, None], (b, n))]
        cache = jax.tree.map(lambda a: jnp.repeat(a, n, axis=0) if a.ndim else a, st.cache)
        tok = cand_BN.reshape(b * n)
        alive = jnp.repeat(~st.done_B, n)
        for _ in range(cfg.branch_depth - 1):
            lg, cache, _ = forward(params, spec.cfg, tok[:, None], cache, window=window,
                                   token_valid_BT=alive[:, None], last_only=True)
            lsm = jax.nn.log_softmax(lg)
            tok = jnp.argmax(lg, axis=-1).astype(jnp.int32)
            lps.append(jnp.max(lsm, axis=-1).reshape(b, n))
            ents.append(logit_metrics(lg).entropy_B.reshape(b, n))
        score_BN = ex.score_paths(jnp.stack(lps, -1), jnp.stack(ents, -1), cfg)
        best = jnp.take_along_axis(cand_BN, jnp.argmax(score_BN, axis=1)[:, None], axis=1)[:, 0]
        return jnp.where(branch_B, best, tok_B)

    tok_B = jax.lax.cond(jnp.any(branch_B), roll_out, lambda _: tok_B, None)
    return tok_B, regime_B


def _step(spec: LoopSpec, params: Params, tables: B_.TokenTables, rb: RowBudget, max_new: Array,
          key: Array, window: int, st: DecodeState) -> DecodeState:
    b, n_cap = spec.batch, spec.out_len
    rows = jnp.arange(b)
    active = ~st.done_B
    logits_BV = st.logits_BV
    lm = logit_metrics(logits_BV)
    rng_B = _row_keys(key, st.step, b)
    thinking = st.phase_B == B_.THINKING
    may_extend = thinking & ((st.waits_B < rb.num_waits_B) | (st.think_B < rb.min_think_B))

    if spec.wait_empty:  # s1 "no string" ablation: forbid completing a delimiter instead
        supp_BV = B_.completing_tokens_mask(st.out_BN, st.n_out_B, tables.delim_ML, tables.delim_len_M,
                                             logits_BV.shape[1]) & (may_extend & (st.q_seq_B < 0))[:, None]
        logits_BV = jnp.where(supp_BV, -jnp.inf, logits_BV)
    tok_s, regime_B = _propose(spec, params, st, logits_BV, lm, rng_B, window)
    # a suppressed delimiter counts as one wait when the model's top choice was to end thinking
    tried_B = jnp.zeros((b,), bool)
    if spec.wait_empty:
        tried_B = active & supp_BV[rows, jnp.argmax(st.logits_BV, axis=1)]

    # --- forced tokens: the cap first, then an entropix pause, then any queued sequence ---
    q_seq, q_pos = st.q_seq_B, st.q_pos_B
    capping = (q_seq == B_.SEQ_CAP) | (q_seq == B_.SEQ_CAP_CONFIDENT) | (q_seq == B_.SEQ_PREFILL)
    cap_now = active & thinking & (st.think_B >= rb.max_think_B) & ~capping
    soft_now = active & thinking & rb.adaptive_B & (q_seq < 0) & ~cap_now & (st.think_B >= rb.soft_think_B) & \
        (lm.entropy_B < rb.confident_ent_B)
    pause_ok = (st.pauses_B < spec.max_pauses) & (st.n_out_B - st.last_pause_B >= spec.pause_cooldown)
    pause_now = active & (q_seq < 0) & ~cap_now & (regime_B == ex.PAUSE) & pause_ok & \
        (tables.forced_len_R[B_.SEQ_PAUSE] > 0)
    pause_now = pause_now & ~soft_now
    q_seq = jnp.where(cap_now, B_.SEQ_CAP, jnp.where(soft_now, B_.SEQ_CAP_CONFIDENT, jnp.where(pause_now, B_.SEQ_PAUSE, q_seq)))
    q_pos = jnp.where(cap_now | soft_now | pause_now, 0, q_pos)
    cap_now = cap_now | soft_now
    in_q = active & (q_seq >= 0)
    qs = jnp.maximum(q_seq, 0)
    tok = jnp.where(in_q, tables.forced_RL[qs, q_pos], tok_s)
    reason = jnp.where(in_q, jnp.asarray(B_.SEQ_REASON)[qs], B_.NOT_FORCED)
    q_pos = jnp.where(in_q, q_pos + 1, q_pos)
    q_seq = jnp.where(in_q & (q_pos >= tables.forced_len_R[qs]), -1, q_seq)
    phase = jnp.where(cap_now, B_.ANSWER, st.phase_B)
    boundary = jnp.where(cap_now, st.n_out_B, st.boundary_B)

    # --- append ---
    def write(buf, idx, val):
        return buf.at[rows, jnp.minimum(idx, n_cap - 1)].set(jnp.where(active, val, buf[rows, jnp.minimum(idx, n_cap - 1)]))

    stats_BS = jnp.stack([lm.entropy_B, lm.varentropy_B, st.attn.entropy_B, st.attn.varentropy_B,
                          st.attn.agreement_B, st.attn.interaction_B], axis=-1)
    n_out = st.n_out_B
    out = write(st.out_BN, n_out, tok)
    n_out = n_out + active
    in_thinking = active & (phase == B_.THINKING)
    think = st.think_B + (in_thinking & (reason != B_.FORCED_PREFILL))
    answer = st.answer_B + (active & (phase == B_.ANSWER))

    # --- end-of-thinking delimiter: extend (drop it, emit wait_text) or enter the answer phase ---
    sampled = active & (reason == B_.NOT_FORCED)
    ld = B_.match_tail(out, n_out, tables.delim_ML, tables.delim_len_M)
    delim_ev = sampled & in_thinking & (ld > 0)
    wait_len = tables.forced_len_R[B_.SEQ_WAIT]
    waits_left, below_min = st.waits_B < rb.num_waits_B, think - ld < rb.min_think_B
    # adaptive: wait only when uncertain at the delimiter step or over the window before it
    n_idx = jnp.arange(n_cap, dtype=jnp.int32)[None, :]
    win = (n_idx >= (n_out - ld - rb.window_B)[:, None]) & (n_idx < (n_out - ld)[:, None])
    win_ent = jnp.sum(jnp.where(win, st.stats_BNS[:, :, 0], 0.0), 1) / jnp.maximum(jnp.sum(win, 1), 1)
    uncertain = (lm.entropy_B > rb.uncertain_ent_B) | (lm.varentropy_B > rb.uncertain_vent_B) | \
        (win_ent > rb.uncertain_win_B)
    adaptive_ext = (waits_left & uncertain) | (below_min & ~(rb.confident_min_B & ~uncertain))
    extend = delim_ev & jnp.where(rb.adaptive_B, adaptive_ext, waits_left | below_min) & (wait_len > 0)
    wait_seq = jnp.where(rb.adaptive_B, B_.SEQ_WAIT_UNCERTAIN, B_.SEQ_WAIT)
    end_now = delim_ev & ~extend
    n_out = jnp.where(extend, n_out - ld, n_out)
    think = jnp.where(extend, think - ld, think)
    wait_tok = tables.forced_RL[B_.SEQ_WAIT, 0]
    tok = jnp.where(extend, wait_tok, tok)
    reason = jnp.where(extend, jnp.asarray(B_.SEQ_REASON)[wait_seq], reason)
    out = write(out, n_out, tok)
    n_out = n_out + extend
    think = think + extend
    q_seq = jnp.where(extend & (wait_len > 1), wait_seq, q_seq)
    q_pos = jnp.where(extend, 1, q_pos)
    cache = st.cache.invalidate(jnp.where(extend, st.cache.length - (ld - 1), 0), jnp.where(extend, st.cache.length, 0))
    phase = jnp.where(end_now, B_.ANSWER, phase)
    boundary = jnp.where(end_now, n_out - ld, boundary)
    think = jnp.where(end_now, think - ld, think)
    answer = jnp.where(end_now, answer + ld, answer)

    # record the token's reason, regime and statistics at the index it now occupies
    idx = n_out - 1
    forced_BN = write(st.forced_BN, idx, reason.astype(st.forced_BN.dtype))
    regime_BN = write(st.regime_BN, idx, jnp.where(reason != B_.NOT_FORCED, REGIME_FORCED, regime_B).astype(st.regime_BN.dtype))
    stats_BNS = st.stats_BNS.at[rows, jnp.minimum(idx, n_cap - 1)].set(
        jnp.where(active[:, None], stats_BS, st.stats_BNS[rows, jnp.minimum(idx, n_cap - 1)]))

    # --- stopping ---
    # A natural end of thinking on a delimiter that is also EOS (e.g. "<|im_end|>") ends the turn.
    eos_hit = sampled & ~extend & jnp.any(tok[:, None] == tables.eos_E[None], axis=1)
    stop_hit = sampled & (B_.match_tail(out, n_out, tables.stop_ML, tables.stop_len_M) > 0)
    ans_hit = active & (phase == B_.ANSWER) & (answer >= rb.max_answer_B)
    new_hit = active & (n_out >= max_new)
    stop = st.stop_B
    for hit, code in ((new_hit, STOP_MAX_NEW), (ans_hit, STOP_ANSWER_BUDGET), (stop_hit, STOP_STRING), (eos_hit, STOP_EOS)):
        stop = jnp.where(hit & (stop == STOP_RUNNING), code, stop)
    done = st.done_B | (stop != STOP_RUNNING)

    logits, cache, attn = forward(params, spec.cfg, tok[:, None], cache, window=window,
                                  token_valid_BT=active[:, None], metric_layers=spec.metric_layers, last_only=True)
    return st.replace(
        step=st.step + 1, cache=cache, logits_BV=logits, attn=attn if attn is not None else st.attn,
        out_BN=out, forced_BN=forced_BN, regime_BN=regime_BN, stats_BNS=stats_BNS, n_out_B=n_out,
        phase_B=phase, boundary_B=boundary, think_B=think, answer_B=answer,
        waits_B=st.waits_B + extend + tried_B, pauses_B=st.pauses_B + pause_now,
        last_pause_B=jnp.where(pause_now, st.n_out_B, st.last_pause_B),
        q_seq_B=q_seq, q_pos_B=q_pos, done_B=done, stop_B=stop,
    )


def _init(spec: LoopSpec, params: Params, tables: B_.TokenTables, tokens_BP: Array, valid_BP: Array,
          rb: RowBudget, max_new: Array) -> DecodeState:
    """Prefill the left-padded prompts and build the loop's starting state."""
    from entropix_s1.core.sharding import constrain  # batch over "dp", KV heads over "tp"; no-op without a mesh

    b, n_cap = spec.batch, spec.out_len
    cache = KVCache.init(spec.cfg, b, spec.cache_len, params.dtype)
    tokens_BP, valid_BP, cache = constrain(spec.cfg, (tokens_BP, valid_BP, cache))
    logits, cache, attn = forward(params, spec.cfg, tokens_BP, cache, window=spec.prompt_len,
                                  token_valid_BT=valid_BP, metric_layers=spec.metric_layers, last_only=True)
    zi = jnp.zeros((b,), jnp.int32)
    has_prefill = rb.thinking_B & (tables.forced_len_R[B_.SEQ_PREFILL] > 0)
    return constrain(spec.cfg, DecodeState(
        step=jnp.zeros((), jnp.int32), cache=cache, logits_BV=logits,
        attn=attn if attn is not None else _zero_attn(b),
        out_BN=jnp.zeros((b, n_cap), jnp.int32), forced_BN=jnp.zeros((b, n_cap), jnp.int8),
        regime_BN=jnp.zeros((b, n_cap), jnp.int8), stats_BNS=jnp.zeros((b, n_cap, len(STAT_NAMES)), jnp.float32),
        n_out_B=zi, phase_B=jnp.where(rb.thinking_B, B_.THINKING, B_.ANSWER).astype(jnp.int32), boundary_B=zi,
        think_B=zi, answer_B=zi, waits_B=zi, pauses_B=zi, last_pause_B=zi - B_.NO_LIMIT,
        q_seq_B=jnp.where(has_prefill, B_.SEQ_PREFILL, -1).astype(jnp.int32), q_pos_B=zi,
        done_B=jnp.broadcast_to(max_new <= 0, (b,)), stop_B=jnp.where(max_new <= 0, STOP_MAX_NEW, STOP_RUNNING) + zi,
    ))


def _run(spec: LoopSpec, params: Params, tables: B_.TokenTables, rb: RowBudget, max_new: Array, key: Array,
         st: DecodeState, step_limit: Array) -> DecodeState:
    """Decode until every row is done, the cache is full, or `step_limit` steps have run.

    Stages whose window the cache has already outgrown exit at once, so a state can be resumed
    (streaming runs this in chunks: same compiled program every chunk)."""
    for w in spec.windows:
        def cond(s, w=w):
            return jnp.any(~s.done_B) & (s.cache.length + spec.margin <= w) & (s.step < step_limit)

        st = jax.lax.while_loop(cond, functools.partial(_step, spec, params, tables, rb, max_new, key, w), st)
    return st


@functools.partial(jax.jit, static_argnames=("spec",))
def generate_arrays(spec: LoopSpec, params: Params, tables: B_.TokenTables, tokens_BP: Array, valid_BP: Array,
                    rb: RowBudget, max_new: Array, key: Array) -> DecodeState:
    """Prefill + staged decode for one batch, one device program; the host reads the buffers."""
    st = _init(spec, params, tables, tokens_BP, valid_BP, rb, max_new)
    return _run(spec, params, tables, rb, max_new, key, st, jnp.asarray(B_.NO_LIMIT, jnp.int32))


init_state = jax.jit(_init, static_argnames=("spec",))
run_chunk = jax.jit(_run, static_argnames=("spec",), donate_argnames=("st",))
