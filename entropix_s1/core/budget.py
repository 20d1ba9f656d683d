"""s1 budget forcing (arXiv 2501.19393, section 3.1) as a frozen config plus per-row array state.

The config is host-side and hashable; `decode.py` turns its strings into token ids before the
jitted loop starts and runs the state machine below on arrays, one row at a time.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from entropix_s1.errors import ConfigError

BudgetMode = Literal["fixed", "adaptive"]


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long a row may think, in tokens.

    think_start: text opened for the model at the start of the assistant turn (e.g. "<think>\\n");
        empty when the chat template already opens thinking.
    think_end: end-of-thinking delimiters, each possibly several tokens (e.g. "</think>", or
        "<|im_end|>" for models without thinking tokens).
    min_thinking_tokens: below this, an end-of-thinking delimiter is replaced by `wait_text` (s1).
    max_thinking_tokens: the cap; reached, we force `think_end[0]` + `answer_prefix` (s1).
    num_waits: times a delimiter is suppressed and `wait_text` appended ("extend", s1 Table 4).
    wait_text: the extension string (s1 uses "Wait"; ablations: "Hmm", "Alternatively", "").
    answer_prefix: forced after the delimiter at the cap (s1: "Final Answer:").
    max_answer_tokens: bound on the answer phase (None: only max_new_tokens bounds it).
    """

    think_start: str = ""
    think_end: tuple[str, ...] = ("</think>",)
    min_thinking_tokens: int = 0
    max_thinking_tokens: int | None = None
    num_waits: int = 0
    wait_text: str = "Wait"
    answer_prefix: str = "\nFinal Answer:"
    max_answer_tokens: int | None = None
    #: at the cap force `think_end[0]` before `answer_prefix` (s1). False for models without
    #: thinking delimiters, whose `think_end` is the end-of-turn token: the cap then forces only
    #: `answer_prefix`, so the model answers inside its turn instead of after closing it.
    cap_with_delimiter: bool = True
    mode: BudgetMode = "fixed"
    # -- mode="adaptive": the model's uncertainty decides (entropies in nats) --
    #: a delimiter step is "uncertain" when the entropy of the distribution that emitted it
    #: exceeds this, or its varentropy exceeds `uncertain_varentropy`, or the mean entropy of the
    #: `window` tokens before the delimiter exceeds `uncertain_window_entropy`; then the delimiter
    #: is replaced by `wait_text` (reason "wait:uncertain"), at most `num_waits` times.
    uncertain_entropy: float = 1.0
    uncertain_varentropy: float = float("inf")
    uncertain_window_entropy: float = float("inf")
    window: int = 8
    #: a confident end (not uncertain) may end thinking below `min_thinking_tokens`.
    confident_ends_below_min: bool = False
    #: graceful cap: past this many thinking tokens, end thinking at the first step whose
    #: entropy is below `confident_entropy` (forced tail, reason "end:confident"); the hard cap
    #: `max_thinking_tokens` still holds.
    soft_max_thinking_tokens: int | None = None
    confident_entropy: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.think_end, str):
            object.__setattr__(self, "think_end", (self.think_end,))
        if not self.think_end or any(not d for d in self.think_end):
            raise ConfigError("Budget.think_end needs at least one non-empty delimiter string")
        if self.min_thinking_tokens < 0:
            raise ConfigError(f"Budget.min_thinking_tokens must be >= 0, got {self.min_thinking_tokens}")
        if self.max_thinking_tokens is not None:
            if self.max_thinking_tokens < 0:
                raise ConfigError(f"Budget.max_thinking_tokens must be >= 0, got {self.max_thinking_tokens}")
            if self.min_thinking_tokens > self.max_thinking_tokens:
                raise ConfigError(
                    f"Budget.min_thinking_tokens ({self.min_thinking_tokens}) > "
                    f"max_thinking_tokens ({self.max_thinking_tokens})"
                )
        if self.num_waits < 0:
            raise ConfigError(f"Budget.num_waits must be >= 0, got {self.num_waits}")
        if self.max_answer_tokens is not None and self.max_answer_tokens < 1:
            raise ConfigError(f"Budget.max_answer_tokens must be >= 1, got {self.max_answer_tokens}")
        if self.mode not in ("fixed", "adaptive"):
            raise ConfigError(f"Budget.mode must be 'fixed' or 'adaptive', got {self.mode!r}")
        if not self.cap_with_delimiter and not self.answer_prefix:
            raise ConfigError("Budget: cap_with_delimiter=False needs a non-empty answer_prefix to force at the cap")
        if self.window < 1:
            raise ConfigError(f"Budget.window must be >= 1, got {self.window}")
        s = self.soft_max_thinking_tokens
        if s is not None and (s < 0 or (self.max_thinking_tokens is not None and s > self.max_thinking_tokens)):
            raise ConfigError(f"Budget.soft_max_thinking_tokens ({s}) must be in [0, max_thinking_tokens]")


# ---------------------------------------------------------------------------------------------
# Array side: token tables built once on the host, and the per-row helpers the loop uses.

