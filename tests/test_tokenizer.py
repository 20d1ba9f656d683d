"""Tokenizer: GGUF-built vocabularies against llama.cpp's vectors and transformers; chat templates against transformers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entropix_s1.errors import CheckpointError, InputError
from entropix_s1.io.gguf_import import tokenizer_from_gguf
from entropix_s1.host.tokenizer import Tokenizer

VOCABS = ("ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf")
SEPARATOR = "\n__ggml_vocab_test__\n"

TEXTS = [
    "", " ", "\n", "\t\t", "   leading and trailing   ", "a\n\n\nb\r\nc",
    "Hello, world! It's 2024; I've got 1234567890 reasons.",
    "ünïcödé Ω≈ç√ 日本語のテキスト 中文 한국어 العربية עברית",
    "emoji 🦙🚀 😶‍🌫️ 👍🏽 flags 🇫🇷",
    "def f(x):\n    return x**2  # square\n\tif x>=10: pass",
    "digits 3 33 333 3333 33333 3.14 -1e-9 0x1F 2024-01-01",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text<|im_end|>",
    "e\u0301 versus é",  # decomposed vs composed
    "      many spaces\n\n\n\n   and newlines",
]


def _vocab_dir(shared: Path) -> Path:
    return shared / "tokenizers" / "llamacpp-vocab"


def _cases(path: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp test format: `.inp` = strings each followed by SEPARATOR; `.out` = one line of ids per string."""
    inputs = path.with_name(path.name + ".inp").read_text(encoding="utf-8")
    outputs = path.with_name(path.name + ".out").read_text(encoding="utf-8")
    assert inputs.endswith(SEPARATOR)
    strings = inputs[: -len(SEPARATOR)].split(SEPARATOR)
    ids = [[int(t) for t in line.split()] for line in outputs.split("\n")[: len(strings)]]
    assert len(outputs.rstrip("\n").split("\n")) == len(strings)
    return list(zip(strings, ids))


@pytest.fixture(scope="module")
def gguf_vocab(shared: Path):
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = tokenizer_from_gguf(_vocab_dir(shared) / name)
        return cache[name]

    return get


@pytest.mark.parametrize("name", VOCABS)
def test_gguf_vocab_matches_llamacpp_vectors(shared: Path, gguf_vocab, name: str) -> None:
    cases = _cases(_vocab_dir(shared) / name)
    assert len(cases) == 46
    wrong = [(s, ids, got) for s, ids in cases if (got := gguf_vocab(name).encode(s, add_special_tokens=False).ids) != ids]
    assert not wrong, wrong


@pytest.fixture(scope="module")
def qwen3(shared: Path) -> Tokenizer:
    return Tokenizer.from_dir(shared / "tokenizers" / "qwen3")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
       | st.lists(st.sampled_from(["the", " ", "  ", "\n", "123", "é", "e\u0301", "🦙", "'s", "ДА", "...", "\t"]),
                  max_size=12).map("".join))
