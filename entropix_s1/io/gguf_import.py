"""GGUF -> Hugging Face-layout checkpoint directory.

Why this exists: small instruct models reach us as llama.cpp GGUF files (often the only copy we may
fetch), while the rest of entropix-s1 -- and transformers, our reference in tests -- read the
Hugging Face layout: `config.json`, float32 `model.safetensors`, `tokenizer.json`. This module turns
the one into the other, once, on the host; nothing here runs inside the jitted loop.

Three things are easy to get wrong, and are done deliberately here:

* llama.cpp permutes Llama q/k projection rows so that its RoPE can rotate interleaved pairs; the HF
  layout rotates halves. We undo that permutation for `llama` (never for qwen2/qwen3/gemma3, which
  llama.cpp does not permute).
* llama.cpp stores Gemma's RMSNorm weights as (1 + w) (its norm multiplies by the weight); the HF
  layout keeps w and adds the 1 at run time, so `gemma3` norms are written back as weight - 1.
* A GGUF has no `tokenizer.json`: the byte-level BPE is rebuilt from metadata, and the pre-tokenizer
  (the regex split that decides which merges can ever happen) is chosen from `tokenizer.ggml.pre`.
  An unknown pre-tokenizer is an error, not a silent guess: a wrong split gives plausible but wrong ids.
  Gemma's SentencePiece vocabulary (`tokenizer.ggml.model == "llama"`) comes with no merges; they
  are rebuilt from the vocabulary in file order, as transformers' GGUF loader does (`_gemma_tokenizer`).
* Writing goes to a temporary sibling directory that is renamed into place, so a crash never leaves
  a half-written checkpoint that later looks complete.

We parse the GGUF header ourselves (it is a simple format) because `gguf.GGUFReader` builds one numpy
view per vocabulary string and takes ~12 s on a 150k-token vocabulary; dequantisation is left to
`gguf.quants.dequantize`.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize, quant_shape_to_byte_shape
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from entropix_s1.errors import CheckpointError, UnsupportedArchitectureError

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "GGUFFile",
    "GGUFTensorInfo",
    "read_gguf",
    "convert_gguf",
    "hf_config_from_gguf",
    "tokenizer_from_gguf",
    "tokenizer_config_from_gguf",
    "eos_token_ids_from_gguf",
    "unpermute_qk",
    "permute_qk",
]

SUPPORTED_ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2", "qwen3", "gemma3")

_HF_CLASS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
             "gemma3": "Gemma3ForCausalLM"}

# --------------------------------------------------------------------------------------------------
# Reading the GGUF container
# --------------------------------------------------------------------------------------------------

_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_ARRAY_DTYPES = {
    0: np.uint8, 1: np.int8, 2: np.dtype("<u2"), 3: np.dtype("<i2"), 4: np.dtype("<u4"), 5: np.dtype("<i4"),
    6: np.dtype("<f4"), 7: np.bool_, 10: np.dtype("<u8"), 11: np.dtype("<i8"), 12: np.dtype("<f8"),
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFTensorInfo:
    """Where one tensor lives in the file. `shape` is in numpy (row-major) order, i.e. GGUF dims reversed."""

    name: str
    shape: tuple[int, ...]
    qtype: GGMLQuantizationType
    offset: int  # absolute byte offset in the file
    nbytes: int


@dataclass
class GGUFFile:
    """A parsed GGUF header: metadata key/values and tensor locations; tensor data is read on demand."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, GGUFTensorInfo] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise CheckpointError(f"{self.path}: GGUF has no 'general.architecture' key")
        return arch

    def arch_key(self, suffix: str, default: Any = None) -> Any:
        """`{architecture}.{suffix}`, the way llama.cpp namespaces model hyper-parameters."""
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    def read_tensor(self, name: str) -> np.ndarray:
        """Dequantised float32 copy of one tensor, in numpy (HF) shape."""
        info = self.tensors[name]
        with open(self.path, "rb") as f:
            f.seek(info.offset)
            raw = f.read(info.nbytes)
        if len(raw) != info.nbytes:
            raise CheckpointError(f"{self.path}: truncated data for tensor {name!r}")
        data = np.frombuffer(raw, dtype=np.uint8)
        try:
            byte_shape = quant_shape_to_byte_shape(info.shape, info.qtype)
            out = dequantize(data.reshape(byte_shape), info.qtype)
        except (NotImplementedError, ValueError) as e:
            raise CheckpointError(f"{self.path}: cannot dequantise tensor {name!r} of type {info.qtype.name}: {e}") from e
        return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(info.shape))


