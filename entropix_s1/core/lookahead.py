"""Look-ahead from the current cache: greedy continuations of candidate tokens, thrown away after.

The entropix branch regime scores a few candidate next tokens by how their greedy continuations
go. The candidates run on a copy of each row's cache, one copy per candidate (`jnp.repeat`), so
nothing the look-ahead writes reaches the real cache.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from entropix_s1.core.metrics import logit_metrics
from entropix_s1.core.model import KVCache, forward
from entropix_s1.core.sampling import greedy

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Lookahead:
    """The model and the current cache at one loop step (built inside the traced step)."""

    params: Any
    cfg: Any
    cache: KVCache
    window: int

    def greedy_paths(self, first_BN: Array, alive_B: Array, steps: int) -> tuple[list[Array], list[Array]]:
        """Feed each row's N candidate tokens, then `steps` - 1 greedy tokens after each.

        Returns per roll-out step t (1 .. steps-1) the [B, N] log-prob of the greedy token and the
        entropy (nats) of the distribution it came from.
        """
        b, n = first_BN.shape
        cache = jax.tree.map(lambda a: jnp.repeat(a, n, axis=0) if a.ndim else a, self.cache)
        tok_R = first_BN.reshape(b * n)
        alive_R = jnp.repeat(alive_B, n)
        logprobs, entropies = [], []
        for _ in range(steps - 1):
            logits_RV, cache, _ = forward(self.params, self.cfg, tok_R[:, None], cache, window=self.window,
                                          token_valid_BT=alive_R[:, None], last_only=True)
            tok_R = greedy(logits_RV)
            logprobs.append(jnp.max(jax.nn.log_softmax(logits_RV), axis=-1).reshape(b, n))
            entropies.append(logit_metrics(logits_RV).entropy_B.reshape(b, n))
        return logprobs, entropies
