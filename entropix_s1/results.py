"""Host-side result records shared by the engine, traces, CLI and research harness.

Plain frozen dataclasses (no arrays) so they serialise to JSON and compare in tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Phase = Literal["thinking", "answer"]
#: Why a token was forced rather than sampled; None for sampled tokens.
#: "prefill": assistant prefill / think_start; "cap": end-of-thinking + answer prefix at the cap;
#: "wait": s1 extension replacing a delimiter; "pause": entropix pause insertion;
#: "wait:uncertain" / "end:confident": adaptive budget forcing decisions.
ForcedReason = str | None


@dataclasses.dataclass(frozen=True)
class TraceStep:
    """One generated token (sampled or forced) of one row: the line format of `--trace` JSONL."""

    step: int
    row: int
    token_id: int
    token: str
    entropy: float | None
    varentropy: float | None
    attn_entropy: float | None
    attn_varentropy: float | None
    agreement: float | None
    interaction: float | None
    regime: str
    forced: ForcedReason
    phase: Phase
    #: DeepConf's token confidence of the distribution (nats; `core.metrics.logit_metrics`);
    #: None in traces written before it was recorded
    confidence: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ProbeRecord:
    """One in-loop probe of a row (DEER, EAT, Dynasor; docs/methods.md): before generated token
    `step`, the forced `text` (delimiter + answer prefix) and the greedy `answer` after it, with
    its confidence (mean max-probability of the answer tokens) and the entropy (nats) of the
    first answer token's distribution. Never part of the row's tokens."""

    step: int
    text: str
    answer: str
    answer_ids: tuple[int, ...]
    confidence: float
    entropy: float

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["answer_ids"] = list(self.answer_ids)
        return d


#: DeepConf's group: a sliding window of tokens (the paper's 2048 is longer than our traces; 64
#: keeps several windows in a 300-token solution)
GROUP_WINDOW = 64


def trace_confidence(token_confidences: list[float], window: int = GROUP_WINDOW) -> tuple[float | None, float | None]:
    """(mean, lowest group mean) of per-token confidences; with fewer than `window` tokens the
    one group is the whole trace."""
    c = [float(x) for x in token_confidences]
    if not c:
        return None, None
    w = min(window, len(c))
    sums = [sum(c[:w])]
    for i in range(w, len(c)):
        sums.append(sums[-1] + c[i] - c[i - w])
    return sum(c) / len(c), min(sums) / w


@dataclasses.dataclass(frozen=True)
class GenerationResult:
    """Everything one prompt row produced.

    `token_ids` are the generated ids (prompt excluded, forced tokens included).
    `stop_reason` is one of: "eos", "stop_string", "max_new_tokens", "answer_budget", "error".
    A row that could not run (bad prompt) has `stop_reason == "error"` and `error` set; the other
    rows of the batch are unaffected.
    """

    prompt: str
    token_ids: tuple[int, ...]
    text: str
    thinking_text: str
    answer_text: str
    thinking_tokens: int
    answer_tokens: int
    waits_inserted: int
    pauses_inserted: int
    stop_reason: str
    trace: tuple[TraceStep, ...] = ()
    error: str | None = None
    #: the row's in-loop probes, in order (empty for methods that do not probe)
    probes: tuple[ProbeRecord, ...] = ()
    #: DeepConf trace confidences (arXiv 2508.15260) over the generated tokens: the mean token
    #: confidence ("average trace confidence") and the lowest mean over a sliding window of
    #: `GROUP_WINDOW` tokens ("lowest group confidence"); None when no token was generated
    confidence: float | None = None
    lowest_group_confidence: float | None = None

    def to_json(self, with_trace: bool = False) -> dict[str, Any]:
        """The fields as JSON; `probes` appears only when the row probed (older readers see the
        same keys as before for every other method)."""
        d = dataclasses.asdict(self)
        d["token_ids"] = list(self.token_ids)
        if self.probes:
            d["probes"] = [p.to_json() for p in self.probes]
        else:
            d.pop("probes")
        if with_trace:
            d["trace"] = [t.to_json() for t in self.trace]
        else:
            d.pop("trace")
        return d
