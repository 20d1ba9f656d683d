"""`entropix-s1 bench ...`: a thin entry to the throughput benchmark harness.

Its arguments are the harness's own (`benchmarks/throughput.py --help` lists them); they are
forwarded as they are. The harness imports JAX (and torch for the transformers side), so it is
loaded only when the command runs: `entropix_s1.bench` if the package still has it, else
`benchmarks/harness.py` of the source checkout.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from entropix_s1.errors import ConfigError

HELP = "throughput vs transformers (needs the dev extra; `entropix-s1 bench --help` lists its options)"
#: where the harness lives, tried in order
HARNESS_MODULE = "entropix_s1.bench"
HARNESS_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "harness.py"


#: main() hands every argument after `bench` to `run` as `args.forward`, `--help` included
FORWARD = True


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.set_defaults(forward=[])
    return p


def harness() -> ModuleType:
    """The module that defines `add_bench_arguments` and `bench_main`."""
    try:
        return importlib.import_module(HARNESS_MODULE)
    except ModuleNotFoundError as e:
        if e.name != HARNESS_MODULE:
            raise
    if not HARNESS_FILE.is_file():
        raise ConfigError(f"the benchmark harness is not installed: neither {HARNESS_MODULE} nor {HARNESS_FILE} "
                          "exists (run it from a source checkout)")
    spec = importlib.util.spec_from_file_location("entropix_s1_bench_harness", HARNESS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args: argparse.Namespace) -> int:
    h = harness()
    parser = argparse.ArgumentParser(prog="entropix-s1 bench", description="throughput vs transformers")
    h.add_bench_arguments(parser)
    return int(h.bench_main(parser.parse_args(args.forward)) or 0)
