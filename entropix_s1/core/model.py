"""Pure-JAX forward pass of our decoders (llama, qwen2, qwen3, gemma3) over a preallocated KV cache.

Layout decisions (why):
- Rows are LEFT-padded: every row writes its next token to the same cache slot, so one
  `dynamic_update_slice` updates the whole batch in place and "the filled part" of the cache is a
  shared prefix `[0, length)`. A per-row slot mask `valid_BS` and position counter `pos_B` make
  padding, finished rows and rolled-back delimiter tokens invisible: a row's RoPE positions count
  only its real tokens, so greedy output is batch-invariant and budget forcing can drop tokens.
- Attention reads only the first `window` cache slots (a static size the decode loop grows in
  stages): attending over the whole preallocated cache is the largest cost at small model sizes.
- GQA without repeating K/V: queries are grouped `[B, T, K, G, hd]` against `[B, K, S, hd]`.
- The cache write and the window read are arranged for XLA:CPU (issue 17, profiled with
  `benchmarks/profile_decode.py`): see `_write_cache` and the operand order of the P.V product.
- Weights may be bfloat16; every matmul accumulates in float32 (`preferred_element_type`), the
  residual stream, norms, softmax and logits are float32.
- Layers are unrolled in Python: XLA:CPU runs one big fused program faster than a loop of many
  small ones, and it lets attention metrics be computed only for the layers the sampler uses.
- Sliding-window (local) layers (Gemma 3) keep the whole cache and attend through a mask: a query
  sees a key when fewer than `window` real tokens of its row separate them (counted over valid
  slots, so padding and dropped delimiters do not shrink the window). The mask is built once per
  forward for each distinct window and only when the config has local layers (`ModelConfig.
  sliding_windows`, static), so a model without them runs exactly the program it ran before.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import struct

from entropix_s1.core import metrics as metrics_lib
from entropix_s1.core.config import ModelConfig

Array = jax.Array
MASK_VALUE = -1e30  # finite, so a fully masked (padding) query row gives no NaN

#: The attention of before issue 17 (two whole-cache copies per layer and step inside the decode
#: loop when the window is shorter than the cache, and a P.V product on XLA:CPU's slow general dot
#: thunk). Kept only so `benchmarks/profile_decode.py` can time both in one run; read at trace time.
LEGACY_ATTENTION = False


@struct.dataclass
class LayerParams:
    attn_norm_D: Array
    # Per KV head k, C = G + 2 slices: its G query heads, then its key, then its value head.
    # Grouping by KV head keeps GQA free of reshapes and lets tensor parallelism split K cleanly.
    wqkv_DKCH: Array
    bqkv_KCH: Array | None
    q_norm_H: Array | None
    k_norm_H: Array | None
    wo_KGHD: Array
    mlp_norm_D: Array
    w_gate_up_D2F: Array  # [:, 0] gate, [:, 1] up
    w_down_FD: Array
    # Gemma's "sandwich" norms on the attention and MLP outputs (None unless `cfg.post_norms`).
    post_attn_norm_D: Array | None = None
    post_mlp_norm_D: Array | None = None


@struct.dataclass
class Params:
    embed_VD: Array
    layers: tuple[LayerParams, ...]
    final_norm_D: Array
    lm_head_VD: Array | None  # None when tied to the embedding

    @property
    def dtype(self) -> jnp.dtype:
        return self.embed_VD.dtype


@struct.dataclass
class KVCache:
    """Per-layer K/V buffers `[B, K, S, hd]`, updated in place (donate the cache to jitted calls).

    valid_BS: which slots hold a real token of each row (left padding, rolled-back budget-forcing
        delimiters and steps of finished rows are False and never attended to).
    pos_B: RoPE position of each row's next real token (its count of valid slots).
    length: slots written so far, shared by all rows (the next write slot).
    """

    k: tuple[Array, ...]
    v: tuple[Array, ...]
    valid_BS: Array
    pos_B: Array
    length: Array

    @property
    def max_len(self) -> int:
        return self.k[0].shape[2]

    @classmethod
    def init(cls, cfg: ModelConfig, batch: int, max_len: int, dtype) -> "KVCache":
        shape = (batch, cfg.n_kv_heads, max_len, cfg.head_dim)
        zeros = lambda: tuple(jnp.zeros(shape, dtype) for _ in range(cfg.n_layers))  # noqa: E731
        return cls(
            k=zeros(),
            v=zeros(),
            valid_BS=jnp.zeros((batch, max_len), bool),
            pos_B=jnp.zeros((batch,), jnp.int32),
            length=jnp.zeros((), jnp.int32),
        )

    def invalidate(self, lo_B: Array, hi_B: Array) -> "KVCache":
        """Forget slots [lo, hi) of each row (budget forcing drops a delimiter this way) and move
        the row's RoPE position back by the number of real tokens forgotten."""
        s_S = jnp.arange(self.max_len, dtype=jnp.int32)
        drop_BS = (s_S >= lo_B[:, None]) & (s_S < hi_B[:, None]) & self.valid_BS
        return self.replace(valid_BS=self.valid_BS & ~drop_BS, pos_B=self.pos_B - drop_BS.sum(-1, dtype=jnp.int32))

    def compact(self, drop_B: Array) -> "KVCache":
        """Right-align each row's valid slots at the new shared length max_b(valid slots of b);
        rows in `drop_B` are emptied. Frees the slots no row attends to (dropped delimiters,
        finished rows, slots other rows' look-ahead paths used) without changing what any row
        sees: RoPE was applied when a key was written, `pos_B` counts valid slots, and the order
        of a row's slots is kept; only masked (exactly zero) terms of its sums move."""
        valid_BS = self.valid_BS & ~drop_B[:, None]
        S = valid_BS.shape[1]
        count_B = valid_BS.sum(1, dtype=jnp.int32)
        length = jnp.max(count_B)
        order_BS = jnp.argsort(~valid_BS, axis=1, stable=True)  # valid slots first, in order
        rank_BS = jnp.arange(S, dtype=jnp.int32)[None, :] - (length - count_B)[:, None]  # of the target slot
        src_BS = jnp.take_along_axis(order_BS, jnp.clip(rank_BS, 0, S - 1), axis=1)

        def move(buf_BKSH: Array) -> Array:
            return jnp.take_along_axis(buf_BKSH, src_BS[:, None, :, None], axis=2)

        return self.replace(k=tuple(move(k) for k in self.k), v=tuple(move(v) for v in self.v),
                            valid_BS=(rank_BS >= 0) & (rank_BS < count_B[:, None]),
                            pos_B=jnp.where(drop_B, 0, count_B), length=length)


