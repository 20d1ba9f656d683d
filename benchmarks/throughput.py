"""Throughput benchmark: our jitted loop (greedy, entropix, budget forcing) vs transformers `generate`.

    python benchmarks/throughput.py --cpus 0,1 --time-budget 20   # SmolLM2-135M, the default grid (+ llama.cpp if installed)
    python benchmarks/throughput.py --random-config llama-1b --skip-hf --dtypes bfloat16 --hbm-gbs 4800
    python benchmarks/throughput.py --help

A thin wrapper over `benchmarks/harness.py` (see benchmarks/README.md for what is measured and how).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

from harness import add_arguments, main as bench_main  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
    return bench_main(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
