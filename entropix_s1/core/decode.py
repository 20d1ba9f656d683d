"""The one jitted decode loop: model -> metrics -> sampler -> controllers -> state, per row.

`generate_arrays` is a single `jax.jit` program: prefill of the left-padded prompts, then a few
`lax.while_loop` stages, each on a cache of exactly its window (`_stage`: the filled part grows, so
later stages read more slots; early tokens never pay for the whole preallocated cache). Every
step, for every row independently (`_step`):

1. propose: controllers may suppress tokens (s1's no-string ablation, NoWait); the sampler
   proposes a token and its regime from the logits, their metrics and the attention metrics
   (entropix may roll branch candidates forward through `Lookahead`, and propose the winner's
   whole path); controllers may then ask for a probe of the row (`_probe`: a disposable trial
   answer over the row's cache, `core/probe.py`) and read it;
2. force: controllers claim forced sequences in priority order (the s1 cap, the graceful cap, the
   entropix pause, the prefill); a running sequence emits its next token instead of the proposal;
3. append the token; a sampled end-of-thinking delimiter goes to the controllers: extend (the
   delimiter is dropped -- its cache slots invalidated and the RoPE position moved back, exactly
   as if s1 had stopped, stripped it and resubmitted -- and the wait text emitted in its place)
   or enter the answer phase;
4. stop: max_new_tokens, the controllers' stops (answer budget), stop strings, EOS;
5. the tokens of a proposed look-ahead path, one at a time through 2-4 (`_follow`): a step may
   emit several tokens, the controllers still see and may cut each;
6. forward the row's last token through the model.

Everything static (model config, sampler, controllers, shapes) is in the hashable `LoopSpec`;
everything per call is in `LoopInputs`. Host work (tokenising, results) lives in `host/engine.py`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from entropix_s1.core import codes
from entropix_s1.core.config import ModelConfig
from entropix_s1.core.controllers import Controller, Extension, RowView
from entropix_s1.core.lookahead import Lookahead, Path
from entropix_s1.core.metrics import AttentionMetrics, LogitMetrics, logit_metrics
from entropix_s1.core.model import KVCache, Params, forward
from entropix_s1.core.probe import Probe, ProbeLog, run_probe
from entropix_s1.core.sampling import Sampler, SamplerInput
from entropix_s1.core.sharding import replicate
from entropix_s1.core.tables import TokenTables, bucket, match_tail

Array = jax.Array

__all__ = ["DecodeState", "LoopInputs", "LoopSpec", "bucket", "fresh_rows", "generate_arrays", "init_state",
           "pin_inputs", "run_chunk", "stage_windows"]


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    """Everything static about one compiled loop; hashable, so equal specs reuse the program."""

    cfg: ModelConfig
    sampler: Sampler
    controllers: tuple[Controller, ...]
    batch: int
    prompt_len: int  # bucketed
    out_len: int  # bucketed capacity of the output buffer (>= max_new_tokens)
    cache_len: int
    windows: tuple[int, ...]
    metric_layers: tuple[int, ...]
    #: (forced tokens, answer tokens) of a probe; (0, 0): no row probes, the probe is not compiled
    probe: tuple[int, int] = (0, 0)

    @property
    def probe_slots(self) -> int:
        """Probes per row kept for the trace (all are counted)."""
        return 64 if self.probe[1] else 0

    @property
    def margin(self) -> int:
        """Slots a step may write beyond the current one (a branch roll-out writes depth)."""
        return self.sampler.lookahead_slots


@struct.dataclass
class LoopInputs:
    """The arrays of one call: left-padded prompts, per-row knobs (one entry per controller of the
    spec, in order), the token tables, max_new_tokens and the seed's key."""

    tokens_BP: Array
    valid_BP: Array
    thinking_B: Array  # bool: the row has a thinking phase (a Budget was given)
    prompt_id_B: Array  # int32 id keying the row's randomness (its index in the call by default)
    knobs: tuple[Any, ...]
    tables: TokenTables
    max_new: Array
    key: Array


