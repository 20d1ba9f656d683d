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


def load_model(a: argparse.Namespace, *, prompts: bool = True):
    """The model of `--model`/`--dtype`/`--mesh` (imports JAX). For commands that take `prompts`,
    a checkpoint without a chat template is said once: its string prompts go in raw, after BOS."""
    import sys

    from entropix_s1.host.engine import load

    model = load(a.model, dtype=a.dtype, mesh=a.mesh)
    if prompts and not getattr(model, "has_chat_template", True) and not getattr(a, "raw", False):
        print(f"note: {model.name} has no chat template; prompts go in as raw text (after BOS)", file=sys.stderr)
    return model
