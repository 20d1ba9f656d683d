"""Scale out: the same jitted decode loop over a ("dp", "tp") device mesh (GSPMD).

We do not write collectives. Parameters get `NamedSharding`s, the decode loop's state gets a few
`with_sharding_constraint`s, and XLA's SPMD partitioner (GSPMD) splits the one compiled program
and inserts the all-reduces / all-gathers. The loop is unchanged and still one program.

Mesh axes:
- "tp" (tensor parallel) splits the model: attention over KV heads K (each device owns whole GQA
  groups: its K/tp KV heads and their G query heads, so attention needs no communication; one
  all-reduce after `wo`), the MLP over its hidden size F (gate/up on F, down on F; one all-reduce),
  the embedding and LM head over the vocabulary V (logits are vocab-sharded; entropy, argmax and
  the samplers' reductions over V become cross-device reductions). Norms are replicated.
- "dp" (data parallel) splits the batch: prompt rows, the KV cache and the loop state. Parameters
  are replicated over dp.

The KV cache `[B, K, S, hd]` is sharded `("dp", "tp", None, None)`.

What must divide what (checked before any weight is read, errors name the dimension):
- n_kv_heads % tp == 0, or tp % n_kv_heads == 0 and the query heads per KV head split evenly
  (then each KV head is replicated tp / n_kv_heads times: see `replicate_kv_heads`);
- intermediate_size (F) % tp == 0;
- vocab_size % tp == 0 for vocab-sharded embeddings; otherwise they are sharded over hidden_size
  when that divides, else replicated (correct either way, only less memory-efficient);
- batch % dp: need not divide. GSPMD pads the last shard internally (a 3-row batch on dp=2 runs
  as 2 + 1 rows); results are the same as on one device.

Gemma 3 (270M and 1B: 4 query heads sharing ONE KV head; 4B: 8/4, 12B: 16/8, 27B: 32/16): with
n_kv_heads = 1 the KV head cannot be split, so tp replicates it tp times and gives each device
4/tp of the query heads: tp = 2 or 4 (tp = 8 would need half a query head per device and is
refused, naming the sizes; use dp for the other devices, e.g. "2x4"). Each device then holds the
whole (single-head) KV cache of its copy -- the cache costs tp x its size in total, the same
per device as unsharded -- and attention needs no communication; the MLP (F = 2048 / 6912)
splits over tp, and the 262k-row embedding, tied to the LM head, over the vocabulary. The extra
sandwich norms are replicated like the others. Sliding-window (local) layers need nothing more:
their window mask is built from the row-local `valid_BS`, which is sharded over dp only.

How the mesh reaches the compiled loop: `Model(..., mesh=...)` replaces the model's config by a
`ShardedConfig` (a `ModelConfig` that also carries the mesh). The config is already a static jit
argument of the loop, so the mesh is part of the compiled program's cache key, and `decode._init`
calls `constrain` (a no-op for a plain `ModelConfig`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import Any, Iterator, Sequence, Union

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from entropix_s1.core.config import ModelConfig
from entropix_s1.errors import ConfigError
from entropix_s1.core.model import KVCache, LayerParams, Params

AXES = ("dp", "tp")
MeshLike = Union[str, Sequence[int], Mesh]
_U = P.UNCONSTRAINED


@dataclasses.dataclass(frozen=True)
class ShardedConfig(ModelConfig):
    """A `ModelConfig` that also says where the model lives. Hashable (a static jit argument).

    mesh: the ("dp", "tp") `Mesh`.
    kv_replicas: how many times each checkpoint KV head is repeated so tp divides the KV heads
        (1: none). `n_kv_heads` here is the effective count (checkpoint count * kv_replicas).
    embed_axis: how embed/lm_head are split over tp: "vocab", "hidden" or "replicated".
    """

    mesh: Mesh | None = None
    kv_replicas: int = 1
    embed_axis: str = "vocab"

    @property
    def dp(self) -> int:
        return int(self.mesh.shape["dp"])

    @property
    def tp(self) -> int:
        return int(self.mesh.shape["tp"])

    @property
    def base_config(self) -> ModelConfig:
        """The checkpoint's own config (before KV-head replication, without the mesh)."""
        names = [f.name for f in dataclasses.fields(ModelConfig)]
        kw = {n: getattr(self, n) for n in names}
        kw["n_kv_heads"] = self.n_kv_heads // self.kv_replicas
        return ModelConfig(**kw)


