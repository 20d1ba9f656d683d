"""`entropix-s1 bench ...`: a thin entry to the throughput benchmark harness, `benchmarks/harness.py`.

Its arguments are the harness's own (`entropix-s1 bench --help` lists them); they are forwarded
as they are. The harness is benchmark code of the source checkout (it imports JAX, and torch for
the transformers side), so it is loaded by path, and only when the command runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from entropix_s1.errors import ConfigError

HELP = "throughput vs transformers (source checkout and dev extra; `entropix-s1 bench --help` lists its options)"
HARNESS_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "harness.py"
#: the name benchmarks/throughput.py and the tests import it under, so there is one copy
HARNESS_MODULE = "harness"

#: main() hands every argument after `bench` to `run` as `args.forward`, `--help` included
FORWARD = True


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.set_defaults(forward=[])
    return p


def harness() -> ModuleType:
    """benchmarks/harness.py (`add_arguments(parser)`, `main(args)`)."""
    if HARNESS_MODULE in sys.modules:
        return sys.modules[HARNESS_MODULE]
    if not HARNESS_FILE.is_file():
        raise ConfigError(f"bench needs a source checkout: {HARNESS_FILE} not found "
                          "(clone the repository and install it with `pip install -e .[dev]`)")
    spec = importlib.util.spec_from_file_location(HARNESS_MODULE, HARNESS_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[HARNESS_MODULE] = module  # dataclasses and pickling look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[HARNESS_MODULE]
        raise
    return module


def run(args: argparse.Namespace) -> int:
    h = harness()
    parser = argparse.ArgumentParser(prog="entropix-s1 bench", description="throughput vs transformers")
    h.add_arguments(parser)
    return int(h.main(parser.parse_args(args.forward)) or 0)
