"""GGUF -> HF conversion: exact round trips on tiny synthetic GGUFs, SmolLM2 against transformers, errors, catalog."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import gguf
import numpy as np
import pytest

from entropix_s1.io import catalog, home
from entropix_s1.io.resolve import resolve
from entropix_s1.errors import CheckpointError, DownloadError, UnsupportedArchitectureError
from entropix_s1.io.gguf_import import convert_gguf, read_gguf, tokenizer_from_gguf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# ------------------------------------------------------------------------------------------------
# A tiny GGUF written the way llama.cpp's convert_hf_to_gguf.py writes one
# ------------------------------------------------------------------------------------------------

_MERGES = ["Ġ t", "h e", "Ġt he"]
_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _tiny_vocab() -> tuple[list[str], list[int]]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = [bytes_to_unicode()[b] for b in range(256)] + ["Ġt", "he", "Ġthe"] + _SPECIALS
    types = [1] * (len(tokens) - len(_SPECIALS)) + [3] * len(_SPECIALS)
    return tokens, types


def _llamacpp_permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """Verbatim logic of `LlamaModel.permute` in llama.cpp's convert_hf_to_gguf.py (independent of our code)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama3_rope_freqs(theta: float, head_dim: int, factor: float, low: float, high: float, orig: int) -> np.ndarray:
    """`LlamaModel.generate_extra_tensors` in convert_hf_to_gguf.py: per-frequency divisors for Llama 3.1 RoPE."""
    out = []
    for freq in 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim):
        wavelen = 2 * math.pi / freq
        if wavelen < orig / high:
            out.append(1.0)
        elif wavelen > orig / low:
            out.append(factor)
        else:
            smooth = (orig / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


_LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 8192}


def _tiny_hf_model(variant: str):
    """A random tiny HF model; every parameter random so no mapping mistake can hide behind zeros or ones."""
    tokens, _ = _tiny_vocab()
    common = dict(vocab_size=len(tokens), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6,
                  rope_theta=10000.0, bos_token_id=len(tokens) - 2, eos_token_id=len(tokens) - 1)
    if variant == "llama":
        cfg = transformers.LlamaConfig(**common, head_dim=16, tie_word_embeddings=False)
    elif variant == "llama3-rope":  # head_dim 64 so several frequencies fall in the smooth band
        cfg = transformers.LlamaConfig(**{**common, "hidden_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1,
                                          "rope_theta": 500000.0, "max_position_embeddings": 131072},
                                       head_dim=64, tie_word_embeddings=True, rope_scaling=dict(_LLAMA3))
    elif variant == "qwen2":
        cfg = transformers.Qwen2Config(**common, tie_word_embeddings=True)
    elif variant == "qwen3":  # head_dim != hidden/heads, as in real Qwen3
        cfg = transformers.Qwen3Config(**common, head_dim=32, tie_word_embeddings=False)
    else:
        raise ValueError(variant)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm" in name else 0.0))
    return model


_TO_GGUF = {
    "input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
}


def _reference_state(model) -> dict[str, np.ndarray]:
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    return state


def _write_gguf(path: Path, model, arch: str, *, drop: tuple[str, ...] = ()) -> Path:
    cfg = model.config
    tokens, types = _tiny_vocab()
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    if arch == "llama":
        w.add_rope_dimension_count(cfg.head_dim)
        w.add_vocab_size(cfg.vocab_size)
    if arch == "qwen3":
        w.add_key_length(cfg.head_dim)
        w.add_value_length(cfg.head_dim)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe" if arch == "llama" else "qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(_MERGES)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    state = _reference_state(model)
    tensors = {"token_embd.weight": state.pop("model.embed_tokens.weight"),
               "output_norm.weight": state.pop("model.norm.weight")}
    if "lm_head.weight" in state:
        tensors["output.weight"] = state.pop("lm_head.weight")
    for name, value in state.items():
        _, _, layer, hf = name.split(".", 3)
        g = f"blk.{layer}.{_TO_GGUF[hf]}"
        if arch == "llama" and hf.startswith(("self_attn.q_proj", "self_attn.k_proj")):
            kv = cfg.num_attention_heads if "q_proj" in hf else cfg.num_key_value_heads
            value = _llamacpp_permute(value, cfg.num_attention_heads, kv)
        tensors[g] = value
    rope = getattr(cfg, "rope_parameters", None) or {}
    if rope.get("rope_type") == "llama3":
        tensors["rope_freqs.weight"] = _llama3_rope_freqs(rope["rope_theta"], cfg.head_dim, rope["factor"],
                                                          rope["low_freq_factor"], rope["high_freq_factor"],
                                                          rope["original_max_position_embeddings"])
    for name, value in tensors.items():
        if name not in drop:
            w.add_tensor(name, np.ascontiguousarray(value, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


_IDS = torch.tensor([[5, 70, 256, 258, 100, 33, 7, 200, 258, 1, 99, 12]])


@pytest.mark.parametrize("variant", ["llama", "llama3-rope", "qwen2", "qwen3"])
def test_synthetic_gguf_converts_exactly(tmp_path: Path, variant: str) -> None:
    """HF -> (llama.cpp permute) -> GGUF -> our converter must give back the original tensors bit for bit."""
    from safetensors.numpy import load_file

    model = _tiny_hf_model(variant)
    arch = "llama" if variant.startswith("llama") else variant
    src = _write_gguf(tmp_path / "tiny.gguf", model, arch)
    out = convert_gguf(src, tmp_path / "hf")

    got, ref = load_file(str(out / "model.safetensors")), _reference_state(model)
    assert set(got) == set(ref)
    for name, value in ref.items():
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], value, err_msg=name)

    config = json.loads((out / "config.json").read_text())
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    assert config["model_type"] == arch and config["head_dim"] == head_dim
    assert config["tie_word_embeddings"] == model.config.tie_word_embeddings
    if variant == "llama3-rope":
        assert config["rope_scaling"] == _LLAMA3
    else:
        assert "rope_scaling" not in config

    converted = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    with torch.no_grad():
        np.testing.assert_allclose(converted(_IDS).logits.numpy(), model(_IDS).logits.numpy(), atol=1e-5, rtol=0)


