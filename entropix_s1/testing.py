"""What the tests and the benchmarks share: random configs and weights, a tokenizer for checkpoints
without one, and a scripted model whose next token a test can dictate.

    cfg = random_config("llama-1b")                 # a preset (RANDOM_CONFIGS) or a config.json path
    params = random_params(cfg, "bfloat16", seed=0)  # random weights in our layout
    m = Model(Path("random"), cfg, params, IdTokenizer(cfg.vocab_size, cfg.eos_token_ids))
    m = scripted_model(vocab, {"a": {"b": 10.0}})    # after "a" the model says "b"

No torch here (tests/tiny_models.py builds transformers references); JAX and numpy only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from entropix_s1.core.config import ModelConfig, RopeScaling
from entropix_s1.core.model import LayerParams, Params
from entropix_s1.errors import ConfigError
from entropix_s1.host.engine import Model

__all__ = ["RANDOM_CONFIGS", "random_config", "random_params", "IdTokenizer", "WordTokenizer", "scripted_model"]

# ---------------------------------------------------------------------------------------------
# Random configs and weights

_LLAMA3_ROPE = dict(low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
_SMOLLM2 = ModelConfig(arch="llama", vocab_size=49152, dim=576, n_layers=30, n_heads=9, n_kv_heads=3, head_dim=64,
                       ffn_dim=1536, norm_eps=1e-5, rope_theta=100000.0, max_position_embeddings=8192,
                       tie_embeddings=True, qkv_bias=False, qk_norm=False, bos_token_id=1, eos_token_ids=(2,))
_LLAMA_1B = ModelConfig(arch="llama", vocab_size=128256, dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, head_dim=64,
                        ffn_dim=8192, norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=131072,
                        tie_embeddings=True, qkv_bias=False, qk_norm=False,
                        rope_scaling=RopeScaling(factor=32.0, **_LLAMA3_ROPE), bos_token_id=128000,
                        eos_token_ids=(128001, 128008, 128009))
_QWEN3_06B = ModelConfig(arch="qwen3", vocab_size=151936, dim=1024, n_layers=28, n_heads=16, n_kv_heads=8,
                         head_dim=128, ffn_dim=3072, norm_eps=1e-6, rope_theta=1000000.0,
                         max_position_embeddings=40960, tie_embeddings=True, qkv_bias=False, qk_norm=True,
                         eos_token_ids=(151645, 151643))



def _gemma3_windows(n_layers: int, window: int = 512) -> tuple[int | None, ...]:
    """Gemma 3's layer pattern: five local (sliding-window) layers, then one global."""
    return tuple(None if (i + 1) % 6 == 0 else window for i in range(n_layers))


_GEMMA3_270M = ModelConfig(arch="gemma3", vocab_size=262144, dim=640, n_layers=18, n_heads=4, n_kv_heads=1,
                           head_dim=256, ffn_dim=2048, norm_eps=1e-6, rope_theta=1_000_000.0,
                           max_position_embeddings=32768, tie_embeddings=True, qkv_bias=False, qk_norm=True,
                           bos_token_id=2, eos_token_ids=(1,), hidden_act="gelu_tanh", norm_plus_one=True,
                           post_norms=True, embed_scale=math.sqrt(640), query_pre_attn_scalar=256.0,
                           sliding_windows=_gemma3_windows(18), rope_local_theta=10_000.0)

#: Presets of `random_config`: a tiny llama for tests, and the shapes of real models for benchmarks.
RANDOM_CONFIGS: dict[str, ModelConfig] = {
    "tiny": dataclasses.replace(_SMOLLM2, vocab_size=256, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                                ffn_dim=128, rope_theta=10000.0, max_position_embeddings=4096, tie_embeddings=False),
    "smollm2-135m": _SMOLLM2,
    "llama-1b": _LLAMA_1B,
    "llama-3b": dataclasses.replace(_LLAMA_1B, dim=3072, n_layers=28, n_heads=24, head_dim=128),
    "llama-8b": dataclasses.replace(_LLAMA_1B, dim=4096, n_layers=32, head_dim=128, ffn_dim=14336,
                                    tie_embeddings=False, rope_scaling=RopeScaling(factor=8.0, **_LLAMA3_ROPE)),
    "qwen2.5-0.5b": dataclasses.replace(_QWEN3_06B, arch="qwen2", dim=896, n_layers=24, n_heads=14, n_kv_heads=2,
                                        head_dim=64, ffn_dim=4864, max_position_embeddings=32768, qkv_bias=True,
                                        qk_norm=False),
    "qwen3-0.6b": _QWEN3_06B,
    "gemma3-270m": _GEMMA3_270M,
    "gemma3-1b": dataclasses.replace(_GEMMA3_270M, dim=1152, n_layers=26, ffn_dim=6912, embed_scale=math.sqrt(1152),
                                     sliding_windows=_gemma3_windows(26)),
}


