"""Frozen model config read from a Hugging Face `config.json`.

One `ModelConfig` describes every decoder we run: `llama` (SmolLM2, Llama 3.x with llama3 RoPE
scaling), `qwen2` (q/k/v biases), `qwen3` (q/k RMSNorm) and `gemma3` (Gemma 3 text, `gemma3_text`:
per-layer sliding windows, a second RoPE base for its local layers, (1 + w) RMSNorms before and
after attention and MLP, GeGLU, embeddings scaled by sqrt(hidden), query_pre_attn_scalar). It is
hashable, so it can be a static argument of `jax.jit` without retracing: equal configs hash equal.
Every Gemma-only field has a default that makes it a no-op, so llama/qwen programs are unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from entropix_s1.errors import CheckpointError, UnsupportedArchitectureError

SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3")

#: HF `hidden_act` / `hidden_activation` -> our activation name (the MLP's gate nonlinearity).
#: gelu_pytorch_tanh is GELU's tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
_ACTIVATIONS = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu"}


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama 3.x frequency-dependent RoPE scaling (`rope_type == "llama3"`)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


def _gemma3_rope(hf: dict[str, Any]) -> tuple[float, float, float | None]:
    """Gemma 3's (global theta, local theta, linear scaling factor or None) from `rope_parameters`
    per layer type, a single `rope_parameters` dict, or the older `rope_scaling` /
    `rope_local_base_freq` fields."""
    rope = hf.get("rope_parameters") or {}
    full = dict(rope.get("full_attention") or {})
    local = dict(rope.get("sliding_attention") or {})
    if "rope_type" in rope and not full:  # one dict for every layer type
        full = dict(rope)
    legacy = hf.get("rope_scaling") or {}
    full = {**legacy, **full}
    theta = float(full.get("rope_theta", hf.get("rope_theta", 1_000_000.0)))
    local_theta = float(local.get("rope_theta", hf.get("rope_local_base_freq", 10_000.0)))
    linear = None
    full_type = full.get("rope_type", full.get("type", "default"))
    if full_type == "linear":
        linear = float(full["factor"])
    elif full_type != "default":
        raise UnsupportedArchitectureError(f"gemma3_text full_attention rope_type {full_type!r} is not supported "
                                           "(default, linear)")
    local_type = local.get("rope_type", "default")
    if local_type != "default":
        raise UnsupportedArchitectureError(f"gemma3_text sliding_attention rope_type {local_type!r} is not "
                                           "supported (default)")
    return theta, local_theta, linear


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
    # ---- Gemma-style features (defaults: off, the Llama behaviour) ----
    #: "silu" (SwiGLU), "gelu_tanh" or "gelu" (GeGLU): act(x W_gate) * (x W_up).
    hidden_act: str = "silu"
    #: RMSNorm scale is (1 + w) instead of w (Gemma stores its norm weights centred on 0).
    norm_plus_one: bool = False
    #: Extra RMSNorms on the attention output and the MLP output, before each residual add.
    post_norms: bool = False
    #: Embeddings are multiplied by this (Gemma: sqrt(hidden_size), rounded to the weight dtype).
    embed_scale: float | None = None
    #: Attention scores are scaled by query_pre_attn_scalar^-1/2 (None: head_dim^-1/2).
    query_pre_attn_scalar: float | None = None
    #: cap * tanh(logits / cap) on the final logits (`final_logit_softcapping`); None: off.
    final_softcap: float | None = None
    #: Per layer: a local layer attends to the last N positions of its row, a global layer (None)
    #: to all of them. Empty: every layer global (no mask is built, no cost).
    sliding_windows: tuple[int | None, ...] = ()
    #: RoPE base of the local (sliding-window) layers; None: `rope_theta` for every layer.
    rope_local_theta: float | None = None
    #: Linear RoPE scaling (positions / factor) of the global layers (Gemma 3 4B and up: 8).
    rope_linear_factor: float | None = None

    def __post_init__(self) -> None:
        if self.arch not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedArchitectureError(
                f"unsupported architecture {self.arch!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        if self.n_heads % self.n_kv_heads:
            raise CheckpointError(
                f"num_attention_heads ({self.n_heads}) must be a multiple of num_key_value_heads ({self.n_kv_heads})"
            )
        if self.hidden_act not in set(_ACTIVATIONS.values()):
            raise UnsupportedArchitectureError(
                f"hidden_act {self.hidden_act!r} is not supported ({', '.join(sorted(set(_ACTIVATIONS.values())))})")
        if self.sliding_windows and len(self.sliding_windows) != self.n_layers:
            raise CheckpointError(f"sliding_windows has {len(self.sliding_windows)} entries for "
                                  f"{self.n_layers} layers (num_hidden_layers)")
        if any(w is not None and w < 1 for w in self.sliding_windows):
            raise CheckpointError(f"sliding_window must be >= 1, got {self.sliding_windows}")

    def layer_window(self, layer: int) -> int | None:
        """The sliding window of layer `layer` (None: a global layer attending to every position)."""
        return self.sliding_windows[layer] if self.sliding_windows else None

    @property
    def has_local_layers(self) -> bool:
        return any(w is not None for w in self.sliding_windows)

    @property
    def attn_scale(self) -> float:
        """Multiplier of q.k: query_pre_attn_scalar^-1/2 when configured (Gemma), else head_dim^-1/2."""
        return (self.query_pre_attn_scalar if self.query_pre_attn_scalar is not None else self.head_dim) ** -0.5

    @property
    def q_per_kv(self) -> int:
        """Query heads sharing one K/V head (GQA group size G)."""
        return self.n_heads // self.n_kv_heads

    def inv_freq(self, local: bool = False) -> np.ndarray:
        """RoPE inverse frequencies [head_dim/2], float32, with llama3 scaling when configured.

        theta_i = base^(-2i/d), base = `rope_local_theta` for a local (sliding-window) layer when
        set (Gemma 3: 10k local, 1M global), else `rope_theta`. Scaling applies to global layers
        only (transformers' Gemma 3 puts `rope_scaling` on full_attention alone). Linear scaling
        divides every frequency by its factor. Llama 3 scaling (transformers `_compute_llama3_parameters`): wavelengths
        longer than original_max/low_freq_factor are divided by `factor`, shorter than
        original_max/high_freq_factor are kept, and the band between is interpolated smoothly.
        """
        d = self.head_dim
        base = self.rope_local_theta if local and self.rope_local_theta is not None else self.rope_theta
        inv = 1.0 / (base ** (np.arange(0, d, 2, dtype=np.float64) / d))
        if local:
            return inv.astype(np.float32)
        if self.rope_linear_factor is not None:
            inv = inv / self.rope_linear_factor
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
        if arch == "gemma3":  # Gemma3Config: the multimodal wrapper (text_config + vision_config)
            what = "a vision tower (vision_config)" if hf.get("vision_config") else "a text_config wrapper"
            raise UnsupportedArchitectureError(
                f"unsupported gemma3 checkpoint: model_type 'gemma3' (architectures={hf.get('architectures')}) is the "
                f"multimodal Gemma3ForConditionalGeneration with {what}; the vision tower and image tokens are not "
                "supported. Use a text-only checkpoint: model_type 'gemma3_text' (Gemma3ForCausalLM, e.g. gemma-3-270m, "
                "gemma-3-1b), or a 'gemma3' GGUF (its text weights)")
        if arch == "gemma3_text":
            return cls._from_hf_gemma3(hf)
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
    def _from_hf_gemma3(cls, hf: dict[str, Any]) -> "ModelConfig":
        """`gemma3_text` (transformers' Gemma3TextConfig; defaults are its defaults).

        Local layers are `layer_types[i] == "sliding_attention"` (older files: every
        `sliding_window_pattern`-th layer is global, the others local) and attend to their last
        `sliding_window` positions; their RoPE base is `rope_parameters.sliding_attention.rope_theta`
        (older files: `rope_local_base_freq`), the global one `full_attention.rope_theta`.
        """

        def need(key: str) -> Any:
            if key not in hf or hf[key] is None:
                raise CheckpointError(f"config.json lacks required field {key!r} for model_type 'gemma3_text'")
            return hf[key]

        if hf.get("use_bidirectional_attention"):
            raise UnsupportedArchitectureError("gemma3_text with use_bidirectional_attention=True (an encoder, e.g. "
                                               "EmbeddingGemma) is not supported: only causal decoding is")
        if hf.get("attention_bias"):
            raise UnsupportedArchitectureError("gemma3_text with attention_bias=True is not supported")
        act = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
        if act not in _ACTIVATIONS:
            raise UnsupportedArchitectureError(f"hidden_activation {act!r} is not supported "
                                               f"({', '.join(sorted(_ACTIVATIONS))})")
        n_layers = int(need("num_hidden_layers"))
        layer_types = hf.get("layer_types")
        if layer_types is None:
            pattern = int(hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern") or 6)
            layer_types = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layers)]
        if len(layer_types) != n_layers:
            raise CheckpointError(f"layer_types has {len(layer_types)} entries, num_hidden_layers is {n_layers}")
        bad = sorted(set(layer_types) - {"sliding_attention", "full_attention"})
        if bad:
            raise UnsupportedArchitectureError(f"layer_types {bad} are not supported (sliding_attention, full_attention)")
        window = hf.get("sliding_window")
        if window is None and "sliding_attention" in layer_types:
            raise CheckpointError("config.json lacks required field 'sliding_window' (layer_types has local layers)")
        windows = tuple(int(window) if t == "sliding_attention" else None for t in layer_types)

        theta, local_theta, linear = _gemma3_rope(hf)
        n_heads = int(need("num_attention_heads"))
        dim = int(need("hidden_size"))
        eos = hf.get("eos_token_id", 1)
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
        # `attn_logit_softcapping` is read by transformers' Gemma3Attention but never applied (Gemma 3
        # replaced Gemma 2's score capping with q/k norms), so it is ignored here too.
        softcap = lambda key: None if hf.get(key) is None else float(hf[key])  # noqa: E731
        return cls(
            arch="gemma3",
            vocab_size=int(need("vocab_size")),
            dim=dim,
            n_layers=n_layers,
            n_heads=n_heads,
            n_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
            head_dim=int(hf.get("head_dim") or 256),
            ffn_dim=int(need("intermediate_size")),
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            max_position_embeddings=int(hf.get("max_position_embeddings", 131_072)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
            qkv_bias=False,
            qk_norm=True,
            bos_token_id=hf.get("bos_token_id", 2),
            eos_token_ids=eos_ids,
            hidden_act=_ACTIVATIONS[act],
            norm_plus_one=True,
            post_norms=True,
            embed_scale=math.sqrt(dim),
            query_pre_attn_scalar=float(hf.get("query_pre_attn_scalar", 256)),
            final_softcap=softcap("final_logit_softcapping"),
            sliding_windows=windows,
            rope_local_theta=local_theta,
            rope_linear_factor=linear,
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