@struct.dataclass
class DecodeState:
    step: Array
    cache: KVCache
    logits_BV: Array
    attn: AttentionMetrics
    out_BN: Array  # generated tokens (forced included), dropped delimiters overwritten
    forced_BN: Array  # reason code per token (codes.FORCED_*; 0 sampled)
    regime_BN: Array  # codes.REGIME_NAMES index per token
    stats_BNS: Array  # codes.STAT_NAMES per token, float32
    n_out_B: Array
    phase_B: Array
    boundary_B: Array  # output index where the answer phase starts (the delimiter's first token)
    think_B: Array
    answer_B: Array
    waits_B: Array
    pauses_B: Array
    q_seq_B: Array  # running forced sequence (codes.SEQ_*), codes.NO_SEQ none
    q_pos_B: Array
    done_B: Array
    stop_B: Array
    t_B: Array  # the row's own step (its randomness is keyed by (seed, prompt, t), never by slot)
    pid_B: Array  # index of the prompt the slot holds
    ctl: tuple[Any, ...]  # each controller's own carry, in spec order
    probes: ProbeLog  # the probes each row ran (empty arrays when the spec has no probe)


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


def _row_keys(key: Array, t_B: Array, pid_B: Array) -> Array:
    """One key per row and step: fold_in(fold_in(seed, t), prompt), so a prompt's randomness depends
    only on the seed, its index and its own step, never on its slot or its batch mates."""
    return jax.vmap(lambda t, p: jax.random.fold_in(jax.random.fold_in(key, t), p))(t_B, pid_B)


def _write(buf: Array, idx_B: Array, val: Array, mask_B: Array) -> Array:
    """buf[b, idx_B[b]] = val[b] where mask_B (index clipped to the buffer)."""
    rows = jnp.arange(buf.shape[0])
    idx_B = jnp.minimum(idx_B, buf.shape[1] - 1)
    cur = buf[rows, idx_B]
    mask = mask_B.reshape(mask_B.shape + (1,) * (cur.ndim - 1))
    return buf.at[rows, idx_B].set(jnp.where(mask, val, cur).astype(buf.dtype))


def _view(st: DecodeState, inputs: LoopInputs, metrics: LogitMetrics) -> RowView:
    return RowView(t_B=st.t_B, active_B=~st.done_B, phase_B=st.phase_B, think_B=st.think_B, answer_B=st.answer_B,
                   n_out_B=st.n_out_B, waits_B=st.waits_B, pauses_B=st.pauses_B, q_seq_B=st.q_seq_B, out_BN=st.out_BN,
                   stats_BNS=st.stats_BNS, metrics=metrics, tables=inputs.tables,
                   rng_B=_row_keys(inputs.key, st.t_B, st.pid_B))


def _probe(spec: LoopSpec, params: Params, inputs: LoopInputs, view: RowView, st: DecodeState, window: int):
    """The controllers ask for probes of idle thinking rows; one probe per asking row is computed
    (only on steps where some row asks), each asking controller reads it, and it is logged."""
    if not spec.probe[1]:
        return st
    eligible_B = view.active_B & view.thinking_B & view.queue_idle_B
    wants = [c.probe(view, knobs, state) for c, knobs, state in zip(spec.controllers, inputs.knobs, st.ctl)]
    asked_B = jnp.zeros_like(eligible_B)
    for want_B in wants:
        asked_B = asked_B | (want_B if want_B is not None else False)
    asked_B = asked_B & eligible_B
    forced_L = inputs.tables.forced_RL[codes.SEQ_CAP, : spec.probe[0]]
    probe = jax.lax.cond(jnp.any(asked_B),
                         lambda: run_probe(params, spec.cfg, st.cache, window, forced_L, spec.probe[1],
                                           inputs.tables.eos_E),
                         lambda: Probe.none(spec.batch, spec.probe[1]))
    ctl = tuple(state if want_B is None else c.on_probe(view, knobs, state, probe, want_B & eligible_B)
                for c, knobs, state, want_B in zip(spec.controllers, inputs.knobs, st.ctl, wants))
    return st.replace(ctl=ctl, probes=st.probes.record(asked_B, st.n_out_B, probe))


