"""Checkpoint loading: sharded files, dtypes, and a clear error for every kind of bad input."""

from __future__ import annotations

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from tiny_models import save_tiny

from entropix_s1.io.checkpoint import load_checkpoint, read_checkpoint_tensors
from entropix_s1.core.config import ModelConfig
from entropix_s1.errors import CheckpointError, UnsupportedArchitectureError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_tiny("llama", tmp_path_factory.mktemp("ck") / "llama")


def copy(ckpt, tmp_path):
    d = tmp_path / "c"
    shutil.copytree(ckpt, d)
    return d


def test_sharded_checkpoint_loads_like_single(ckpt, tmp_path):
    from tiny_models import tiny_hf_model

    d = tmp_path / "sharded"
    tiny_hf_model("llama").save_pretrained(d, max_shard_size="100KB")
    assert (d / "model.safetensors.index.json").is_file()
    _, a = load_checkpoint(ckpt)
    _, b = load_checkpoint(d)
    np.testing.assert_array_equal(np.asarray(a.embed_VD), np.asarray(b.embed_VD))
    np.testing.assert_array_equal(np.asarray(a.layers[1].wqkv_DKCH), np.asarray(b.layers[1].wqkv_DKCH))


def test_bfloat16_checkpoint_file(ckpt, tmp_path):
    import torch
    import transformers as tf

    d = tmp_path / "bf16"
    tf.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16).save_pretrained(d)
    cfg, p = load_checkpoint(d)  # bf16 on disk, float32 requested
    assert p.embed_VD.dtype == jnp.float32
    _, p16 = load_checkpoint(d, dtype=jnp.bfloat16)
    assert p16.layers[0].w_down_FD.dtype == jnp.bfloat16


def test_missing_dir_and_files(ckpt, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        load_checkpoint(tmp_path / "nope")
    d = copy(ckpt, tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_checkpoint(d)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        load_checkpoint(d)


def test_truncated_and_corrupt_safetensors(ckpt, tmp_path):
    d = copy(ckpt, tmp_path)
    f = d / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint_tensors(d)
    f.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint_tensors(d)
    n = int.from_bytes(data[:8], "little")
    f.write_bytes(data[:8] + b"{" * n + data[8 + n :])
    with pytest.raises(CheckpointError, match="corrupt safetensors header"):
        read_checkpoint_tensors(d)


def test_shape_disagrees_with_config(ckpt, tmp_path):
    d = copy(ckpt, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 100
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"mlp.gate_proj.weight.*shape \(96, 64\).*\(100, 64\)"):
        load_checkpoint(d)


def test_missing_tensor(ckpt, tmp_path):
    from safetensors.numpy import load_file, save_file

    d = copy(ckpt, tmp_path)
    t = load_file(d / "model.safetensors")
    del t["model.layers.1.mlp.up_proj.weight"]
    save_file(t, d / "model.safetensors")
    with pytest.raises(CheckpointError, match="lacks tensor 'model.layers.1.mlp.up_proj.weight'"):
        load_checkpoint(d)


def test_unknown_architecture_names_it(ckpt, tmp_path):
    d = copy(ckpt, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "mamba"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedArchitectureError, match="'mamba'.*llama, qwen2, qwen3"):
        load_checkpoint(d)
    with pytest.raises(UnsupportedArchitectureError, match="rope_type 'yarn'"):
        ModelConfig.from_hf(dict(json.loads((ckpt / "config.json").read_text()), rope_scaling={"rope_type": "yarn"},
                                 rope_parameters={"rope_type": "yarn", "factor": 2.0}))


def test_unsupported_dtype(ckpt):
    with pytest.raises(CheckpointError, match="float16"):
        load_checkpoint(ckpt, dtype=jnp.float16)
