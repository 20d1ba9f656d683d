"""The transformers side of the throughput harness: the same model in transformers, and its greedy
`generate` on the same prompt ids. torch and transformers are imported only when this side runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from entropix_s1.core.config import ModelConfig


def hf_config_dict(cfg: ModelConfig) -> dict[str, Any]:
    """transformers config kwargs equivalent to `cfg` (round-trips through `ModelConfig.from_hf`)."""
    d: dict[str, Any] = dict(
        model_type=cfg.arch, vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=cfg.bos_token_id, eos_token_id=list(cfg.eos_token_ids) or None,
    )
    if cfg.arch == "llama":
        d["attention_bias"] = cfg.qkv_bias
    if cfg.rope_scaling is not None:
        d["rope_scaling"] = dict(rope_type="llama3", **dataclasses.asdict(cfg.rope_scaling))
    if cfg.arch == "gemma3":
        full = {"rope_type": "default", "rope_theta": cfg.rope_theta}
        if cfg.rope_linear_factor is not None:
            full = {"rope_type": "linear", "factor": cfg.rope_linear_factor, "rope_theta": cfg.rope_theta}
        windows = {w for w in cfg.sliding_windows if w is not None}
        d.pop("rope_theta")
        d.update(model_type="gemma3_text", query_pre_attn_scalar=cfg.query_pre_attn_scalar,
                 final_logit_softcapping=cfg.final_softcap,
                 hidden_activation={"gelu_tanh": "gelu_pytorch_tanh"}.get(cfg.hidden_act, cfg.hidden_act),
                 sliding_window=windows.pop() if windows else None,
                 layer_types=["full_attention" if w is None else "sliding_attention" for w in cfg.sliding_windows],
                 rope_parameters={"full_attention": full,
                                  "sliding_attention": {"rope_type": "default", "rope_theta": cfg.rope_local_theta}})
    return d


def save_random_hf(cfg: ModelConfig, out: Path, seed: int = 0) -> Path:
    """A random transformers model of `cfg`, saved with `save_pretrained` (both sides load it)."""
    import torch
    import transformers as tf

    kw = hf_config_dict(cfg)
    model_type = kw.pop("model_type")
    torch.manual_seed(seed)
    hf_cfg = tf.AutoConfig.for_model(model_type, **kw)
    model = tf.AutoModelForCausalLM.from_config(hf_cfg)
    model.save_pretrained(out, safe_serialization=True)
    return Path(out)


def auto_device(hf_device: str) -> str:
    """`hf_device`, where "auto" is cuda when both torch and jax run on a GPU, else cpu."""
    if hf_device != "auto":
        return hf_device
    import torch
    import jax

    return "cuda" if (torch.cuda.is_available() and jax.default_backend() == "gpu") else "cpu"


def hf_load(path: Path, dtype: str, device: str) -> Any:
    import torch
    import transformers as tf

    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    m = tf.AutoModelForCausalLM.from_pretrained(str(path), dtype=tdt)
    return m.to(device).eval()


class HFRunner:
    """transformers greedy `generate` on the same prompt ids, exactly n new tokens."""

    def __init__(self, hf_model: Any, prompts: list[list[int]], device: str):
        import torch

        self.torch, self.model, self.device = torch, hf_model, device
        self.ids = torch.tensor(prompts, dtype=torch.long, device=device)
        self.mask = torch.ones_like(self.ids)
        gc = hf_model.generation_config
        eos = gc.eos_token_id if gc.eos_token_id is not None else hf_model.config.eos_token_id
        eos0 = eos[0] if isinstance(eos, (list, tuple)) and eos else eos
        self.pad = gc.pad_token_id if gc.pad_token_id is not None else (eos0 if eos0 is not None else 0)

    def __call__(self, n: int) -> Any:
        torch = self.torch
        with torch.inference_mode():
            out = self.model.generate(input_ids=self.ids, attention_mask=self.mask, max_new_tokens=n, min_new_tokens=n,
                                      do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=self.pad)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        assert out.shape[1] == self.ids.shape[1] + n, (out.shape, n)
        return out
