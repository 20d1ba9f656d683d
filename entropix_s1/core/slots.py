"""Continuous batching: refill finished rows' slots with new prompts while the others keep decoding.

The cache keeps its shared write slot (`KVCache.length`): every row writes its next token to the
same slot, so one in-place update serves the batch. A refill therefore

1. compacts the cache: each row's valid slots are moved, in order, to end at the new shared length
   L' = max_b(valid slots of b); finished rows and the refilled slots are emptied;
2. prefills each new prompt alone (a batch-1 forward over its own row of the cache) at slots
   [L', L' + P), so a refill costs one prompt's prefill, not the batch's; the other rows' slots in
   that block stay invalid for them.

Moving a slot changes nothing a row can see: RoPE was applied when the key was written, a row's
position counter `pos_B` counts only its valid slots, and the causal mask compares slot order,
which compaction keeps; only masked (exactly zero) terms of its sums move. The same compaction,
with nothing refilled, frees the cache when the shared length reaches its end while rows still run.
Both are jitted per `LoopSpec` (one program each, whatever rows are refilled) and run between
chunks of `decode.run_chunk`, so refills never recompile the loop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from entropix_s1.core.decode import DecodeState, LoopInputs, LoopSpec, fresh_rows, pin_inputs
from entropix_s1.core.metrics import AttentionMetrics
from entropix_s1.core.model import KVCache, Params, forward

Array = jax.Array

__all__ = ["compact", "refill", "refill_block"]


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnames=("st",))
def compact(spec: LoopSpec, st: DecodeState) -> DecodeState:
    """Free the cache of slots no running row attends to (dropped delimiters, padding, done rows)."""
    del spec
    return st.replace(cache=st.cache.compact(st.done_B))


def _prefill_rows(spec: LoopSpec, params: Params, inputs: LoopInputs, cache: KVCache, logits_BV: Array,
                  attn: AttentionMetrics, refill_B: Array, block: int):
    """Prefill each refilled row's prompt (the last `block` columns of its left-padded tokens) alone,
    into slots [cache.length, + block) of its row; the batch's length then advances once for all.

    A refilled row's old slots were all dropped, so its prompt attends only to itself: the forward
    runs on a fresh `block`-slot cache (attention T x T, not T x cache) whose K/V are then copied
    into the row. Same math as prefilling in place."""
    slot_N = jnp.nonzero(refill_B, size=spec.batch, fill_value=0)[0]
    tokens_BT, valid_BT = inputs.tokens_BP[:, -block:], inputs.valid_BP[:, -block:]
    start = cache.length

    def one(i, carry):
        cache, logits_BV, attn = carry
        slot = slot_N[i]
        fresh = KVCache.init(spec.cfg, 1, block, cache.k[0].dtype)
        lg, fresh, a = forward(params, spec.cfg, jax.lax.dynamic_slice_in_dim(tokens_BT, slot, 1), fresh, window=block,
                               token_valid_BT=jax.lax.dynamic_slice_in_dim(valid_BT, slot, 1),
                               metric_layers=spec.metric_layers, last_only=True)

        def put(big_BKSH, row_1KTH):  # the row's block of K or V at (slot, :, start:start + block)
            return jax.lax.dynamic_update_slice(big_BKSH, row_1KTH, (slot, 0, start, 0))

        cache = cache.replace(k=tuple(map(put, cache.k, fresh.k)), v=tuple(map(put, cache.v, fresh.v)),
                              valid_BS=jax.lax.dynamic_update_slice(cache.valid_BS, fresh.valid_BS, (slot, start)),
                              pos_B=cache.pos_B.at[slot].set(fresh.pos_B[0]))
        logits_BV = logits_BV.at[slot].set(lg[0])
        if a is not None:
            attn = jax.tree.map(lambda x, y: x.at[slot].set(y[0]), attn, a)
        return cache, logits_BV, attn

    cache, logits_BV, attn = jax.lax.fori_loop(0, jnp.sum(refill_B), one, (cache, logits_BV, attn))
    return cache.replace(length=start + block), logits_BV, attn


@functools.partial(jax.jit, static_argnames=("spec", "block", "compact"), donate_argnames=("st",))
def refill(spec: LoopSpec, params: Params, inputs: LoopInputs, st: DecodeState, refill_B: Array,
           block: int, compact: bool = True) -> DecodeState:
    """Start the prompts `inputs` holds for the `refill_B` slots (tokens, knobs, prompt ids); every
    other row goes on from where it is. `block` (static, >= the refilled prompts' length, <=
    spec.prompt_len) is the size of the slot block the new prompts are prefilled into; `compact`
    (static) first moves every row's slots together (else the block goes after the shared length)."""
    inputs = pin_inputs(spec, inputs)
    drop_B = refill_B | st.done_B
    if compact:
        cache = st.cache.compact(drop_B)
    else:  # forget every slot of the dropped rows; no data moves, the shared length stays
        cache = st.cache.invalidate(jnp.zeros_like(st.cache.pos_B), jnp.where(drop_B, st.cache.max_len, 0))
    cache, logits_BV, attn = _prefill_rows(spec, params, inputs, cache, st.logits_BV, st.attn, refill_B, block)
    fresh = fresh_rows(spec, inputs, None, logits_BV, attn, st.step)

    def pick(new, old):
        if old.ndim == 0:
            return old
        return jnp.where(refill_B.reshape(refill_B.shape + (1,) * (old.ndim - 1)), new, old)

    return jax.tree.map(pick, fresh, st.replace(cache=None)).replace(cache=cache)


def refill_block(prompt_len: int, longest: int) -> int:
    """The refill block for prompts of at most `longest` tokens: the next of 16, 24, 32, 48, 64, ...
    (at most a third wasted on padding, a handful of compiled programs), capped at `prompt_len`."""
    b = 16
    while b < longest:
        b = b * 3 // 2 if (b & (b - 1)) == 0 else b * 4 // 3
    return min(b, prompt_len)