def test_synthetic_llama_gguf_matches_transformers_gguf_loader(tmp_path: Path) -> None:
    """Our test writer permutes exactly as transformers expects llama.cpp files to be permuted."""
    model = _tiny_hf_model("llama")
    _write_gguf(tmp_path / "tiny.gguf", model, "llama")
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf", dtype=torch.float32).eval()
    with torch.no_grad():
        np.testing.assert_allclose(ref(_IDS).logits.numpy(), model(_IDS).logits.numpy(), atol=1e-5, rtol=0)


def test_header_parser_agrees_with_gguf_reader(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "tiny.gguf", _tiny_hf_model("qwen3"), "qwen3")
    ours, ref = read_gguf(path), gguf.GGUFReader(str(path))
    assert set(ours.metadata) == {k for k in ref.fields if not k.startswith("GGUF.")}
    for key, field in ref.fields.items():
        if not key.startswith("GGUF."):
            a, b = ours.metadata[key], field.contents()
            assert (list(a) == list(b)) if isinstance(b, list) else a == pytest.approx(b), key
    assert [t.name for t in ref.tensors] == list(ours.tensors)
    for t in ref.tensors:
        info = ours.tensors[t.name]
        assert info.offset == t.data_offset and info.qtype == t.tensor_type
        np.testing.assert_array_equal(ours.read_tensor(t.name), np.asarray(t.data).reshape(info.shape))


def test_converted_tokenizer_files(tmp_path: Path) -> None:
    out = convert_gguf(_write_gguf(tmp_path / "tiny.gguf", _tiny_hf_model("llama"), "llama"), tmp_path / "hf")
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_config["bos_token"] == "<|im_start|>" and tok_config["eos_token"] == "<|im_end|>"
    assert tok_config["add_bos_token"] is True  # llama.cpp's default for a llama-bpe vocabulary without the flag
    assert "<|im_start|>" in tok_config["chat_template"]
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [261, 259]  # <|im_end|>, then <|endoftext|> (llama.cpp's EOG set)
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok.encode(" the<|im_end|>", add_special_tokens=False) == [258, 261]


# ------------------------------------------------------------------------------------------------
# Errors and atomic writes
# ------------------------------------------------------------------------------------------------


def test_missing_gguf_is_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope.gguf"):
        convert_gguf(tmp_path / "nope.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_gguf_is_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 not a gguf at all")
    with pytest.raises(CheckpointError, match="not a GGUF"):
        read_gguf(tmp_path / "x.gguf")


def test_truncated_gguf_is_checkpoint_error(tmp_path: Path) -> None:
    data = _write_gguf(tmp_path / "tiny.gguf", _tiny_hf_model("qwen2"), "qwen2").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        read_gguf(tmp_path / "cut.gguf")


