"""The resumable results store of a comparison: `results.jsonl`, `run.json` and a lock, in one out dir.

`results.jsonl` holds one JSON object per (problem id, method). Records are appended a batch at a
time in one write, then flushed and fsync'ed, so a crash loses at most the batch in flight. A
last line cut short by a crash (no trailing newline) is an unfinished write: readers ignore it,
and `repair_results` truncates it away before appending, so it is recomputed once and never
duplicated. Complete lines that are not records are skipped with a warning. The first record of
a duplicated (id, method) pair wins.

`run.json` records what the directory holds (dataset, prompt template, seed, methods, model and
weights sha256), so a run on another dataset, template or model is refused instead of mixed in.
A lock file keeps two runs from writing one out dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from entropix_s1.errors import ConfigError
from entropix_s1.jsonl import JSONLError, iter_jsonl

__all__ = [
    "RESULTS_FILE",
    "RUN_FILE",
    "LOCK_FILE",
    "check_out_dir",
    "read_results",
    "repair_results",
    "append_records",
    "locked",
    "write_atomic",
    "read_run_info",
    "check_run_file",
]

RESULTS_FILE = "results.jsonl"
RUN_FILE = "run.json"
LOCK_FILE = ".compare.lock"


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """`out_dir` as a Path; a ConfigError when it names something that is not a directory."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is an existing file, not a directory: compare writes {RESULTS_FILE}, "
                          "summary.md and scaling.png into a directory; name a new or existing directory")
    return out


def _records(path: Path) -> list[dict[str, Any]]:
    """Records of the complete lines of a results file, first of duplicates kept."""
    bad: list[JSONLError] = []
    records: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for _, obj in iter_jsonl(path, unfinished_tail=True, on_error=bad.append):
        if "id" not in obj or "method" not in obj:
            bad.append(JSONLError("no id or method"))
            continue
        key = (str(obj["id"]), str(obj["method"]))
        if key not in seen:
            seen.add(key)
            records.append(obj)
    if bad:
        print(f"entropix-s1 compare: skipped {len(bad)} unreadable line(s) in the results file", file=sys.stderr)
    return records


def read_results(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of `out_dir/results.jsonl` (unfinished last line ignored, first of duplicates kept).
    Does not modify the file."""
    path = Path(out_dir) / RESULTS_FILE
    return _records(path) if path.is_file() else []


def repair_results(path: Path) -> list[dict[str, Any]]:
    """Read the results file and cut off an unfinished last line, so appends start clean."""
    if not path.is_file():
        return []
    records = _records(path)
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        print(f"entropix-s1 compare: dropping an unfinished last line ({len(data) - end} bytes) of {path}",
              file=sys.stderr)
        with path.open("r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
    return records


def append_records(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Append records in one write, then flush and fsync."""
    if not records:
        return
    blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    with path.open("ab") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold the out dir's lock file; a ConfigError when another run holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with (out_dir / LOCK_FILE).open("a") as lf:
        try:
            fcntl.flock(lf.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"another compare run is writing to {out_dir}; wait for it or use another --out") from None
        try:
            yield
        finally:
            fcntl.flock(lf.fileno(), fcntl.LOCK_UN)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_run_info(out_dir: Path) -> dict[str, Any]:
    """`run.json` of `out_dir` as a dict ({} when missing, unreadable or not an object)."""
    path = out_dir / RUN_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def _refuse_other_run(out_dir: Path, old: dict[str, Any], dataset: str, template: str,
                      weights_sha256: str | None) -> None:
    if old.get("dataset") not in (None, dataset):
        raise ConfigError(
            f"{out_dir} holds a comparison on dataset {old['dataset']!r}, not {dataset!r}; use another --out"
        )
    if old.get("template") not in (None, template):
        raise ConfigError(
            f"{out_dir} holds results made with prompt template {old['template']!r}, not {template!r}; "
            "use another --out"
        )
    if weights_sha256 and old.get("weights_sha256") not in (None, weights_sha256):
        raise ConfigError(
            f"{out_dir} holds results of model {old.get('model')!r} with other weights (sha256 "
            f"{old['weights_sha256'][:12]}..., these are {weights_sha256[:12]}...); resuming would mix two "
            "models: use another --out, or delete the old results"
        )


def check_run_file(out_dir: Path, dataset: str, template: str, seed: int, methods: list[str],
                   model_name: str | None, weights_sha256: str | None = None) -> None:
    """Refuse an out dir of another dataset, template or model; else (re)write its `run.json`."""
    old = read_run_info(out_dir)
    _refuse_other_run(out_dir, old, dataset, template, weights_sha256)
    if old.get("seed") not in (None, seed):
        print(f"entropix-s1 compare: note: {out_dir} was started with seed {old['seed']}, resuming with {seed}",
              file=sys.stderr)
    merged = list(old.get("methods", []))
    merged += [m for m in methods if m not in merged]
    info = {"dataset": dataset, "template": template, "seed": old.get("seed", seed), "methods": merged,
            "model": old.get("model") or model_name, "weights_sha256": old.get("weights_sha256") or weights_sha256}
    write_atomic(out_dir / RUN_FILE, (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
