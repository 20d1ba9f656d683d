"""LoRA adapters over our fused weight layout: init, merge, save/load, and merged checkpoints.

A LoRA delta on a target weight W is `(alpha / rank) * A @ B` with `A: [in, rank]`, `B: [rank, out]`,
reshaped to W's shape. `in`/`out` follow our einsum layouts (see `model.LayerParams`):

| target    | field          | W shape          | in          | out             |
|-----------|----------------|------------------|-------------|-----------------|
| `wqkv`    | `wqkv_DKCH`    | [D, K, G+2, hd]  | D           | K*(G+2)*hd      |
| `wo`      | `wo_KGHD`      | [K, G, hd, D]    | K*G*hd      | D               |
| `gate_up` | `w_gate_up_D2F`| [D, 2, F]        | D           | 2*F             |
| `down`    | `w_down_FD`    | [F, D]           | F           | D               |

One `wqkv` adapter covers q, k and v of a layer (a rank-r update of the fused projection, the way
`c_attn` LoRA works for GPT-2); the HF export splits the delta back into q_proj/k_proj/v_proj.

`A` starts random (std 1/sqrt(in)) and `B` at zero, so a fresh adapter is the base model exactly.

On disk an adapter is a directory with `adapter.safetensors` (float32 or float16 tensors
`layers.{i}.{target}.lora_a` / `.lora_b`) and `adapter_config.json` (base model, rank, alpha, targets
and whatever training metadata the trainer adds). `merged_checkpoint` writes base + adapter as a
plain Hugging Face-layout directory, which every loader of this project (and transformers) reads;
a `"budget"` entry in the adapter's metadata (the thinking delimiters it was trained on, see
`sft.THINK_BUDGET`) becomes the merged dir's `entropix_s1.json`, i.e. the model's `default_budget`.

Which base an adapter directory goes with (a catalog name or a path) is resolved by
`entropix_s1.io.resolve.adapter_dir_checkpoint`, so this module never imports the catalog.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from entropix_s1.core.config import ModelConfig
from entropix_s1.core.model import Params
from entropix_s1.errors import CheckpointError
from entropix_s1.io.checkpoint import read_checkpoint_tensors, read_safetensors, sha256_files
from entropix_s1.io.home import locked, weights_home

__all__ = [
    "TARGETS",
    "LoraConfig",
    "init_lora",
    "merge",
    "lora_delta",
    "save_adapter",
    "load_adapter",
    "adapter_digest",
    "merge_hf_tensors",
    "merged_checkpoint",
    "find_adapter",
    "adapted_checkpoint",
    "is_adapter_dir",
    "adapter_base",
    "merge_locked",
]

TARGETS = ("wqkv", "wo", "gate_up", "down")
_FIELD = {"wqkv": "wqkv_DKCH", "wo": "wo_KGHD", "gate_up": "w_gate_up_D2F", "down": "w_down_FD"}
ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter_config.json"

LoraParams = dict[str, dict[str, jax.Array]]  # "layers.{i}.{target}" -> {"a": [in, r], "b": [r, out]}


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("wqkv", "wo")

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        bad = [t for t in self.targets if t not in TARGETS]
        if bad or not self.targets:
            raise CheckpointError(f"LoRA targets must be a non-empty subset of {TARGETS}, got {self.targets}")
        if self.rank < 1:
            raise CheckpointError(f"LoRA rank must be >= 1, got {self.rank}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def target_dims(cfg: ModelConfig, target: str) -> tuple[int, int, tuple[int, ...]]:
    """(in, out, full weight shape) of one target in our layout."""
    D, K, G, hd, F = cfg.dim, cfg.n_kv_heads, cfg.q_per_kv, cfg.head_dim, cfg.ffn_dim
    if target == "wqkv":
        return D, K * (G + 2) * hd, (D, K, G + 2, hd)
    if target == "wo":
        return K * G * hd, D, (K, G, hd, D)
    if target == "gate_up":
        return D, 2 * F, (D, 2, F)
    if target == "down":
        return F, D, (F, D)
    raise CheckpointError(f"unknown LoRA target {target!r}")


def _key(i: int, target: str) -> str:
    return f"layers.{i}.{target}"


def init_lora(cfg: ModelConfig, lcfg: LoraConfig, key: jax.Array) -> LoraParams:
    """A fresh adapter (float32): A ~ N(0, 1/in), B = 0, so the merged model equals the base."""
    out: LoraParams = {}
    for i in range(cfg.n_layers):
        for t in lcfg.targets:
            key, sub = jax.random.split(key)
            n_in, n_out, _ = target_dims(cfg, t)
            out[_key(i, t)] = {
                "a": jax.random.normal(sub, (n_in, lcfg.rank), jnp.float32) / np.sqrt(n_in),
                "b": jnp.zeros((lcfg.rank, n_out), jnp.float32),
            }
    return out


def lora_delta(ab: Mapping[str, jax.Array], scale: float, shape: tuple[int, ...]) -> jax.Array:
    """`scale * A @ B` in float32, reshaped to the target weight's shape."""
    return (scale * (ab["a"].astype(jnp.float32) @ ab["b"].astype(jnp.float32))).reshape(shape)


