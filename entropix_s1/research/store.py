"""The resumable results store of a comparison: `results.jsonl` (and its archive `results.jsonl.gz`),
`run.json` and a lock, in one out dir.

`results.jsonl` (the live log) holds one JSON object per (problem id, method, seed, sample):
`compare --samples K --seeds S` writes K samples per problem for each of S seeds. Records written
before samples existed have no `sample` or `seed`: they read as sample 0 of the directory's first
seed (the `seed` of `run.json`), so old results files stay valid and are resumed, not redone. Records are
appended a batch at a time in one write, then flushed and fsync'ed, so a crash loses at most the
batch in flight. A last line cut short by a crash (no trailing newline) is an unfinished write:
readers ignore it, and `repair_results` truncates it away before appending, so it is recomputed
once and never duplicated. Complete lines that are not records are skipped with a warning. The
first record of a duplicated key wins.

`results.jsonl.gz` (the archive, optional) holds records sealed by `pack_results`: a results file
of a few thousand long generations is several MiB of text and about a fifth of that gzipped
(Qwen's 4,700 GSM8K records: 5.6 MiB, 1.0 MiB), and that is the form to commit. Readers read
the archive, then the live log; runs append to the live log only, so packing again after more
runs folds the new records in. The archive is written to the
side and renamed over the old one before the live log is removed: a crash between the two leaves
records in both, which read once (first wins, and they are the same records).

`run.json` records what the directory holds (dataset, prompt template, first seed, methods, the
paired-test baseline if one was named, model and weights sha256), so a run on another dataset,
template or model is refused instead of mixed in. A lock file keeps two runs from writing one
out dir.
"""

from __future__ import annotations

import contextlib
import gzip
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
    "ARCHIVE_FILE",
    "RUN_FILE",
    "LOCK_FILE",
    "check_out_dir",
    "read_results",
    "results_files",
    "repair_results",
    "pack_results",
    "append_records",
    "locked",
    "write_atomic",
    "read_run_info",
    "check_run_file",
    "record_key",
]

RESULTS_FILE = "results.jsonl"
ARCHIVE_FILE = "results.jsonl.gz"
RUN_FILE = "run.json"
LOCK_FILE = ".compare.lock"


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """`out_dir` as a Path; a ConfigError when it names something that is not a directory."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is an existing file, not a directory: compare writes {RESULTS_FILE}, "
                          "summary.md and scaling.png into a directory; name a new or existing directory")
    return out


def record_key(record: dict[str, Any]) -> tuple[str, str, int, int]:
    """(id, method, seed, sample): what one record is the result of."""
    return str(record["id"]), str(record["method"]), int(record["seed"]), int(record["sample"])


def _lines(paths: Sequence[Path], bad: list[JSONLError]) -> Iterator[Any]:
    for path in paths:
        for _, obj in iter_jsonl(path, unfinished_tail=True, on_error=bad.append):
            yield obj


def _records(paths: Sequence[Path], default_seed: int) -> list[dict[str, Any]]:
    """Records of the complete lines of results files, in order, first of duplicates kept; a
    record without `sample` / `seed` gets sample 0 / `default_seed`."""
    bad: list[JSONLError] = []
    records: list[dict[str, Any]] = []
    seen: set[tuple[str, str, int, int]] = set()
    for obj in _lines(paths, bad):
        if "id" not in obj or "method" not in obj:
            bad.append(JSONLError("no id or method"))
            continue
        if obj.get("sample") is None:
            obj["sample"] = 0
        if obj.get("seed") is None:
            obj["seed"] = default_seed
        try:
            key = record_key(obj)
        except (TypeError, ValueError):
            bad.append(JSONLError("seed or sample is not an integer"))
            continue
        if key not in seen:
            seen.add(key)
            records.append(obj)
    if bad:
        print(f"entropix-s1 compare: skipped {len(bad)} unreadable line(s) in the results file", file=sys.stderr)
    return records


def _first_seed(out_dir: Path) -> int:
    seed = read_run_info(out_dir).get("seed")
    return seed if isinstance(seed, int) else 0


def results_files(out_dir: Path) -> list[Path]:
    """The archive, then the live log, those that exist."""
    return [p for p in (out_dir / ARCHIVE_FILE, out_dir / RESULTS_FILE) if p.is_file()]


def read_results(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of `out_dir`'s archive and live log (unfinished last line ignored, first of
    duplicates kept; old records as sample 0 of the first seed). Modifies nothing."""
    return _records(results_files(Path(out_dir)), _first_seed(Path(out_dir)))


