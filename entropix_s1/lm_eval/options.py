"""What lm-eval's `--model_args` and `--gen_kwargs` mean for our loop, as one method spec.

Pure Python (no lm-eval, no JAX), so the translation is tested on its own. Two inputs:

* model_args (`--model_args pretrained=NAME_OR_DIR,method=SPEC,dtype=...,batch_size=...`): read by
  `model_options`. lm-eval splits the string on commas, so `method=budget:max=64,waits=2` reaches
  us as `{"method": "budget:max=64", "waits": 2}`; keys of our method grammar that follow `method`
  are joined back onto it (quoting works too: `method='budget:max=64,waits=2'`). Any other unknown
  key is a ConfigError naming it and the valid keys.
* gen_kwargs (a task's `generation_kwargs` merged with `--gen_kwargs`): read by `effective_spec`,
  which folds them into the method spec, so a run is always one canonical method name of
  `research/methods.py` (the grammar `compare` uses) and the same budget gives the same tokens
  whichever way it was written.

s1's names, as its fork of lm-eval (`vllm_causallms.py`) reads them, are aliases of our budget
knobs: `max_tokens_thinking` -> `max` (an int, or "auto": `max_gen_toks` minus 100 answer tokens,
s1's rule without the prompt length its vLLM call also subtracts), `min_tokens_thinking` -> `min`,
`thinking_n_ignore` -> `waits` (how many times the end of thinking is suppressed),
`thinking_n_ignore_str` -> `wait` (the string appended then). s1's fork appends nothing when
`thinking_n_ignore_str` is absent, so `thinking_n_ignore` alone means `wait=none`, as there
(unless the method names its own `wait=`).
`thinking_start` / `thinking_end` override the model's delimiters. s1's other keys
(`until_thinking`, `rejection_sample`, `temperature_thinking`, ...) have no counterpart here and
are refused by name.

lm-eval's own keys: `until` (stop strings, also for the thinking phase), `max_gen_toks` (and its
aliases `max_new_tokens`, `max_tokens`, `max_completion_tokens`: the cap on all new tokens,
thinking included; without one the method's own `max_new_tokens` holds, as in `compare`), and
`do_sample` / `temperature` / `top_p` / `top_k` / `min_p`. A request to sample (`do_sample=true`
or `temperature>0`) turns a greedy method into `sample:t=...` (temperature 1 when only
`do_sample` is given) and sets the knobs of a `sample` method; a greedy request (`do_sample=false`,
`temperature=0`, lm-eval's default) leaves the method's sampler as it is, so `method=entropix`
still runs entropix on tasks that ask for greedy decoding. entropix chooses its own temperature:
asking it to sample is a ConfigError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from entropix_s1.errors import ConfigError
from entropix_s1.research.methods import parse_spec

__all__ = ["ModelOptions", "RunSettings", "model_options", "effective_spec", "METHOD_KEYS", "MODEL_ARG_KEYS",
           "S1_GEN_KWARGS"]

#: model_args we take; lm-eval itself adds batch_size, max_batch_size and device (None when unset).
MODEL_ARG_KEYS = ("pretrained", "method", "dtype", "batch_size", "max_batch_size", "device", "seed",
                  "add_bos_token", "system_instruction", "max_length", "trust_remote_code")

#: keys of our method grammar (and their aliases): after `method=` they continue its spec.
METHOD_KEYS = frozenset({"t", "temperature", "temp", "top_k", "top_p", "min_p", "calibrated", "pause", "max", "min",
                         "waits", "wait", "answer", "unc", "soft", "conf", "max_new", "max_new_tokens"})

#: s1's gen_kwargs -> our method keys
S1_GEN_KWARGS = {"max_tokens_thinking": "max", "min_tokens_thinking": "min", "thinking_n_ignore": "waits",
                 "thinking_n_ignore_str": "wait"}
_FORMAT_GEN_KWARGS = ("thinking_start", "thinking_end")
_MAX_GEN_ALIASES = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")
_SAMPLING_GEN_KWARGS = ("do_sample", "temperature", "top_p", "top_k", "min_p")
#: tokens s1's "auto" thinking cap leaves for the answer
AUTO_ANSWER_TOKENS = 100


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """The validated model_args of one backend instance."""

    pretrained: Any
    method: str = "greedy"
    dtype: str = "float32"
    batch_size: int = 8
    seed: int = 0
    add_bos_token: bool = False
    system_instruction: str | None = None


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """One request group's decoding: the canonical method spec, stop strings, format overrides."""

    spec: str
    until: tuple[str, ...]
    max_new_tokens: int
    think_start: str | None = None
    think_end: str | None = None


