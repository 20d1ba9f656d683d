"""`import entropix_s1` and building the `entropix-s1` parser import neither JAX nor matplotlib nor
optax (each checked in a fresh interpreter); the public names still resolve; the copies of constants
that live behind heavy imports agree with their sources; `sft`'s flag defaults are SFTConfig's."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("jax", "matplotlib", "optax")


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_entropix_s1_is_light() -> None:
    got = _run(
        "import json, sys\n"
        "import entropix_s1\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    assert got == []


def test_cli_parser_and_help_are_light() -> None:
    got = _run(
        "import contextlib, io, json, sys\n"
        "from entropix_s1.cli.main import COMMANDS, build_parser, main\n"
        "build_parser()\n"
        "helps = {}\n"
        "for argv in [['--help']] + [[c, '--help'] for c in COMMANDS if c != 'bench']:\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0, (argv, e.code)\n"
        "    helps[' '.join(argv)] = buf.getvalue()\n"
        f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules], 'helps': helps}}))\n"
    )
    assert got["heavy"] == []
    assert "compare" in got["helps"]["--help"] and "bench" in got["helps"]["--help"]
    gen = got["helps"]["generate --help"]
    assert "--method" in gen and "adaptive-budget:max=64,waits=2" in gen  # documented, with an example
    assert "smollm2-135m-instruct" in got["helps"]["compare --help"]  # --model has a default


def test_public_names_resolve_lazily() -> None:
    got = _run(
        "import json, sys\n"
        "import entropix_s1\n"
        "before = 'jax' in sys.modules\n"
        "names = {n: type(getattr(entropix_s1, n)).__name__ for n in entropix_s1.__all__}\n"
        "from entropix_s1 import Budget, EntropixConfig, Greedy, Sample, load\n"
        "import entropix_s1.core.budget, entropix_s1.host.engine\n"
        "same = Budget is entropix_s1.core.budget.Budget and load is entropix_s1.host.engine.load\n"
        "print(json.dumps({'before': before, 'names': names, 'same': same, 'dir': dir(entropix_s1)}))\n"
    )
    assert got["before"] is False and got["same"] is True
    assert set(got["names"]) == {
        "Budget", "CheckpointError", "ConfigError", "DownloadError", "EntropixConfig", "EntropixS1Error",
        "EntropixSampler", "GenerationResult", "Greedy", "InputError", "Model", "Sample", "TraceStep",
        "UnsupportedArchitectureError", "load"}
    assert got["names"]["load"] == "function" and got["names"]["Budget"] == "type"
    assert set(got["names"]) <= set(got["dir"])


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pytest

    import entropix_s1
    import entropix_s1.research

    with pytest.raises(AttributeError, match="no_such_name"):
        entropix_s1.no_such_name  # noqa: B018
    with pytest.raises(AttributeError, match="no_such_name"):
        entropix_s1.research.no_such_name  # noqa: B018
    assert entropix_s1.research.parse_spec.__module__ == "entropix_s1.research.methods"


def test_python_dash_m_cli_works() -> None:
    out = subprocess.run([sys.executable, "-m", "entropix_s1.cli", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "compare" in out.stdout


def test_sft_choices_match_lora() -> None:
    """train/config.py writes out io.lora's targets and save dtypes (so `sft --help` does not import JAX):
    they agree."""
    from entropix_s1.cli import sft as cli_sft
    from entropix_s1.io import lora

    assert cli_sft.LORA_TARGETS == lora.TARGETS and cli_sft.SAVE_DTYPES == lora.SAVE_DTYPES


def test_sft_config_is_light_and_the_cli_defaults_are_its_own() -> None:
    """SFTConfig lives JAX-free in train/config.py (train/sft.py re-exports it); `sft` with only the
    required flags builds SFTConfig's defaults, and its --model default is the catalog's."""
    got = _run(
        "import json, sys\n"
        "from entropix_s1.cli.main import build_parser\n"
        "from entropix_s1.cli.sft import config_from_args\n"
        "from entropix_s1.io.catalog import DEFAULT_MODEL\n"
        "from entropix_s1.train.config import SFTConfig\n"
        "a = build_parser().parse_args(['sft', '--data', 'd.jsonl', '--out', 'o'])\n"
        "same = config_from_args(a) == SFTConfig(data='d.jsonl')\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps({'same': same, 'heavy': heavy, 'model': SFTConfig().model == DEFAULT_MODEL}))\n"
    )
    assert got == {"same": True, "heavy": [], "model": True}
    from entropix_s1.train import config, sft

    assert sft.SFTConfig is config.SFTConfig


def test_lm_eval_is_imported_only_by_the_backend() -> None:
    """`import entropix_s1.lm_eval` (the package, its option parsing) imports neither lm-eval nor JAX;
    the backend module does, when lm-eval builds the model."""
    got = _run(
        "import json, sys\n"
        "import entropix_s1, entropix_s1.lm_eval, entropix_s1.lm_eval.options\n"
        "light = [m for m in ('lm_eval', 'jax', 'torch') if m in sys.modules]\n"
        "import entropix_s1.lm_eval.backend\n"
        "print(json.dumps({'light': light, 'loaded': 'lm_eval' in sys.modules}))\n"
    )
    assert got == {"light": [], "loaded": True}