def repair_results(out_dir: Path, default_seed: int = 0) -> list[dict[str, Any]]:
    """Read the records (as `read_results`, old records as sample 0 of `default_seed`) and cut an
    unfinished last line off the live log, so appends start clean."""
    records = _records(results_files(out_dir), default_seed)
    path = out_dir / RESULTS_FILE
    if not path.is_file():
        return records
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


def pack_results(out_dir: str | os.PathLike[str]) -> tuple[int, int]:
    """Seal the out dir's records into `results.jsonl.gz` (archive first, then the live log's
    complete lines; duplicates dropped, unfinished tail and unreadable lines left out) and remove
    the live log. The gzip stream carries no name or time, so the same records give the same
    bytes. Returns (records in the archive, bytes of the archive). Hold `locked(out_dir)` around
    it when a run could be writing."""
    out = Path(out_dir)
    records = read_results(out)
    blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    packed = gzip.compress(blob, compresslevel=9, mtime=0)
    write_atomic(out / ARCHIVE_FILE, packed)
    (out / RESULTS_FILE).unlink(missing_ok=True)
    return len(records), len(packed)


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
    """Write to `path.tmp`, fsync, rename over `path`: readers see the old bytes or the new."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
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
    accepted = {old.get("weights_sha256")} | {e.get("sha256") for e in old.get("equivalent_weights", [])
                                              if isinstance(e, dict)}
    if weights_sha256 and old.get("weights_sha256") is not None and weights_sha256 not in accepted:
        raise ConfigError(
            f"{out_dir} holds results of model {old.get('model')!r} with other weights (sha256 "
            f"{old['weights_sha256'][:12]}..., these are {weights_sha256[:12]}...); resuming would mix two "
            "models: use another --out, or delete the old results (weights checked to give the same outputs "
            "may be listed in run.json's equivalent_weights)"
        )


def check_run_file(out_dir: Path, dataset: str, template: str, seed: int, methods: list[str],
                   model_name: str | None, weights_sha256: str | None = None,
                   baseline: str | None = None) -> dict[str, Any]:
    """Refuse an out dir of another dataset, template or model; else (re)write its `run.json`
    and return what it now says. Other weights are refused unless run.json lists their digest under
    `equivalent_weights` ([{"sha256": ..., "evidence": ...}], written by whoever checked that they
    give the recorded outputs: the same GGUF re-converted on a new machine, say); keys it does not
    know are kept. Its `seed` stays the first run's: the seed of old records and of
    deterministic methods."""
    old = read_run_info(out_dir)
    _refuse_other_run(out_dir, old, dataset, template, weights_sha256)
    if old.get("seed") not in (None, seed):
        print(f"entropix-s1 compare: note: {out_dir} was started with seed {old['seed']}; sampling methods add "
              f"seed {seed}'s samples to it, deterministic methods keep seed {old['seed']}'s", file=sys.stderr)
    merged = list(old.get("methods", []))
    merged += [m for m in methods if m not in merged]
    info = {"dataset": dataset, "template": template, "seed": old.get("seed", seed), "methods": merged,
            "model": old.get("model") or model_name, "weights_sha256": old.get("weights_sha256") or weights_sha256}
    if baseline or old.get("baseline"):
        info["baseline"] = baseline or old["baseline"]
    info.update({k: v for k, v in old.items() if k not in info})  # notes a person added (equivalent_weights)
    write_atomic(out_dir / RUN_FILE, (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return info