# --------------------------------------------------------------------------------------- meshes
def parse_mesh_shape(mesh: str | Sequence[int]) -> tuple[int, int]:
    """"2x4" / "2,4" / (2, 4) -> (dp, tp)."""
    if isinstance(mesh, str):
        m = re.fullmatch(r"\s*(\d+)\s*[x,*]\s*(\d+)\s*", mesh)
        if not m:
            raise ConfigError(f"mesh {mesh!r}: expected 'DPxTP', e.g. '1x8' (tensor parallel over 8 devices) "
                              "or '2x4' (2 data-parallel groups of 4)")
        shape = (int(m.group(1)), int(m.group(2)))
    else:
        try:
            shape = tuple(int(x) for x in mesh)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"mesh {mesh!r}: expected (dp, tp), a 'DPxTP' string or a jax.sharding.Mesh") from e
        if len(shape) != 2:
            raise ConfigError(f"mesh {mesh!r}: expected two sizes (dp, tp), got {len(shape)}")
    if min(shape) < 1:
        raise ConfigError(f"mesh {mesh!r}: dp and tp must be >= 1, got dp={shape[0]}, tp={shape[1]}")
    return shape  # type: ignore[return-value]


def make_mesh(mesh: MeshLike, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ("dp", "tp") mesh with GSPMD (Auto) axes.

    mesh: "DPxTP", (dp, tp) -- over the first dp*tp of `devices` (default `jax.devices()`, every
    process's devices in a multi-host run) -- or a `Mesh` whose axes are named "dp" and "tp".
    """
    if isinstance(mesh, Mesh):
        if tuple(mesh.axis_names) != AXES:
            raise ConfigError(f"mesh axes must be named {AXES} (in that order), got {tuple(mesh.axis_names)}")
        if all(t == AxisType.Auto for t in mesh.axis_types):
            return mesh
        return Mesh(mesh.devices, AXES, axis_types=(AxisType.Auto,) * 2)
    dp, tp = parse_mesh_shape(mesh)
    devs = list(jax.devices() if devices is None else devices)
    n = dp * tp
    if n > len(devs):
        raise ConfigError(f"mesh {dp}x{tp} needs {n} devices, only {len(devs)} available "
                          f"({devs[0].platform if devs else 'none'})")
    devs = devs[:n]
    try:  # a topology-aware layout where jax has one (GPU/TPU); tp innermost = closest devices
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh((dp, tp), devices=devs)
    except Exception:  # noqa: BLE001 - any layout of the same devices is correct
        grid = np.array(devs, dtype=object).reshape(dp, tp)
    return Mesh(grid, AXES, axis_types=(AxisType.Auto,) * 2)


# --------------------------------------------------------------------------------------- planning
def check_shape(cfg: ModelConfig, tp: int) -> tuple[int, str]:
    """Validate that `cfg` splits over `tp` devices; returns (kv_replicas, embed_axis).

    Raises ConfigError naming the dimension and the sizes when it does not."""
    K, H, F, V, D = cfg.n_kv_heads, cfg.n_heads, cfg.ffn_dim, cfg.vocab_size, cfg.dim
    G = H // K
    reps = 1
    if K % tp:
        if tp % K:
            raise ConfigError(
                f"cannot shard attention over tp={tp}: n_kv_heads (num_key_value_heads={K}) must be divisible "
                f"by tp, or tp a multiple of it (then KV heads are replicated); {K} KV heads, {H} query heads")
        reps = tp // K
        if G % reps:
            raise ConfigError(
                f"cannot shard attention over tp={tp}: replicating each of the n_kv_heads={K} KV heads {reps} times "
                f"needs its {G} query heads (num_attention_heads={H} / {K}) to split into {reps} equal groups")
    if F % tp:
        raise ConfigError(f"cannot shard the MLP over tp={tp}: ffn_dim (intermediate_size={F}) is not divisible by {tp}")
    embed = "vocab" if V % tp == 0 else "hidden" if D % tp == 0 else "replicated"
    return reps, embed


def plan(cfg: ModelConfig, mesh: MeshLike) -> ShardedConfig:
    """The sharded config of `cfg` on `mesh` (validated; see `check_shape`)."""
    if isinstance(cfg, ShardedConfig):
        cfg = cfg.base_config
    if isinstance(mesh, Mesh):
        m = make_mesh(mesh)  # checks the axis names
        reps, embed = check_shape(cfg, int(m.shape["tp"]))
    else:  # shape errors first: they need no devices
        reps, embed = check_shape(cfg, parse_mesh_shape(mesh)[1])
        m = make_mesh(mesh)
    kw = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(ModelConfig)}
    kw["n_kv_heads"] = cfg.n_kv_heads * reps
    return ShardedConfig(**kw, mesh=m, kv_replicas=reps, embed_axis=embed)


def _embed_spec(cfg: ShardedConfig) -> P:
    return {"vocab": P("tp", None), "hidden": P(None, "tp"), "replicated": P(None, None)}[cfg.embed_axis]


def param_specs(cfg: ShardedConfig, params: Params) -> Params:
    """PartitionSpecs with the structure of `params` (None where a parameter is absent)."""

    def opt(x, spec):
        return None if x is None else spec

    layers = tuple(
        LayerParams(
            attn_norm_D=P(None),
            wqkv_DKCH=P(None, "tp", None, None),
            bqkv_KCH=opt(lp.bqkv_KCH, P("tp", None, None)),
            q_norm_H=opt(lp.q_norm_H, P(None)),
            k_norm_H=opt(lp.k_norm_H, P(None)),
            wo_KGHD=P("tp", None, None, None),
            mlp_norm_D=P(None),
            w_gate_up_D2F=P(None, None, "tp"),
            w_down_FD=P("tp", None),
            post_attn_norm_D=opt(lp.post_attn_norm_D, P(None)),
            post_mlp_norm_D=opt(lp.post_mlp_norm_D, P(None)),
        )
        for lp in params.layers
    )
    return Params(embed_VD=_embed_spec(cfg), layers=layers, final_norm_D=P(None),
                  lm_head_VD=opt(params.lm_head_VD, _embed_spec(cfg)))


def param_shardings(cfg: ShardedConfig, params: Params) -> Params:
    """NamedShardings with the structure of `params` (pass to `jax.device_put` or `jax.jit`)."""
    return jax.tree.map(lambda s: NamedSharding(cfg.mesh, s), param_specs(cfg, params),
                        is_leaf=lambda x: isinstance(x, P))


def cache_specs(cache: KVCache) -> KVCache:
    """KV cache layout: k/v `[B, K, S, hd]` batch over dp, KV heads over tp; row state over dp."""
    kv = tuple(P("dp", "tp", None, None) for _ in cache.k)
    return KVCache(k=kv, v=kv, valid_BS=P("dp", None), pos_B=P("dp"), length=P())


# --------------------------------------------------------------------------------------- params
def replicate_kv_heads(params: Params, reps: int) -> Params:
    """Repeat each KV head `reps` times, giving each copy G/reps of its query heads (host numpy).

    GQA with K KV heads of G query heads each == GQA with K*reps KV heads of G/reps query heads
    when each copy holds the same k/v weights; the query-head order (k*G + g) is unchanged, so the
    outputs and the per-head attention metrics are the same. Costs reps x the KV-cache memory in
    total (per device it is what tp = n_kv_heads would hold)."""
    if reps == 1:
        return params

    def qkv(w):  # [..., K, G+2, hd] -> [..., K*reps, G/reps+2, hd]
        w = np.asarray(w)
        *lead, K, C, hd = w.shape
        G = C - 2
        q = w[..., :G, :].reshape(*lead, K, reps, G // reps, hd)
        kv = np.broadcast_to(w[..., None, G:, :], (*lead, K, reps, 2, hd))
        return np.concatenate([q, kv], axis=-2).reshape(*lead, K * reps, G // reps + 2, hd)

    def wo(w):  # [K, G, hd, D] -> [K*reps, G/reps, hd, D]
        w = np.asarray(w)
        K, G, hd, D = w.shape
        return w.reshape(K * reps, G // reps, hd, D)

    layers = tuple(lp.replace(wqkv_DKCH=qkv(lp.wqkv_DKCH), wo_KGHD=wo(lp.wo_KGHD),
                              bqkv_KCH=None if lp.bqkv_KCH is None else qkv(lp.bqkv_KCH))
                   for lp in params.layers)
    return params.replace(layers=layers)


def _place(x: Any, sharding: NamedSharding) -> jax.Array:
    """One tensor onto its shards: each device receives only its slice of the host array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # already global: reshard
        return jax.device_put(x, sharding)
    host = np.asarray(x)  # zero-copy for numpy / host (CPU) arrays
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def shard_params(params: Params, cfg: ShardedConfig) -> Params:
    """Place `params` (host arrays, or arrays on any device) on `cfg.mesh`, tensor by tensor."""
    params = replicate_kv_heads(params, cfg.kv_replicas)
    shardings = param_shardings(cfg, params)
    return jax.tree.map(_place, params, shardings)


def shard(config: ModelConfig, params: Params, mesh: MeshLike) -> tuple[ShardedConfig, Params]:
    """(sharded config, params placed on its mesh): what `Model(..., mesh=...)` runs."""
    if isinstance(config, ShardedConfig) and config.kv_replicas > 1:
        raise ConfigError("shard: these params already have replicated KV heads; reshard from the "
                          "checkpoint (entropix_s1.load(path, mesh=...))")
    cfg = plan(config, mesh)
    return cfg, shard_params(params, cfg)


@contextlib.contextmanager
def on_host(enabled: bool = True) -> Iterator[None]:
    """Build arrays in host memory (JAX's CPU device), not on the default accelerator.

    `load(..., mesh=...)` converts the checkpoint under this, then `shard_params` sends each
    device only its shards: the full model is in host RAM once, never on one accelerator."""
    if not enabled:
        yield
        return
    try:
        cpu = jax.devices("cpu")[0]
    except RuntimeError:  # JAX_PLATFORMS excludes cpu: convert on the default device instead
        yield
        return
    with jax.default_device(cpu):
        yield


# --------------------------------------------------------------------------------------- in the loop
def constrain(cfg: ModelConfig, tree: Any) -> Any:
    """Inside jit: pin batch-major arrays of `tree` to dp (KV caches to ("dp", "tp")).

    Leaves with a leading batch axis get `P("dp", UNCONSTRAINED, ...)`: XLA keeps choosing the
    other axes (e.g. vocab-sharded logits stay vocab-sharded). Scalars are replicated. A no-op
    unless `cfg` is a `ShardedConfig`, so single-device programs are unchanged."""
    if not isinstance(cfg, ShardedConfig) or cfg.mesh is None:
        return tree
    mesh = cfg.mesh

    def one(x):
        if isinstance(x, KVCache):
            specs = cache_specs(x)
            return jax.tree.map(lambda a, s: jax.lax.with_sharding_constraint(a, NamedSharding(mesh, s)), x, specs,
                                is_leaf=lambda s: isinstance(s, P))
        if not hasattr(x, "ndim"):
            return x
        spec = P() if x.ndim == 0 else P("dp", *([_U] * (x.ndim - 1)))
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    return jax.tree.map(one, tree, is_leaf=lambda x: isinstance(x, KVCache))


def replicate(cfg: ModelConfig, tree: Any) -> Any:
    """Inside jit: pin `tree` replicated (a no-op without a mesh). For a small per-row input that
    the loop passes straight into its batch-sharded state (the prompt ids, the token tables): without it XLA's
    sharding propagation reaches back into the jitted function's parameters, and recovering those
    parameter shardings fails for a batch that does not divide the dp axis."""
    if not isinstance(cfg, ShardedConfig) or cfg.mesh is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, NamedSharding(cfg.mesh, P())), tree)


def describe(tree: Any) -> dict[str, str]:
    """{leaf path: sharding spec} of a placed pytree (params or a decode state), for inspection."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        s = getattr(leaf, "sharding", None)
        out[jax.tree_util.keystr(path)] = str(s.spec) if isinstance(s, NamedSharding) else str(s)
    return out


def per_device_bytes(tree: Any) -> int:
    """Bytes of `tree` held by the most loaded device (shards only, no replicas double counted)."""
    per: dict[Any, int] = {}
    for leaf in jax.tree.leaves(tree):
        for sh in getattr(leaf, "addressable_shards", ()):
            per[sh.device] = per.get(sh.device, 0) + sh.data.nbytes
    return max(per.values(), default=0)


__all__ = [
    "AXES", "ShardedConfig", "cache_specs", "check_shape", "constrain", "describe", "make_mesh", "on_host",
    "param_shardings", "param_specs", "parse_mesh_shape", "per_device_bytes", "plan", "replicate_kv_heads",
    "shard", "shard_params",
]