def _suppress(spec: LoopSpec, inputs: LoopInputs, view: RowView, logits_BV: Array) -> tuple[Array, Array]:
    """Logits with the tokens controllers forbid set to -inf, and the waits that counts."""
    tried_B = jnp.zeros_like(view.active_B)
    masked_BV = logits_BV
    for c, knobs in zip(spec.controllers, inputs.knobs):
        s = c.suppress(view, knobs, logits_BV)
        if s is not None:
            masked_BV = jnp.where(s.mask_BV, -jnp.inf, masked_BV)
            tried_B = tried_B | s.counts_as_wait_B
    return masked_BV, tried_B


def _force(spec: LoopSpec, inputs: LoopInputs, view: RowView, st: DecodeState, tok_B: Array, regime_B: Array):
    """Controllers claim forced sequences in list order; a running sequence emits its next token."""
    t = inputs.tables
    q_seq, q_pos = st.q_seq_B, st.q_pos_B
    blocked_B = (q_seq >= 0) & ~jnp.asarray(codes.SEQ_INTERRUPTIBLE)[jnp.maximum(q_seq, 0)]
    claimed_B = ends_B = jnp.zeros_like(view.active_B)
    ctl, counters = list(st.ctl), {}
    for i, (c, knobs) in enumerate(zip(spec.controllers, inputs.knobs)):
        want_B = c.force(view, knobs, st.ctl[i], regime_B)
        if want_B is None:
            continue
        free_B = ~blocked_B if c.interrupts else view.queue_idle_B
        start_B = want_B & view.active_B & ~claimed_B & free_B & (t.forced_len_R[c.seq] > 0)
        claimed_B = claimed_B | start_B
        q_seq, q_pos = jnp.where(start_B, c.seq, q_seq), jnp.where(start_B, 0, q_pos)
        ends_B = ends_B | start_B if c.ends_thinking else ends_B
        ctl[i] = c.update(st.ctl[i], view, start_B)
        if c.counter:
            counters[c.counter] = counters.get(c.counter, getattr(st, c.counter)) + start_B
    in_q = view.active_B & (q_seq >= 0)
    qs = jnp.maximum(q_seq, 0)
    tok_B = jnp.where(in_q, t.forced_RL[qs, q_pos], tok_B)
    reason_B = jnp.where(in_q, jnp.asarray(codes.SEQ_REASON)[qs], codes.NOT_FORCED)
    q_pos = jnp.where(in_q, q_pos + 1, q_pos)
    q_seq = jnp.where(in_q & (q_pos >= t.forced_len_R[qs]), codes.NO_SEQ, q_seq)
    st = st.replace(q_seq_B=q_seq, q_pos_B=q_pos, ctl=tuple(ctl), **counters,
                    phase_B=jnp.where(ends_B, codes.ANSWER, st.phase_B),
                    boundary_B=jnp.where(ends_B, st.n_out_B, st.boundary_B))
    return st, tok_B, reason_B


def _append(st: DecodeState, active_B: Array, tok_B: Array, reason_B: Array) -> DecodeState:
    """Write the token; count it as thinking (a forced prefill is not) or answer."""
    in_thinking = active_B & (st.phase_B == codes.THINKING)
    return st.replace(
        out_BN=_write(st.out_BN, st.n_out_B, tok_B, active_B), n_out_B=st.n_out_B + active_B,
        think_B=st.think_B + (in_thinking & (reason_B != codes.FORCED_PREFILL)),
        answer_B=st.answer_B + (active_B & (st.phase_B == codes.ANSWER)),
    )


