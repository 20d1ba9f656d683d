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

from entropix_s1.core.decode import DecodeState, LoopInputs, LoopSpec, fresh_rows
from entropix_s1.core.metrics import AttentionMetrics
from entropix_s1.core.model import KVCache, Params, forward

Array = jax.Array

__all__ = ["compact", "refill"]


def _compact_cache(cache: KVCache, drop_B: Array) -> KVCache:
    """Right-align each row's valid slots at the new shared length; rows in `drop_B` are emptied."""
    valid_BS = cache.valid_BS & ~drop_B[:, None]
    S = valid_BS.shape[1]
    count_B = valid_BS.sum(1, dtype=jnp.int32)
    length = jnp.max(count_B)
    order_BS = jnp.argsort(~valid_BS, axis=1, stable=True)  # valid slots first, in order
    rank_BS = jnp.arange(S, dtype=jnp.int32)[None, :] - (length - count_B)[:, None]  # of the target slot
    src_BS = jnp.take_along_axis(order_BS, jnp.clip(rank_BS, 0, S - 1), axis=1)

    def move(buf_BKSH: Array) -> Array:
        return jnp.take_along_axis(buf_BKSH, src_BS[:, None, :, None], axis=2)

    return cache.replace(k=tuple(move(k) for k in cache.k), v=tuple(move(v) for v in cache.v),
                         valid_BS=(rank_BS >= 0) & (rank_BS < count_B[:, None]),
                         pos_B=jnp.where(drop_B, 0, count_B), length=length)


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnames=("st",))
def compact(spec: LoopSpec, st: DecodeState) -> DecodeState:
    """Free the cache of slots no running row attends to (dropped delimiters, padding, done rows)."""
    del spec
    return st.replace(cache=_compact_cache(st.cache, st.done_B))


def _row(tree, slot: Array):
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, slot, 1, axis=0) if a.ndim else a, tree)


def _put_row(tree, row, slot: Array):
    return jax.tree.map(lambda a, r: jax.lax.dynamic_update_slice_in_dim(a, r, slot, axis=0) if a.ndim else a, tree, row)


def _prefill_rows(spec: LoopSpec, params: Params, inputs: LoopInputs, cache: KVCache, logits_BV: Array,
                  attn: AttentionMetrics, refill_B: Array):
    """Prefill each refilled row's prompt alone at [cache.length, + P); the batch's length is then
    advanced once for all."""
    slot_N = jnp.nonzero(refill_B, size=spec.batch, fill_value=0)[0]

    def one(i, carry):
        cache, logits_BV, attn = carry
        slot = slot_N[i]
        row = _row(cache, slot).replace(length=cache.length)
        lg, row, a = forward(params, spec.cfg, _row(inputs.tokens_BP, slot), row, window=spec.cache_len,
                             token_valid_BT=_row(inputs.valid_BP, slot), metric_layers=spec.metric_layers,
                             last_only=True)
        cache = _put_row(cache, row.replace(length=cache.length), slot)
        return cache, _put_row(logits_BV, lg, slot), (attn if a is None else _put_row(attn, a, slot))

    cache, logits_BV, attn = jax.lax.fori_loop(0, jnp.sum(refill_B), one, (cache, logits_BV, attn))
    return cache.replace(length=cache.length + spec.prompt_len), logits_BV, attn


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnames=("st",))
def refill(spec: LoopSpec, params: Params, inputs: LoopInputs, st: DecodeState, refill_B: Array) -> DecodeState:
    """Start the prompts `inputs` holds for the `refill_B` slots (tokens, knobs, prompt ids); every
    other row goes on from where it is."""
    cache = _compact_cache(st.cache, refill_B | st.done_B)
    cache, logits_BV, attn = _prefill_rows(spec, params, inputs, cache, st.logits_BV, st.attn, refill_B)
    fresh = fresh_rows(spec, inputs, None, logits_BV, attn, st.step)

    def pick(new, old):
        if old.ndim == 0:
            return old
        return jnp.where(refill_B.reshape(refill_B.shape + (1,) * (old.ndim - 1)), new, old)

    return jax.tree.map(pick, fresh, st.replace(cache=None)).replace(cache=cache)