def merge(params: Params, lora: LoraParams, lcfg: LoraConfig, cfg: ModelConfig, dtype=None) -> Params:
    """Base params with every adapted weight replaced by `W + scale * A @ B` (differentiable in `lora`).

    dtype: dtype of the merged weights (default: the base's). Training keeps float32 here: a small
    delta added to a bfloat16 weight would be rounded away.
    """
    layers = []
    for i, lp in enumerate(params.layers):
        upd = {}
        for t in lcfg.targets:
            field = _FIELD[t]
            w = getattr(lp, field)
            merged = w.astype(jnp.float32) + lora_delta(lora[_key(i, t)], lcfg.scale, w.shape)
            upd[field] = merged.astype(dtype or w.dtype)
        layers.append(lp.replace(**upd))
    return params.replace(layers=tuple(layers))


# ------------------------------------------------------------------------------------- files
SAVE_DTYPES = ("float32", "float16")


def save_adapter(out_dir: str | os.PathLike, lora: LoraParams, lcfg: LoraConfig, meta: Mapping[str, Any] | None = None,
                 dtype: str = "float32") -> Path:
    """Write `adapter.safetensors` + `adapter_config.json` into `out_dir` (atomically, file by file).

    dtype "float16" halves the file (for committing it) at a relative rounding of ~5e-4 per factor;
    loading always gives float32, and the merge adds the delta in float32.
    """
    from safetensors.numpy import save_file

    if dtype not in SAVE_DTYPES:
        raise ValueError(f"adapter dtype must be one of {SAVE_DTYPES}, got {dtype!r}")
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k in sorted(lora):
        for part, name in (("a", "lora_a"), ("b", "lora_b")):
            x = np.asarray(lora[k][part], np.float32)
            if dtype == "float16" and np.abs(x).max(initial=0.0) > np.finfo(np.float16).max:
                raise ValueError(f"{k}.{name} exceeds the float16 range; save the adapter as float32")
            tensors[f"{k}.{name}"] = np.ascontiguousarray(x.astype(dtype))
    tmp = d / (ADAPTER_FILE + ".tmp")
    save_file(tensors, str(tmp))
    os.chmod(tmp, 0o644)  # safetensors creates the file owner-only
    os.replace(tmp, d / ADAPTER_FILE)
    config = {"rank": lcfg.rank, "alpha": lcfg.alpha, "targets": list(lcfg.targets), **dict(meta or {}), "dtype": dtype}
    config["adapter_sha256"] = adapter_digest(d)
    tmp = d / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, d / CONFIG_FILE)
    return d


def adapter_digest(adapter_dir: str | os.PathLike) -> str:
    return sha256_files([Path(adapter_dir) / ADAPTER_FILE])


