"""The one JSONL reader: datasets, traces, calibration texts and results files all read through it.

Why one: every reader used to decide on its own what a blank line, a bad byte or a half-written last
line means, and each named the failing line its own way. Here a failure is a `JSONLError` that
names `path:line` and what is wrong; callers that want their own error class pass a subclass.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from entropix_s1.errors import InputError

__all__ = ["JSONLError", "iter_jsonl", "read_jsonl"]


class JSONLError(InputError):
    """A JSONL file is missing or one of its lines is not what it must be; the message names `path:line`."""


def iter_jsonl(path: str | os.PathLike[str], *, error: type[JSONLError] = JSONLError, objects: bool = True,
               unfinished_tail: bool = False,
               on_error: Callable[[JSONLError], None] | None = None) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) per non-blank line, in file order.

    A `.gz` file is read decompressed. objects: every value must be a JSON object.
    unfinished_tail: the bytes after the last newline are an unfinished write (an append-only
    results file whose writer was killed) and are ignored instead of parsed. Lines are decoded
    one by one, so a bad byte names its own line.
    on_error: a bad line is passed to it (as the `error` it would raise) and skipped, instead of
    raising; a missing file still raises.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    if unfinished_tail:
        data = data[: data.rfind(b"\n") + 1]
    for lineno, raw in enumerate(data.splitlines(), start=1):
        try:
            value = _parse_line(raw, f"{path}:{lineno}", error, objects)
        except error as e:
            if on_error is None:
                raise
            on_error(e)
            continue
        if value is not _BLANK:
            yield lineno, value


_BLANK = object()


def _parse_line(raw: bytes, where: str, error: type[JSONLError], objects: bool) -> Any:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if not line.strip():
        return _BLANK
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if objects and not isinstance(value, dict):
        raise error(f"{where}: expected a JSON object per line, got {type(value).__name__}")
    return value


def read_jsonl(path: str | os.PathLike[str], **kw: Any) -> list[Any]:
    """Every value of `iter_jsonl(path, **kw)`, without line numbers."""
    return [value for _, value in iter_jsonl(path, **kw)]