def _delimiter(spec: LoopSpec, inputs: LoopInputs, view: RowView, st: DecodeState, tok_B: Array, reason_B: Array):
    """A sampled end-of-thinking delimiter: the controllers extend (drop it, emit the wait text) or
    the row enters its answer phase."""
    t = inputs.tables
    sampled_B = view.active_B & (reason_B == codes.NOT_FORCED)
    delim_B = match_tail(st.out_BN, st.n_out_B, t.delim_ML, t.delim_len_M)
    event_B = sampled_B & (st.phase_B == codes.THINKING) & (delim_B > 0)
    no_B = jnp.zeros_like(event_B)
    ext = Extension(delim_len_B=delim_B, think_B=st.think_B, n_out_B=st.n_out_B, extend_B=no_B,
                    seq_B=jnp.full_like(delim_B, codes.SEQ_WAIT), waits_left_B=no_B, below_min_B=no_B)
    for c, knobs in zip(spec.controllers, inputs.knobs):
        ext = c.on_delimiter(view, knobs, ext)
    wait_len = t.forced_len_R[codes.SEQ_WAIT]
    extend_B = event_B & ext.extend_B & (wait_len > 0)
    end_B = event_B & ~extend_B
    n_out = jnp.where(extend_B, st.n_out_B - delim_B, st.n_out_B)
    tok_B = jnp.where(extend_B, t.forced_RL[codes.SEQ_WAIT, 0], tok_B)
    reason_B = jnp.where(extend_B, jnp.asarray(codes.SEQ_REASON)[ext.seq_B], reason_B)
    length = st.cache.length
    cache = st.cache.invalidate(jnp.where(extend_B, length - (delim_B - 1), 0), jnp.where(extend_B, length, 0))
    think = jnp.where(extend_B, st.think_B - delim_B + 1, st.think_B)
    st = st.replace(
        out_BN=_write(st.out_BN, n_out, tok_B, extend_B), n_out_B=n_out + extend_B, cache=cache,
        q_seq_B=jnp.where(extend_B & (wait_len > 1), ext.seq_B, st.q_seq_B), q_pos_B=jnp.where(extend_B, 1, st.q_pos_B),
        phase_B=jnp.where(end_B, codes.ANSWER, st.phase_B), boundary_B=jnp.where(end_B, n_out - delim_B, st.boundary_B),
        think_B=jnp.where(end_B, think - delim_B, think), answer_B=jnp.where(end_B, st.answer_B + delim_B, st.answer_B),
        waits_B=st.waits_B + extend_B,
    )
    return st, tok_B, reason_B, sampled_B, extend_B


def _record(st: DecodeState, view: RowView, regime_B: Array, reason_B: Array) -> DecodeState:
    """The token's reason, regime and statistics at the index it now occupies."""
    idx_B, active_B, a = st.n_out_B - 1, view.active_B, st.attn
    stats_BS = jnp.stack([view.metrics.entropy_B, view.metrics.varentropy_B, a.entropy_B, a.varentropy_B,
                          a.agreement_B, a.interaction_B, view.metrics.confidence_B], axis=-1)
    regime_B = jnp.where(reason_B != codes.NOT_FORCED, codes.FORCED, regime_B)
    return st.replace(forced_BN=_write(st.forced_BN, idx_B, reason_B, active_B),
                      regime_BN=_write(st.regime_BN, idx_B, regime_B, active_B),
                      stats_BNS=_write(st.stats_BNS, idx_B, stats_BS, active_B))


def _stop(spec: LoopSpec, inputs: LoopInputs, st: DecodeState, view: RowView, tok_B: Array, sampled_B: Array,
          extend_B: Array) -> DecodeState:
    """First reason wins: max_new_tokens, the controllers' stops, a stop string, EOS. A natural end of
    thinking on a delimiter that is also EOS (e.g. "<|im_end|>") ends the turn."""
    t, active_B = inputs.tables, view.active_B
    now = dataclasses.replace(view, phase_B=st.phase_B, think_B=st.think_B, answer_B=st.answer_B,
                              n_out_B=st.n_out_B, out_BN=st.out_BN)
    hits = [(active_B & (st.n_out_B >= inputs.max_new), codes.STOP_MAX_NEW)]
    hits += [(c.stop(now, knobs), c.stop_code) for c, knobs in zip(spec.controllers, inputs.knobs)]
    hits += [(sampled_B & (match_tail(st.out_BN, st.n_out_B, t.stop_ML, t.stop_len_M) > 0), codes.STOP_STRING),
             (sampled_B & ~extend_B & jnp.any(tok_B[:, None] == t.eos_E[None], axis=1), codes.STOP_EOS)]
    stop_B = st.stop_B
    for hit_B, code in hits:
        if hit_B is not None:
            stop_B = jnp.where(hit_B & (stop_B == codes.STOP_RUNNING), code, stop_B)
    return st.replace(stop_B=stop_B, done_B=st.done_B | (stop_B != codes.STOP_RUNNING))


