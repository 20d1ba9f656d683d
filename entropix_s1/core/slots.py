"""Continuous batching: refill finished rows' slots with new prompts while the others keep decoding.

The cache keeps its shared write slot (`KVCache.length`): every row writes its next token to the
same slot, so one in-place update serves the batch. A refill therefore (1) compacts the cache --
each row's valid slots are moved, in order, to end at the new shared length L' = max_b(valid_b),
the refilled rows' old slots dropped -- and (2) prefills the new prompts at [L', L' + P) with only
the refilled rows' tokens valid. Moving a slot changes nothing a row can see: RoPE was applied
when the key was written and a row's position counter `pos_B` counts only its valid slots, so a
row attends to the same keys at the same positions, in the same order; only masked (exactly zero)
terms of its sums move. The same compaction (no row refilled) frees the cache when the shared
length reaches its end while rows still run.

Both steps are jitted per `LoopSpec` (one program each, whatever rows are refilled) and run
between chunks of `decode.run_chunk`, so refills never recompile the loop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from entropix_s1.core.decode import DecodeState, LoopInputs, LoopSpec, fresh_rows
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
    j_BS = jnp.arange(S, dtype=jnp.int32)[None, :] - (length - count_B)[:, None]  # rank of target slot
    new_valid_BS = (j_BS >= 0) & (j_BS < count_B[:, None])
    src_BS = jnp.take_along_axis(order_BS, jnp.clip(j_BS, 0, S - 1), axis=1)

    def move(buf_BKSH: Array) -> Array:
        return jnp.take_along_axis(buf_BKSH, src_BS[:, None, :, None], axis=2)

    return cache.replace(k=tuple(move(k) for k in cache.k), v=tuple(move(v) for v in cache.v),
                         valid_BS=new_valid_BS, pos_B=jnp.where(drop_B, 0, count_B), length=length)


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnames=("st",))
def compact(spec: LoopSpec, st: DecodeState) -> DecodeState:
    """Free the cache of slots no row attends to (dropped delimiters, padding, finished rows)."""
    del spec
    return st.replace(cache=_compact_cache(st.cache, st.done_B))


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnames=("st",))
def refill(spec: LoopSpec, params: Params, inputs: LoopInputs, st: DecodeState, refill_B: Array,
           pid_B: Array) -> DecodeState:
    """Start the prompts of `inputs` (their rows' tokens, knobs and budgets) in the `refill_B`
    slots, as prompt `pid_B`; every other row goes on from where it is."""
    cache = _compact_cache(st.cache, refill_B | st.done_B)
    valid_BP = inputs.valid_BP & refill_B[:, None]
    logits, cache, attn = forward(params, spec.cfg, inputs.tokens_BP, cache, window=spec.cache_len,
                                  token_valid_BT=valid_BP, metric_layers=spec.metric_layers, last_only=True)
    fresh = fresh_rows(spec, inputs, cache, logits, attn, pid_B, st.step)

    def pick(new, old):
        if not hasattr(old, "ndim") or old.ndim == 0:
            return old
        return jnp.where(refill_B.reshape(refill_B.shape + (1,) * (old.ndim - 1)), new, old)

    return jax.tree.map(pick, fresh.replace(cache=None), st.replace(cache=None)).replace(cache=cache)
