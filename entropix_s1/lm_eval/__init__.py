"""lm-evaluation-harness backend: `lm_eval --model entropix-s1 --model_args pretrained=...,method=SPEC`.

Install with the `[lm-eval]` extra. How lm-eval finds the model `entropix-s1`:

* lm-eval versions that discover plugins read our `lm_eval.models` entry point (pyproject.toml);
* lm-eval 0.4.13 (the one pinned by our extra today) does not scan entry points, so run it through
  `python -m entropix_s1.lm_eval ...` (the same command line as `lm_eval ...`: it registers the
  model, then hands over to lm-eval's own CLI), or, from Python, call `register()` before
  `lm_eval.simple_evaluate(model="entropix-s1", ...)`, or pass an `EntropixS1LM` instance.

`options` turns model_args and gen_kwargs (s1's budget names included) into our method grammar;
`backend` holds the `LM` subclass. Importing this package imports neither lm-eval nor JAX.
"""

from __future__ import annotations

__all__ = ["MODEL_NAME", "BACKEND", "register"]

MODEL_NAME = "entropix-s1"
#: the lazy "module:object" path lm-eval's registry materialises on first use
BACKEND = "entropix_s1.lm_eval.backend:EntropixS1LM"


def register() -> None:
    """Make `--model entropix-s1` resolve in this process (lazily: lm-eval imports the backend,
    and with it JAX, only when the model is built)."""
    from lm_eval.api.registry import model_registry

    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=BACKEND)
