"""s1 budget forcing (arXiv 2501.19393, section 3.1) as a frozen config plus per-row array state.

The config is host-side and hashable; `decode.py` turns its strings into token ids before the
jitted loop starts and runs the state machine below on arrays, one row at a time.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

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
    mode: BudgetMode = "fixed"

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
