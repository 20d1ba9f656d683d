"""`SFTConfig`: the knobs of a LoRA SFT run (`entropix_s1.train.sft.train`), their defaults and their
validation. JAX-free, so that `entropix-s1 sft --help` takes its defaults from here without importing
the trainer (JAX, optax).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from entropix_s1.errors import InputError
from entropix_s1.io.catalog import DEFAULT_MODEL

__all__ = ["SFTConfig", "LORA_TARGETS", "SAVE_DTYPES"]

#: `io.lora.TARGETS` and `io.lora.SAVE_DTYPES`, written out because io.lora imports JAX
#: (tests/test_lazy_imports.py checks that they agree)
LORA_TARGETS = ("wqkv", "wo", "gate_up", "down")
SAVE_DTYPES = ("float32", "float16")


@dataclasses.dataclass(frozen=True)
class SFTConfig:
    model: str = DEFAULT_MODEL
    data: str = ""
    limit: int = 1000
    epochs: int = 1
    lora_rank: int = 8
    lora_alpha: float = 16.0
    targets: tuple[str, ...] = ("wqkv", "wo")
    lr: float = 1e-3
    warmup_steps: int = 10
    weight_decay: float = 0.0
    batch_tokens: int = 1024
    max_len: int = 256
    seed: int = 0
    exclude: str | None = None  # JSONL of questions never to train on (default: gsm8k_test.jsonl next to data)
    remat: bool = False
    max_steps: int | None = None  # cap on optimizer steps; the cosine schedule ends there
    init_adapter: str | None = None  # start from this adapter dir (a further stage) instead of a fresh one
    save_dtype: str = "float32"  # dtype of the exported adapter file (float16: half the size, for committing)
    unlikelihood: float = 0.0  # weight of the token-level unlikelihood term (Welleck et al. 2019); 0 = plain SFT

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run must agree on."""
        d = dataclasses.asdict(self)
        d["targets"] = list(self.targets)
        # Paths may be spelled differently and remat changes no math. max_steps may change on resume
        # (to shorten a run that would take too long): the schedule is recomputed for the new cap.
        for k in ("data", "exclude", "remat", "max_steps", "init_adapter", "save_dtype"):
            d.pop(k)
        if not self.unlikelihood:
            d.pop("unlikelihood")  # plain SFT: states saved before the option existed still resume
        return d

    def validate(self) -> None:
        """Raise `InputError` for a config `train` cannot run: a bad save dtype or unlikelihood weight,
        or training data that is not a file."""
        if self.save_dtype not in SAVE_DTYPES:
            raise InputError(f"--save-dtype must be one of {', '.join(SAVE_DTYPES)}, got {self.save_dtype!r}")
        if not (self.unlikelihood >= 0 and math.isfinite(self.unlikelihood)):
            raise InputError(f"unlikelihood weight must be a finite number >= 0, got {self.unlikelihood}")
        if not self.data or not Path(self.data).is_file():
            raise InputError(f"training data not found: {self.data!r}")