class _Cursor:
    """Little-endian reader over a memory-mapped buffer; every value it returns is a copy."""

    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def scalar(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.scalar("<Q")
        if self.pos + n > len(self.buf):
            raise CheckpointError(f"{self.path}: truncated GGUF header (string runs past end of file)")
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CheckpointError(f"{self.path}: GGUF string at byte {self.pos - n} is not UTF-8") from e

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type, n = self.scalar("<I"), self.scalar("<Q")
            if item_type == _STRING:
                return [self.string() for _ in range(n)]
            if item_type in _ARRAY_DTYPES:
                dtype = np.dtype(_ARRAY_DTYPES[item_type])
                if self.pos + n * dtype.itemsize > len(self.buf):
                    raise CheckpointError(f"{self.path}: truncated GGUF header (array runs past end of file)")
                arr = np.frombuffer(self.buf, dtype=dtype, count=n, offset=self.pos).copy()
                self.pos += n * dtype.itemsize
                return arr
            return [self.value(item_type) for _ in range(n)]
        if vtype in _SCALAR_FORMATS:
            return self.scalar(_SCALAR_FORMATS[vtype])
        raise CheckpointError(f"{self.path}: unknown GGUF value type {vtype} at byte {self.pos}")


def read_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Parse a GGUF v2/v3 header (metadata + tensor table). Raises `CheckpointError` on anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as e:  # empty file
            raise CheckpointError(f"{path}: empty file, not a GGUF") from e
    try:
        return _parse(buf, path)
    except struct.error as e:
        raise CheckpointError(f"{path}: truncated or corrupt GGUF header ({e})") from e
    finally:
        buf.close()


def _parse(buf: mmap.mmap, path: Path) -> GGUFFile:
    cur = _Cursor(buf, path)
    if buf[:4] != b"GGUF":
        raise CheckpointError(f"{path}: not a GGUF file (magic {bytes(buf[:4])!r}, expected b'GGUF')")
    cur.pos = 4
    version = cur.scalar("<I")
    if version not in (2, 3):
        hint = " (big-endian files are not supported)" if version > 0xFFFF else ""
        raise CheckpointError(f"{path}: unsupported GGUF version {version}{hint}; supported: 2, 3")
    n_tensors, n_kv = cur.scalar("<Q"), cur.scalar("<Q")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = cur.value(cur.scalar("<I"))
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        dims = [cur.scalar("<Q") for _ in range(cur.scalar("<I"))]
        raw_type, offset = cur.scalar("<I"), cur.scalar("<Q")
        try:
            qtype = GGMLQuantizationType(raw_type)
        except ValueError as e:
            raise CheckpointError(f"{path}: tensor {name!r} has unknown ggml type {raw_type}") from e
        infos.append((name, tuple(reversed(dims)), qtype, offset))
    alignment = int(metadata.get("general.alignment", 32))
    data_start = -(-cur.pos // alignment) * alignment
    tensors: dict[str, GGUFTensorInfo] = {}
    for name, shape, qtype, offset in infos:
        block, type_size = GGML_QUANT_SIZES[qtype]
        nbytes = math.prod(shape) * type_size // block
        start = data_start + offset
        if start + nbytes > len(buf):
            raise CheckpointError(f"{path}: truncated file: tensor {name!r} ends past end of file")
        if name in tensors:
            raise CheckpointError(f"{path}: duplicate tensor {name!r}")
        tensors[name] = GGUFTensorInfo(name, shape, qtype, start, nbytes)
    return GGUFFile(path=path, version=version, metadata=metadata, tensors=tensors)


# --------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------


def _f32(x: float) -> float:
    """GGUF stores floats as f32; write the shortest decimal that round-trips (1e-05, not 9.99999974e-06)."""
    return float(str(np.float32(x)))


def _check_arch(g: GGUFFile) -> str:
    arch = g.architecture
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"{g.path}: GGUF architecture {arch!r} is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    return arch


def _uniform_int(g: GGUFFile, suffix: str, default: int | None = None) -> int:
    value = g.arch_key(suffix, default)
    if value is None:
        raise CheckpointError(f"{g.path}: GGUF lacks '{g.architecture}.{suffix}'")
    if isinstance(value, np.ndarray):  # per-layer values; only uniform ones map onto an HF config
        if value.size == 0 or not (value == value.flat[0]).all():
            raise CheckpointError(f"{g.path}: '{g.architecture}.{suffix}' varies per layer ({value.tolist()}), unsupported")
        value = value.flat[0]
    return int(value)


def _gemma3_config(g: GGUFFile) -> dict[str, Any]:
    """`gemma3_text` config.json of a `gemma3` GGUF (its text weights; a vision tower lives in a separate
    mmproj GGUF that we never read).

    What the GGUF does not store is what llama.cpp hard-codes for gemma3 (llama-model.cpp): every
    sixth layer global and the others local (`attention.sliding_window_pattern` when a file has it),
    local RoPE base 10k (`rope.freq_base_swa` when present), and attention scaled by head_dim^-1/2
    except for the 62-layer 27B, scaled by (hidden / heads)^-1/2: that is query_pre_attn_scalar.
    """
    n_head = _uniform_int(g, "attention.head_count")
    hidden = _uniform_int(g, "embedding_length")
    n_layers = _uniform_int(g, "block_count")
    head_dim = int(g.arch_key("attention.key_length") or hidden // n_head)
    if "token_embd.weight" not in g.tensors:
        raise CheckpointError(f"{g.path}: no 'token_embd.weight' tensor (vocab-only GGUF?); cannot build a model")
    pattern = int(g.arch_key("attention.sliding_window_pattern", 6))
    window = g.arch_key("attention.sliding_window")
    if window is None:
        raise CheckpointError(f"{g.path}: GGUF lacks 'gemma3.attention.sliding_window'")
    full: dict[str, Any] = {"rope_type": "default", "rope_theta": _f32(g.arch_key("rope.freq_base", 1_000_000.0))}
    kind = g.arch_key("rope.scaling.type")
    if kind == "linear":
        full.update(rope_type="linear", factor=_f32(g.arch_key("rope.scaling.factor", 1.0)))
    elif kind not in (None, "none"):
        raise CheckpointError(f"{g.path}: gemma3 rope scaling type {kind!r} is not supported (linear is)")
    config: dict[str, Any] = {
        "architectures": [_HF_CLASS["gemma3"]],
        "model_type": "gemma3_text",
        "hidden_size": hidden,
        "intermediate_size": _uniform_int(g, "feed_forward_length"),
        "num_attention_heads": n_head,
        "num_key_value_heads": _uniform_int(g, "attention.head_count_kv", n_head),
        "num_hidden_layers": n_layers,
        "head_dim": head_dim,
        "vocab_size": int(g.tensors["token_embd.weight"].shape[0]),
        "rms_norm_eps": _f32(g.arch_key("attention.layer_norm_rms_epsilon", 1e-6)),
        "max_position_embeddings": _uniform_int(g, "context_length", 131_072),
        "tie_word_embeddings": "output.weight" not in g.tensors,
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": hidden // n_head if n_layers == 62 else head_dim,
        "sliding_window": int(window),
        "layer_types": ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layers)],
        "rope_parameters": {
            "full_attention": full,
            "sliding_attention": {"rope_type": "default", "rope_theta": _f32(g.arch_key("rope.freq_base_swa", 10_000.0))},
        },
        "final_logit_softcapping": g.arch_key("final_logit_softcapping"),
        "attention_bias": False,
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "use_cache": True,
        "torch_dtype": "float32",
    }
    for key, name in (("bos_token_id", "tokenizer.ggml.bos_token_id"), ("eos_token_id", "tokenizer.ggml.eos_token_id"),
                      ("pad_token_id", "tokenizer.ggml.padding_token_id")):
        if name in g.metadata:
            config[key] = int(g.metadata[name])
    return config


def hf_config_from_gguf(g: GGUFFile) -> dict[str, Any]:
    """The `config.json` transformers would want for this GGUF (also reads tensor shapes, so needs tensors)."""
    arch = _check_arch(g)
    if arch == "gemma3":
        return _gemma3_config(g)
    n_head = _uniform_int(g, "attention.head_count")
    n_kv = _uniform_int(g, "attention.head_count_kv", n_head)
    hidden = _uniform_int(g, "embedding_length")
    head_dim = g.arch_key("attention.key_length") or g.arch_key("rope.dimension_count") or hidden // n_head
    if "token_embd.weight" not in g.tensors:
        raise CheckpointError(f"{g.path}: no 'token_embd.weight' tensor (vocab-only GGUF?); cannot build a model")
    vocab_size = g.tensors["token_embd.weight"].shape[0]
    theta = _f32(g.arch_key("rope.freq_base", 10000.0))
    meta = g.metadata
    config: dict[str, Any] = {
        "architectures": [_HF_CLASS[arch]],
        "model_type": arch,
        "hidden_size": hidden,
        "intermediate_size": _uniform_int(g, "feed_forward_length"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "num_hidden_layers": _uniform_int(g, "block_count"),
        "head_dim": int(head_dim),
        "vocab_size": int(vocab_size),
        "rms_norm_eps": _f32(g.arch_key("attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": theta,
        "max_position_embeddings": _uniform_int(g, "context_length", 2048),
        "tie_word_embeddings": "output.weight" not in g.tensors,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "use_cache": True,
        "torch_dtype": "float32",
    }
    if arch in ("llama", "qwen3"):
        config["attention_bias"] = "blk.0.attn_q.bias" in g.tensors
    if arch == "llama":
        config["mlp_bias"] = False
    for key, name in (("bos_token_id", "tokenizer.ggml.bos_token_id"), ("eos_token_id", "tokenizer.ggml.eos_token_id"),
                      ("pad_token_id", "tokenizer.ggml.padding_token_id")):
        if name in meta:
            config[key] = int(meta[name])
    rope_scaling = _rope_scaling(g, theta, int(head_dim))
    if rope_scaling is not None:
        config["rope_scaling"] = rope_scaling
    return config


def _rope_scaling(g: GGUFFile, theta: float, head_dim: int) -> dict[str, Any] | None:
    """HF `rope_scaling` from GGUF metadata, or llama3-style factors baked into a `rope_freqs` tensor."""
    kind = g.arch_key("rope.scaling.type")
    orig = g.arch_key("rope.scaling.original_context_length")
    if "rope_freqs.weight" in g.tensors:
        return _llama3_from_rope_freqs(g, g.read_tensor("rope_freqs.weight"), theta, head_dim, orig)
    if kind in (None, "none"):
        return None
    if kind not in ("linear", "yarn"):
        raise CheckpointError(f"{g.path}: rope scaling type {kind!r} is not supported (linear, yarn, llama3 are)")
    scaling: dict[str, Any] = {"rope_type": kind, "factor": _f32(g.arch_key("rope.scaling.factor", 1.0))}
    if orig is not None:
        scaling["original_max_position_embeddings"] = int(orig)
    return scaling


def _llama3_factors(inv_freq: np.ndarray, factor: float, low: float, high: float, orig: int) -> np.ndarray:
    """llama.cpp's `rope_freqs` values for Llama 3.x rope scaling (same formula as HF's `_compute_llama3_parameters`)."""
    wavelen = 2 * math.pi / inv_freq
    smooth = (orig / wavelen - low) / (high - low)
    mid = 1.0 / ((1 - smooth) / factor + smooth)
    return np.where(wavelen < orig / high, 1.0, np.where(wavelen > orig / low, factor, mid))


def _llama3_from_rope_freqs(g: GGUFFile, freqs: np.ndarray, theta: float, head_dim: int, orig: int | None) -> dict | None:
    """Recover (factor, low_freq_factor, high_freq_factor) from the per-frequency divisors llama.cpp stores.

    Only the ratios orig/low and orig/high are identifiable, so `orig` comes from metadata when present
    and otherwise Llama 3's 8192; any choice reproduces the same frequencies. The fit is checked by
    recomputing every factor, so a tensor of another shape (e.g. longrope) fails loudly.
    """
    freqs = freqs.astype(np.float64).ravel()
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if freqs.shape != inv_freq.shape:
        raise CheckpointError(f"{g.path}: rope_freqs has {freqs.size} values, expected {inv_freq.size} (head_dim/2)")
    factor = float(freqs.max())
    if np.allclose(freqs, 1.0):
        return None
    orig = int(orig or 8192)
    mid = (np.abs(freqs - 1.0) > 1e-6) & (np.abs(freqs - factor) > 1e-6 * factor)
    if mid.sum() < 2:
        raise CheckpointError(f"{g.path}: cannot infer llama3 rope scaling from rope_freqs (too few smooth points)")
    smooth = (1.0 / freqs[mid] - 1.0 / factor) / (1.0 - 1.0 / factor)
    slope, intercept = np.polyfit(inv_freq[mid] / (2 * math.pi), smooth, 1)  # smooth = orig/wavelen/(h-l) - l/(h-l)
    span = orig / slope
    low = -intercept * span
    exact = (low, low + span, factor)
    for lo, hi, fac in ([round(x, 4) for x in exact], [round(x, 6) for x in exact], exact):  # prefer 1.0 over 0.99999
        if np.allclose(_llama3_factors(inv_freq, fac, lo, hi, orig), freqs, rtol=1e-5, atol=1e-6):
            return {"rope_type": "llama3", "factor": float(fac), "low_freq_factor": float(lo),
                    "high_freq_factor": float(hi), "original_max_position_embeddings": orig}
    raise CheckpointError(f"{g.path}: rope_freqs does not follow llama3 rope scaling; config.json cannot express it")


# --------------------------------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------------------------------

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
#: Where gemma3 names differ from the table above: its `post_attention_layernorm` is the norm on the
#: attention output (llama's is the norm before the MLP, which gemma3 calls pre_feedforward).
_GEMMA3_LAYER_NAMES = {
    **_LAYER_NAMES,
    "ffn_norm.weight": "pre_feedforward_layernorm.weight",
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
}
_CONSUMED = {"rope_freqs.weight"}  # folded into config.json, not a weight


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half rows -> llama.cpp interleaved rows (what `convert_hf_to_gguf.py` does for Llama q/k)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of `permute_qk`: llama.cpp interleaved rows -> HF rotate-half rows. `n_head` is the kv count for k."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _hf_name(name: str, arch: str = "llama") -> str | None:
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    table = _GEMMA3_LAYER_NAMES if arch == "gemma3" else _LAYER_NAMES
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in table:
        return f"model.layers.{parts[1]}.{table[parts[2]]}"
    return None


def _expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor the HF model will ask for, with its shape: a missing one would be silently random-initialised."""
    h, d, nq, nkv, ff = (config[k] for k in ("hidden_size", "head_dim", "num_attention_heads", "num_key_value_heads",
                                              "intermediate_size"))
    arch = config["model_type"]
    layer = {
        "input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,),
        "self_attn.q_proj.weight": (nq * d, h), "self_attn.k_proj.weight": (nkv * d, h),
        "self_attn.v_proj.weight": (nkv * d, h), "self_attn.o_proj.weight": (h, nq * d),
        "mlp.gate_proj.weight": (ff, h), "mlp.up_proj.weight": (ff, h), "mlp.down_proj.weight": (h, ff),
    }
    if arch == "qwen2" or config.get("attention_bias"):
        layer |= {"self_attn.q_proj.bias": (nq * d,), "self_attn.k_proj.bias": (nkv * d,),
                  "self_attn.v_proj.bias": (nkv * d,)}
    if arch in ("qwen3", "gemma3_text"):
        layer |= {"self_attn.q_norm.weight": (d,), "self_attn.k_norm.weight": (d,)}
    if arch == "gemma3_text":
        layer |= {"pre_feedforward_layernorm.weight": (h,), "post_feedforward_layernorm.weight": (h,)}
    shapes = {"model.embed_tokens.weight": (config["vocab_size"], h), "model.norm.weight": (h,)}
    if not config["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (config["vocab_size"], h)
    for i in range(config["num_hidden_layers"]):
        shapes |= {f"model.layers.{i}.{k}": v for k, v in layer.items()}
    return shapes


def _hf_tensors(g: GGUFFile, config: dict[str, Any]) -> dict[str, np.ndarray]:
    names = {}
    unknown = []
    gemma = config["model_type"] == "gemma3_text"
    for name in g.tensors:
        hf = _hf_name(name, "gemma3" if gemma else config["model_type"])
        if hf is not None:
            names[hf] = name
        elif name not in _CONSUMED:
            unknown.append(name)
    vision = [n for n in unknown if n.startswith(("v.", "mm."))]
    if vision:
        raise UnsupportedArchitectureError(
            f"{g.path}: GGUF holds vision tower tensors ({', '.join(vision[:4])}, ...): multimodal {g.architecture} "
            "(text + vision tower) is not supported; use the text-only GGUF of the model")
    if unknown:
        arch = config["model_type"]
        raise CheckpointError(f"{g.path}: tensors with no Hugging Face counterpart for {arch}: {unknown[:8]}")
    expected = _expected_shapes(config)
    missing = sorted(set(expected) - set(names))
    extra = sorted(set(names) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{g.path}: tensor set does not match the config: missing {missing[:6]}, unexpected {extra[:6]}")
    out = {}
    for hf, name in names.items():
        if g.tensors[name].shape != expected[hf]:
            shape = g.tensors[name].shape
            raise CheckpointError(f"{g.path}: tensor {name!r} has shape {shape}, config implies {expected[hf]}")
        w = g.read_tensor(name)
        if config["model_type"] == "llama" and (".attn_q." in name or ".attn_k." in name):
            w = unpermute_qk(w, config["num_attention_heads"] if ".attn_q." in name else config["num_key_value_heads"])
        if gemma and name.endswith("norm.weight"):  # llama.cpp's (1 + w) back to HF's w
            w = w - np.float32(1.0)
        out[hf] = np.ascontiguousarray(w)
    return out


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------

# Split regexes exactly as in the original models' tokenizer.json (the HF tokenizers llama.cpp's own
# conformance vectors were generated from).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# llama.cpp `tokenizer.ggml.pre` name -> pre-tokenizer family (grouped as llama-vocab.cpp groups them).
PRE_TOKENIZER_FAMILIES: dict[str, str] = {
    "default": "gpt2", "gpt-2": "gpt2", "gpt2": "gpt2", "mpt": "gpt2", "olmo": "gpt2",
    "smollm": "digits-gpt2", "starcoder": "digits-gpt2", "refact": "digits-gpt2", "command-r": "digits-gpt2",
    "codeshell": "digits-gpt2", "exaone": "digits-gpt2", "minerva": "digits-gpt2",
    "llama3": "llama3", "llama-v3": "llama3", "llama-bpe": "llama3",
    "qwen2": "qwen2", "deepseek-r1-qwen": "qwen2", "megrez": "qwen2",
}

# llama.cpp treats these control tokens as end-of-generation (llama-vocab.cpp, "auto-detect EOG by text").
_EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
              "<EOT>", "<|end_of_text|>", "<end_of_utterance>")
_CONTROL, _USER_DEFINED = 3, 4


def _pre_family(g: GGUFFile) -> str:
    pre = g.metadata.get("tokenizer.ggml.pre", "default")  # old files lack it; llama.cpp then uses "default"
    if pre not in PRE_TOKENIZER_FAMILIES:
        raise CheckpointError(
            f"{g.path}: unknown pre-tokenizer tokenizer.ggml.pre={pre!r}; "
            f"supported: {', '.join(sorted(PRE_TOKENIZER_FAMILIES))}"
        )
    return PRE_TOKENIZER_FAMILIES[pre]


def _tokens(g: GGUFFile) -> tuple[list[str], np.ndarray]:
    model = g.metadata.get("tokenizer.ggml.model")
    if model != "gpt2" and not (model == "llama" and g.architecture == "gemma3"):
        raise CheckpointError(
            f"{g.path}: tokenizer.ggml.model={model!r} (architecture {g.architecture!r}); supported: byte-level BPE "
            "('gpt2'), and Gemma's SentencePiece ('llama' in a gemma3 GGUF)"
        )
    tokens = g.metadata.get("tokenizer.ggml.tokens")
    if not tokens:
        raise CheckpointError(f"{g.path}: GGUF has no 'tokenizer.ggml.tokens'")
    types = g.metadata.get("tokenizer.ggml.token_type")
    types = np.ones(len(tokens), dtype=np.int32) if types is None else np.asarray(types)
    if len(types) != len(tokens):
        raise CheckpointError(f"{g.path}: {len(tokens)} tokens but {len(types)} token types")
    return tokens, types


def _add_bos(g: GGUFFile) -> bool:
    """Explicit flag wins; otherwise llama.cpp's default (BOS for Llama-3 and SentencePiece vocabularies)."""
    flag = g.metadata.get("tokenizer.ggml.add_bos_token")
    if flag is not None:
        return bool(flag)
    return g.metadata.get("tokenizer.ggml.model") == "llama" or _pre_family(g) == "llama3"


def _gemma_merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges of a Gemma vocabulary, which the GGUF does not list.

    Every split of a token into two vocabulary pieces is a merge; merges rank by the token's place
    in the file (earlier first: Gemma's scores do not follow its merge order, its file order does;
    a string listed twice ranks at its last place, as its id does), then by a longer left piece
    first. This is transformers' `generate_merges` with the scores `-index` that its GGUF loader
    passes for gemma vocabularies, so both build the same tokenizer.
    """
    merges = []
    for token in sorted(vocab, key=vocab.__getitem__):
        for cut in range(len(token) - 1, 0, -1):  # longer left piece first
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                merges.append((left, right))
    return merges


def _gemma_tokenizer(g: GGUFFile, tokens: list[str], types: np.ndarray) -> Tokenizer:
    """Gemma's SentencePiece BPE as a `tokenizers` pipeline (transformers' `GemmaTokenizer`): spaces
    become U+2581 before the BPE, unknown characters fall back to `<0xNN>` byte tokens, and the
    decoder undoes both. A token of two or more spaces is spelled with real spaces in the GGUF but
    looked up as U+2581 runs, so it is renamed first (and then is not added as a whole-match token)."""
    spelled = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in tokens]
    vocab = {t: i for i, t in enumerate(spelled)}
    unk = g.metadata.get("tokenizer.ggml.unknown_token_id")
    unk_token = tokens[int(unk)] if unk is not None else "<unk>"
    tok = Tokenizer(models.BPE(vocab, _gemma_merges(vocab), fuse_unk=True, unk_token=unk_token,
                               byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous", invert=False)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    control = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == _CONTROL]
    user = [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types)
            if ty == _USER_DEFINED and t in vocab]
    tok.add_special_tokens(control)
    tok.add_tokens(user)
    for added in control + user:
        if tok.token_to_id(added.content) != vocab[added.content]:
            raise CheckpointError(f"{g.path}: special token {added.content!r} did not keep its id {vocab[added.content]}")
    processor = _post_processor(g, tokens)
    if processor is not None:
        tok.post_processor = processor
    return tok


def tokenizer_from_gguf(source: str | os.PathLike[str] | GGUFFile) -> Tokenizer:
    """A `tokenizers.Tokenizer` equivalent to the GGUF's vocabulary; works on vocab-only GGUFs (no tensors needed)."""
    g = source if isinstance(source, GGUFFile) else read_gguf(source)
    tokens, types = _tokens(g)
    if g.metadata.get("tokenizer.ggml.model") == "llama":
        return _gemma_tokenizer(g, tokens, types)
    family = _pre_family(g)
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)  # a few files repeat a string; keep the first id so BPE stays well defined
    merges = [tuple(m.split(" ", 1)) for m in g.metadata.get("tokenizer.ggml.merges", [])]
    tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False, ignore_merges=family == "llama3"))
    if family == "qwen2":
        tok.normalizer = normalizers.NFC()
    if family in ("gpt2", "digits-gpt2"):
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.pre_tokenizer = (byte_level if family == "gpt2"
                             else pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]))
    else:
        split = _LLAMA3_SPLIT if family == "llama3" else _QWEN2_SPLIT
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    # Control tokens are special (skipped by skip_special_tokens); user-defined ones (e.g. <think>) are
    # plain added tokens. Both must be matched whole in text, as llama.cpp and transformers do.
    control = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == _CONTROL]
    user = [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types) if ty == _USER_DEFINED]
    tok.add_special_tokens(control)
    tok.add_tokens(user)
    for added in control + user:
        if tok.token_to_id(added.content) != vocab[added.content]:
            raise CheckpointError(f"{g.path}: special token {added.content!r} did not keep its id {vocab[added.content]}")
    tok.post_processor = _post_processor(g, tokens)
    return tok


