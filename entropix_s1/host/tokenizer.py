"""Text <-> token ids and chat prompts, for a Hugging Face-layout checkpoint directory.

Why not transformers: the library must run without torch/transformers, but prompts have to be
byte-for-byte what transformers would build, or a model sees a different conversation than the one it
was tuned on. So the chat template is rendered here the way transformers renders it (sandboxed jinja2,
`trim_blocks`/`lstrip_blocks`, `raise_exception`, `tojson`, `strftime_now`, special-token variables),
and the `tokenizers` library does the encoding from `tokenizer.json`.

`render(..., prefill=...)` appends forced text after the generation prompt (e.g. "<think>I know this"),
which is how s1-style budget forcing and answer steering start the assistant turn.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as _HFTokenizer

from entropix_s1.errors import CheckpointError, InputError

__all__ = ["Tokenizer", "Message"]

Message = Mapping[str, Any]

# transformers copies a message's reasoning under all of these names so any template finds it.
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")
_SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read JSON ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json spells special tokens as strings or as AddedToken dicts."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _id_list(value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [int(v) for v in value if isinstance(v, int)]
    return []


def _compile_template(source: str) -> Any:
    """Compile a chat template in the environment transformers uses (see its `_compile_jinja_template`)."""
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Generation(Extension):
        """`{% generation %}...{% endgeneration %}` (assistant-mask markers): render the body unchanged."""

        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller: Any) -> str:
            return caller()

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
               sort_keys: bool = False) -> str:  # jinja's own tojson HTML-escapes; transformers' does not
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise CheckpointError(f"chat template does not compile: {e}") from e


def _alias_reasoning(message: Message) -> dict[str, Any]:
    msg = dict(message)
    reasoning = next((msg[k] for k in _REASONING_FIELDS if msg.get(k) is not None), None)
    if reasoning is not None:
        msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
    return msg


class Tokenizer:
    """A checkpoint's tokenizer (`tokenizer.json`) plus its special tokens and chat template."""

    def __init__(self, tokenizer: _HFTokenizer, config: Mapping[str, Any] | None = None,
                 *, chat_template: str | None = None, extra_eos_ids: Sequence[int] = (), pad_id: int | None = None) -> None:
        self._tk = tokenizer
        self.config = dict(config or {})
        template = chat_template if chat_template is not None else self.config.get("chat_template")
        if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        self.chat_template: str | None = template if isinstance(template, str) else None
        self.special_tokens: dict[str, str] = {
            k: v for k in _SPECIAL_TOKEN_KEYS if (v := _token_text(self.config.get(k))) is not None
        }
        self._extra_eos = tuple(extra_eos_ids)
        self._pad_override = pad_id

    # ----------------------------------------------------------------------------------- loading

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load `tokenizer.json` (required), `tokenizer_config.json`, `chat_template.jinja`, and EOS ids from
        `generation_config.json` / `config.json` when present."""
        d = Path(path)
        tok_file = d / "tokenizer.json"
        if not tok_file.is_file():
            why = "no such directory" if not d.is_dir() else "no tokenizer.json in it"
            raise CheckpointError(f"{d}: cannot load tokenizer ({why})")
        try:
            tk = _HFTokenizer.from_file(str(tok_file))
        except Exception as e:  # tokenizers raises plain Exception subclasses
            raise CheckpointError(f"{tok_file}: not a valid tokenizers file ({e})") from e
        config = _read_json(d / "tokenizer_config.json") if (d / "tokenizer_config.json").is_file() else {}
        template_file = d / "chat_template.jinja"  # newer transformers save the template on its own
        template = template_file.read_text(encoding="utf-8") if template_file.is_file() else None
        eos: list[int] = []
        pad = None
        for name in ("generation_config.json", "config.json"):
            if (d / name).is_file():
                extra = _read_json(d / name)
                eos += [i for i in _id_list(extra.get("eos_token_id")) if i not in eos]
                pad = pad if pad is not None else extra.get("pad_token_id")
        return cls(tk, config, chat_template=template, extra_eos_ids=eos, pad_id=pad if isinstance(pad, int) else None)

    # ---------------------------------------------------------------------------------- ids

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids; special-token strings in `text` (e.g. `<|im_start|>`) become their single ids."""
        return list(self._tk.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tk.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def id_to_token(self, i: int) -> str:
        """Display form of one token: its decoded text (`' Paris'`, not `'ĠParis'`)."""
        return self._tk.decode([int(i)], skip_special_tokens=False)

    def token_id(self, s: str) -> int | None:
        """The id of a single token spelled exactly `s` (e.g. `'<think>'`), or None."""
        return self._tk.token_to_id(s)

    @property
    def vocab_size(self) -> int:
        """Number of token ids the tokenizer can emit (may be below the model's padded embedding rows)."""
        return self._tk.get_vocab_size(with_added_tokens=True)

    def _special_id(self, key: str) -> int | None:
        text = self.special_tokens.get(key)
        return None if text is None else self._tk.token_to_id(text)

    @property
    def bos_id(self) -> int | None:
        return self._special_id("bos_token")

    @cached_property
    def eos_ids(self) -> tuple[int, ...]:
        """Every id that ends generation: the EOS token first, then generation_config/config eos ids."""
        ids = [i for i in [self._special_id("eos_token"), *self._extra_eos] if i is not None]
        return tuple(dict.fromkeys(ids))

    @property
    def eos_id(self) -> int | None:
        return self.eos_ids[0] if self.eos_ids else None

    @property
    def pad_id(self) -> int | None:
        """Pad token, else the config's pad_token_id, else the first EOS id (padding is masked anyway)."""
        pad = self._special_id("pad_token")
        if pad is None:
            pad = self._pad_override
        return pad if pad is not None else self.eos_id

    # ---------------------------------------------------------------------------------- chat

    @cached_property
    def _template(self) -> Any:
        if self.chat_template is None:
            raise InputError("this checkpoint has no chat template; pass raw=True to use the prompt as is")
        return _compile_template(self.chat_template)

    def apply_chat_template(self, messages: Sequence[Message], *, add_generation_prompt: bool = True,
                            **template_vars: Any) -> str:
        """Render a conversation as transformers' `apply_chat_template(..., tokenize=False)` would."""
        import jinja2

        if not messages:
            raise InputError("empty conversation: give at least one message")
        for m in messages:
            if not isinstance(m, Mapping) or "role" not in m:
                raise InputError(f"chat messages must be dicts with a 'role' key, got {m!r}")
        variables: dict[str, Any] = {**self.special_tokens, "tools": None, "documents": None, **template_vars}
        try:
            return self._template.render(messages=[_alias_reasoning(m) for m in messages],
                                         add_generation_prompt=add_generation_prompt, **variables)
        except jinja2.exceptions.TemplateError as e:
            raise InputError(f"chat template rejected the conversation: {e}") from e

    def render(self, prompt_or_messages: str | Sequence[Message], *, raw: bool = False, system: str | None = None,
               prefill: str = "", **template_vars: Any) -> str:
        """The exact text to feed the model.

        raw=True: a string prompt as is (plus `prefill`). Otherwise a string becomes one user message,
        `system` (if given) is prepended as a system message, the chat template is applied with the
        generation prompt, and `prefill` is appended after it -- the start of the assistant's reply.
        """
        if isinstance(prompt_or_messages, str):
            if not prompt_or_messages and not prefill:
                raise InputError("empty prompt")
            if raw:
                if system is not None:
                    raise InputError("system= has no meaning with raw=True; put it in the prompt text")
                return prompt_or_messages + prefill
            messages: list[Message] = [{"role": "user", "content": prompt_or_messages}]
        else:
            if raw:
                raise InputError("raw=True takes a prompt string, not a list of messages")
            messages = list(prompt_or_messages)
        if system is not None:
            if messages and messages[0].get("role") == "system":
                raise InputError("system= given but the conversation already starts with a system message")
            messages.insert(0, {"role": "system", "content": system})
        return self.apply_chat_template(messages, add_generation_prompt=True, **template_vars) + prefill

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, bos_id={self.bos_id}, eos_ids={self.eos_ids})"