def _render_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _join_method(items: list[tuple[str, Any]]) -> tuple[dict[str, Any], str | None]:
    """Split lm-eval's parsed model_args into ours and the method spec (re-joining its keys)."""
    ours: dict[str, Any] = {}
    method_parts: list[str] | None = None
    for key, value in items:
        if key == "method":
            method_parts = [_render_value(value).strip()]
        elif key not in MODEL_ARG_KEYS and method_parts is not None and key in METHOD_KEYS:
            method_parts.append(f"{key}={_render_value(value)}")
        elif key not in MODEL_ARG_KEYS:
            hint = (" (a key of the method grammar: put it after method=, e.g. method=budget:max=64,waits=2)"
                    if key in METHOD_KEYS else "")
            raise ConfigError(f"model_args: unknown key {key!r}{hint}; valid keys: {', '.join(MODEL_ARG_KEYS)}")
        else:
            ours[key] = value
    if method_parts is None:
        return ours, None
    head, *keys = method_parts
    if not keys:
        return ours, head
    return ours, head + ("," if ":" in head else ":") + ",".join(keys)


def _int_option(name: str, value: Any, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"model_args: {name}={value!r} is not an integer") from None
    if number != value and not isinstance(value, str):
        raise ConfigError(f"model_args: {name}={value!r} is not an integer")
    if number < minimum:
        raise ConfigError(f"model_args: {name} must be >= {minimum}, got {number}")
    return number


def _batch_size(value: Any) -> int:
    """lm-eval's batch_size: an int, or "auto"/"auto:N" (we use 8 row slots: no memory probing)."""
    if value is None:
        return 8
    if isinstance(value, str) and value.startswith("auto"):
        return 8
    return _int_option("batch_size", value, 1)


def model_options(args: Mapping[str, Any]) -> ModelOptions:
    """Validate lm-eval's model_args (in their given order) before anything is loaded."""
    ours, method = _join_method(list(args.items()))
    if ours.get("pretrained") in (None, ""):
        raise ConfigError("model_args: pretrained=NAME_OR_DIR is required (a catalog name such as "
                          "smollm2-135m-instruct, or a checkpoint directory)")
    method = method or "greedy"
    parse_spec(method)  # an unknown family or key is a ConfigError naming it, before any loading
    dtype = str(ours.get("dtype") or "float32")
    if dtype in ("auto", "float", "fp32", "f32"):
        dtype = "float32"
    if dtype in ("bf16", "bfloat16"):
        dtype = "bfloat16"
    if dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"model_args: dtype={dtype!r}; use float32 or bfloat16")
    add_bos = ours.get("add_bos_token", False)
    if not isinstance(add_bos, bool):
        raise ConfigError(f"model_args: add_bos_token={add_bos!r} must be true or false")
    system = ours.get("system_instruction")
    return ModelOptions(pretrained=ours["pretrained"], method=method, dtype=dtype,
                        batch_size=_batch_size(ours.get("batch_size")),
                        seed=_int_option("seed", ours.get("seed", 0), 0), add_bos_token=add_bos,
                        system_instruction=None if system is None else str(system))


def _wants_sampling(gen_kwargs: Mapping[str, Any]) -> bool:
    do_sample = gen_kwargs.get("do_sample")
    temperature = float(gen_kwargs.get("temperature") or 0.0)
    if do_sample is None:
        return temperature > 0.0
    return bool(do_sample) and (temperature > 0.0 or "temperature" not in gen_kwargs)


def _max_gen_toks(gen_kwargs: Mapping[str, Any]) -> int | None:
    for key in _MAX_GEN_ALIASES:
        if gen_kwargs.get(key) is not None:
            value = gen_kwargs[key]
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"gen_kwargs: {key}={value!r} is not an integer") from None
            if number < 1:
                raise ConfigError(f"gen_kwargs: {key} must be >= 1, got {number}")
            return number
    return None