def test_gguf_qwen2_vocab_equals_real_qwen_tokenizer(gguf_vocab, qwen3: Tokenizer, text: str) -> None:
    """Qwen2 and Qwen3 share their BPE: our GGUF rebuild must equal the original tokenizer.json on any text."""
    assert gguf_vocab("ggml-vocab-qwen2.gguf").encode(text, add_special_tokens=False).ids == qwen3.encode(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_gguf_llama3_vocab_round_trips(gguf_vocab, text: str) -> None:
    tok = Tokenizer(gguf_vocab("ggml-vocab-llama-bpe.gguf"))
    assert tok.decode(tok.encode(text)) == text


def test_gguf_llama3_adds_bos(gguf_vocab) -> None:
    tok = gguf_vocab("ggml-vocab-llama-bpe.gguf")
    assert tok.encode("Hello", add_special_tokens=True).ids == [128000, 9906]


# ------------------------------------------------------------------------------------------------
# The Tokenizer class on the real Qwen3 files
# ------------------------------------------------------------------------------------------------


def test_qwen3_special_tokens(qwen3: Tokenizer) -> None:
    assert qwen3.token_id("<think>") == 151667 and qwen3.token_id("</think>") == 151668
    assert qwen3.token_id("no such token") is None
    assert qwen3.bos_id is None and qwen3.eos_ids == (151645,) and qwen3.pad_id == 151643
    assert qwen3.vocab_size == 151669
    ids = qwen3.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == 151644 and ids[-1] == 151645
    assert qwen3.decode(ids, skip_special_tokens=True) == "user\nhi"
    assert qwen3.id_to_token(qwen3.encode(" Paris")[0]) == " Paris"


def test_from_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no tokenizer.json"):
        Tokenizer.from_dir(tmp_path)
    with pytest.raises(CheckpointError, match="no such directory"):
        Tokenizer.from_dir(tmp_path / "missing")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        Tokenizer.from_dir(tmp_path)


@pytest.fixture(scope="module")
def qwen3_ref(shared: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(shared / "tokenizers" / "qwen3")


CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "<think>\nGreeting.\n</think>\n\nHello!"}, {"role": "user", "content": "Again 🦙"}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1", "reasoning_content": "thought"},
     {"role": "user", "content": "Q2"}],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("template_vars", [{}, {"enable_thinking": False}, {"enable_thinking": True}])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_qwen3_template_matches_transformers(qwen3: Tokenizer, qwen3_ref, conversation, template_vars,
                                            add_generation_prompt: bool) -> None:
    expected = qwen3_ref.apply_chat_template(conversation, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             **template_vars)
    assert qwen3.apply_chat_template(conversation, add_generation_prompt=add_generation_prompt, **template_vars) == expected


