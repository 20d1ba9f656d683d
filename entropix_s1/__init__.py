"""entropix-s1: test-time control of reasoning LLMs in JAX.

s1 budget forcing (arXiv 2501.19393), entropix entropy/varentropy-adaptive sampling and token
forcing, in one jitted decode loop, per batch row.

    import entropix_s1
    m = entropix_s1.load("smollm2-135m-instruct")
    r = m.generate(["What is 2+3?"], sampler="entropix", budget=m.budget(max_thinking_tokens=64))[0]

The public names resolve lazily (module `__getattr__`): `import entropix_s1` imports no JAX;
the first use of `entropix_s1.load`, `Budget`, a sampler, ... imports the module that holds it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from entropix_s1.errors import (
    CheckpointError,
    ConfigError,
    DownloadError,
    EntropixS1Error,
    InputError,
    UnsupportedArchitectureError,
)

if TYPE_CHECKING:
    from entropix_s1.core.budget import Budget
    from entropix_s1.core.entropix import EntropixConfig, EntropixSampler
    from entropix_s1.core.sampling import Greedy, Sample
    from entropix_s1.host.engine import Model, load
    from entropix_s1.results import GenerationResult, TraceStep

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first use)
_LAZY: dict[str, str] = {
    "Budget": "entropix_s1.core.budget",
    "Model": "entropix_s1.host.engine",
    "load": "entropix_s1.host.engine",
    "EntropixConfig": "entropix_s1.core.entropix",
    "EntropixSampler": "entropix_s1.core.entropix",
    "Greedy": "entropix_s1.core.sampling",
    "Sample": "entropix_s1.core.sampling",
    "GenerationResult": "entropix_s1.results",
    "TraceStep": "entropix_s1.results",
}

__all__ = [
    "Budget",
    "CheckpointError",
    "ConfigError",
    "DownloadError",
    "EntropixConfig",
    "EntropixS1Error",
    "EntropixSampler",
    "GenerationResult",
    "Greedy",
    "InputError",
    "Model",
    "Sample",
    "TraceStep",
    "UnsupportedArchitectureError",
    "load",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once; later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
