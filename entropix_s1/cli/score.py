"""`entropix-s1 score --text TEXT`: per-token logprob, entropy and varentropy (JSON lines)."""

from __future__ import annotations

import argparse
import json

from entropix_s1.cli.common import add_model_arguments, load_model

HELP = "per-token logprob, entropy and varentropy of a text (JSON lines)"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_model_arguments(p)
    p.add_argument("--text", required=True)
    return p


def run(a: argparse.Namespace) -> int:
    m = load_model(a, prompts=False)  # score reads the text as is
    for row in m.score(a.text):
        print(json.dumps(row, ensure_ascii=False))
    return 0
