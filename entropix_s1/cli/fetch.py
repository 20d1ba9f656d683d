"""`entropix-s1 fetch NAME`: download and convert a catalog model."""

from __future__ import annotations

import argparse

HELP = "download and convert a catalog model into weights/"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("name")
    return p


def run(a: argparse.Namespace) -> int:
    from entropix_s1.io.catalog import fetch

    print(fetch(a.name))
    return 0
