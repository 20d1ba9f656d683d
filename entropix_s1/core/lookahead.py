"""Look-ahead from the current cache: greedy continuations of candidate tokens, with no cache copy.

The entropix branch regime scores a few candidate next tokens by how their greedy continuations
go, and the winner's continuation is then committed (issue 17). The N candidates of a row run as
N paths over the row's decode cache, which they read once and never write
(`model.forward_paths`); each path's own tokens live in a small `SuffixCache`. Nothing the
look-ahead computes reaches the real cache until `Path.commit_kv` writes a winner's token there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from entropix_s1.core.metrics import logit_metrics
from entropix_s1.core.model import KVCache, SuffixCache, forward_paths
from entropix_s1.core.sampling import greedy

Array = jax.Array


@struct.dataclass
class Paths:
    """N look-ahead paths per row: token 0 is the candidate, tokens 1..D-1 greedy after it.

    logprob_BND / entropy_BND: for tokens 1..D-1 (index t-1), the log-prob of the greedy token and
    the entropy (nats) of the distribution it was taken from, `logits_BNDV` that distribution.
    suffix: K/V of tokens 0..D-2 (token D-1 is not fed: the loop's own forward does that)."""

    tokens_BND: Array
    logprob_BND: Array
    entropy_BND: Array
    logits_BNDV: Array
    suffix: SuffixCache


@struct.dataclass
class Path:
    """One committed look-ahead path per row: the tokens that follow the row's proposed token.

    take_B: rows whose proposal starts this path (the others ignore it).
    tokens_BD: tokens 1..D-1 of the path; logits_BDV: the distribution each was chosen from.
    k, v: per layer `[B, K, D-1, hd]`, the K/V of path tokens 0..D-2 (token 0 is the proposal)."""

    take_B: Array
    tokens_BD: Array
    logits_BDV: Array
    k: tuple[Array, ...]
    v: tuple[Array, ...]

    @property
    def depth(self) -> int:
        """Tokens a row may take after its proposal."""
        return self.tokens_BD.shape[1]

    @classmethod
    def pick(cls, paths: Paths, winner_B: Array, take_B: Array) -> "Path":
        """Each row's `winner_B` path of `paths`."""
        def one(x):  # [B, N, ...] -> [B, ...]
            return jnp.take_along_axis(x, winner_B.reshape((-1,) + (1,) * (x.ndim - 1)), axis=1)[:, 0]
        return cls(take_B=take_B, tokens_BD=one(paths.tokens_BND)[:, 1:], logits_BDV=one(paths.logits_BNDV),
                   k=tuple(one(k) for k in paths.suffix.k), v=tuple(one(v) for v in paths.suffix.v))

    @classmethod
    def none(cls, batch: int, depth: int, vocab: int, cache: KVCache) -> "Path":
        """A path no row takes (the same shapes, for the branch of a `lax.cond` without roll-out)."""
        kv_shape = cache.k[0].shape[:2] + (depth,) + cache.k[0].shape[3:]
        zeros = tuple(jnp.zeros(kv_shape, cache.k[0].dtype) for _ in cache.k)
        return cls(take_B=jnp.zeros((batch,), bool), tokens_BD=jnp.zeros((batch, depth), jnp.int32),
                   logits_BDV=jnp.zeros((batch, depth, vocab), jnp.float32), k=zeros, v=zeros)

    def commit_kv(self, cache: KVCache, i: int, take_B: Array) -> KVCache:
        """Append path token i's K/V to the rows `take_B` at the shared slot `cache.length`, as the
        loop's forward would have written it (same position: the rows' counters were not moved
        since the path was computed); the other rows get an invalid slot there."""
        slot = cache.length

        def put(buf_BKSH, path_BKDH):
            return jax.lax.dynamic_update_slice(buf_BKSH, path_BKDH[:, :, i:i + 1], (0, 0, slot, 0))

        return cache.replace(k=tuple(map(put, cache.k, self.k)), v=tuple(map(put, cache.v, self.v)),
                             valid_BS=jax.lax.dynamic_update_slice(cache.valid_BS, take_B[:, None], (0, slot)),
                             pos_B=cache.pos_B + take_B, length=slot + jnp.any(take_B))


@dataclasses.dataclass(frozen=True)
class Lookahead:
    """The model and the current cache at one loop step (built inside the traced step)."""

    params: Any
    cfg: Any
    cache: KVCache
    window: int

    def greedy_paths(self, first_BN: Array, steps: int, rows_B: Array | None = None) -> Paths:
        """Feed each row's N candidate tokens, then `steps` - 1 greedy tokens after each (the last
        one chosen, not fed): `steps` - 1 forwards of N tokens per row over the shared cache.

        With `rows_B`, only those rows roll out, a group of ceil(B / 4) rows at a time (their cache
        rows gathered), as many groups as needed; the others' paths are zeros. A branch is rare
        once the thresholds are calibrated (about a tenth of tokens), so at batch 8 a roll-out of
        the one or two branching rows costs a quarter of rolling out all eight."""
        b = first_BN.shape[0]
        group = -(-b // 4)
        if rows_B is None or group == b:
            return self._paths(self.cache, first_BN, steps)
        order_B = jnp.nonzero(rows_B, size=b, fill_value=b)[0]  # the rows to roll out first; b: none

        def take(rows_R):
            safe_R = jnp.minimum(rows_R, b - 1)
            return jax.tree.map(lambda a: a[safe_R] if a.ndim else a, self.cache), first_BN[safe_R]

        shapes = jax.eval_shape(lambda c, f: self._paths(c, f, steps), *take(order_B[:group]))
        out = jax.tree.map(lambda x: jnp.zeros((b,) + x.shape[1:], x.dtype), shapes)

        def one_group(g, out):  # the last group's start is clamped back: a few rows run twice, same values
            rows_R = jax.lax.dynamic_slice_in_dim(order_B, g * group, group)
            paths = self._paths(*take(rows_R), steps)
            return jax.tree.map(lambda o, x: o.at[rows_R].set(x, mode="drop"), out, paths)

        return jax.lax.fori_loop(0, (jnp.sum(rows_B) + group - 1) // group, one_group, out)

    def _paths(self, cache: KVCache, first_BN: Array, steps: int) -> Paths:
        b, n = first_BN.shape
        suffix = SuffixCache.init(self.cfg, b, n, max(steps - 1, 1), cache.k[0].dtype)
        tokens, logprobs, entropies, logits = [first_BN], [], [], []
        for j in range(steps - 1):
            logits_BNV, suffix = forward_paths(self.params, self.cfg, tokens[-1], cache, suffix, j, window=self.window)
            flat_RV = logits_BNV.reshape(b * n, -1)
            tokens.append(greedy(flat_RV).reshape(b, n))
            logprobs.append(jnp.max(jax.nn.log_softmax(flat_RV), axis=-1).reshape(b, n))
            entropies.append(logit_metrics(flat_RV).entropy_B.reshape(b, n))
            logits.append(logits_BNV)
        return Paths(tokens_BND=jnp.stack(tokens, axis=2), logprob_BND=jnp.stack(logprobs, axis=2),
                     entropy_BND=jnp.stack(entropies, axis=2), logits_BNDV=jnp.stack(logits, axis=2), suffix=suffix)