def _post_processor(g: GGUFFile, tokens: list[str]) -> Any:
    """BOS/EOS insertion for `encode(..., add_special_tokens=True)`, as the GGUF's add_bos/add_eos flags say."""
    bos_id, eos_id = g.metadata.get("tokenizer.ggml.bos_token_id"), g.metadata.get("tokenizer.ggml.eos_token_id")
    add_bos = _add_bos(g) and bos_id is not None
    add_eos = bool(g.metadata.get("tokenizer.ggml.add_eos_token", False)) and eos_id is not None
    if not (add_bos or add_eos):
        return None if g.metadata.get("tokenizer.ggml.model") == "llama" else processors.ByteLevel(trim_offsets=False)
    bos = tokens[int(bos_id)] if add_bos else None
    eos = tokens[int(eos_id)] if add_eos else None

    def sequence(var: str, type_id: int) -> list[str]:
        return [f"{t}:{type_id}" for t in (bos, var, eos) if t is not None]

    special = [(t, int(i)) for t, i in ((bos, bos_id), (eos, eos_id)) if t is not None]
    return processors.TemplateProcessing(single=sequence("$A", 0), pair=sequence("$A", 0) + sequence("$B", 1),
                                         special_tokens=special)


def tokenizer_config_from_gguf(g: GGUFFile) -> dict[str, Any]:
    """`tokenizer_config.json`: special-token strings, BOS flag, and the chat template the GGUF carries."""
    tokens, _ = _tokens(g)
    meta = g.metadata

    def token(key: str) -> str | None:
        i = meta.get(f"tokenizer.ggml.{key}")
        return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": _add_bos(g),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "bos_token": token("bos_token_id"),
        "eos_token": token("eos_token_id"),
        "pad_token": token("padding_token_id"),
        "unk_token": token("unknown_token_id"),
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(g.arch_key("context_length", 2048) or 2048),
    }
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = meta["tokenizer.chat_template"]
    return config


