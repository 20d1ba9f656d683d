"""A tiny `gemma3` GGUF written the way llama.cpp's convert_hf_to_gguf.py writes one (norms stored
as 1 + w, Gemma's tensor names, a SentencePiece vocabulary with scores and token types and no
merges): our converter gives back the transformers model exactly, its tokenizer equals
transformers' GGUF tokenizer, and a GGUF carrying vision-tower tensors is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from tiny_models import tiny_hf_model

from entropix_s1.core.model import score_logits
from entropix_s1.errors import CheckpointError
from entropix_s1.host.tokenizer import Tokenizer
from entropix_s1.io.checkpoint import load_checkpoint
from entropix_s1.io.gguf_import import convert_gguf

_CONTROL, _NORMAL, _USER, _BYTE = 3, 1, 4, 6
_PIECES = ["▁", "h", "e", "l", "o", "w", "r", "d", "a", "t", "▁h", "he", "ll", "llo", "▁he", "▁hello", "wor", "▁wor",
           "▁world", "ld", "▁w", "at", "▁a", "é", "▁▁"]


def _vocab() -> tuple[list[str], list[int], list[float]]:
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
    types = [_CONTROL] * len(tokens)
    tokens += ["\n", "\n\n", "  ", "   "]  # user-defined whole-match tokens; space runs are spelled with spaces
    types += [_USER] * 4
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [_BYTE] * 256
    tokens += _PIECES
    types += [_NORMAL] * len(_PIECES)
    scores = [-1000.0 if t != _NORMAL else -float(i) for i, t in enumerate(types)]
    return tokens, types, scores

#: The chat template of the instruction-tuned Gemma 3 releases (gemma-3-*-it), as their GGUFs carry it.
GEMMA3_IT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""


_TO_GGUF = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight", "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}


@pytest.fixture(scope="module")
def model():
    tokens, _, _ = _vocab()
    # llama.cpp's gemma3 layout: every 6th layer global, local RoPE base 10k, query_pre_attn_scalar =
    # head_dim; head_dim 256 as in the real models (transformers' GGUF loader assumes its default 256)
    return tiny_hf_model("gemma3", tie=True, vocab_size=len(tokens), num_hidden_layers=6, sliding_window=4,
                         head_dim=256, query_pre_attn_scalar=256, layer_types=None, bos_token_id=2, eos_token_id=1,
                         pad_token_id=0)


def _write(path: Path, model, *, extra: dict[str, np.ndarray] | None = None, chat_template: str | None = None) -> Path:
    cfg = model.config
    tokens, types, scores = _vocab()
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_parameters["full_attention"]["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_sliding_window(cfg.sliding_window)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    tensors = {"token_embd.weight": state.pop("model.embed_tokens.weight"),
               "output_norm.weight": state.pop("model.norm.weight") + 1}
    for name, value in state.items():
        _, _, layer, hf = name.split(".", 3)
        tensors[f"blk.{layer}.{_TO_GGUF[hf]}"] = value + 1 if hf.endswith("norm.weight") else value
    tensors.update(extra or {})
    for name, value in tensors.items():
        w.add_tensor(name, np.ascontiguousarray(value, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def converted(model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gemma3gguf")
    src = _write(tmp / "tiny.gguf", model)
    return src, convert_gguf(src, tmp / "hf")


def test_config_and_tensors_round_trip(model, converted):
    from safetensors.numpy import load_file

    _, out = converted
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["architectures"] == ["Gemma3ForCausalLM"]
    assert config["layer_types"] == model.config.layer_types and config["sliding_window"] == 4
    assert config["rope_parameters"]["sliding_attention"]["rope_theta"] == 10_000.0
    got = load_file(str(out / "model.safetensors"))
    ref = {k: v.detach().numpy() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    assert set(got) == set(ref)
    for name, value in ref.items():  # (w + 1) - 1 in float32: equal to rounding
        np.testing.assert_allclose(got[name], value, atol=1e-6, rtol=0, err_msg=name)


def test_converted_model_matches_transformers(model, converted):
    src, out = converted
    ids = [2, 280, 270, 285, 7, 291, 268, 279, 283, 284, 285, 286, 290, 8, 2, 270]
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()
        from_gguf = transformers.AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name,
                                                                      dtype=torch.float32).eval()
        np.testing.assert_allclose(from_gguf(torch.tensor([ids])).logits[0].numpy(), ref, atol=1e-5, rtol=0)
    cfg, params = load_checkpoint(out)
    ours = np.asarray(score_logits(params, cfg, jnp.asarray([ids]), jnp.ones((1, len(ids)), bool)))[0]
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("text", ["hello world", " hello  world", "héllo\n\nwörld", "what?", "  ", "<start_of_turn>hi",
                                  "hello   world\n", "ℤ"])
def test_tokenizer_matches_transformers_gguf_tokenizer(converted, text):
    src, out = converted
    ref = transformers.AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    tok = Tokenizer.from_dir(out)
    assert tok.encode(text, add_special_tokens=True) == ref.encode(text)
    assert tok.encode(text) == ref.encode(text, add_special_tokens=False)
    assert tok.decode(tok.encode(text)) == ref.decode(ref.encode(text, add_special_tokens=False))
    assert tok.bos_id == 2 and tok.encode(text, add_special_tokens=True)[0] == 2


def test_vision_tower_tensors_are_refused_by_name(model, tmp_path):
    src = _write(tmp_path / "mm.gguf", model, extra={"v.blk.0.attn_q.weight": np.zeros((4, 4), np.float32),
                                                     "mm.input_projection.weight": np.zeros((4, 4), np.float32)})
    with pytest.raises(CheckpointError, match=r"vision tower.*v\.blk\.0\.attn_q\.weight"):
        convert_gguf(src, tmp_path / "out")


CONVERSATIONS = [
    [{"role": "user", "content": "hello world"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": " what? "},
     {"role": "assistant", "content": "hello"}, {"role": "user", "content": "world"}],
]


@pytest.mark.parametrize("conversation", CONVERSATIONS)
def test_instruction_tuned_chat_template_renders_as_transformers(model, tmp_path, conversation):
    """An -it GGUF carries Gemma's template: we render it as transformers does, the prompt starts
    with exactly one BOS (the template writes it; the engine adds none to a rendered chat), and a
    turn ends at <end_of_turn>."""
    import entropix_s1

    src = _write(tmp_path / "it.gguf", model, chat_template=GEMMA3_IT_TEMPLATE)
    out = convert_gguf(src, tmp_path / "hf")
    ref = transformers.AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    tok = Tokenizer.from_dir(out)
    expected = ref.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert tok.render(conversation) == expected and expected.startswith("<bos><start_of_turn>user\n")
    assert tok.encode(tok.render(conversation)) == ref.encode(expected, add_special_tokens=False)
    assert tok.encode(tok.render(conversation)).count(2) == 1
    assert tok.token_id("<end_of_turn>") in tok.eos_ids
    m = entropix_s1.load(out)
    assert m.has_chat_template
    (r,) = m.generate([conversation], max_new_tokens=3)
    assert r.error is None and r.prompt == expected