def random_config(name_or_path: str) -> ModelConfig:
    """A preset of `RANDOM_CONFIGS`, or the ModelConfig of a `config.json` (or a directory holding one)."""
    if name_or_path in RANDOM_CONFIGS:
        return RANDOM_CONFIGS[name_or_path]
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return ModelConfig.from_dir(p)
    if p.is_file():
        return ModelConfig.from_hf(json.loads(p.read_text()))
    raise ConfigError(f"--random-config {name_or_path!r}: not a preset ({', '.join(RANDOM_CONFIGS)}) "
                      "nor a config.json path")


def random_params(cfg: ModelConfig, dtype: Any = "float32", seed: int = 0, std: float = 0.02) -> Params:
    """Random weights of any ModelConfig in our layout, generated on the default device in `dtype`.

    Matrices ~ N(0, std^2) (the usual Llama init), norm weights 1, biases ~ N(0, std^2). One jitted
    program makes every leaf directly in the target dtype (one compile; a big config such as
    llama-8b in bfloat16 needs no float32 copy and never touches the host).
    """
    dt = jnp.dtype({"f32": "float32", "bf16": "bfloat16"}.get(dtype, dtype))
    if jax.default_backend() != "cpu":
        return _random_params_jit(cfg, dt.name, float(std), jax.random.key(seed))
    # On CPU numpy's generator is far faster than compiling and running threefry for every leaf.
    rng = np.random.default_rng(seed)
    np_dt = ml_dtypes.bfloat16 if dt == jnp.bfloat16 else np.dtype(dt)
    return _build_params(cfg, lambda *shape: jnp.asarray((rng.standard_normal(shape, np.float32) * std).astype(np_dt)),
                         lambda *shape: jnp.ones(shape, dt))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _random_params_jit(cfg: ModelConfig, dtype: str, std: float, key: jax.Array) -> Params:
    dt = jnp.dtype(dtype)
    count = [0]

    def normal(*shape: int) -> jax.Array:
        count[0] += 1
        return (jax.random.normal(jax.random.fold_in(key, count[0]), shape, dt) * jnp.asarray(std, dt)).astype(dt)

    return _build_params(cfg, normal, lambda *shape: jnp.ones(shape, dt))


def _build_params(cfg: ModelConfig, normal: Callable[..., jax.Array], ones: Callable[..., jax.Array]) -> Params:
    ones_ = ones
    D_, K, G, hd, F, V = cfg.dim, cfg.n_kv_heads, cfg.q_per_kv, cfg.head_dim, cfg.ffn_dim, cfg.vocab_size
    if cfg.norm_plus_one:  # (1 + w) norms: w = 0 is the identity scale
        ones = lambda *shape: 0 * ones_(*shape)  # noqa: E731
    layers = tuple(
        LayerParams(
            attn_norm_D=ones(D_),
            wqkv_DKCH=normal(D_, K, G + 2, hd),
            bqkv_KCH=normal(K, G + 2, hd) if cfg.qkv_bias else None,
            q_norm_H=ones(hd) if cfg.qk_norm else None,
            k_norm_H=ones(hd) if cfg.qk_norm else None,
            wo_KGHD=normal(K, G, hd, D_),
            mlp_norm_D=ones(D_),
            w_gate_up_D2F=normal(D_, 2, F),
            w_down_FD=normal(F, D_),
            post_attn_norm_D=ones(D_) if cfg.post_norms else None,
            post_mlp_norm_D=ones(D_) if cfg.post_norms else None,
        )
        for _ in range(cfg.n_layers)
    )
    return Params(embed_VD=normal(V, D_), layers=layers, final_norm_D=ones(D_),
                  lm_head_VD=None if cfg.tie_embeddings else normal(V, D_))


