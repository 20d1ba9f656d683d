"""Frozen model config read from a Hugging Face `config.json`.

One `ModelConfig` describes the whole Llama family we run: `llama` (SmolLM2, Llama 3.x with
llama3 RoPE scaling), `qwen2` (q/k/v biases) and `qwen3` (q/k RMSNorm). It is hashable, so it can
be a static argument of `jax.jit` without retracing: equal configs hash equal.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from entropix_s1.errors import CheckpointError, UnsupportedArchitectureError

SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3.x frequency-dependent RoPE scaling (`rope_type == "llama3"`)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    arch: str
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_embeddings: bool
    qkv_bias: bool
    qk_norm: bool
    rope_scaling: RopeScaling | None = None
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.arch not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedArchitectureError(
                f"unsupported architecture {self.arch!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        if self.n_heads % self.n_kv_heads:
            raise CheckpointError(
                f"num_attention_heads ({self.n_heads}) must be a multiple of num_key_value_heads ({self.n_kv_heads})"
            )

    @property
    def q_per_kv(self) -> int:
        """Query heads sharing one K/V head (GQA group size G)."""
        return self.n_heads // self.n_kv_heads

    def inv_freq(self) -> np.ndarray:
        """RoPE inverse frequencies [head_dim/2], float32, with llama3 scaling when configured.

        theta_i = base^(-2i/d). Llama 3 scaling (transformers `_compute_llama3_parameters`): wavelengths
        longer than original_max/low_freq_factor are divided by `factor`, shorter than
        original_max/high_freq_factor are kept, and the band between is interpolated smoothly.
        """
        d = self.head_dim
        inv = 1.0 / (self.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
        rs = self.rope_scaling
        if rs is not None:
            old = rs.original_max_position_embeddings
            low_wavelen = old / rs.low_freq_factor
            high_wavelen = old / rs.high_freq_factor
            wavelen = 2 * math.pi / inv
            scaled = np.where(wavelen > low_wavelen, inv / rs.factor, inv)
            smooth = (old / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor)
            smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled
            medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
            inv = np.where(medium, smoothed, scaled)
        return inv.astype(np.float32)

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> "ModelConfig":
        """Build from a parsed HF config dict; errors name the missing or unsupported field."""
        arch = hf.get("model_type")
        if arch not in SUPPORTED_ARCHITECTURES:
            archs = hf.get("architectures")
            raise UnsupportedArchitectureError(
                f"unsupported architecture {arch!r} (architectures={archs}); "
                f"supported model_type values: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )

        def need(key: str) -> Any:
            if key not in hf or hf[key] is None:
                raise CheckpointError(f"config.json lacks required field {key!r} for model_type {arch!r}")
            return hf[key]

        if hf.get("mlp_bias"):
            raise UnsupportedArchitectureError(f"{arch} with mlp_bias=True is not supported")
        if hf.get("use_sliding_window"):
            raise UnsupportedArchitectureError(f"{arch} with use_sliding_window=True is not supported")
        act = hf.get("hidden_act", "silu")
        if act != "silu":
            raise UnsupportedArchitectureError(f"hidden_act {act!r} is not supported (only 'silu')")

        # transformers >= 5 nests rope settings in `rope_parameters`; older files use top-level keys.
        rope = dict(hf.get("rope_parameters") or {})
        legacy = hf.get("rope_scaling") or {}
        rope_theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
        rope_type = rope.get("rope_type", legacy.get("rope_type", legacy.get("type", "default")))
        rope_src = rope if "factor" in rope else legacy
        scaling = None
        if rope_type == "llama3":
            scaling = RopeScaling(
                factor=float(rope_src["factor"]),
                low_freq_factor=float(rope_src["low_freq_factor"]),
                high_freq_factor=float(rope_src["high_freq_factor"]),
                original_max_position_embeddings=int(rope_src["original_max_position_embeddings"]),
            )
        elif rope_type not in ("default", None):
            raise UnsupportedArchitectureError(f"rope_type {rope_type!r} is not supported (default, llama3)")

        n_heads = int(need("num_attention_heads"))
        dim = int(need("hidden_size"))
        eos = hf.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
        return cls(
            arch=arch,
            vocab_size=int(need("vocab_size")),
            dim=dim,
            n_layers=int(need("num_hidden_layers")),
            n_heads=n_heads,
            n_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
            head_dim=int(hf.get("head_dim") or dim // n_heads),
            ffn_dim=int(need("intermediate_size")),
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope_theta),
            max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=arch == "qwen2" or bool(hf.get("attention_bias", False)),
            qk_norm=arch == "qwen3",
            rope_scaling=scaling,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=eos_ids,
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        f = path / "config.json"
        if not path.is_dir():
            raise CheckpointError(f"checkpoint directory not found: {path}")
        if not f.is_file():
            raise CheckpointError(f"missing config.json in checkpoint directory {path}")
        try:
            hf = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{f} is not valid JSON: {e}") from e
        return cls.from_hf(hf)
