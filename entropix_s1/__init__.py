"""entropix-s1: test-time control of reasoning LLMs in JAX.

s1 budget forcing (arXiv 2501.19393), entropix entropy/varentropy-adaptive sampling and token
forcing, in one jitted decode loop, per batch row.

    import entropix_s1
    m = entropix_s1.load("smollm2-135m-instruct")
    r = m.generate(["What is 2+3?"], sampler="entropix", budget=m.budget(max_thinking_tokens=64))[0]
"""

from entropix_s1.core.budget import Budget
from entropix_s1.host.engine import Model, load
from entropix_s1.core.entropix import EntropixConfig, EntropixSampler
from entropix_s1.errors import (
    CheckpointError,
    ConfigError,
    DownloadError,
    EntropixS1Error,
    InputError,
    UnsupportedArchitectureError,
)
from entropix_s1.results import GenerationResult, TraceStep
from entropix_s1.core.sampling import Greedy, Sample

__version__ = "0.1.0"

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