def test_qwen3_template_with_tools_matches_transformers(qwen3: Tokenizer, qwen3_ref) -> None:
    tools = [{"type": "function", "function": {"name": "add", "description": "Add two numbers é",
                                               "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}]
    expected = qwen3_ref.apply_chat_template(CONVERSATIONS[0], tools=tools, tokenize=False, add_generation_prompt=True)
    assert qwen3.apply_chat_template(CONVERSATIONS[0], tools=tools) == expected


def test_qwen3_render_prefill_and_system(qwen3: Tokenizer, qwen3_ref) -> None:
    user = [{"role": "user", "content": "Capital of France?"}]
    base = qwen3_ref.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert qwen3.render("Capital of France?", prefill="<think>\nI know this") == base + "<think>\nI know this"
    no_think = qwen3_ref.apply_chat_template(user, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert no_think.endswith("<think>\n\n</think>\n\n")
    assert qwen3.render("Capital of France?", enable_thinking=False, prefill="Paris") == no_think + "Paris"
    with_system = qwen3_ref.apply_chat_template([{"role": "system", "content": "Terse."}, *user], tokenize=False,
                                                add_generation_prompt=True)
    assert qwen3.render("Capital of France?", system="Terse.") == with_system
    assert qwen3.render(user) == base
    assert qwen3.render("just text", raw=True) == "just text"
    assert qwen3.render("just text", raw=True, prefill=" more") == "just text more"
    prefilled_ids = qwen3.encode(qwen3.render("Capital of France?", prefill="<think>"))
    assert prefilled_ids[-1] == qwen3.token_id("<think>")


def test_template_helpers() -> None:
    """The globals transformers gives templates: tojson (no HTML escaping), strftime_now, loop controls."""
    from tokenizers import Tokenizer as Raw, models

    template = ("{{ messages | tojson }}|{{ strftime_now('%Y') | length }}|"
                "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}{% endfor %}")
    tok = Tokenizer(Raw(models.BPE()), {"chat_template": template, "bos_token": "<s>"})
    out = tok.apply_chat_template([{"role": "user", "content": "<a&b> é"}, {"role": "user", "content": "2"}])
    assert out == '[{"role": "user", "content": "<a&b> é"}, {"role": "user", "content": "2"}]|4|<a&b> é'


def test_render_errors(qwen3: Tokenizer) -> None:
    with pytest.raises(InputError, match="empty"):
        qwen3.render("")
    with pytest.raises(InputError, match="empty conversation"):
        qwen3.render([])
    with pytest.raises(InputError, match="raw=True"):
        qwen3.render([{"role": "user", "content": "x"}], raw=True)
    with pytest.raises(InputError, match="system"):
        qwen3.render([{"role": "system", "content": "a"}, {"role": "user", "content": "b"}], system="c")
    strict = Tokenizer(qwen3._tk, {"chat_template": "{{ raise_exception('bad role ' + messages[0].role) }}"})
    with pytest.raises(InputError, match="bad role system"):  # a template's own raise_exception
        strict.render([{"role": "system", "content": "only a system message"}])
    bare = Tokenizer(qwen3._tk)
    with pytest.raises(InputError, match="no chat template"):
        bare.render("hi")


# ------------------------------------------------------------------------------------------------
# SmolLM2: our GGUF-built tokenizer against transformers' own GGUF tokenizer
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path) -> Tokenizer:
    return Tokenizer.from_dir(smollm2_dir)


@pytest.fixture(scope="module")
def smollm2_ref(smollm2_gguf: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)


@pytest.mark.slow
@pytest.mark.parametrize("text", TEXTS)
def test_smollm2_ids_match_transformers_gguf_tokenizer(smollm2: Tokenizer, smollm2_ref, text: str) -> None:
    assert smollm2.encode(text) == smollm2_ref.encode(text, add_special_tokens=False)
    assert smollm2.encode(text, add_special_tokens=True) == smollm2_ref.encode(text, add_special_tokens=True)


@pytest.mark.slow
def test_smollm2_splits_every_numeric_char(smollm2: Tokenizer, smollm2_ref) -> None:
    """SmolLM2's own tokenizer.json splits with Digits(individual_digits) before ByteLevel, which llama.cpp mirrors
    for pre="smollm". transformers' GGUF loader has no "smollm" entry and falls back to the GPT-2 split, which
    differs only on non-ASCII numerics (" ½" -> one token). Compare against its vocabulary with the original split."""
    from tokenizers import pre_tokenizers

    backend = copy.deepcopy(smollm2_ref.backend_tokenizer)
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    for text in ["½ ² ³⁄₄ Ⅻ ٣٤ १२", "x ½", *TEXTS]:
        assert smollm2.encode(text) == backend.encode(text, add_special_tokens=False).ids, text


@pytest.mark.slow
def test_smollm2_converted_dir_loads_in_transformers(smollm2_dir: Path, smollm2: Tokenizer) -> None:
    transformers = pytest.importorskip("transformers")
    ref = transformers.AutoTokenizer.from_pretrained(smollm2_dir)
    for text in TEXTS:
        assert smollm2.encode(text) == ref.encode(text, add_special_tokens=False), text


@pytest.mark.slow
def test_smollm2_special_tokens(smollm2: Tokenizer, smollm2_dir: Path) -> None:
    assert smollm2.bos_id == 1 and smollm2.eos_ids == (2, 0) and smollm2.pad_id == 2
    assert smollm2.token_id("<|im_start|>") == 1 and smollm2.vocab_size == 49152
    config = json.loads((smollm2_dir / "tokenizer_config.json").read_text())
    assert config["add_bos_token"] is False and "SmolLM" in config["chat_template"]
    assert smollm2.decode(smollm2.encode("héllo 🦙 wörld")) == "héllo 🦙 wörld"


@pytest.mark.slow
@pytest.mark.parametrize("conversation", CONVERSATIONS[:2])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_smollm2_template_matches_transformers(smollm2: Tokenizer, smollm2_ref, conversation,
                                              add_generation_prompt: bool) -> None:
    expected = smollm2_ref.apply_chat_template(conversation, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert smollm2.apply_chat_template(conversation, add_generation_prompt=add_generation_prompt) == expected
    if add_generation_prompt:
        assert smollm2.render(conversation, prefill="Sure") == expected + "Sure"
