"""Token id sets the methods of docs/methods.md read, found by tokenizing words, never by ids.

A word is found in each spelling a tokenizer may emit at a step: as is, lower case and upper
case, alone and after a space or a line break. A spelling that tokenizes to exactly one token is
in the set (the loop compares single tokens); a longer one is not (its first piece, e.g. "Altern",
would also start other words). So the sets differ per tokenizer: SmolLM2, Qwen2 and Qwen3 each
get their own (tests/test_token_sets.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Reflection words (NoWait suppresses them; AlphaOne's transition; DEER's transition points).
REFLECTION_WORDS = ("Wait", "Hmm", "Alternatively")
#: Structural breaks after which AlphaOne may insert "Wait" (a paragraph end, after punctuation too).
BREAK_TEXTS = ("\n\n", ".\n\n", ",\n\n", ":\n\n", ")\n\n", " \n\n", "?\n\n", "!\n\n")
#: Line ends: AlphaOne's breaks for models that write one step per line (Budget.alpha_breaks="line").
LINE_TEXTS = ("\n", ".\n", ",\n", ":\n", ")\n", " \n", "?\n", "!\n")
#: Sentence ends at which the graceful cap may end thinking.
SENTENCE_TEXTS = (".", "!", "?", ".\n", ".\n\n", "?\n", "!\n", "\n", "\n\n", ".)", ".\"")

_PREFIXES = ("", " ", "\n", "\n\n")


def _single_tokens(tokenizer: Any, texts: Iterable[str]) -> list[int]:
    ids: list[int] = []
    for text in texts:
        try:
            enc = tokenizer.encode(text, add_special_tokens=False)
        except ValueError:  # a test vocabulary that cannot spell it
            continue
        if len(enc) == 1 and enc[0] not in ids:
            ids.append(int(enc[0]))
    return ids


def reflection_ids(tokenizer: Any, words: Iterable[str] = REFLECTION_WORDS) -> list[int]:
    """Single-token spellings of `words`: case variants, bare or after " ", "\\n", "\\n\\n"."""
    spellings = [p + c for w in words for c in dict.fromkeys((w, w.lower(), w.upper(), w.capitalize()))
                 for p in _PREFIXES]
    return _single_tokens(tokenizer, spellings)


def break_ids(tokenizer: Any) -> list[int]:
    return _single_tokens(tokenizer, BREAK_TEXTS)


def line_ids(tokenizer: Any) -> list[int]:
    return _single_tokens(tokenizer, LINE_TEXTS)


def sentence_ids(tokenizer: Any) -> list[int]:
    return _single_tokens(tokenizer, SENTENCE_TEXTS)


__all__ = ["BREAK_TEXTS", "LINE_TEXTS", "REFLECTION_WORDS", "SENTENCE_TEXTS", "break_ids", "line_ids", "reflection_ids",
           "sentence_ids"]