def eos_token_ids_from_gguf(g: GGUFFile) -> list[int]:
    """EOS first, then the other end-of-generation tokens llama.cpp stops on (EOT, `<|im_end|>`, ...)."""
    tokens, types = _tokens(g)
    ids: list[int] = []
    for key in ("eos_token_id", "eot_token_id", "eom_token_id"):
        if (i := g.metadata.get(f"tokenizer.ggml.{key}")) is not None and int(i) not in ids:
            ids.append(int(i))
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty == _CONTROL and t in _EOG_TEXTS and i not in ids:
            ids.append(i)
    return ids


# --------------------------------------------------------------------------------------------------
# Writing the checkpoint
# --------------------------------------------------------------------------------------------------


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def convert_gguf(gguf_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a Hugging Face-layout checkpoint dir (float32 safetensors + tokenizer) from a llama/qwen2/qwen3/gemma3 GGUF.

    The directory appears atomically: everything is written to a temporary sibling, then renamed.
    """
    from safetensors.numpy import save_file  # deferred: only conversion needs it

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise CheckpointError(f"{out_dir} already exists and is not empty; pass overwrite=True to replace it")
    g = read_gguf(gguf_path)
    config = hf_config_from_gguf(g)  # checks the architecture before any heavy work
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tok = tokenizer_from_gguf(g)
        tok.save(str(tmp / "tokenizer.json"))
        _write_json(tmp / "tokenizer_config.json", tokenizer_config_from_gguf(g))
        eos_ids = eos_token_ids_from_gguf(g)
        generation = {k: config[k] for k in ("bos_token_id", "pad_token_id") if k in config}
        if eos_ids:
            generation["eos_token_id"] = eos_ids if len(eos_ids) > 1 else eos_ids[0]
        _write_json(tmp / "generation_config.json", generation)
        _write_json(tmp / "config.json", config)
        tensors = _hf_tensors(g, config)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt", "source": g.path.name})
        del tensors
        _relax_permissions(tmp)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _relax_permissions(directory: Path) -> None:
    """mkdtemp (and safetensors) create owner-only files; give the checkpoint ordinary umask permissions."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for p in directory.iterdir():
        os.chmod(p, 0o666 & ~umask)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move `src` to `dst`; an existing `dst` is swapped out first and removed only after the rename succeeded."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.rename(dst, old)
    try:
        os.rename(src, dst)
    except BaseException:
        if old is not None:
            os.rename(old, dst)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