def test_unsupported_architecture(tmp_path: Path) -> None:
    w = gguf.GGUFWriter(str(tmp_path / "mamba.gguf"), "mamba")
    w.add_block_count(1)
    w.add_embedding_length(8)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UnsupportedArchitectureError, match=r"'mamba'.*llama, qwen2, qwen3"):
        convert_gguf(tmp_path / "mamba.gguf", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mamba.gguf"]


def test_failed_conversion_leaves_nothing_behind(tmp_path: Path) -> None:
    src = _write_gguf(tmp_path / "tiny.gguf", _tiny_hf_model("llama"), "llama", drop=("blk.1.ffn_down.weight",))
    with pytest.raises(CheckpointError, match="blk.1.mlp.down_proj|layers.1.mlp.down_proj"):
        convert_gguf(src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    src = _write_gguf(tmp_path / "tiny.gguf", _tiny_hf_model("qwen2"), "qwen2")
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(CheckpointError, match="overwrite=True"):
        convert_gguf(src, out)
    convert_gguf(src, out, overwrite=True)
    assert (out / "model.safetensors").is_file() and not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.gguf"]


def test_vocab_only_gguf_gives_tokenizer_but_no_model(shared: Path, tmp_path: Path) -> None:
    path = shared / "tokenizers" / "llamacpp-vocab" / "ggml-vocab-qwen2.gguf"
    assert tokenizer_from_gguf(path).encode("Hello world").ids == [9707, 1879]
    with pytest.raises(CheckpointError, match="vocab-only"):
        convert_gguf(path, tmp_path / "out")


def test_wrong_sha256_is_download_error(tmp_path: Path) -> None:
    f = tmp_path / "blob"
    f.write_bytes(b"hello")
    good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert catalog.verify_sha256(f, good) == good
    with pytest.raises(DownloadError, match=f"expected {'0' * 64}, got {good}"):
        catalog.verify_sha256(f, "0" * 64)


def test_catalog_lists_the_quantisation_it_dequantises() -> None:
    assert {n: e.quant for n, e in catalog.CATALOG.items()} == {"smollm2-135m-instruct": "Q4_1",
                                                                 "qwen2.5-coder-0.5b-instruct": "Q4_K_M",
                                                                 "gemma-3-270m": "Q4_K_M"}
    for e in catalog.CATALOG.values():
        assert e.quant.lower() in e.gguf_name.lower()  # the field says what the shipped file is
    lines = catalog.describe().splitlines()
    assert len(lines) == len(catalog.CATALOG) + len(catalog.ADAPTED)
    for name in [*catalog.CATALOG, *catalog.ADAPTED]:
        (line,) = [line for line in lines if line.startswith(f"{name}: ")]
        base = catalog.ADAPTED.get(name, (name,))[0]
        assert f"dequantised from a {catalog.CATALOG[base].quant} GGUF" in line, line


def test_catalog_resolve_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve(tmp_path) == tmp_path
    assert resolve(str(tmp_path)) == tmp_path
    with pytest.raises(CheckpointError, match="smollm2-135m-instruct"):
        resolve("no-such-model")
    monkeypatch.setenv("ENTROPIX_S1_HOME", str(tmp_path / "home"))
    assert home.weights_home() == tmp_path / "home"
    monkeypatch.delenv("ENTROPIX_S1_HOME")
    assert home.weights_home() == Path(home.__file__).resolve().parents[2] / "weights"


# ------------------------------------------------------------------------------------------------
# The real SmolLM2 GGUF (fetched once, session-wide)
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_fetch_layout(smollm2_dir: Path, smollm2_gguf: Path) -> None:
    assert catalog.fetch("smollm2-135m-instruct", home=smollm2_dir.parent, quiet=True) == smollm2_dir  # no-op
    assert smollm2_gguf.is_file() and smollm2_gguf.stat().st_size == catalog.CATALOG["smollm2-135m-instruct"].size
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["head_dim"]) == ("llama", 30, 64)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["tie_word_embeddings"]) == (9, 3, True)
    assert json.loads((smollm2_dir / "generation_config.json").read_text())["eos_token_id"] == [2, 0]


@pytest.mark.slow
def test_smollm2_fetch_rejects_wrong_sha(smollm2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = catalog.CATALOG["smollm2-135m-instruct"]
    monkeypatch.setitem(catalog.CATALOG, entry.name, dataclasses.replace(entry, sha256="f" * 64))
    with pytest.raises(DownloadError, match=f"expected {'f' * 64}, got {entry.sha256}"):
        catalog.fetch(entry.name, home=tmp_path, quiet=True)
    assert [p.name for p in tmp_path.iterdir()] == [".locks"]  # no model dir, no temp dir left


@pytest.fixture(scope="module")
def smollm2_pair(smollm2_dir: Path, smollm2_gguf: Path):
    """(transformers on the original GGUF, transformers on our converted dir)."""
    ref = transformers.AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name,
                                                            dtype=torch.float32).eval()
    ours = transformers.AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    return ref, ours


@pytest.mark.slow
@pytest.mark.parametrize("prompt", [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "The capital of France is",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n# 12345 ünïcödé 🦙" * 2,
])
def test_smollm2_logits_match_gguf(smollm2_pair, smollm2_dir: Path, prompt: str) -> None:
    from entropix_s1.host.tokenizer import Tokenizer

    ref, ours = smollm2_pair
    ids = torch.tensor([Tokenizer.from_dir(smollm2_dir).encode(prompt)])
    with torch.no_grad():
        diff = (ref(ids).logits - ours(ids).logits).abs().max().item()
    print(f"max |logits(GGUF) - logits(converted)| = {diff:.3g} over {ids.shape[1]} tokens")
    assert diff <= 1e-3, diff
