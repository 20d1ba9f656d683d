"""Token tables: every string the loop needs, as token ids, and the per-row tail matching on them.

The host tokenises think_start, the cap tail, wait and pause texts, delimiters, stop strings and
EOS once; the loop only ever sees these padded int32 tables, so it never touches a tokenizer.
Table sizes are bucketed (`bucket`) so another wait string or EOS set reuses the compiled loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = ["TokenTables", "bucket", "completing_tokens_mask", "in_set", "match_tail"]


def bucket(n: int, minimum: int = 16) -> int:
    """Next power of two >= n (>= minimum): new lengths reuse a handful of compiled programs."""
    b = minimum
    while b < n:
        b *= 2
    return b


def _table(seqs: list[list[int]], rows: int, align_right: bool) -> tuple[np.ndarray, np.ndarray]:
    width = bucket(max([len(s) for s in seqs] + [1]), 8)
    table = np.full((rows, width), -1 if align_right else 0, np.int32)
    for i, s in enumerate(seqs):
        if s and align_right:
            table[i, width - len(s):] = s
        elif s:
            table[i, : len(s)] = s
    lens = np.zeros((rows,), np.int32)
    lens[: len(seqs)] = [len(s) for s in seqs]
    return table, lens


@struct.dataclass
class TokenTables:
    """Every string the loop needs, as token ids (the loop never sees a tokenizer).

    forced_RL / forced_len_R: sequences the loop emits token by token (rows `codes.SEQ_*`:
        think_start, the cap tail think_end[0] + answer_prefix, wait_text, the entropix pause
        text, and the adaptive copies of cap tail and wait), right-padded.
    delim_ML / delim_len_M: end-of-thinking delimiters, RIGHT-aligned, -1 left padding.
    stop_ML / stop_len_M: stop sequences, same layout. eos_E: end-of-sequence ids (-1 padded).
    reflect_R: reflection tokens ("Wait", " Hmm", ... as the tokenizer spells them; NoWait,
        AlphaOne, DEER); break_R: structural breaks ("\n\n", ".\n\n"; AlphaOne); sentence_R:
        sentence ends (".", ".\n"; the graceful cap); line_R: line ends ("\n", ".\n"; AlphaOne's
        "line" breaks). Token id sets, -1 padded.
    """

    forced_RL: jax.Array
    forced_len_R: jax.Array
    delim_ML: jax.Array
    delim_len_M: jax.Array
    stop_ML: jax.Array
    stop_len_M: jax.Array
    eos_E: jax.Array
    reflect_R: jax.Array
    break_R: jax.Array
    sentence_R: jax.Array
    line_R: jax.Array

    @staticmethod
    def build(forced: list[list[int]], delims: list[list[int]], stops: list[list[int]], eos: list[int],
              reflect: list[int] = (), breaks: list[int] = (), sentence: list[int] = (),
              lines: list[int] = ()) -> "TokenTables":
        """Tables padded to power-of-two sizes (>= 8 tokens, >= 4 sequences, >= 8 eos ids, >= 16
        set ids), so a different wait string, delimiter or eos set reuses the compiled loop."""
        f, fl = _table(forced, len(forced), align_right=False)
        d, dl = _table(delims, bucket(len(delims), 4), align_right=True)
        s, sl = _table(stops, bucket(len(stops), 4), align_right=True)
        sets = [_ids(eos, 8), _ids(reflect, 16), _ids(breaks, 16), _ids(sentence, 16), _ids(lines, 16)]
        return TokenTables(*(jnp.asarray(x) for x in (f, fl, d, dl, s, sl, *sets)))


def _ids(ids, minimum: int) -> np.ndarray:
    out = np.full((bucket(len(ids), minimum),), -1, np.int32)
    out[: len(ids)] = list(ids)
    return out


def in_set(tok_B: jax.Array, set_R: jax.Array) -> jax.Array:
    """[B] whether each row's token is one of the (-1 padded) ids of `set_R`."""
    return jnp.any((tok_B[:, None] == set_R[None]) & (set_R[None] >= 0), axis=1)


def _tail(out_BN: jax.Array, n_out_B: jax.Array, width: int) -> jax.Array:
    """The last `width` tokens of each row's output, right-aligned; -2 before the start. [B, L]"""
    idx_BL = n_out_B[:, None] - width + jnp.arange(width, dtype=jnp.int32)
    tail_BL = jnp.take_along_axis(out_BN, jnp.clip(idx_BL, 0, out_BN.shape[1] - 1), axis=1)
    return jnp.where(idx_BL >= 0, tail_BL, -2)


def match_tail(out_BN: jax.Array, n_out_B: jax.Array, seq_ML: jax.Array, len_M: jax.Array) -> jax.Array:
    """Length of the longest sequence of `seq_ML` that ends the row's output, 0 if none. [B]"""
    tail_BL = _tail(out_BN, n_out_B, seq_ML.shape[1])
    hit_BM = jnp.all((seq_ML[None] < 0) | (tail_BL[:, None, :] == seq_ML[None]), axis=-1) & (len_M[None] > 0)
    return jnp.max(jnp.where(hit_BM, len_M[None], 0), axis=-1)


def completing_tokens_mask(out_BN: jax.Array, n_out_B: jax.Array, seq_ML: jax.Array, len_M: jax.Array, vocab: int) -> jax.Array:
    """[B, V] True for tokens that would complete a sequence of `seq_ML` if emitted next
    (its first len-1 tokens already end the output). Used to suppress a delimiter outright."""
    # prefix of each sequence = all but its last token, right-aligned to end at the output's end
    prefix_ML = jnp.concatenate([jnp.full((seq_ML.shape[0], 1), -1, seq_ML.dtype), seq_ML[:, :-1]], axis=1)
    tail_BL = _tail(out_BN, n_out_B, seq_ML.shape[1])
    ok_BM = jnp.all((prefix_ML[None] < 0) | (tail_BL[:, None, :] == prefix_ML[None]), axis=-1) & (len_M[None] > 0)
    last_M = seq_ML[:, -1]
    hot_MV = jax.nn.one_hot(jnp.maximum(last_M, 0), vocab, dtype=bool) & (last_M[:, None] >= 0)
    return jnp.any(ok_BM[:, :, None] & hot_MV[None], axis=1)
