"""Calibrate thresholds to a model: entropix's constants were hand-set for Llama-3 and mean little
for another model, so we place them at quantiles of the model's own per-token entropy/varentropy
over a corpus (`entropix.calibrate_thresholds` documents the quantiles). `calibrate_budget` does
the same for adaptive budget forcing, at the steps where the model ends thinking by itself."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from typing import TYPE_CHECKING

import numpy as np

from entropix_s1.errors import ConfigError, InputError
from entropix_s1.jsonl import iter_jsonl

if TYPE_CHECKING:  # both import JAX: loaded by the functions that need them
    from entropix_s1.core.budget import Budget
    from entropix_s1.core.entropix import EntropixConfig


def read_texts(path: str | Path, field: str | None = None, limit: int | None = None) -> list[str]:
    """Texts from a JSONL file: `field`, else the first of text/question/problem/input/prompt."""
    keys = [field] if field else ["text", "question", "problem", "input", "prompt"]
    texts = []
    for n, obj in iter_jsonl(path):
        val = next((obj[k] for k in keys if isinstance(obj.get(k), str)), None)
        if val is None:
            raise InputError(f"{path}:{n}: no text field (looked for {', '.join(keys)})")
        texts.append(val)
        if limit and len(texts) >= limit:
            break
    if not texts:
        raise InputError(f"{path}: no texts")
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
    from entropix_s1.core.entropix import calibrate_thresholds

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


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def load_entropix_config(path: str | Path) -> EntropixConfig:
    """The EntropixConfig a `save_config` / `entropix-s1 calibrate` JSON file holds (lists become
    tuples). The one loader, for `generate --entropix-config` and `entropix:calibrated=PATH`:
    a missing or unreadable file, a JSON value that is not an object, and a key that is not an
    EntropixConfig field are ConfigErrors naming the file (and the key)."""
    from entropix_s1.core.entropix import EntropixConfig  # lazy: needs JAX

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"calibration file {p} not found; write one with `entropix-s1 calibrate`")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read calibration file {p}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"calibration file {p} must hold a JSON object of EntropixConfig fields, "
                          f"not a {type(data).__name__}")
    fields = sorted(f.name for f in dataclasses.fields(EntropixConfig) if f.init)
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"calibration file {p} does not fit EntropixConfig: unknown key(s) "
                          f"{', '.join(map(repr, unknown))}; its fields are: {', '.join(fields)}")
    try:
        return EntropixConfig(**{k: _tuples(v) for k, v in data.items()})
    except TypeError as e:
        raise ConfigError(f"calibration file {p} does not fit EntropixConfig ({e}); "
                          f"its fields are: {', '.join(fields)}") from None


# -- adaptive budget forcing: where is "uncertain" for this model's own end-of-thinking? --------


def delimiter_step_metrics(result: Any, delimiter_ids: Sequence[Sequence[int]], window: int = 8) -> dict[str, float] | None:
    """Entropy/varentropy of the step that completed the row's first sampled end-of-thinking
    delimiter (what `Budget(mode="adaptive")` tests), and the mean entropy of the `window` tokens
    before the delimiter. None when the row never ended thinking by itself (e.g. it was capped)."""
    ids, trace = list(result.token_ids), result.trace
    for i in range(len(ids)):
        for d in delimiter_ids:
            n = len(d)
            if n and i + 1 >= n and ids[i + 1 - n:i + 1] == list(d) and all(t.forced is None for t in trace[i + 1 - n:i + 1]):
                before = [t.entropy for t in trace[max(0, i + 1 - n - window):i + 1 - n] if t.entropy is not None]
                return {"entropy": float(trace[i].entropy), "varentropy": float(trace[i].varentropy),
                        "window_entropy": float(np.mean(before)) if before else float("nan"), "thinking_tokens": i + 1 - n}
    return None


def calibrate_budget(model: Any, prompts: Sequence[str], budget: Budget | None = None, *, quantile: float = 0.5,
                     max_new_tokens: int = 256, batch_size: int = 8) -> tuple[Budget, dict[str, Any]]:
    """An adaptive `Budget` whose `uncertain_entropy` sits at `quantile` of the entropies this
    model shows when it ends thinking by itself (greedy, no waits, no cap, over `prompts`).

    Like the sampler's calibration (entropix's thresholds were hand-set for Llama-3), a fixed
    entropy threshold means little across models: with quantile q, about a fraction 1 - q of the
    model's own end-of-thinking decisions count as uncertain and get a wait. Returns the budget
    and a report (n rows that ended, the quantiles of entropy/varentropy/window entropy)."""
    if not 0.0 <= quantile <= 1.0:
        raise InputError(f"calibrate_budget: quantile must be in [0, 1], got {quantile}")
    base = budget if budget is not None else model.default_budget
    probe = dataclasses.replace(base, mode="fixed", num_waits=0, min_thinking_tokens=0, max_thinking_tokens=None,
                                soft_max_thinking_tokens=None)
    delims = [model.tokenizer.encode(d, add_special_tokens=False) for d in probe.think_end]
    rows = []
    for s in range(0, len(prompts), batch_size):
        for r in model.generate(list(prompts[s:s + batch_size]), budget=probe, max_new_tokens=max_new_tokens):
            got = delimiter_step_metrics(r, delims, window=base.window)
            if got is not None:
                rows.append(got)
    if not rows:
        raise InputError(f"calibrate_budget: none of the {len(prompts)} generations ended thinking by itself "
                         f"within {max_new_tokens} tokens; raise max_new_tokens or check think_end {probe.think_end}")
    ent = np.asarray([r["entropy"] for r in rows])
    qs = (0.1, 0.25, 0.5, 0.75, 0.9)
    report = {
        "prompts": len(prompts), "ended": len(rows), "quantile": quantile,
        "uncertain_entropy": float(np.quantile(ent, quantile)),
        "entropy_quantiles": {str(q): float(np.quantile(ent, q)) for q in qs},
        "varentropy_quantiles": {str(q): float(np.quantile([r["varentropy"] for r in rows], q)) for q in qs},
        "mean_thinking_tokens": float(np.mean([r["thinking_tokens"] for r in rows])),
    }
    return dataclasses.replace(base, mode="adaptive", uncertain_entropy=report["uncertain_entropy"]), report
