"""`entropix-s1 convert --gguf FILE --out DIR`."""

from __future__ import annotations

import argparse

HELP = "convert a llama/qwen2/qwen3/gemma3 GGUF to an HF checkpoint dir"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--gguf", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    return p


def run(a: argparse.Namespace) -> int:
    from entropix_s1.io.gguf_import import convert_gguf

    print(convert_gguf(a.gguf, a.out, overwrite=a.overwrite))
    return 0