# ---------------------------------------------------------------------------------------------
# Tokenizers

class IdTokenizer:
    """Stand-in tokenizer for checkpoints without one (random weights): prompts are token ids
    already; the few strings the loop needs (budget delimiter, wait text, entropix pause text)
    become one id per character, so budget forcing runs the same state machine."""

    def __init__(self, vocab_size: int, eos_ids: Sequence[int] = ()):
        self.vocab = int(vocab_size)
        self.eos_ids = tuple(eos_ids)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        lo = min(3, self.vocab - 1)
        return [lo + ord(c) % max(1, self.vocab - lo) for c in text]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return " ".join(str(int(i)) for i in ids)

    def id_to_token(self, i: int) -> str:
        return str(int(i))

    def render(self, prompt: Any, **kw: Any) -> str:
        return str(prompt)


class WordTokenizer:
    """Whitespace-free word tokenizer over a fixed vocabulary (greedy longest match)."""

    def __init__(self, vocab: list[str], eos: str = "<eos>"):
        self.vocab = vocab
        self.ids = {w: i for i, w in enumerate(vocab)}
        self.eos_ids = (self.ids[eos],)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        out, i = [], 0
        while i < len(text):
            for w in sorted(self.vocab, key=len, reverse=True):
                if w and text.startswith(w, i):
                    out.append(self.ids[w])
                    i += len(w)
                    break
            else:
                raise ValueError(f"cannot tokenize {text[i:]!r}")
        return out

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(self.vocab[i] for i in ids)

    def id_to_token(self, i: int) -> str:
        return self.vocab[i]

    def render(self, prompt, *, raw=False, system=None, prefill="", **kw) -> str:
        return prompt + prefill


# ---------------------------------------------------------------------------------------------
# The scripted model

def scripted_model(vocab: list[str], script: dict[str, dict[str, float]], default: float = -10.0,
                   max_pos: int = 512) -> Model:
    """A real `Params` of our Llama whose logits follow a bigram script, so an end-of-thinking
    delimiter (or any uncertainty) appears exactly when a test needs it: `script[t] = {next: logit}`,
    every other next token gets `default`.

    How: one layer whose attention and MLP outputs are zero (wo = w_down = 0), so the final hidden
    state is RMSNorm(embedding of the current token). Embeddings are one-hot (dim = vocab), so the
    normalised state is sqrt(V) * e_t and `logits = lm_head[:, t] * sqrt(V)`: column t of the head IS
    the next-token logit row after token t.
    """
    V = len(vocab)
    tok = WordTokenizer(vocab)
    head = np.full((V, V), default, np.float32)  # head[next, current]
    for cur, nxt in script.items():
        for w, logit in nxt.items():
            head[tok.ids[w], tok.ids[cur]] = logit
    head /= np.sqrt(V)
    cfg = ModelConfig(arch="llama", vocab_size=V, dim=V, n_layers=1, n_heads=1, n_kv_heads=1, head_dim=4,
                      ffn_dim=4, norm_eps=1e-12, rope_theta=10000.0, max_position_embeddings=max_pos,
                      tie_embeddings=False, qkv_bias=False, qk_norm=False, eos_token_ids=tok.eos_ids)
    rng = np.random.default_rng(0)
    f = lambda *s: jnp.asarray(rng.normal(size=s).astype(np.float32))  # noqa: E731
    layer = LayerParams(attn_norm_D=jnp.ones(V), wqkv_DKCH=f(V, 1, 3, 4), bqkv_KCH=None, q_norm_H=None, k_norm_H=None,
                        wo_KGHD=jnp.zeros((1, 1, 4, V)), mlp_norm_D=jnp.ones(V), w_gate_up_D2F=f(V, 2, 4),
                        w_down_FD=jnp.zeros((4, V)))
    params = Params(embed_VD=jnp.eye(V), layers=(layer,), final_norm_D=jnp.ones(V), lm_head_VD=jnp.asarray(head))
    return Model("scripted", cfg, params, tok)
