"""A scripted fake model for loop tests: a real `Params` of our Llama whose logits follow a bigram
script, so an end-of-thinking delimiter (or any uncertainty) appears exactly when a test needs it.

How: one layer whose attention and MLP outputs are zero (wo = w_down = 0), so the final hidden
state is RMSNorm(embedding of the current token). Embeddings are one-hot (dim = vocab), so the
normalised state is sqrt(V) * e_t and `logits = lm_head[:, t] * sqrt(V)`: column t of the head IS
the next-token logit row after token t. `script[t] = {next: logit, ...}` fills it.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from entropix_s1.core.config import ModelConfig
from entropix_s1.host.engine import Model
from entropix_s1.core.model import LayerParams, Params


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


def scripted_model(vocab: list[str], script: dict[str, dict[str, float]], default: float = -10.0,
                   max_pos: int = 512) -> Model:
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
