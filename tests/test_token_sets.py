"""Reflection, break and sentence-end token sets are found per tokenizer by tokenizing words:
SmolLM2, Qwen2 (llama.cpp's vocabulary) and Qwen3 each get their own ids for the same words."""

from __future__ import annotations

from pathlib import Path

import pytest

from entropix_s1.host import token_sets


class _Ids:
    """A `tokenizers.Tokenizer` seen through the `encode -> ids` / `decode` interface of ours."""

    def __init__(self, tok):
        self.tok = tok

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids) -> str:
        return self.tok.decode(ids)


@pytest.fixture(scope="module")
def tokenizers(shared: Path, smollm2_dir: Path):
    from entropix_s1.host.tokenizer import Tokenizer
    from entropix_s1.io.gguf_import import tokenizer_from_gguf

    return {"smollm2": Tokenizer.from_dir(smollm2_dir),
            "qwen2": _Ids(tokenizer_from_gguf(shared / "tokenizers" / "llamacpp-vocab" / "ggml-vocab-qwen2.gguf")),
            "qwen3": Tokenizer.from_dir(shared / "tokenizers" / "qwen3")}


@pytest.mark.parametrize("name", ["smollm2", "qwen2", "qwen3"])
def test_reflection_set_holds_exactly_the_single_token_spellings(tokenizers, name):
    tok = tokenizers[name]
    ids = token_sets.reflection_ids(tok)
    assert len(ids) == len(set(ids)) >= 6
    for i in ids:  # every id spells a reflection word, in some case, maybe after a space or line break
        assert tok.decode([i]).strip().lower() in {"wait", "hmm", "alternatively"}, (name, i, tok.decode([i]))
    for spelling in ("Wait", " Wait", " wait", "Hmm"):  # the common spellings, whenever they are one token
        enc = tok.encode(spelling, add_special_tokens=False)
        assert (enc[0] in ids) == (len(enc) == 1), (name, spelling, enc)
    assert any(len(tok.encode(s, add_special_tokens=False)) == 1 and tok.encode(s, add_special_tokens=False)[0] in ids
               for s in (" Wait", "Wait"))


@pytest.mark.parametrize("name", ["smollm2", "qwen2", "qwen3"])
def test_break_and_sentence_sets(tokenizers, name):
    tok = tokenizers[name]
    breaks, sentence, lines = token_sets.break_ids(tok), token_sets.sentence_ids(tok), token_sets.line_ids(tok)
    assert tok.encode("\n", add_special_tokens=False)[0] in lines
    assert all(tok.decode([i]).endswith("\n") and not tok.decode([i]).endswith("\n\n") for i in lines)
    assert tok.encode("\n\n", add_special_tokens=False)[0] in breaks
    assert all(tok.decode([i]).endswith("\n\n") for i in breaks)
    assert tok.encode(".", add_special_tokens=False)[0] in sentence
    assert all(tok.decode([i]).rstrip("\n").endswith((".", "!", "?", ".)", ".\"")) or not tok.decode([i]).strip()
               for i in sentence)


def test_the_sets_are_the_tokenizers_own(tokenizers):
    smol, qwen2, qwen3 = (token_sets.reflection_ids(tokenizers[n]) for n in ("smollm2", "qwen2", "qwen3"))
    assert set(smol) != set(qwen2)  # different vocabularies, different ids for the same words
    assert set(qwen2) == set(qwen3)  # Qwen3 kept Qwen2's byte-level BPE: the same ids
