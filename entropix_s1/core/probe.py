"""In-loop probes: a trial answer after a forced end of thinking, computed and thrown away.

DEER, EAT and Dynasor each decide whether a row may stop thinking by asking the model what it
would answer now: close the thought (the end-of-thinking delimiter and the answer prefix, i.e. the
cap tail `forced_RL[SEQ_CAP]`) and read a few greedy tokens. Their papers spend an extra request
per probe. Here a probe is ONE look-ahead path per row over the row's own decode cache
(`model.forward_paths`: it reads the cache and never writes it; the path's K/V live in a small
`SuffixCache` that is dropped afterwards), so it leaves the row's cache, RoPE position and every
counter exactly as they were and its tokens are never thinking tokens. The loop runs it only on
steps where some row asks (`lax.cond`), for all rows at once with static shapes; rows that did not
ask ignore the result.

What a probe measures (float32):
    tokens_BA      the A greedy answer tokens after the forced text (-1 after an end-of-sequence
                   token: the trial answer ends there, as a fresh generation would)
    maxprob_BA     max_v p(v) of the distribution each answer token was chosen from
    confidence_B   mean of maxprob_BA over the answer's tokens (up to its EOS): DEER's confidence
    entropy_B      H(p) in nats of the first answer token's distribution, i.e. of the next token
                   right after the appended delimiter + answer prefix: EAT's signal
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from entropix_s1.core.metrics import logit_metrics
from entropix_s1.core.model import KVCache, Params, SuffixCache, forward_paths

Array = jax.Array

__all__ = ["Probe", "ProbeLog", "run_probe"]


@struct.dataclass
class Probe:
    tokens_BA: Array
    maxprob_BA: Array
    confidence_B: Array
    entropy_B: Array

    @classmethod
    def none(cls, batch: int, answer: int) -> "Probe":
        """The shapes of a probe no row asked for (the other branch of the `lax.cond`)."""
        z_B = jnp.zeros((batch,), jnp.float32)
        return cls(tokens_BA=jnp.zeros((batch, answer), jnp.int32), maxprob_BA=jnp.zeros((batch, answer), jnp.float32),
                   confidence_B=z_B, entropy_B=z_B)


def run_probe(params: Params, cfg, cache: KVCache, window: int, forced_L: Array, answer: int, eos_E: Array) -> Probe:
    """Feed the `len(forced_L)` forced tokens, then greedy tokens, as one path per row: L + A - 1
    forwards of one token over the shared cache (the last answer token is chosen, not fed)."""
    batch, n_forced = cache.pos_B.shape[0], forced_L.shape[0]
    steps = n_forced + answer - 1
    suffix = SuffixCache.init(cfg, batch, 1, steps, cache.k[0].dtype)
    tok_B = jnp.broadcast_to(forced_L[0], (batch,))
    answer_tokens, maxprobs, first_entropy = [], [], None
    for j in range(steps):
        logits_B1V, suffix = forward_paths(params, cfg, tok_B[:, None], cache, suffix, j, window=window)
        logits_BV = logits_B1V[:, 0].astype(jnp.float32)
        if j + 1 < n_forced:
            tok_B = jnp.broadcast_to(forced_L[j + 1], (batch,))
            continue
        if first_entropy is None:
            first_entropy = logit_metrics(logits_BV).entropy_B
        tok_B = jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)
        answer_tokens.append(tok_B)
        maxprobs.append(jnp.max(jax.nn.softmax(logits_BV, axis=-1), axis=-1))
    tokens_BA, maxprob_BA = jnp.stack(answer_tokens, axis=1), jnp.stack(maxprobs, axis=1)
    eos_BA = jnp.any((tokens_BA[..., None] == eos_E) & (eos_E >= 0), axis=-1)
    after_eos_BA = (jnp.cumsum(eos_BA, axis=1) - eos_BA) > 0
    keep_BA = ~after_eos_BA
    confidence_B = jnp.sum(jnp.where(keep_BA, maxprob_BA, 0.0), axis=1) / jnp.sum(keep_BA, axis=1)
    return Probe(tokens_BA=jnp.where(keep_BA, tokens_BA, -1), maxprob_BA=jnp.where(keep_BA, maxprob_BA, 0.0),
                 confidence_B=confidence_B, entropy_B=first_entropy)


@struct.dataclass
class ProbeLog:
    """Each row's probes, for the trace: where (the output index the probe came before), the answer
    tokens, confidence and entropy. `n_B` counts every probe; the first `slots` are kept."""

    n_B: Array
    at_BP: Array
    tokens_BPA: Array
    confidence_BP: Array
    entropy_BP: Array

    @classmethod
    def init(cls, batch: int, slots: int, answer: int) -> "ProbeLog":
        return cls(n_B=jnp.zeros((batch,), jnp.int32), at_BP=jnp.zeros((batch, slots), jnp.int32),
                   tokens_BPA=jnp.zeros((batch, slots, answer), jnp.int32),
                   confidence_BP=jnp.zeros((batch, slots), jnp.float32), entropy_BP=jnp.zeros((batch, slots), jnp.float32))

    def record(self, asked_B: Array, at_B: Array, probe: Probe) -> "ProbeLog":
        slots = self.at_BP.shape[1]
        keep_B = asked_B & (self.n_B < slots)
        rows, idx_B = jnp.arange(asked_B.shape[0]), jnp.minimum(self.n_B, slots - 1)

        def put(buf, val):
            mask = keep_B.reshape(keep_B.shape + (1,) * (val.ndim - 1))
            return buf.at[rows, idx_B].set(jnp.where(mask, val, buf[rows, idx_B]).astype(buf.dtype))

        return ProbeLog(n_B=self.n_B + asked_B, at_BP=put(self.at_BP, at_B), tokens_BPA=put(self.tokens_BPA, probe.tokens_BA),
                        confidence_BP=put(self.confidence_BP, probe.confidence_B),
                        entropy_BP=put(self.entropy_BP, probe.entropy_B))
