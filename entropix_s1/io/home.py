"""Where this project keeps weights on disk, and the lock that serialises writers there.

The bottom of `io/`: `catalog` (fetching) and `lora` (merged checkpoints) both write under
`weights_home()` and take `locked(...)` so that parallel processes build a directory once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["weights_home", "jax_cache_dir", "file_lock", "locked"]

_REPO = Path(__file__).resolve().parents[2]


def weights_home() -> Path:
    """`$ENTROPIX_S1_HOME`, else `weights/` of a source checkout, else `~/.cache/entropix-s1`."""
    env = os.environ.get("ENTROPIX_S1_HOME")
    if env:
        return Path(env).expanduser()
    if (_REPO / "pyproject.toml").is_file() and (_REPO / "entropix_s1").is_dir():
        return _REPO / "weights"
    return Path.home() / ".cache" / "entropix-s1"


def jax_cache_dir(path: str | os.PathLike | None = None) -> Path:
    """JAX's persistent compilation cache: `path`, else `$ENTROPIX_S1_JAX_CACHE`, else `<weights home>/.jax_cache`."""
    return Path(path or os.environ.get("ENTROPIX_S1_JAX_CACHE") or weights_home() / ".jax_cache")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on `path`, so parallel test workers fetch a model once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, the atomic rename still prevents half dirs
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def locked(parent: Path, name: str) -> Iterator[None]:
    """`file_lock` of `<parent>/.locks/<name>.lock` (a directory, so a checkout's `/weights/*/`
    ignore rule covers it); `parent` and `.locks` are created."""
    locks = Path(parent) / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with file_lock(locks / f"{name}.lock"):
        yield
