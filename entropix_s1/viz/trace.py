"""JSONL traces of generation: one line per generated token (sampled or forced), all rows.

Line format: the fields of `TraceStep` (`TraceStep.to_json()`), one JSON object per line, rows in
order and steps in order within a row. Metrics are in nats and may be null (forced tokens).

    write_trace(results, "run.jsonl")      # from engine results
    steps = read_trace("run.jsonl")         # -> list[TraceStep], validated line by line
    trace_summary(steps)[0]["waits_inserted"]

Host-side only (no JAX): researchers can read traces on a laptop.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from entropix_s1.jsonl import JSONLError, iter_jsonl
from entropix_s1.results import GenerationResult, TraceStep

__all__ = [
    "TraceError",
    "write_trace",
    "read_trace",
    "trace_summary",
    "trace_rows",
    "trace_steps",
    "WAIT_REASONS",
    "PAUSE_REASONS",
]

#: Forced reasons that count as an s1 "Wait" extension (fixed and adaptive budget forcing).
WAIT_REASONS: tuple[str, ...] = ("wait", "wait:uncertain")
#: Forced reasons that count as an entropix pause insertion.
PAUSE_REASONS: tuple[str, ...] = ("pause",)

_INT_FIELDS = ("step", "row", "token_id")
_METRIC_FIELDS = ("entropy", "varentropy", "attn_entropy", "attn_varentropy", "agreement", "interaction", "confidence")
_PHASES = ("thinking", "answer")


class TraceError(JSONLError):
    """A trace file (or line of one) that is not in the `TraceStep` JSONL format; names `path:line`."""

    def __init__(self, message: str) -> None:
        # A trace line that does not parse has always been reported as "invalid JSON" (the shared
        # reader says "not valid JSON"); keep the trace's wording for whoever matches on it.
        super().__init__(message.replace(": not valid JSON (", ": invalid JSON (", 1))


# ----------------------------------------------------------------------------------------------
# writing


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _dump_line(step: TraceStep, probe: dict[str, Any] | None = None) -> str:
    d = {k: _finite_or_none(v) for k, v in step.to_json().items()}
    if probe is not None:
        d["probe"] = {k: _finite_or_none(v) for k, v in probe.items()}
    # Keep unicode readable in the file, but never emit a line that breaks JSONL readers:
    # U+2028/U+2029 are line breaks for some splitters; lone surrogates cannot be UTF-8 encoded.
    line = json.dumps(d, ensure_ascii=False, allow_nan=False)
    line = line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(d, ensure_ascii=True, allow_nan=False)
    return line


def trace_steps(items: Iterable[GenerationResult | TraceStep]) -> list[TraceStep]:
    """Every trace step of `items` (results contribute their `trace`), in order."""
    steps: list[TraceStep] = []
    for item in items:
        if isinstance(item, GenerationResult):
            steps.extend(item.trace)
        elif isinstance(item, TraceStep):
            steps.append(item)
        else:
            raise TypeError(f"expected GenerationResult or TraceStep, got {type(item).__name__}")
    return steps


def write_trace(results: Sequence[GenerationResult] | Iterable[TraceStep], path: str | os.PathLike[str]) -> Path:
    """Write every trace step of `results` to `path` as JSONL, ordered by row then step.

    Rows without a trace (e.g. `stop_reason == "error"`, or tracing off) contribute no lines. An
    in-loop probe (DEER, EAT, Dynasor) rides on the line of the token it came before, as a `probe`
    object (`ProbeRecord.to_json()`); readers that do not know it ignore it.
    Non-finite metric values are written as null (the file is strict JSON). Parent directories
    are created. Returns the path written.
    """
    results = list(results)
    steps = trace_steps(results)
    steps.sort(key=lambda t: (t.row, t.step))  # stable: equal keys keep their order
    probes = {(r.trace[0].row, p.step): p.to_json() for r in results
              if isinstance(r, GenerationResult) and r.trace for p in getattr(r, "probes", ())}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for t in steps:
            f.write(_dump_line(t, probes.get((t.row, t.step))))
            f.write("\n")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------
# reading


def _parse_step(obj: dict[str, Any], where: str) -> TraceStep:
    names = [f.name for f in dataclasses.fields(TraceStep)]
    optional = {f.name for f in dataclasses.fields(TraceStep) if f.default is not dataclasses.MISSING}
    obj = {n: None for n in optional} | obj  # fields added later (confidence) may be absent
    missing = [n for n in names if n not in obj]
    if missing:
        raise TraceError(f"{where}: missing field(s) {', '.join(missing)}")
    for n in _INT_FIELDS:
        v = obj[n]
        if not isinstance(v, int) or isinstance(v, bool):
            raise TraceError(f"{where}: field {n!r} must be an integer, got {v!r}")
    if obj["step"] < 0 or obj["row"] < 0:
        raise TraceError(f"{where}: 'step' and 'row' must be >= 0")
    for n in _METRIC_FIELDS:
        v = obj[n]
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise TraceError(f"{where}: field {n!r} must be a number or null, got {v!r}")
    if not isinstance(obj["token"], str):
        raise TraceError(f"{where}: field 'token' must be a string, got {obj['token']!r}")
    if not isinstance(obj["regime"], str) or not obj["regime"]:
        raise TraceError(f"{where}: field 'regime' must be a non-empty string, got {obj['regime']!r}")
    if obj["forced"] is not None and not isinstance(obj["forced"], str):
        raise TraceError(f"{where}: field 'forced' must be a string or null, got {obj['forced']!r}")
    if obj["phase"] not in _PHASES:
        raise TraceError(f"{where}: field 'phase' must be one of {_PHASES}, got {obj['phase']!r}")
    kw = {n: obj[n] for n in names}  # unknown extra keys are ignored (forward compatible)
    for n in _METRIC_FIELDS:
        if kw[n] is not None:
            kw[n] = float(kw[n])
    return TraceStep(**kw)


def read_trace(path: str | os.PathLike[str]) -> list[TraceStep]:
    """Read a JSONL trace written by `write_trace` (or `--trace`), validating every line.

    Blank lines are skipped. Raises `TraceError` naming the file and 1-based line number of the
    first malformed line (bad JSON, missing field, wrong type). Steps keep file order.
    """
    path = Path(path)
    return [_parse_step(obj, f"{path}:{lineno}") for lineno, obj in iter_jsonl(path, error=TraceError)]


# ----------------------------------------------------------------------------------------------
# summarising


def trace_rows(steps: Iterable[TraceStep]) -> dict[int, list[TraceStep]]:
    """Group steps by row (rows ascending), each row's steps sorted by step."""
    rows: dict[int, list[TraceStep]] = {}
    for t in steps:
        rows.setdefault(t.row, []).append(t)
    return {r: sorted(rows[r], key=lambda t: t.step) for r in sorted(rows)}


