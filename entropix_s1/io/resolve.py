"""A model name or path -> a checkpoint directory: the one place that knows every kind of model source.

    resolve("smollm2-135m-instruct")   # catalog model: fetched on first use
    resolve("smollm2-135m-think")      # fine-tuned catalog model: base + committed adapter, merged once
    resolve("runs/sft1")               # an `sft --out` adapter dir: merged onto its base_model beside it
    resolve("path/to/hf_dir")          # a checkpoint directory, as it is

The top of `io/`: it imports `catalog` (fetching) and `lora` (merging); neither imports the other.
"""

from __future__ import annotations

import os
from pathlib import Path

from entropix_s1.errors import CheckpointError
from entropix_s1.io.catalog import ADAPTED, CATALOG, fetch, is_fetched

__all__ = ["resolve", "adapter_dir_checkpoint"]


def resolve(name_or_path: str | os.PathLike[str]) -> Path:
    """A checkpoint directory as given, an adapter directory's merged checkpoint (`sft --out`), or a
    catalog model's directory (fetched or merged on first use)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        from entropix_s1.io.lora import is_adapter_dir  # deferred: jax

        return adapter_dir_checkpoint(path) if is_adapter_dir(path) else path
    name = str(name_or_path)
    if name in CATALOG:
        return fetch(name, quiet=is_fetched(name))
    if name in ADAPTED:
        from entropix_s1.io.lora import adapted_checkpoint  # deferred: jax

        base, adapter = ADAPTED[name]
        return adapted_checkpoint(name, resolve(base), adapter)
    raise CheckpointError(
        f"{name_or_path!r} is neither an existing checkpoint directory nor a catalog model; "
        f"catalog: {', '.join(sorted([*CATALOG, *ADAPTED]))}"
    )


def adapter_dir_checkpoint(adapter_dir: str | os.PathLike) -> Path:
    """The merged checkpoint of an adapter directory, so that `load(dir)` / `--model dir` take what
    `sft --out dir` wrote as they take a checkpoint. The base is the adapter config's `base_model`
    (a catalog name or a checkpoint path, as given to `sft --model`); the merge is written beside
    the adapter, at `<adapter dir>-merged/`, and rebuilt whenever the adapter file changes."""
    from entropix_s1.io.lora import adapter_base, merge_locked  # deferred: jax

    adapter_dir = Path(adapter_dir)
    base = adapter_base(adapter_dir)
    try:
        base_dir = resolve(base)
    except CheckpointError as e:
        raise CheckpointError(f"LoRA adapter {adapter_dir}: its base model {base!r} cannot be found: {e}") from e
    return merge_locked(base_dir, adapter_dir, adapter_dir.parent / f"{adapter_dir.name}-merged")