def rms_norm(x: Array, w: Array, eps: float, plus_one: bool = False) -> Array:
    """RMSNorm in float32: x / sqrt(mean(x^2) + eps) * w, or * (1 + w) with `plus_one` (Gemma,
    whose weights are stored centred on 0; transformers' Gemma3RMSNorm adds the 1 in float32)."""
    x = x.astype(jnp.float32)
    scale = w.astype(jnp.float32)
    if plus_one:
        scale = 1.0 + scale
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def softcap(x: Array, cap: float | None) -> Array:
    """cap * tanh(x / cap): the soft limit `final_logit_softcapping` puts on logits (identity for None)."""
    return x if cap is None else cap * jnp.tanh(x / cap)


def apply_rope(x_BTNH: Array, pos_BT: Array, inv_freq: Array) -> Array:
    """Rotate-half RoPE (the HF layout): x*cos + rotate_half(x)*sin, angles pos * inv_freq."""
    ang_BTF = pos_BT.astype(jnp.float32)[..., None] * inv_freq
    cos = jnp.cos(ang_BTF)[:, :, None, :]
    sin = jnp.sin(ang_BTF)[:, :, None, :]
    x1, x2 = jnp.split(x_BTNH.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _mm(spec: str, x: Array, w: Array, *, w_first: bool = False) -> Array:
    """einsum in the weight's dtype with float32 accumulation.

    XLA:CPU runs a bf16 x bf16 -> f32 product only when it fuses it (one output row, e.g. batch-1
    decode); its general matmul thunk rejects that type ("Unsupported element type for
    DotThunk"). There, with more than one row, the bf16 operand is widened to float32 instead.
    `w_first` passes `w` as the einsum's first operand (same product, same dtypes): the operand
    order decides which dot XLA:CPU emits (see `_attention`).
    """
    ins, out = spec.split("->")
    x_spec, w_spec = ins.split(",")
    if w.dtype == jnp.bfloat16 and jax.default_backend() == "cpu" and math.prod(
            n for c, n in zip(x_spec, x.shape) if c in out) > 1:
        x, w, kw = x.astype(jnp.float32), w.astype(jnp.float32), {}
    else:
        x, kw = x.astype(w.dtype), dict(preferred_element_type=jnp.float32)
    if w_first:
        return jnp.einsum(f"{w_spec},{x_spec}->{out}", w, x, **kw)
    return jnp.einsum(spec, x, w, **kw)


def _write_cache(cache_BKSH: Array, new_BKTH: Array, slot0: Array, window: int) -> tuple[Array, Array]:
    """Write `new` at slots `[slot0, slot0 + T)` of every row, in place; return the cache and its
    first `window` slots (which must contain those slots).

    The obvious `c = dynamic_update_slice(c, new); c[:, :, :window]` costs two copies of the WHOLE
    cache buffer per layer and step inside the decode `while_loop` on XLA:CPU (issue 17): its
    fusion pass duplicates the update into the slice's fusion, so the slice reads the old buffer
    while the in-place update overwrites it, and copy insertion resolves that interference with
    `copy(copy(param))` ([32, 3, 768, 64] x 60 per step at batch 32). Here the window is read
    first and the cache is updated from the window, so the write is ordered after the read and
    stays in place. A window that is the whole cache needs no slice and takes the direct path, and
    so does batch 1: there XLA fuses the update and slice without interference, while the
    read-first form gets three copies of the window (measured; `benchmarks/profile_decode.py`).
    Same values either way.
    """
    if window == cache_BKSH.shape[2] or cache_BKSH.shape[0] == 1:
        cache_BKSH = jax.lax.dynamic_update_slice(cache_BKSH, new_BKTH, (0, 0, slot0, 0))
        return cache_BKSH, cache_BKSH[:, :, :window]
    win_BKWH = jax.lax.dynamic_update_slice(cache_BKSH[:, :, :window], new_BKTH, (0, 0, slot0, 0))
    written = jax.lax.dynamic_slice_in_dim(win_BKWH, slot0, new_BKTH.shape[2], axis=2)
    return jax.lax.dynamic_update_slice(cache_BKSH, written, (0, 0, slot0, 0)), win_BKWH


def _qkv(lp: LayerParams, cfg: ModelConfig, x_BTD: Array, pos_BT: Array,
         local: bool = False) -> tuple[Array, Array, Array]:
    """Queries [B, T, K, G, hd] (rotated, scaled by `cfg.attn_scale`: hd^-0.5, or Gemma's
    query_pre_attn_scalar^-0.5), keys and values [B, T, K, hd]. `local`: a sliding-window layer,
    rotated with the local RoPE base."""
    B, T, _ = x_BTD.shape
    G, hd = cfg.q_per_kv, cfg.head_dim
    qkv_BTKCH = _mm("btd,dkch->btkch", x_BTD, lp.wqkv_DKCH)
    if lp.bqkv_KCH is not None:
        qkv_BTKCH = qkv_BTKCH + lp.bqkv_KCH.astype(jnp.float32)
    q, k, v = qkv_BTKCH[:, :, :, :G], qkv_BTKCH[:, :, :, G], qkv_BTKCH[:, :, :, G + 1]
    if lp.q_norm_H is not None:
        q = rms_norm(q, lp.q_norm_H, cfg.norm_eps, cfg.norm_plus_one)
        k = rms_norm(k, lp.k_norm_H, cfg.norm_eps, cfg.norm_plus_one)
    inv_freq = jnp.asarray(cfg.inv_freq(local=local))
    q_BTKGH = apply_rope(q.reshape(B, T, cfg.n_heads, hd), pos_BT, inv_freq).reshape(q.shape) * cfg.attn_scale
    return q_BTKGH, apply_rope(k, pos_BT, inv_freq), v


def _out(lp: LayerParams, out_BTKGH: Array) -> Array:
    """The output projection; one flat contraction (with three, XLA:CPU transposed the whole wo
    matrix every step)."""
    B, T, K, G, hd = out_BTKGH.shape
    if LEGACY_ATTENTION:
        return _mm("btkgh,kghd->btd", out_BTKGH, lp.wo_KGHD)
    return _mm("btf,fd->btd", out_BTKGH.reshape(B, T, K * G * hd), lp.wo_KGHD.reshape(K * G * hd, -1))


def _attention(
    lp: LayerParams,
    cfg: ModelConfig,
    x_BTD: Array,
    pos_BT: Array,
    k_cache: Array,
    v_cache: Array,
    valid_BTS: Array,
    slot0: Array,
    window: int,
    want_metrics: bool,
    local: bool = False,
):
    """One attention block. `valid_BTS` is this layer's mask (a local layer's has its window
    applied); `local` picks the local RoPE base."""
    B, T, _ = x_BTD.shape
    q_BTKGH, k, v = _qkv(lp, cfg, x_BTD, pos_BT, local)

    # Write this step's K/V at slots [slot0, slot0 + T) of every row, in place.
    k_BKTH = jnp.swapaxes(k, 1, 2).astype(k_cache.dtype)
    v_BKTH = jnp.swapaxes(v, 1, 2).astype(v_cache.dtype)
    if LEGACY_ATTENTION:
        k_cache = jax.lax.dynamic_update_slice(k_cache, k_BKTH, (0, 0, slot0, 0))
        v_cache = jax.lax.dynamic_update_slice(v_cache, v_BKTH, (0, 0, slot0, 0))
        k_win, v_win = k_cache[:, :, :window], v_cache[:, :, :window]
    else:
        k_cache, k_win = _write_cache(k_cache, k_BKTH, slot0, window)
        v_cache, v_win = _write_cache(v_cache, v_BKTH, slot0, window)

    scores_BKGTS = _mm("btkgh,bksh->bkgts", q_BTKGH, k_win)
    scores_BKGTS = jnp.where(valid_BTS[:, None, None], scores_BKGTS, MASK_VALUE)
    probs = jax.nn.softmax(scores_BKGTS, axis=-1)
    # V first: XLA:CPU then emits P[G*T, S] @ V[S, hd] per (b, k), a fused (YNNPACK) matmul; with
    # P first it emits the transposed V^T @ P^T on its general dot thunk, 5x slower at batch 32
    # (half the decode step at a 768-slot window).
    out_BTD = _out(lp, _mm("bkgts,bksh->btkgh", probs, v_win, w_first=not LEGACY_ATTENTION))

    attn_m = None
    if want_metrics:  # the current (last) query position only
        scores_BHS = scores_BKGTS[:, :, :, -1, :].reshape(B, cfg.n_heads, window)
        attn_m = metrics_lib.attention_metrics(scores_BHS, valid_BTS[:, -1, :])
    return out_BTD, k_cache, v_cache, attn_m


_ACT = {"silu": jax.nn.silu, "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
        "gelu": functools.partial(jax.nn.gelu, approximate=False)}


def _mlp(lp: LayerParams, cfg: ModelConfig, x_BTD: Array) -> Array:
    """Gated MLP: down(act(x W_gate) * (x W_up)); SwiGLU for silu, GeGLU for the gelus."""
    gu_BTCF = _mm("btd,dcf->btcf", x_BTD, lp.w_gate_up_D2F)
    h_BTF = _ACT[cfg.hidden_act](gu_BTCF[:, :, 0]) * gu_BTCF[:, :, 1]
    return _mm("btf,fd->btd", h_BTF, lp.w_down_FD)


def _embed(params: Params, cfg: ModelConfig, tokens_BT: Array) -> Array:
    """Token embeddings, float32; Gemma scales them by sqrt(hidden), the constant rounded to the
    weight dtype first (as transformers' Gemma3TextScaledWordEmbedding does)."""
    x_BTD = params.embed_VD[tokens_BT].astype(jnp.float32)
    if cfg.embed_scale is not None:
        x_BTD = x_BTD * jnp.asarray(cfg.embed_scale, params.dtype).astype(jnp.float32)
    return x_BTD


def _layers(params: Params, cfg: ModelConfig, x_BTD: Array, attend) -> Array:
    """The residual stack. `attend(i, layer, h_BTD) -> a_BTD` is layer i's attention over its
    normed input; it owns whatever cache it reads and writes (the decode cache, a look-ahead's).
    Gemma also norms the attention and MLP outputs before adding them (`post_norms`)."""
    eps, plus_one = cfg.norm_eps, cfg.norm_plus_one
    for i, lp in enumerate(params.layers):
        attn_BTD = attend(i, lp, rms_norm(x_BTD, lp.attn_norm_D, eps, plus_one))
        if lp.post_attn_norm_D is not None:
            attn_BTD = rms_norm(attn_BTD, lp.post_attn_norm_D, eps, plus_one)
        x_BTD = x_BTD + attn_BTD
        mlp_BTD = _mlp(lp, cfg, rms_norm(x_BTD, lp.mlp_norm_D, eps, plus_one))
        if lp.post_mlp_norm_D is not None:
            mlp_BTD = rms_norm(mlp_BTD, lp.post_mlp_norm_D, eps, plus_one)
        x_BTD = x_BTD + mlp_BTD
    return x_BTD


def _logits(params: Params, cfg: ModelConfig, x_BTD: Array) -> Array:
    """Final norm and LM head (tied to the embedding when `lm_head_VD` is None), float32, soft-capped
    when the config says so."""
    head_VD = params.embed_VD if params.lm_head_VD is None else params.lm_head_VD
    x_BTD = rms_norm(x_BTD, params.final_norm_D, cfg.norm_eps, cfg.norm_plus_one)
    return softcap(_mm("btd,vd->btv", x_BTD, head_VD), cfg.final_softcap)


def _layer_masks(cfg: ModelConfig, valid_BS: Array, valid_BTS: Array, slot0: Array, T: int) -> dict:
    """{layer window: attention mask [B, T, S]}; None (global layers) maps to `valid_BTS` itself.

    A local layer with window W lets a query see a key when the key is one of the query's last W
    real tokens (itself included): with c_s = number of valid slots in [0, s], the distance
    c_query - c_key < W. This is transformers' `kv_idx > q_idx - sliding_window` on an unpadded
    sequence, and it counts real tokens only, so left padding and slots forgotten by
    `KVCache.invalidate` do not eat into the window. Built only for configs with local layers.
    """
    masks = {None: valid_BTS}
    if not cfg.has_local_layers:
        return masks
    count_BS = jnp.cumsum(valid_BS, axis=1, dtype=jnp.int32)
    count_query_BT = jax.lax.dynamic_slice_in_dim(count_BS, slot0, T, axis=1)
    distance_BTS = count_query_BT[:, :, None] - count_BS[:, None, :]
    for span in sorted({span for span in cfg.sliding_windows if span is not None}):
        masks[span] = valid_BTS & (distance_BTS < span)
    return masks


def forward(
    params: Params,
    cfg: ModelConfig,
    tokens_BT: Array,
    cache: KVCache,
    *,
    window: int,
    token_valid_BT: Array | None = None,
    metric_layers: Sequence[int] = (),
    last_only: bool = False,
):
    """Run T new tokens per row through the model, appending them to the cache.

    Writes slots `[cache.length, cache.length + T)`; requires `cache.length + T <= window <= max_len`.
    `token_valid_BT` marks real tokens (False: left padding, or a finished row's filler); invalid
    tokens are never attended to and do not advance the row's RoPE position.
    Returns `(logits, cache, attn_metrics)`: logits float32 `[B, T, V]` (or `[B, V]` for the last
    position when `last_only`), the updated cache, and the attention metrics of the last query
    position averaged over `metric_layers` (None when empty).
    """
    B, T = tokens_BT.shape
    if token_valid_BT is None:
        token_valid_BT = jnp.ones((B, T), bool)
    slot0 = cache.length
    slots_T = slot0 + jnp.arange(T, dtype=jnp.int32)
    pos_BT = cache.pos_B[:, None] + jnp.maximum(jnp.cumsum(token_valid_BT, axis=1, dtype=jnp.int32) - 1, 0)
    valid_BS = jax.lax.dynamic_update_slice(cache.valid_BS, token_valid_BT, (0, slot0))
    key_S = jnp.arange(window, dtype=jnp.int32)
    # A query attends to its row's real tokens that are not in its future.
    valid_BTS = valid_BS[:, None, :window] & (key_S[None, None, :] <= slots_T[None, :, None])
    masks = _layer_masks(cfg, valid_BS[:, :window], valid_BTS, slot0, T)

    ks, vs, layer_metrics = list(cache.k), list(cache.v), []
    metric_layers = {i % cfg.n_layers for i in metric_layers}

    def attend(i: int, lp: LayerParams, h_BTD: Array) -> Array:
        span = cfg.layer_window(i)
        a, ks[i], vs[i], m = _attention(lp, cfg, h_BTD, pos_BT, ks[i], vs[i], masks[span], slot0, window,
                                        i in metric_layers, local=span is not None)
        if m is not None:
            layer_metrics.append(m)
        return a

    x_BTD = _layers(params, cfg, _embed(params, cfg, tokens_BT), attend)
    if last_only:
        x_BTD = x_BTD[:, -1:]
    logits = _logits(params, cfg, x_BTD)
    if last_only:
        logits = logits[:, 0]
    new_cache = cache.replace(
        k=tuple(ks), v=tuple(vs), valid_BS=valid_BS, pos_B=cache.pos_B + token_valid_BT.sum(1, dtype=jnp.int32), length=slot0 + T
    )
    attn_m = metrics_lib.combine_layers(layer_metrics) if layer_metrics else None
    return logits, new_cache, attn_m


@struct.dataclass
class SuffixCache:
    """K/V of look-ahead tokens, per layer `[B, N, K, D, hd]`: N paths per row of up to D tokens
    each, continuing the row's decode cache, which they read but never write (no copy of it)."""

    k: tuple[Array, ...]
    v: tuple[Array, ...]

    @classmethod
    def init(cls, cfg: ModelConfig, batch: int, paths: int, depth: int, dtype) -> "SuffixCache":
        shape = (batch, paths, cfg.n_kv_heads, depth, cfg.head_dim)
        return cls(k=tuple(jnp.zeros(shape, dtype) for _ in range(cfg.n_layers)),
                   v=tuple(jnp.zeros(shape, dtype) for _ in range(cfg.n_layers)))


def forward_paths(params: Params, cfg: ModelConfig, tokens_BN: Array, cache: KVCache, suffix: SuffixCache,
                  j: int, *, window: int) -> tuple[Array, SuffixCache]:
    """Token j of each of a row's N look-ahead paths: it attends to the row's cache (its first
    `window` slots, read once for all N paths) and to its own path's tokens 0..j (the suffix),
    at RoPE position `cache.pos_B + j`, exactly where decoding the path would put it.

    One softmax over both key sets (their scores are concatenated; keys and values are not), so
    the attention equals that of the same token appended to the cache. Writes suffix slot j;
    returns float32 logits `[B, N, V]`. Branch roll-outs and probes both run on this.

    A local (sliding-window) layer sees, as in `forward`, the keys fewer than W real tokens back:
    the path token is real token number c + j + 1 of its row (c = the row's valid slots), so a
    prefix key with count c_s is c + j + 1 - c_s tokens back and its own token d is j - d back.
    """
    B, N = tokens_BN.shape
    pos_BN = jnp.broadcast_to(cache.pos_B[:, None] + j, (B, N))
    prefix_valid_BS = cache.valid_BS[:, :window]
    depth = suffix.k[0].shape[3]
    own_D = jnp.arange(depth) <= j
    prefix_masks, own_masks = {None: prefix_valid_BS}, {None: own_D}
    if cfg.has_local_layers:
        count_BS = jnp.cumsum(prefix_valid_BS, axis=1, dtype=jnp.int32)
        back_BS = cache.valid_BS.sum(1, dtype=jnp.int32)[:, None] + j + 1 - count_BS
        back_D = j - jnp.arange(depth)
        for span in sorted({span for span in cfg.sliding_windows if span is not None}):
            prefix_masks[span] = prefix_valid_BS & (back_BS < span)
            own_masks[span] = own_D & (back_D < span)
    ks, vs = list(suffix.k), list(suffix.v)

    def attend(i: int, lp: LayerParams, h_BND: Array) -> Array:
        span = cfg.layer_window(i)
        prefix_valid_BS, own_D = prefix_masks[span], own_masks[span]
        q_BNKGH, k_BNKH, v_BNKH = _qkv(lp, cfg, h_BND, pos_BN, local=span is not None)
        ks[i] = ks[i].at[:, :, :, j].set(k_BNKH.astype(ks[i].dtype))
        vs[i] = vs[i].at[:, :, :, j].set(v_BNKH.astype(vs[i].dtype))
        k_win, v_win = cache.k[i][:, :, :window], cache.v[i][:, :, :window]
        pre_BKGNS = jnp.where(prefix_valid_BS[:, None, None, None], _mm("bnkgh,bksh->bkgns", q_BNKGH, k_win), MASK_VALUE)
        own_BKGND = jnp.where(own_D, _mm("bnkgh,bnkdh->bkgnd", q_BNKGH, ks[i]), MASK_VALUE)
        probs = jax.nn.softmax(jnp.concatenate([pre_BKGNS, own_BKGND], axis=-1), axis=-1)
        out_BNKGH = (_mm("bkgns,bksh->bnkgh", probs[..., :window], v_win, w_first=True)
                     + _mm("bkgnd,bnkdh->bnkgh", probs[..., window:], vs[i], w_first=True))
        return _out(lp, out_BNKGH)

    x_BND = _layers(params, cfg, _embed(params, cfg, tokens_BN), attend)
    return _logits(params, cfg, x_BND), SuffixCache(k=tuple(ks), v=tuple(vs))


@functools.partial(jax.jit, static_argnames=("cfg",))
def score_logits(params: Params, cfg: ModelConfig, tokens_BT: Array, token_valid_BT: Array) -> Array:
    """Full-sequence logits [B, T, V] (no cache kept): used by `score` and parity tests."""
    B, T = tokens_BT.shape
    cache = KVCache.init(cfg, B, T, params.dtype)
    logits, _, _ = forward(params, cfg, tokens_BT, cache, window=T, token_valid_BT=token_valid_BT)
    return logits
