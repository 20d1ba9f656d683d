"""`entropix-s1 generate`: one prompt, with a sampler and s1 budget forcing, or one method spec."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from entropix_s1.cli.common import add_model_arguments, load_model
from entropix_s1.errors import ConfigError

HELP = "generate with budget forcing / entropix sampling"

EPILOG = """\
decoding method, two ways (not both):
  --method SPEC     the spec grammar of `compare --methods` (entropix_s1/research/methods.py):
                      entropix-s1 generate --prompt "What is 2+3?" --method 'adaptive-budget:max=64,waits=2'
                      --method 'budget:max=128,waits=1'   --method 'entropix+budget:max=64'
                      --method 'sample:t=0.7,top_p=0.9'   --method 'entropix:calibrated=cal.json'
                      the test-time methods of docs/methods.md: --method deer, 'dynasor:max=512',
                      alphaone, nowait, nothinking, eat, graceful (probes are shown, and in --json)
                    the budget takes the model's thinking delimiters (as compare does)
  flags             --sampler greedy|sample|entropix (--temperature/--top-k/--top-p/--min-p with
                    sample, --entropix-config with entropix) and the budget flags
                    --max-thinking --min-thinking --num-waits --wait --max-answer --answer-prefix
                    --think-start --think-end
"""

#: (flag, dest) of the flags that build a Budget
BUDGET_FLAGS = (("--max-thinking", "max_thinking"), ("--min-thinking", "min_thinking"), ("--num-waits", "num_waits"),
                ("--wait", "wait"), ("--max-answer", "max_answer"), ("--answer-prefix", "answer_prefix"),
                ("--think-start", "think_start"), ("--think-end", "think_end"))
#: (flag, dest) of the options of `--sampler sample`
SAMPLE_FLAGS = (("--temperature", "temperature"), ("--top-k", "top_k"), ("--top-p", "top_p"), ("--min-p", "min_p"))
DEFAULT_MAX_NEW_TOKENS = 256


def _sampler_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default=None, metavar="SPEC",
                   help="decoding method as a spec, e.g. 'adaptive-budget:max=64,waits=2' (see below); "
                        "instead of --sampler and the budget flags")
    p.add_argument("--sampler", default=None, choices=["greedy", "sample", "entropix"], help="default greedy")
    p.add_argument("--temperature", type=float, default=None, help="with --sampler sample (default 0.7)")
    p.add_argument("--top-k", type=int, default=None, help="with --sampler sample")
    p.add_argument("--top-p", type=float, default=None, help="with --sampler sample")
    p.add_argument("--min-p", type=float, default=None, help="with --sampler sample")
    p.add_argument("--entropix-config", default=None, help="with --sampler entropix: JSON from `calibrate`")


def _budget_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--think-start", default=None)
    p.add_argument("--think-end", action="append", default=None, help="end-of-thinking delimiter (repeatable)")
    p.add_argument("--min-thinking", type=int, default=None, help="default 0")
    p.add_argument("--max-thinking", type=int, default=None)
    p.add_argument("--num-waits", type=int, default=None, help="default 0")
    p.add_argument("--wait", default=None, help="default 'Wait'")
    p.add_argument("--answer-prefix", default=None, help="default '\\nFinal Answer:'")
    p.add_argument("--max-answer", type=int, default=None)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    add_model_arguments(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--raw", action="store_true", help="feed the prompt as is (no chat template)")
    p.add_argument("--system", default=None)
    _sampler_arguments(p)
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help=f"default {DEFAULT_MAX_NEW_TOKENS}; with --method, the spec's (its max_new=, or room for "
                        "the answer after its thinking cap)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ignore-eos", action="store_true")
    _budget_arguments(p)
    p.add_argument("--prefill", default="", help="assistant prefill (token forcing), e.g. '<think>I know this'")
    p.add_argument("--trace", default=None, help="write a per-token JSONL trace here")
    p.add_argument("--json", action="store_true", help="print one JSON object with the result fields")
    p.add_argument("--stream", action="store_true", help="print text as it is produced")
    return p


def _given(a: argparse.Namespace, flags: tuple[tuple[str, str], ...]) -> list[str]:
    return [flag for flag, dest in flags if getattr(a, dest) is not None]


def check_flags(a: argparse.Namespace) -> None:
    """Flags that do not go together are a ConfigError naming them (before any model is loaded)."""
    if a.method is not None:
        clash = _given(a, (("--sampler", "sampler"), ("--entropix-config", "entropix_config"))
                       + SAMPLE_FLAGS + BUDGET_FLAGS)
        if clash:
            raise ConfigError(f"--method cannot be combined with {', '.join(clash)}: the spec sets both the sampler "
                              "and the budget (e.g. --method 'sample+budget:t=0.7,max=64'); drop one or the other")
        return
    sampler = a.sampler or "greedy"
    for flag in _given(a, SAMPLE_FLAGS) if sampler != "sample" else ():
        raise ConfigError(f"{flag} applies only to --sampler sample (the sampler is {sampler}); "
                          f"add --sampler sample, or drop {flag}")
    if a.entropix_config is not None and sampler != "entropix":
        raise ConfigError(f"--entropix-config applies only to --sampler entropix (the sampler is {sampler}); "
                          "add --sampler entropix, or drop --entropix-config")


def budget_from_flags(a: argparse.Namespace, model: Any) -> Any:
    """A Budget when any budget flag is given (from the model's own delimiters), else None."""
    from entropix_s1.research.methods import make_budget

    wants = (a.max_thinking is not None or a.min_thinking or a.num_waits or a.think_start or a.think_end
             or a.max_answer is not None)
    if not wants:
        return None
    options = {"min": a.min_thinking or 0, "max": a.max_thinking, "waits": a.num_waits or 0,
               "wait": "Wait" if a.wait is None else a.wait, "answer": a.max_answer}
    fmt: dict[str, Any] = {"answer_prefix": "\nFinal Answer:" if a.answer_prefix is None else a.answer_prefix}
    if a.think_start is not None:
        fmt["think_start"] = a.think_start
    if a.think_end:
        fmt.update(think_end=tuple(a.think_end), cap_with_delimiter=True)
    return make_budget(options, factory=model.budget, **fmt)


def sampler_from_flags(a: argparse.Namespace) -> Any:
    if a.sampler == "sample":
        from entropix_s1.core.sampling import Sample

        return Sample(temperature=0.7 if a.temperature is None else a.temperature, top_k=a.top_k, top_p=a.top_p,
                      min_p=a.min_p)
    if a.sampler == "entropix" and a.entropix_config:
        from entropix_s1.research.calibrate import load_entropix_config

        return load_entropix_config(a.entropix_config)
    return a.sampler or "greedy"


def _decoding(a: argparse.Namespace) -> tuple[Any, tuple[Any, Any, int]]:
    """The model, and (sampler, budget, max_new_tokens) from --method or from the flags."""
    if a.method is not None:
        from entropix_s1.research.methods import model_format, parse_method, with_format

        method = parse_method(a.method, default_max_new_tokens=DEFAULT_MAX_NEW_TOKENS)
        m = load_model(a)
        max_new = a.max_new_tokens if a.max_new_tokens is not None else method.max_new_tokens
        return m, (method.sampler, with_format(method.budget, model_format(m)), max_new)
    sampler = sampler_from_flags(a)
    m = load_model(a)
    max_new = a.max_new_tokens if a.max_new_tokens is not None else DEFAULT_MAX_NEW_TOKENS
    return m, (sampler, budget_from_flags(a, m), max_new)


def run(a: argparse.Namespace) -> int:
    check_flags(a)
    m, (sampler, budget, max_new_tokens) = _decoding(a)
    kw = dict(sampler=sampler, budget=budget, max_new_tokens=max_new_tokens, seed=a.seed, raw=a.raw,
              prefill=a.prefill, system=a.system, ignore_eos=a.ignore_eos)
    if a.stream:
        for piece in m.stream(a.prompt, **kw):
            if not a.json:
                print(piece, end="", flush=True)
        result = m.last_stream_result
        if not a.json:
            print()
    else:
        (result,) = m.generate([a.prompt], **kw)
    if a.trace:
        from entropix_s1.viz.trace import write_trace

        write_trace([result], a.trace)
    if a.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    elif not a.stream:
        print(result.text)
        probes = getattr(result, "probes", ())  # results of stand-in models may not carry it
        print(f"[thinking={result.thinking_tokens} answer={result.answer_tokens} waits={result.waits_inserted} "
              f"pauses={result.pauses_inserted} probes={len(probes)} stop={result.stop_reason}]", file=sys.stderr)
        for p in probes:
            print(f"[probe at token {p.step}: {p.text!r} -> {p.answer!r} confidence={p.confidence:.3f} "
                  f"entropy={p.entropy:.3f}]", file=sys.stderr)
    return 0
