"""Every integer code the loop stores, and its name: regimes, stop reasons, forced reasons, forced
sequences, phases. One table, so a trace, a plot and a result read the same numbers the same way.

The loop writes these codes into int8/int32 buffers; the host turns them into names with the
`*_NAMES` tuples (index = code).
"""

from __future__ import annotations

import numpy as np

# -- regimes: how a token was chosen (entropix's five, the plain samplers', forced, and the tokens
# of a committed branch path after its first: the greedy roll-out that won the branch) --
ARGMAX, PAUSE, BRANCH, HOT, ADAPTIVE, GREEDY, SAMPLE, FORCED, BRANCH_PATH = range(9)
REGIME_NAMES: tuple[str, ...] = ("argmax", "pause", "branch", "hot", "adaptive", "greedy", "sample", "forced",
                                 "branch_path")
#: entropix's own regimes (xjdr-alt/entropix decision order), the first five codes.
ENTROPIX_REGIMES = REGIME_NAMES[: ADAPTIVE + 1]

# -- why a row stopped; a row still running when the loop ends ran out of cache (context) --
STOP_RUNNING, STOP_EOS, STOP_STRING, STOP_MAX_NEW, STOP_ANSWER_BUDGET, STOP_CONTEXT = range(6)
STOP_NAMES: tuple[str, ...] = ("context", "eos", "stop_string", "max_new_tokens", "answer_budget", "context")

# -- forced sequences: rows of `TokenTables.forced_RL`, emitted token by token --
#: The cap tail and the wait text appear twice: the adaptive mode's copies carry their own reason.
SEQ_PREFILL, SEQ_CAP, SEQ_WAIT, SEQ_PAUSE, SEQ_CAP_CONFIDENT, SEQ_WAIT_UNCERTAIN = range(6)
#: the methods of issue 18: AlphaOne's inserted wait and its end (the delimiter alone), the
#: NoThinking finished thought (+ the delimiter), and the cap tail of a probe's early exit
SEQ_WAIT_ALPHA, SEQ_END_ALPHA, SEQ_NOTHINKING, SEQ_END_PROBE = range(6, 10)
N_SEQ = 10
NO_SEQ = -1
#: A running sequence a higher-priority controller may cut short (a wait or a pause; never the
#: cap tail or the prefill, which decide the phase).
SEQ_INTERRUPTIBLE = np.array([False, False, True, True, False, True, True, False, False, False])

# -- forced reasons, stored per generated token (0: sampled) --
NOT_FORCED, FORCED_PREFILL, FORCED_CAP, FORCED_WAIT, FORCED_PAUSE, FORCED_END_CONFIDENT, FORCED_WAIT_UNCERTAIN = range(7)
FORCED_WAIT_ALPHA, FORCED_END_ALPHA, FORCED_NOTHINKING, FORCED_END_PROBE = range(7, 11)
FORCED_NAMES: tuple[str | None, ...] = (None, "prefill", "cap", "wait", "pause", "end:confident", "wait:uncertain",
                                        "wait:alpha", "end:alpha", "nothinking", "end:probe")
#: reason of each forced sequence's tokens
SEQ_REASON = np.array([FORCED_PREFILL, FORCED_CAP, FORCED_WAIT, FORCED_PAUSE, FORCED_END_CONFIDENT,
                       FORCED_WAIT_UNCERTAIN, FORCED_WAIT_ALPHA, FORCED_END_ALPHA, FORCED_NOTHINKING,
                       FORCED_END_PROBE], np.int32)

# -- phases --
THINKING, ANSWER = 0, 1

#: "no limit" for int32 per-row budgets (half of int32 max, so adding a few tokens cannot overflow).
NO_LIMIT = int(np.iinfo(np.int32).max // 2)

#: Per-token statistics recorded in the trace, in this order (nats).
STAT_NAMES = ("entropy", "varentropy", "attn_entropy", "attn_varentropy", "agreement", "interaction", "confidence")
