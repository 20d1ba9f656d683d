"""Random tiny checkpoints of each architecture, built in transformers (the reference) and saved
with `save_pretrained`, for parity tests and fast loop tests."""

from __future__ import annotations

from pathlib import Path

import torch

TINY = dict(
    vocab_size=97,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
)


def tiny_hf_model(arch: str, *, tie: bool = False, seed: int = 0, **overrides):
    """A random transformers model of `arch` (llama with llama3 RoPE scaling, qwen2, qwen3, gemma3)."""
    import transformers as tf

    torch.manual_seed(seed)
    kw = dict(TINY, tie_word_embeddings=tie)
    kw.update(overrides)
    if arch == "llama":
        kw.setdefault(
            "rope_scaling",
            {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        )
        kw.setdefault("rope_theta", 500000.0)
        cfg = tf.LlamaConfig(**kw)
        model = tf.LlamaForCausalLM(cfg)
    elif arch == "qwen2":
        cfg = tf.Qwen2Config(**kw)
        model = tf.Qwen2ForCausalLM(cfg)
    elif arch == "qwen3":
        kw.setdefault("head_dim", 32)  # differs from hidden/heads, as in real Qwen3
        cfg = tf.Qwen3Config(**kw)
        model = tf.Qwen3ForCausalLM(cfg)
    elif arch == "gemma3":
        # Gemma 3 text with a tiny sliding window, so prompts longer than 8 tokens make the local
        # (sliding) layers differ from the global one; query_pre_attn_scalar != head_dim so the
        # attention scale is checked too.
        kw.setdefault("head_dim", 16)
        kw.setdefault("sliding_window", 8)
        kw.setdefault("query_pre_attn_scalar", 24)
        kw["num_hidden_layers"] = overrides.get("num_hidden_layers", 3)
        kw.setdefault("layer_types", [("sliding_attention", "full_attention")[i % 2] for i in range(kw["num_hidden_layers"])])
        cfg = tf.Gemma3TextConfig(**kw)
        cfg._attn_implementation = "eager"  # softcapping is applied by the eager kernel only
        model = tf.Gemma3ForCausalLM(cfg)
    else:
        raise ValueError(arch)
    # Random init leaves norms at 1 and biases at 0; perturb them so the test sees them.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def save_tiny(arch: str, out: Path, **kw) -> Path:
    model = tiny_hf_model(arch, **kw)
    model.save_pretrained(out, safe_serialization=True)
    return out