def _emit(spec: LoopSpec, inputs: LoopInputs, view: RowView, st: DecodeState, tok_B: Array, regime_B: Array):
    """force -> append -> delimiter -> record -> stop: one token for each active row of `view`.
    Returns the state, the token each row emitted and whether that is the proposal, unchanged
    (neither forced nor replaced by a wait)."""
    st, tok_B, reason_B = _force(spec, inputs, view, st, tok_B, regime_B)
    st = _append(st, view.active_B, tok_B, reason_B)
    st, tok_B, reason_B, sampled_B, extend_B = _delimiter(spec, inputs, view, st, tok_B, reason_B)
    st = _record(st, view, regime_B, reason_B)
    st = _stop(spec, inputs, st, view, tok_B, sampled_B, extend_B)
    return st, tok_B, sampled_B & ~extend_B


def _follow(spec: LoopSpec, inputs: LoopInputs, st: DecodeState, path: Path, tok_B: Array, kept_B: Array):
    """Take a look-ahead path after its first token, token by token, as if each were sampled at a
    step of its own: the previous token's K/V (computed by the look-ahead) goes into the cache at
    the shared slot, then the token goes through `_emit` with the metrics of the distribution it
    was chosen from. A row leaves its path at the first token a controller forbids (`suppress`),
    or after one that was not emitted as is (forced, or a delimiter replaced by a wait) or that
    ended the row; the forward at the end of the step then feeds the row's last emitted token.
    So the state machine counts every token and may cut the path, and the cache, positions and
    counters equal those of decoding the same tokens one per step."""
    go_B = path.take_B & kept_B & ~st.done_B
    for i in range(path.depth):
        logits_BV = path.logits_BDV[:, i]
        path_tok_B = path.tokens_BD[:, i]
        view = dataclasses.replace(_view(st, inputs, logit_metrics(logits_BV)), active_B=go_B, proposal_B=path_tok_B)
        masked_BV, _ = _suppress(spec, inputs, view, logits_BV)
        go_B = go_B & jnp.isfinite(jnp.take_along_axis(masked_BV, path_tok_B[:, None], axis=1)[:, 0])
        st = st.replace(cache=path.commit_kv(st.cache, i, go_B))
        view = dataclasses.replace(view, active_B=go_B)
        st, emitted_B, kept_B = _emit(spec, inputs, view, st, path_tok_B, jnp.full_like(path_tok_B, codes.BRANCH_PATH))
        tok_B = jnp.where(go_B, emitted_B, tok_B)
        go_B = go_B & kept_B & ~st.done_B
    return st, tok_B


def _step(spec: LoopSpec, params: Params, inputs: LoopInputs, window: int, st: DecodeState) -> DecodeState:
    """propose -> force -> append -> delimiter -> record -> stop (-> the same for each token of a
    look-ahead path) -> forward, for every row at once."""
    view = _view(st, inputs, logit_metrics(st.logits_BV))
    logits_BV, tried_B = _suppress(spec, inputs, view, st.logits_BV)
    proposal = spec.sampler.propose(SamplerInput(
        logits_BV=logits_BV, metrics=view.metrics, attention=st.attn, rng_B=view.rng_B,
        active_B=view.active_B, lookahead=Lookahead(params, spec.cfg, st.cache, window)))
    view = dataclasses.replace(view, proposal_B=proposal.token_B)
    st = _probe(spec, params, inputs, view, st, window)
    st, tok_B, kept_B = _emit(spec, inputs, view, st, proposal.token_B, proposal.regime_B)
    if proposal.path is not None:
        st, tok_B = _follow(spec, inputs, st, proposal.path, tok_B, kept_B)
    logits, cache, attn = forward(params, spec.cfg, tok_B[:, None], st.cache, window=window,
                                  token_valid_BT=view.active_B[:, None], metric_layers=spec.metric_layers,
                                  last_only=True)
    return st.replace(step=st.step + 1, t_B=st.t_B + view.active_B, cache=cache, logits_BV=logits,
                      waits_B=st.waits_B + tried_B, attn=attn if attn is not None else st.attn)