def _insertions(row_steps: Sequence[TraceStep], tokens_per_insertion: Mapping[str, int]) -> Counter[str]:
    """Count forced insertions (events) per reason in one row's step-ordered steps.

    A multi-token forced string (e.g. "</think>" + "\\nFinal Answer:") is one event. A run of
    consecutive forced tokens with the same reason is split into several events when
    `tokens_per_insertion[reason]` is given (run length / n), otherwise whenever the run's first
    token id comes round again (two single-token "Wait"s back to back are two waits).
    """
    events: Counter[str] = Counter()
    i = 0
    n = len(row_steps)
    while i < n:
        t = row_steps[i]
        if t.forced is None:
            i += 1
            continue
        reason = t.forced
        j = i + 1
        while j < n and row_steps[j].forced == reason and row_steps[j].step == row_steps[j - 1].step + 1:
            j += 1
        run = row_steps[i:j]
        per = tokens_per_insertion.get(reason)
        if per:
            events[reason] += max(1, math.ceil(len(run) / per))
        else:
            first = run[0].token_id
            events[reason] += 1 + sum(1 for s in run[1:] if s.token_id == first)
        i = j
    return events


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def trace_summary(
    steps: Iterable[TraceStep] | Sequence[GenerationResult],
    *,
    tokens_per_insertion: Mapping[str, int] | None = None,
) -> dict[int, dict[str, Any]]:
    """Per-row counts of a trace, to compare with `GenerationResult` fields and to report.

    Returns `{row: summary}` with, per row:
      tokens            all trace steps (= generated tokens, forced included)
      thinking_tokens   steps with phase "thinking" (forced tokens included)
      answer_tokens     steps with phase "answer"
      sampled_tokens    steps with `forced is None`
      forced_tokens     number of forced tokens
      regimes           {regime: token count}
      forced            {reason: token count}
      insertions        {reason: event count}: a multi-token forced string counts once
      waits_inserted    insertions of WAIT_REASONS ("wait", "wait:uncertain")
      pauses_inserted   insertions of PAUSE_REASONS ("pause")
      mean_entropy, mean_varentropy   over steps with a value (nats), None if none
      first_answer_step step of the first answer-phase token, None if the row never answered

    `tokens_per_insertion` ({"wait": 2}) disambiguates back-to-back multi-token insertions.
    """
    flat = trace_steps(steps)
    per = dict(tokens_per_insertion or {})
    out: dict[int, dict[str, Any]] = {}
    for row, rs in trace_rows(flat).items():
        regimes = Counter(t.regime for t in rs)
        forced = Counter(t.forced for t in rs if t.forced is not None)
        ins = _insertions(rs, per)
        answer_steps = [t.step for t in rs if t.phase == "answer"]
        out[row] = {
            "tokens": len(rs),
            "thinking_tokens": sum(1 for t in rs if t.phase == "thinking"),
            "answer_tokens": len(answer_steps),
            "sampled_tokens": sum(1 for t in rs if t.forced is None),
            "forced_tokens": sum(forced.values()),
            "regimes": dict(sorted(regimes.items())),
            "forced": dict(sorted(forced.items())),
            "insertions": dict(sorted(ins.items())),
            "waits_inserted": sum(ins.get(r, 0) for r in WAIT_REASONS),
            "pauses_inserted": sum(ins.get(r, 0) for r in PAUSE_REASONS),
            "mean_entropy": _mean([t.entropy for t in rs if t.entropy is not None]),
            "mean_varentropy": _mean([t.varentropy for t in rs if t.varentropy is not None]),
            "first_answer_step": min(answer_steps) if answer_steps else None,
        }
    return out
