"""Arguments shared by several subcommands."""

from __future__ import annotations

import argparse

from entropix_s1.io.catalog import DEFAULT_MODEL


def add_model_arguments(p: argparse.ArgumentParser, *, dtype_and_mesh: bool = True,
                        help: str = "catalog name, HF checkpoint directory, or an `sft --out` adapter directory") -> None:
    """`--model` (default DEFAULT_MODEL) and, unless told otherwise, `--dtype` and `--mesh`."""
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"{help} (default {DEFAULT_MODEL})")
    if dtype_and_mesh:
        p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weight dtype")
        p.add_argument("--mesh", default=None, help="DPxTP device mesh, e.g. 1x8 (docs/sharding.md)")


def load_model(a: argparse.Namespace):
    """The model of `--model`/`--dtype`/`--mesh` (imports JAX)."""
    from entropix_s1.host.engine import load

    return load(a.model, dtype=a.dtype, mesh=a.mesh)