def _until(gen_kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    until = gen_kwargs.get("until")
    if until is None:
        return ()
    if isinstance(until, str):
        return (until,)
    if not isinstance(until, (list, tuple)) or not all(isinstance(s, str) for s in until):
        raise ConfigError(f"gen_kwargs: until={until!r} must be a string or a list of strings")
    return tuple(s for s in until if s)


def _s1_options(gen_kwargs: Mapping[str, Any], max_gen_toks: int | None) -> dict[str, Any]:
    """s1's budget gen_kwargs as method options (`max`, `min`, `waits`, `wait`)."""
    options: dict[str, Any] = {}
    for s1_key, key in S1_GEN_KWARGS.items():
        if gen_kwargs.get(s1_key) is None:
            continue
        value = gen_kwargs[s1_key]
        if s1_key == "max_tokens_thinking" and value == "auto":
            if max_gen_toks is None:
                raise ConfigError("gen_kwargs: max_tokens_thinking=auto needs max_gen_toks (s1 leaves "
                                  f"{AUTO_ANSWER_TOKENS} of them for the answer)")
            value = max_gen_toks - AUTO_ANSWER_TOKENS
        if key == "wait":
            options[key] = "none" if value == "" else _render_value(value)
            continue
        try:
            options[key] = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"gen_kwargs: {s1_key}={value!r} is not an integer") from None
    return options


def _sampler_options(spec_kind: str, gen_kwargs: Mapping[str, Any], method: str) -> tuple[str, dict[str, Any]]:
    """(sampler kind, sampler options to set) for a request's sampling gen_kwargs."""
    if not _wants_sampling(gen_kwargs):
        return spec_kind, {}
    if spec_kind == "entropix":
        raise ConfigError(f"gen_kwargs ask to sample (do_sample/temperature) but method {method!r} is entropix, "
                          "which picks its own temperature: drop temperature/do_sample, or use method=sample:t=...")
    options: dict[str, Any] = {}
    if gen_kwargs.get("temperature") is not None and float(gen_kwargs["temperature"]) > 0:
        options["t"] = float(gen_kwargs["temperature"])
    elif spec_kind == "greedy":
        options["t"] = 1.0
    for key in ("top_p", "top_k", "min_p"):
        if gen_kwargs.get(key) is not None:
            options[key] = gen_kwargs[key]
    return "sample", options


def effective_spec(method: str, gen_kwargs: Mapping[str, Any]) -> RunSettings:
    """The canonical method spec that `method` becomes under a request's gen_kwargs."""
    known = set(S1_GEN_KWARGS) | set(_FORMAT_GEN_KWARGS) | set(_MAX_GEN_ALIASES) | set(_SAMPLING_GEN_KWARGS) | {"until"}
    unknown = sorted(set(gen_kwargs) - known)
    if unknown:
        raise ConfigError(f"gen_kwargs: unknown key {unknown[0]!r}; entropix-s1 takes {', '.join(sorted(known))}")
    base = parse_spec(method)
    options = dict(base.sampler_options)
    head, _, rest = base.name.partition(":")
    budget_kind = next((b for b in ("adaptive-budget", "budget") if head.endswith(b)), None)
    for item in rest.split(",") if rest else []:
        key, _, value = item.partition("=")
        if key not in options and key not in ("calibrated",):
            options[key] = value
    max_gen_toks = _max_gen_toks(gen_kwargs)
    s1 = _s1_options(gen_kwargs, max_gen_toks)
    if "waits" in s1 and "wait" not in s1 and "wait" not in options:
        s1["wait"] = "none"  # s1's fork appends nothing without thinking_n_ignore_str
    options.update(s1)
    kind, sampler_updates = _sampler_options(base.sampler_kind, gen_kwargs, method)
    options.update(sampler_updates)
    if s1 and budget_kind is None:
        budget_kind = "budget"
    if max_gen_toks is not None:
        options["max_new"] = max_gen_toks
    head = kind if budget_kind is None else (budget_kind if kind == "greedy" else f"{kind}+{budget_kind}")
    if kind == "greedy":
        options = {k: v for k, v in options.items() if k not in ("t", "top_k", "top_p", "min_p")}
    items = [k if (k == "calibrated" and v is True) else f"{k}={_render_value(v)}" for k, v in options.items()]
    spec = parse_spec(head + (":" + ",".join(items) if items else ""))
    start = gen_kwargs.get("thinking_start")
    end = gen_kwargs.get("thinking_end")
    return RunSettings(spec=spec.name, until=_until(gen_kwargs), max_new_tokens=spec.max_new_tokens,
                       think_start=None if start is None else str(start), think_end=None if end is None else str(end))
