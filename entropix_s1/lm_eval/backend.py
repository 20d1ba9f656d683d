"""`EntropixS1LM`: our decode loop and scorer behind lm-eval's `LM` interface.

Why a backend and not a fork: a researcher's lm-eval tasks (and s1's `--gen_kwargs` budget
forcing) then run on our one jitted loop as they are. What each request type does:

* `generate_until`: requests are grouped by their gen_kwargs; each group is one batched
  `Model.generate` call with `batch_size` row slots (continuous refill), under the method that
  `options.effective_spec` makes of `method=` and the gen_kwargs. A context is encoded as it is
  (lm-eval has already applied the chat template when asked to; no BOS unless
  `add_bos_token=true`, as lm-eval's HF backend does), so a chat-templated lm-eval run feeds the
  model the same tokens as `entropix-s1 compare`. The returned string is the generated text;
  it is a `Generation`, a `str` that also carries our record of the row (`details`: method,
  thinking/answer tokens, waits, pauses, stop reason, thinking and answer text, per-token trace),
  which a task's `process_results` can put into lm-eval's logged samples (`sample_metrics`).
* `loglikelihood`: context and continuation are split into tokens as lm-eval's `TemplateLM` does
  (trailing spaces of the context move to the continuation; the continuation's tokens are the
  tail of the whole text's tokens) and scored with `Model.score` on the ids; the sum of the
  continuation's logprobs and whether every one of its tokens is the argmax.
* `loglikelihood_rolling`: lm-eval's rolling windows over the model context, each scored the
  same way.

lm-eval is imported here only: `import entropix_s1` stays free of it (and of JAX).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from collections.abc import Sequence
from typing import Any

from lm_eval.api.model import LM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from entropix_s1.errors import ConfigError
from entropix_s1.lm_eval.options import ModelOptions, RunSettings, effective_spec, model_options
from entropix_s1.research.methods import Method, model_format, parse_method, with_format

__all__ = ["EntropixS1LM", "Generation", "sample_metrics"]

logger = logging.getLogger(__name__)


class Generation(str):
    """A generated text (what every lm-eval backend returns) with our record of it in `details`."""

    details: dict[str, Any]

    def __new__(cls, text: str, details: dict[str, Any]) -> Generation:
        generation = super().__new__(cls, text)
        generation.details = details
        return generation

    def __reduce__(self) -> tuple[Any, ...]:  # lm-eval's request cache pickles responses
        return (Generation, (str(self), self.details))


def sample_metrics(response: Any) -> dict[str, Any]:
    """Per-sample numbers of a `Generation` for a task's `process_results` (lm-eval aggregates
    each by its mean and writes it into the logged sample); {} for a plain string."""
    details = getattr(response, "details", None)
    if not details:
        return {}
    return {key: details[key] for key in ("thinking_tokens", "answer_tokens", "waits", "pauses")}


def _details(method: Method, result: Any) -> dict[str, Any]:
    return {
        "method": method.name,
        "thinking_tokens": result.thinking_tokens,
        "answer_tokens": result.answer_tokens,
        "waits": result.waits_inserted,
        "pauses": result.pauses_inserted,
        "stop_reason": result.stop_reason,
        "error": result.error,
        "thinking_text": result.thinking_text,
        "answer_text": result.answer_text,
        "trace": [step.to_json() for step in result.trace],
    }


class EntropixS1LM(LM):
    """lm-eval model `entropix-s1`: `--model_args pretrained=NAME_OR_DIR,method=SPEC[,dtype=,batch_size=,seed=]`.

    `pretrained` may also be a loaded `entropix_s1.Model` (Python API). Bad model_args (an unknown
    key, an unknown method, a bad value) raise ConfigError before anything is loaded."""

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        self.options: ModelOptions = model_options(model_args)
        for key in ("device", "max_batch_size", "max_length", "trust_remote_code"):
            if model_args.get(key) not in (None, False):
                logger.info("entropix-s1: model_args %s=%r is not used (JAX places the model)", key,
                            model_args[key])
        pretrained = self.options.pretrained
        if isinstance(pretrained, str):
            from entropix_s1.host.engine import load

            self.model = load(pretrained, dtype=self.options.dtype)
        else:
            self.model = pretrained
        self._settings_cache: dict[str, tuple[RunSettings, Method, Any]] = {}

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None
                            ) -> EntropixS1LM:
        """lm-eval's constructor path: a model_arg wins over the CLI flag of the same name
        (`batch_size=8` in model_args over `--batch_size`'s default of 1)."""
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict[str, Any] | None = None
                               ) -> EntropixS1LM:
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    # ------------------------------------------------------------------------------ identity
    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.model, "name", "entropix-s1")).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.model.tokenizer, "chat_template", None) or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """lm-eval's chat hook: the checkpoint's own template, rendered as `generate` renders it."""
        messages = list(chat_history)
        if self.options.system_instruction and not (messages and messages[0].get("role") == "system"):
            messages.insert(0, {"role": "system", "content": self.options.system_instruction})
        return self.model.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)

    def get_model_info(self) -> dict[str, Any]:
        return {"model_name": getattr(self.model, "name", None), "method": self.options.method,
                "model_sha": getattr(self.model, "weights_sha256", None), "dtype": self.options.dtype}

    # ------------------------------------------------------------------------------ tokens
    @property
    def max_length(self) -> int:
        return int(self.model.config.max_position_embeddings)

    def _encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        special = self.options.add_bos_token if add_special_tokens is None else add_special_tokens
        return list(self.model.tokenizer.encode(text, add_special_tokens=special))

    @property
    def _prefix_token(self) -> int:
        tokenizer = self.model.tokenizer
        bos = getattr(tokenizer, "bos_id", None)
        if bos is not None:
            return int(bos)
        eos = tuple(getattr(tokenizer, "eos_ids", ())) or tuple(self.model.config.eos_token_ids)
        if not eos:
            raise ConfigError("loglikelihood of an empty context needs a BOS or EOS token; this tokenizer has neither")
        return int(eos[0])

    # ------------------------------------------------------------------------------ generation
    def _settings(self, gen_kwargs: dict[str, Any]) -> tuple[RunSettings, Method, Any]:
        key = json.dumps(gen_kwargs, sort_keys=True, default=str)
        if key not in self._settings_cache:
            settings = effective_spec(self.options.method, gen_kwargs)
            method = parse_method(settings.spec)
            budget = with_format(method.budget, model_format(self.model))
            if budget is not None and (settings.think_start is not None or settings.think_end is not None):
                budget = dataclasses.replace(
                    budget, think_start=budget.think_start if settings.think_start is None else settings.think_start,
                    think_end=budget.think_end if settings.think_end is None else (settings.think_end,))
            self._settings_cache[key] = (settings, method, budget)
        return self._settings_cache[key]

    def _fit_context(self, ids: list[int], max_new_tokens: int) -> list[int]:
        """Left-truncate a context that leaves no room for `max_new_tokens` (lm-eval's convention)."""
        room = self.max_length - max_new_tokens - 64  # forced strings of a budget take tokens too
        if len(ids) > room > 0:
            logger.warning("entropix-s1: context of %d tokens cut to its last %d", len(ids), room)
            return ids[-room:]
        return ids

    def _seed(self, method: Method) -> int:
        """The run's seed keyed by the method (each prompt's draws are keyed by its text too)."""
        return (self.options.seed * 1_000_003 + zlib.crc32(method.name.encode())) % (2**31 - 1)

    def generate_until(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[str]:
        """One batched `generate` per distinct gen_kwargs; responses in request order."""
        responses: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(index)
        for indices in groups.values():
            settings, method, budget = self._settings(dict(requests[indices[0]].args[1]))
            contexts = [requests[i].args[0] for i in indices]
            prompts = [self._fit_context(self._encode(c), settings.max_new_tokens) for c in contexts]
            results = self.model.generate(
                prompts, sampler=method.sampler, budget=budget, max_new_tokens=settings.max_new_tokens,
                stop=settings.until, seed=self._seed(method), batch_size=min(self.options.batch_size, len(prompts)),
                on_error="row", prompt_ids=[zlib.crc32(c.encode()) for c in contexts],
                progress=False if disable_tqdm else None)
            for i, result in zip(indices, results, strict=True):
                if result.error:
                    logger.warning("entropix-s1: request %d failed: %s", i, result.error)
                responses[i] = Generation(result.text, _details(method, result))
                self.cache_hook.add_partial("generate_until", requests[i].args, responses[i])
        return [r if r is not None else "" for r in responses]

    # ------------------------------------------------------------------------------ scoring
    def _split_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of context and continuation, split as lm-eval's TemplateLM splits them."""
        if context == "":
            return [self._prefix_token], self._encode(continuation, add_special_tokens=False)
        spaces = len(context) - len(context.rstrip())
        if spaces:
            continuation = context[-spaces:] + continuation
            context = context[:-spaces]
        whole = self._encode(context + continuation)
        context_ids = self._encode(context)
        return context_ids, whole[len(context_ids):]

    def _score_ids(self, context_ids: list[int], continuation_ids: list[int]) -> tuple[float, bool]:
        """Sum of the continuation's logprobs after the context, and whether greedy decoding
        would have produced every continuation token (`Model.score` on the ids)."""
        if not continuation_ids:
            return 0.0, True
        ids = (context_ids + continuation_ids)[-self.max_length:]
        rows = self.model.score(ids)[-len(continuation_ids):]
        return float(sum(r["logprob"] for r in rows)), all(bool(r["greedy"]) for r in rows)

    def loglikelihood(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        out = []
        for request in requests:
            context, continuation = request.args
            answer = self._score_ids(*self._split_pair(context, continuation))
            self.cache_hook.add_partial("loglikelihood", request.args, answer)
            out.append(answer)
        return out

    def loglikelihood_rolling(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[float]:
        out = []
        for request in requests:
            (text,) = request.args
            windows = map(make_disjoint_window, get_rolling_token_windows(
                token_list=self._encode(text, add_special_tokens=False), prefix_token=self._prefix_token,
                max_seq_len=self.max_length, context_len=1))
            total = sum(self._score_ids(list(context), list(target))[0] for context, target in windows)
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
            out.append(total)
        return out
