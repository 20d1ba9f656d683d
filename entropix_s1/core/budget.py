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
    # -- the test-time methods of docs/methods.md (each off by default) --
    #: AlphaOne: the alpha moment is alpha * alpha_base_tokens (else * max_thinking_tokens);
    #: before it "Wait" follows a structural break with p0 (1 - t / moment), p0 = alpha_wait_prob;
    #: after it a proposed reflection token becomes the delimiter.
    alpha: float | None = None
    alpha_base_tokens: int | None = None
    alpha_wait_prob: float = 0.5
    #: which structural breaks: "paragraph" ("\n\n", the paper's) or "line" (any line end too,
    #: for models that write one step per line, as the thinking SmolLM2 does)
    alpha_breaks: str = "paragraph"
    #: NoWait: reflection tokens ("Wait", "Hmm", "Alternatively" in their spellings) are suppressed
    no_reflection: bool = False
    #: NoThinking: the thought is forced finished at once: `nothinking_text` + think_end[0]
    #: (+ `answer_prefix` instead of think_end[0] where `cap_with_delimiter` is False)
    no_thinking: bool = False
    nothinking_text: str = "Okay, I think I have finished thinking."
    #: DEER: at a proposed reflection token, probe; end thinking when confidence >= this
    deer_threshold: float | None = None
    #: EAT: every `probe_every` thinking tokens probe the entropy after the delimiter; end when
    #: the EMA variance (rate `eat_ema`) is below this, after `eat_min_probes` probes
    eat_threshold: float | None = None
    eat_ema: float = 0.2
    eat_min_probes: int = 4
    #: Dynasor-CoT: every `probe_every` thinking tokens probe; end after this many identical answers
    dynasor_streak: int | None = None
    #: periodic probes (EAT, Dynasor): every this many thinking tokens
    probe_every: int = 32
    #: greedy answer tokens a probe reads after the delimiter + answer prefix
    probe_tokens: int = 8

    @property
    def probing(self) -> bool:
        """A method of this budget probes (DEER, EAT, Dynasor): the loop compiles the probe. Read
        from the controllers themselves, so a new probing method needs no change here."""
        return any(c.probes and c.used_by(self) for c in BUDGET_CONTROLLERS)

    def __post_init__(self) -> None:
        if isinstance(self.think_end, str):
            object.__setattr__(self, "think_end", (self.think_end,))
        if not self.think_end or any(not d for d in self.think_end):
            raise ConfigError("Budget.think_end needs at least one non-empty delimiter string")
        # the probe's own knobs (core/probe.py), shared by the probing controllers
        if self.probe_every < 1:
            raise ConfigError(f"Budget.probe_every must be >= 1, got {self.probe_every}")
        if self.probe_tokens < 1:
            raise ConfigError(f"Budget.probe_tokens must be >= 1, got {self.probe_tokens}")
        for controller in BUDGET_CONTROLLERS:
            controller.validate(self)