def _zero_attn(b: int) -> AttentionMetrics:
    z = jnp.zeros((b,), jnp.float32)
    return AttentionMetrics(entropy_B=z, varentropy_B=z, agreement_B=z, interaction_B=z)


def fresh_rows(spec: LoopSpec, inputs: LoopInputs, cache: KVCache, logits_BV: Array,
               attn: AttentionMetrics | None, step: Array) -> DecodeState:
    """A state in which every row starts anew from its prefilled prompt (the logits of its last
    prompt token); `slots.refill` keeps these rows only where it starts a prompt."""
    b, n_cap = spec.batch, spec.out_len
    zi = jnp.zeros((b,), jnp.int32)
    not_started = inputs.max_new <= 0
    return DecodeState(
        step=step, cache=cache, logits_BV=logits_BV, attn=attn if attn is not None else _zero_attn(b),
        out_BN=jnp.zeros((b, n_cap), jnp.int32), forced_BN=jnp.zeros((b, n_cap), jnp.int8),
        regime_BN=jnp.zeros((b, n_cap), jnp.int8),
        stats_BNS=jnp.zeros((b, n_cap, len(codes.STAT_NAMES)), jnp.float32),
        n_out_B=zi, phase_B=jnp.where(inputs.thinking_B, codes.THINKING, codes.ANSWER).astype(jnp.int32),
        boundary_B=zi, think_B=zi, answer_B=zi, waits_B=zi, pauses_B=zi, q_seq_B=zi + codes.NO_SEQ, q_pos_B=zi,
        done_B=jnp.broadcast_to(not_started, (b,)), stop_B=jnp.where(not_started, codes.STOP_MAX_NEW, codes.STOP_RUNNING) + zi,
        t_B=zi, pid_B=inputs.prompt_id_B, ctl=tuple(c.init(k, b) for c, k in zip(spec.controllers, inputs.knobs)),
        probes=ProbeLog.init(b, spec.probe_slots, spec.probe[1]),
    )


def pin_inputs(spec: LoopSpec, inputs: LoopInputs) -> LoopInputs:
    """The small per-call inputs (prompt ids, knobs, tables, key) pinned replicated at the top of a
    jitted program (see `sharding.replicate`): left free, XLA may split a batch that the dp axis does
    not divide (6 rows over 8 devices: 2 ways) and JAX then cannot express that sharding."""
    return inputs.replace(prompt_id_B=replicate(spec.cfg, inputs.prompt_id_B), knobs=replicate(spec.cfg, inputs.knobs),
                          tables=replicate(spec.cfg, inputs.tables), key=replicate(spec.cfg, inputs.key))


def _init(spec: LoopSpec, params: Params, inputs: LoopInputs) -> DecodeState:
    """Prefill the left-padded prompts and build the loop's starting state (row i holds prompt i)."""
    from entropix_s1.core.sharding import constrain  # batch over "dp", KV heads over "tp"; no-op without a mesh

    cache = KVCache.init(spec.cfg, spec.batch, spec.cache_len, params.dtype)
    inputs = pin_inputs(spec, inputs)
    tokens_BP, valid_BP, cache = constrain(spec.cfg, (inputs.tokens_BP, inputs.valid_BP, cache))
    logits, cache, attn = forward(params, spec.cfg, tokens_BP, cache, window=spec.prompt_len,
                                  token_valid_BT=valid_BP, metric_layers=spec.metric_layers, last_only=True)
    return constrain(spec.cfg, fresh_rows(spec, inputs, cache, logits, attn, jnp.zeros((), jnp.int32)))


