"""Calibrate entropix thresholds to a model: entropix's constants were hand-set for Llama-3 and
mean little for another model, so we place them at quantiles of the model's own per-token
entropy/varentropy over a corpus (`entropix.calibrate_thresholds` documents the quantiles)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from entropix_s1.entropix import EntropixConfig, calibrate_thresholds
from entropix_s1.errors import InputError


def read_texts(path: str | Path, field: str | None = None, limit: int | None = None) -> list[str]:
    """Texts from a JSONL file: `field`, else the first of text/question/problem/input/prompt."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"calibration texts not found: {p}")
    texts = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{p}:{n}: not valid JSON: {e}") from e
        keys = [field] if field else ["text", "question", "problem", "input", "prompt"]
        val = next((obj[k] for k in keys if isinstance(obj, dict) and isinstance(obj.get(k), str)), None)
        if val is None:
            raise InputError(f"{p}:{n}: no text field (looked for {', '.join(keys)})")
        texts.append(val)
        if limit and len(texts) >= limit:
            break
    if not texts:
        raise InputError(f"{p}: no texts")
    return texts


def collect_metrics(model: Any, texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-token (entropy, varentropy) in nats over all texts, via `model.score`."""
    ent, vent = [], []
    for t in texts:
        for row in model.score(t)[1:]:
            ent.append(row["entropy"])
            vent.append(row["varentropy"])
    return np.asarray(ent, np.float64), np.asarray(vent, np.float64)


def calibrate(model: Any, texts: Iterable[str], quantiles: Mapping[str, float] | None = None,
              base: EntropixConfig | None = None) -> EntropixConfig:
    ent, vent = collect_metrics(model, texts)
    return calibrate_thresholds(ent, vent, quantiles=quantiles, base=base)


def save_config(cfg: EntropixConfig, path: str | Path) -> Path:
    """JSON that `EntropixConfig(**json.load(f))` (and `entropix:calibrated=PATH`) reads back."""
    d = dataclasses.asdict(cfg)
    if isinstance(d.get("attn_layers"), tuple):
        d["attn_layers"] = list(d["attn_layers"])
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(d, indent=2) + "\n")
    return p


def load_config(path: str | Path) -> EntropixConfig:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"entropix config not found: {p}")
    return EntropixConfig(**json.loads(p.read_text()))
