"""s1 budget forcing (arXiv 2501.19393, section 3.1): the per-row knobs of a row's thinking.

`Budget` is the host-side, hashable description a user writes; each of its knobs belongs to one
controller in `core/controllers/` (which validates it, packs it into per-row arrays and acts on
it in the loop). Budget itself checks only the format strings every controller shares.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from entropix_s1.core.controllers import BUDGET_CONTROLLERS
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
        for controller in BUDGET_CONTROLLERS:
            controller.validate(self)