def _stage(spec: LoopSpec, params: Params, inputs: LoopInputs, window: int, st: DecodeState, cond) -> DecodeState:
    """One stage of the loop on a cache of exactly `window` slots, written back after.

    Attention then reads whole buffers: slicing a `window` view of the full cache on every step
    cost a window-sized copy per layer per step (XLA:CPU), far more than its bytes; slicing once
    per stage costs one copy of the filled part."""
    full = st.cache
    if window == full.max_len:
        return jax.lax.while_loop(cond, functools.partial(_step, spec, params, inputs, window), st)

    def run(st):
        small = full.replace(k=tuple(k[:, :, :window] for k in full.k), v=tuple(v[:, :, :window] for v in full.v),
                             valid_BS=full.valid_BS[:, :window])
        st = jax.lax.while_loop(cond, functools.partial(_step, spec, params, inputs, window), st.replace(cache=small))

        def back(big, part):
            return jax.lax.dynamic_update_slice(big, part, (0,) * big.ndim)

        c = st.cache
        return st.replace(cache=c.replace(k=tuple(map(back, full.k, c.k)), v=tuple(map(back, full.v, c.v)),
                                          valid_BS=back(full.valid_BS, c.valid_BS)))

    return jax.lax.cond(cond(st), run, lambda st: st, st)


def _run(spec: LoopSpec, params: Params, inputs: LoopInputs, st: DecodeState, step_limit: Array,
         min_active: Array | int = 1) -> DecodeState:
    """Decode until fewer than `min_active` rows run (1: every row is done), the cache is full, or
    `step_limit` steps have run.

    Stages whose window the cache has already outgrown exit at once, so a state can be resumed
    (streaming runs this in chunks, the slot scheduler until a row finishes: same compiled
    program every time). A sampler that may write several slots per step (a committed look-ahead
    path: the other rows' slots there stay empty) can fill the cache before its rows are done:
    then the cache is compacted (`KVCache.compact`, which changes no token) and the stages run
    again, as long as that frees room."""
    inputs = pin_inputs(spec, inputs)

    def running(s):
        return (jnp.sum(~s.done_B) >= min_active) & jnp.any(~s.done_B) & (s.step < step_limit)

    def stages(s):
        for w in spec.windows:
            def cond(s, w=w):
                return running(s) & (s.cache.length + spec.margin <= w)

            s = _stage(spec, params, inputs, w, s, cond)
        return s

    if spec.margin == 1:  # one slot per step: the cache holds every token it was sized for
        return stages(st)

    def again(carry):
        s, first = carry
        live_B = jnp.where(s.done_B, 0, s.cache.valid_BS.sum(1, dtype=jnp.int32))
        return first | (running(s) & (s.cache.length + spec.margin > spec.cache_len)
                        & (jnp.max(live_B) + spec.margin <= spec.cache_len))

    def body(carry):  # one loop around the stages, so each stage is compiled once
        s, first = carry
        cache = jax.lax.cond(first, lambda c: c, lambda c: c.compact(s.done_B), s.cache)
        return stages(s.replace(cache=cache)), jnp.zeros((), bool)

    return jax.lax.while_loop(again, body, (st, jnp.ones((), bool)))[0]


@functools.partial(jax.jit, static_argnames=("spec",))
def generate_arrays(spec: LoopSpec, params: Params, inputs: LoopInputs) -> DecodeState:
    """Prefill + staged decode for one batch, one device program; the host reads the buffers."""
    return _run(spec, params, inputs, _init(spec, params, inputs), jnp.asarray(codes.NO_LIMIT, jnp.int32))


init_state = jax.jit(_init, static_argnames=("spec",))
run_chunk = jax.jit(_run, static_argnames=("spec",), donate_argnames=("st",))
