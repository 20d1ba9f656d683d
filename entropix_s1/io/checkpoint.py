"""Hugging Face checkpoint directory -> (ModelConfig, Params).

We read safetensors ourselves (8-byte header length, JSON header, raw little-endian data) rather
than through a framework so that every failure names the file and the problem: a truncated file,
a corrupt header, a missing tensor, or a tensor whose shape disagrees with `config.json`.
Tensors are memory-mapped and converted layer by layer, so peak host memory stays near one copy.
"""

from __future__ import annotations

import hashlib
import json
import struct as pystruct
from pathlib import Path
from typing import Callable

import jax.numpy as jnp
import ml_dtypes
import numpy as np

from entropix_s1.core.config import ModelConfig
from entropix_s1.errors import CheckpointError
from entropix_s1.core.model import LayerParams, Params


def sha256_files(paths, *, with_names: bool = False) -> str:
    """sha256 over the files' bytes in the given order (each prefixed by its name and a NUL when
    `with_names`), read in 16 MiB chunks. One digest routine for adapters, data files and weights."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        if with_names:
            h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()


_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_MAX_HEADER = 100 * 1024 * 1024


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Memory-map every tensor of one .safetensors file, validating header and byte ranges."""
    if not path.is_file():
        raise CheckpointError(f"missing weights file: {path}")
    size = path.stat().st_size
    if size < 8:
        raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
    with open(path, "rb") as f:
        (n,) = pystruct.unpack("<Q", f.read(8))
        if n > _MAX_HEADER or 8 + n > size:
            raise CheckpointError(f"{path}: corrupt or truncated safetensors header (claims {n} bytes, file has {size})")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: corrupt safetensors header: {e}") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    header.pop("__metadata__", None)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + n
    out = {}
    for name, info in header.items():
        try:
            dt = np.dtype(_DTYPES[info["dtype"]])
            shape = tuple(info["shape"])
            lo, hi = info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: corrupt header entry for tensor {name!r}: {info!r}") from e
        if base + hi > size:
            raise CheckpointError(
                f"{path}: truncated: tensor {name!r} needs bytes up to {base + hi}, file has {size}"
            )
        if hi - lo != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise CheckpointError(f"{path}: tensor {name!r} byte range {hi - lo} does not match shape {shape} {dt}")
        out[name] = mm[base + lo : base + hi].view(dt).reshape(shape)
    return out


def read_checkpoint_tensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of a checkpoint dir: single `model.safetensors` or a sharded index."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {path}")
    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    if single.is_file():
        return read_safetensors(single)
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index}: corrupt sharded index: {e}") from e
        tensors: dict[str, np.ndarray] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(read_safetensors(path / shard))
        missing = [k for k in weight_map if k not in tensors]
        if missing:
            raise CheckpointError(f"{index}: tensors listed but not found in shards: {missing[:5]}")
        return tensors
    raise CheckpointError(f"no model.safetensors or model.safetensors.index.json in {path}")


def _getter(tensors: dict[str, np.ndarray], dtype) -> Callable[..., jnp.ndarray]:
    def get(name: str, shape: tuple[int, ...], transform=None):
        if name not in tensors:
            raise CheckpointError(f"checkpoint lacks tensor {name!r}")
        a = tensors[name]
        if a.shape != shape:
            raise CheckpointError(f"tensor {name!r} has shape {a.shape}, config.json implies {shape}")
        a = np.asarray(a, dtype=np.float32)
        if transform is not None:
            a = transform(a)
        return jnp.asarray(a.astype(dtype))

    return get


def params_from_tensors(tensors: dict[str, np.ndarray], cfg: ModelConfig, dtype=jnp.float32) -> Params:
    """Map HF tensor names/layouts (torch Linear is [out, in]) to our fused, einsum-ready layout."""
    np_dtype = ml_dtypes.bfloat16 if jnp.dtype(dtype) == jnp.bfloat16 else np.dtype(dtype)
    get = _getter(tensors, np_dtype)
    D, H, K, hd, F, V = cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim, cfg.vocab_size

    G = H // K

    def t_heads(n):  # torch [n*hd, D] -> [D, n, hd]
        return lambda a: a.T.reshape(D, n, hd)

    def grouped(q, k, v):  # [.., H, hd], [.., K, hd] x2 -> [.., K, G + 2, hd]
        q = q.reshape(*q.shape[:-2], K, G, hd)
        return jnp.concatenate([q, k[..., None, :], v[..., None, :]], axis=-2)

    layers = []
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        q = get(p + "self_attn.q_proj.weight", (H * hd, D), t_heads(H))
        k = get(p + "self_attn.k_proj.weight", (K * hd, D), t_heads(K))
        v = get(p + "self_attn.v_proj.weight", (K * hd, D), t_heads(K))
        bias = None
        if cfg.qkv_bias:
            bias = grouped(
                get(p + "self_attn.q_proj.bias", (H * hd,), lambda a: a.reshape(H, hd)),
                get(p + "self_attn.k_proj.bias", (K * hd,), lambda a: a.reshape(K, hd)),
                get(p + "self_attn.v_proj.bias", (K * hd,), lambda a: a.reshape(K, hd)),
            )
        qn = kn = None
        if cfg.qk_norm:
            qn = get(p + "self_attn.q_norm.weight", (hd,))
            kn = get(p + "self_attn.k_norm.weight", (hd,))
        gate = get(p + "mlp.gate_proj.weight", (F, D), lambda a: a.T)
        up = get(p + "mlp.up_proj.weight", (F, D), lambda a: a.T)
        if cfg.post_norms:  # Gemma: post_attention_layernorm is the norm ON the attention output
            mlp_norm = get(p + "pre_feedforward_layernorm.weight", (D,))
            post_attn = get(p + "post_attention_layernorm.weight", (D,))
            post_mlp = get(p + "post_feedforward_layernorm.weight", (D,))
        else:  # Llama: post_attention_layernorm is the norm before the MLP
            mlp_norm, post_attn, post_mlp = get(p + "post_attention_layernorm.weight", (D,)), None, None
        layers.append(
            LayerParams(
                attn_norm_D=get(p + "input_layernorm.weight", (D,)),
                wqkv_DKCH=grouped(q, k, v),
                bqkv_KCH=bias,
                q_norm_H=qn,
                k_norm_H=kn,
                wo_KGHD=get(p + "self_attn.o_proj.weight", (D, H * hd), lambda a: a.T.reshape(K, G, hd, D)),
                mlp_norm_D=mlp_norm,
                w_gate_up_D2F=jnp.stack([gate, up], axis=1),
                w_down_FD=get(p + "mlp.down_proj.weight", (D, F), lambda a: a.T),
                post_attn_norm_D=post_attn,
                post_mlp_norm_D=post_mlp,
            )
        )
    lm_head = None
    if not cfg.tie_embeddings:
        lm_head = get("lm_head.weight", (V, D))
    return Params(
        embed_VD=get("model.embed_tokens.weight", (V, D)),
        layers=tuple(layers),
        final_norm_D=get("model.norm.weight", (D,)),
        lm_head_VD=lm_head,
    )


def load_checkpoint(path: str | Path, dtype=jnp.float32) -> tuple[ModelConfig, Params]:
    """Config and params of an HF checkpoint dir; weights cast to `dtype` (float32 or bfloat16)."""
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        raise CheckpointError(f"unsupported weight dtype {dtype}; use float32 or bfloat16")
    cfg = ModelConfig.from_dir(path)
    return cfg, params_from_tensors(read_checkpoint_tensors(Path(path)), cfg, dtype)