def load_adapter(adapter_dir: str | os.PathLike) -> tuple[LoraParams, LoraConfig, dict[str, Any]]:
    """(lora params as jax arrays, LoraConfig, the full JSON config)."""
    d = Path(adapter_dir)
    cfg_file = d / CONFIG_FILE
    if not cfg_file.is_file():
        raise CheckpointError(f"{d}: no {CONFIG_FILE} (not a LoRA adapter directory)")
    try:
        meta = json.loads(cfg_file.read_text())
        lcfg = LoraConfig(rank=int(meta["rank"]), alpha=float(meta["alpha"]), targets=tuple(meta["targets"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_file}: bad adapter config: {e}") from e
    tensors = read_safetensors(d / ADAPTER_FILE)
    lora: LoraParams = {}
    for name, arr in tensors.items():
        if not name.endswith((".lora_a", ".lora_b")):
            raise CheckpointError(f"{d / ADAPTER_FILE}: unexpected tensor {name!r}")
        key, part = name.rsplit(".", 1)
        lora.setdefault(key, {})["a" if part == "lora_a" else "b"] = jnp.asarray(np.array(arr, np.float32))
    for k, ab in lora.items():
        if set(ab) != {"a", "b"}:
            raise CheckpointError(f"{d / ADAPTER_FILE}: {k} lacks lora_a or lora_b")
        if ab["a"].shape[1] != lcfg.rank or ab["b"].shape[0] != lcfg.rank:
            raise CheckpointError(f"{d / ADAPTER_FILE}: {k} has rank {ab['a'].shape[1]}, config says {lcfg.rank}")
    return lora, lcfg, meta


def _check_against(lora: LoraParams, lcfg: LoraConfig, cfg: ModelConfig) -> None:
    want = {_key(i, t) for i in range(cfg.n_layers) for t in lcfg.targets}
    if set(lora) != want:
        missing, extra = sorted(want - set(lora))[:3], sorted(set(lora) - want)[:3]
        raise CheckpointError(f"adapter does not fit this model: missing {missing}, unexpected {extra}")
    for i in range(cfg.n_layers):
        for t in lcfg.targets:
            n_in, n_out, _ = target_dims(cfg, t)
            ab = lora[_key(i, t)]
            if ab["a"].shape != (n_in, lcfg.rank) or ab["b"].shape != (lcfg.rank, n_out):
                raise CheckpointError(
                    f"adapter {_key(i, t)}: shapes {ab['a'].shape}, {ab['b'].shape} do not fit "
                    f"({n_in}, {lcfg.rank}), ({lcfg.rank}, {n_out})")


def merge_hf_tensors(tensors: Mapping[str, np.ndarray], cfg: ModelConfig, lora: LoraParams,
                     lcfg: LoraConfig) -> dict[str, np.ndarray]:
    """HF-named tensors (torch `[out, in]` Linear layout) with the adapter's deltas added, float32.

    The inverse of `checkpoint.params_from_tensors` for the adapted weights: our `[D, K, G+2, hd]`
    delta splits into q `[D, K, G, hd]` (-> `[H*hd, D]`), k and v `[D, K, hd]` (-> `[K*hd, D]`).
    Untouched tensors are passed through as they are.
    """
    _check_against(lora, cfg=cfg, lcfg=lcfg)
    D, K, G, hd, F = cfg.dim, cfg.n_kv_heads, cfg.q_per_kv, cfg.head_dim, cfg.ffn_dim
    out = dict(tensors)

    def add(name: str, delta_torch: np.ndarray) -> None:
        if name not in tensors:
            raise CheckpointError(f"base checkpoint lacks tensor {name!r}")
        out[name] = (np.asarray(tensors[name], np.float32) + delta_torch).astype(np.float32)

    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        for t in lcfg.targets:
            _, _, shape = target_dims(cfg, t)
            d = np.asarray(lora_delta(lora[_key(i, t)], lcfg.scale, shape), np.float32)
            if t == "wqkv":
                add(p + "self_attn.q_proj.weight", d[:, :, :G].reshape(D, K * G * hd).T)
                add(p + "self_attn.k_proj.weight", d[:, :, G].reshape(D, K * hd).T)
                add(p + "self_attn.v_proj.weight", d[:, :, G + 1].reshape(D, K * hd).T)
            elif t == "wo":
                add(p + "self_attn.o_proj.weight", d.reshape(K * G * hd, D).T)
            elif t == "gate_up":
                add(p + "mlp.gate_proj.weight", d[:, 0].T)
                add(p + "mlp.up_proj.weight", d[:, 1].T)
            else:
                add(p + "mlp.down_proj.weight", d.T)
    return out


_COPY = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
         "special_tokens_map.json")


def merged_checkpoint(base_dir: str | os.PathLike, adapter_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write base + adapter as an HF-layout dir at `out_dir` (config and tokenizer copied from the base).

    Idempotent: an existing `out_dir` made from the same adapter file (its sha256 is recorded in
    `out_dir/adapter_config.json`) is returned as is; a stale one is rebuilt. The directory appears
    by an atomic rename, so concurrent callers never see half of it.
    """
    from safetensors.numpy import save_file

    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    digest = adapter_digest(adapter_dir)
    marker = out_dir / CONFIG_FILE
    if marker.is_file() and (out_dir / "model.safetensors").is_file():
        try:
            if json.loads(marker.read_text()).get("adapter_sha256") == digest:
                return out_dir
        except json.JSONDecodeError:
            pass
    lora, lcfg, meta = load_adapter(adapter_dir)
    cfg = ModelConfig.from_dir(base_dir)
    merged = merge_hf_tensors(read_checkpoint_tensors(base_dir), cfg, lora, lcfg)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.merge-", dir=out_dir.parent) as tmp:
        stage = Path(tmp) / "model"
        stage.mkdir()
        save_file({k: np.ascontiguousarray(v) for k, v in merged.items()}, str(stage / "model.safetensors"),
                  metadata={"format": "pt"})
        for name in _COPY:
            if (base_dir / name).is_file():
                shutil.copy2(base_dir / name, stage / name)
        (stage / CONFIG_FILE).write_text(json.dumps({**meta, "adapter_sha256": digest,
                                                     "base_dir": str(base_dir)}, indent=2) + "\n")
        if "budget" in meta:  # the delimiters the adapter was trained on -> Model.default_budget
            (stage / "entropix_s1.json").write_text(json.dumps({"budget": meta["budget"]}, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(stage, out_dir)
    return out_dir


def find_adapter(adapter: str) -> Path:
    """A committed adapter dir by name: `<weights home>/<adapter>/`, else the source checkout's
    `weights/<adapter>/` (when $ENTROPIX_S1_HOME points elsewhere)."""
    for d in (weights_home() / adapter, Path(__file__).resolve().parents[2] / "weights" / adapter):
        if (d / ADAPTER_FILE).is_file() and (d / CONFIG_FILE).is_file():
            return d
    raise CheckpointError(f"LoRA adapter {adapter!r} not found (looked for {ADAPTER_FILE} in "
                          f"{weights_home() / adapter} and the source checkout's weights/)")


def merge_locked(base_dir: str | os.PathLike, adapter_dir: Path, out: Path) -> Path:
    """`merged_checkpoint` under a lock in `out`'s parent, so parallel processes merge once."""
    with locked(out.parent, out.name):
        return merged_checkpoint(base_dir, adapter_dir, out)


def adapted_checkpoint(name: str, base_dir: str | os.PathLike, adapter: str) -> Path:
    """The merged checkpoint dir of a fine-tuned catalog model (`catalog.ADAPTED`), written on first
    use (and again whenever the adapter file changes) at `<weights home>/<name>-merged/`."""
    return merge_locked(base_dir, find_adapter(adapter), weights_home() / f"{name}-merged")


def is_adapter_dir(path: str | os.PathLike) -> bool:
    """An adapter directory as `sft --out` writes it (a checkpoint's own config.json wins)."""
    p = Path(path)
    return (p / ADAPTER_FILE).is_file() and (p / CONFIG_FILE).is_file() and not (p / "config.json").is_file()


def adapter_base(adapter_dir: str | os.PathLike) -> str:
    """The adapter config's `base_model`: a catalog name or a checkpoint path, as given to `sft --model`."""
    adapter_dir = Path(adapter_dir)
    try:
        return json.loads((adapter_dir / CONFIG_FILE).read_text(encoding="utf-8"))["base_model"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"LoRA adapter {adapter_dir}: {CONFIG_FILE} has no readable base_model ({e})") from e