#: Forced-sequence slots of `TokenTables.forced_RL`.
#: The cap tail and the wait text appear twice: the adaptive mode's copies carry their own reason.
SEQ_PREFILL, SEQ_CAP, SEQ_WAIT, SEQ_PAUSE, SEQ_CAP_CONFIDENT, SEQ_WAIT_UNCERTAIN = range(6)
#: Reason codes stored per generated token (0: sampled). Names index FORCED_NAMES.
NOT_FORCED, FORCED_PREFILL, FORCED_CAP, FORCED_WAIT, FORCED_PAUSE, FORCED_END_CONFIDENT, FORCED_WAIT_UNCERTAIN = range(7)
FORCED_NAMES: tuple[str | None, ...] = (None, "prefill", "cap", "wait", "pause", "end:confident", "wait:uncertain")
SEQ_REASON = np.array([FORCED_PREFILL, FORCED_CAP, FORCED_WAIT, FORCED_PAUSE, FORCED_END_CONFIDENT,
                       FORCED_WAIT_UNCERTAIN], np.int32)
THINKING, ANSWER = 0, 1
NO_LIMIT = np.iinfo(np.int32).max // 2


@struct.dataclass
class TokenTables:
    """Every string the loop needs, as token ids (the loop never sees a tokenizer).

    forced_RL / forced_len_R: sequences the loop emits token by token (think_start, the cap tail
        think_end[0] + answer_prefix, wait_text, the entropix pause text), right-padded.
    delim_ML / delim_len_M: end-of-thinking delimiters, RIGHT-aligned, -1 left padding.
    stop_ML / stop_len_M: stop sequences, same layout. eos_E: end-of-sequence ids (-1 padded).
    """

    forced_RL: jax.Array
    forced_len_R: jax.Array
    delim_ML: jax.Array
    delim_len_M: jax.Array
    stop_ML: jax.Array
    stop_len_M: jax.Array
    eos_E: jax.Array

    @staticmethod
    def build(forced: list[list[int]], delims: list[list[int]], stops: list[list[int]], eos: list[int]) -> "TokenTables":
        """Tables padded to power-of-two sizes (>= 8 tokens, >= 4 sequences, >= 8 eos ids), so a
        different wait string, delimiter or eos set reuses the compiled loop."""

        def size(n: int, minimum: int) -> int:
            b = minimum
            while b < n:
                b *= 2
            return b

        def table(seqs: list[list[int]], rows: int, align_right: bool) -> tuple[np.ndarray, np.ndarray]:
            L = size(max([len(s) for s in seqs] + [1]), 8)
            a = np.full((rows, L), -1 if align_right else 0, np.int32)
            for i, s in enumerate(seqs):
                if s and align_right:
                    a[i, L - len(s) :] = s
                elif s:
                    a[i, : len(s)] = s
            lens = np.zeros((rows,), np.int32)
            lens[: len(seqs)] = [len(s) for s in seqs]
            return a, lens

        f, fl = table(forced, len(forced), align_right=False)
        d, dl = table(delims, size(len(delims), 4), align_right=True)
        s, sl = table(stops, size(len(stops), 4), align_right=True)
        e = np.full((size(len(eos), 8),), -1, np.int32)
        e[: len(eos)] = eos
        return TokenTables(*(jnp.asarray(x) for x in (f, fl, d, dl, s, sl, e)))


def match_tail(out_BN: jax.Array, n_out_B: jax.Array, seq_ML: jax.Array, len_M: jax.Array) -> jax.Array:
    """Length of the longest sequence of `seq_ML` that ends the row's output, 0 if none. [B]"""
    L = seq_ML.shape[1]
    idx_BL = n_out_B[:, None] - L + jnp.arange(L, dtype=jnp.int32)
    tail_BL = jnp.take_along_axis(out_BN, jnp.clip(idx_BL, 0, out_BN.shape[1] - 1), axis=1)
    tail_BL = jnp.where(idx_BL >= 0, tail_BL, -2)
    hit_BM = jnp.all((seq_ML[None] < 0) | (tail_BL[:, None, :] == seq_ML[None]), axis=-1) & (len_M[None] > 0)
    return jnp.max(jnp.where(hit_BM, len_M[None], 0), axis=-1)


def completing_tokens_mask(out_BN: jax.Array, n_out_B: jax.Array, seq_ML: jax.Array, len_M: jax.Array, vocab: int) -> jax.Array:
    """[B, V] True for tokens that would complete a sequence of `seq_ML` if emitted next
    (its first len-1 tokens already end the output). Used to suppress a delimiter outright."""
    L = seq_ML.shape[1]
    # prefix of each sequence = all but its last token, right-aligned to end at the output's end
    prefix_ML = jnp.concatenate([jnp.full((seq_ML.shape[0], 1), -1, seq_ML.dtype), seq_ML[:, :-1]], axis=1)
    idx_BL = n_out_B[:, None] - L + jnp.arange(L, dtype=jnp.int32)
    tail_BL = jnp.take_along_axis(out_BN, jnp.clip(idx_BL, 0, out_BN.shape[1] - 1), axis=1)
    tail_BL = jnp.where(idx_BL >= 0, tail_BL, -2)
    ok_BM = jnp.all((prefix_ML[None] < 0) | (tail_BL[:, None, :] == prefix_ML[None]), axis=-1) & (len_M[None] > 0)
    last_M = seq_ML[:, -1]
    hot_MV = jax.nn.one_hot(jnp.maximum(last_M, 0), vocab, dtype=bool) & (last_M[:, None] >= 0)
    return jnp.any(ok_BM[:, :, None] & hot_MV[None], axis=1)
