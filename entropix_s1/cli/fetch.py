"""`entropix-s1 fetch NAME`: download and convert a catalog model. `--help` (at its end) and `--list`
show the catalog, with the GGUF quantisation (Q4_1, Q4_K_M) each model's weights are dequantised from."""

from __future__ import annotations

import argparse

from entropix_s1.io.catalog import describe  # JAX-free

HELP = "download and convert a catalog model into weights/"


class _ListCatalog(argparse.Action):
    """`--list`: print the catalog and exit 0 (as `--help` does), with or without NAME."""

    def __init__(self, option_strings: list[str], dest: str, **kw) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(describe())
        parser.exit()


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the listing one line a model
    p.epilog = "catalog:\n" + "\n".join(f"  {line}" for line in describe().splitlines())
    p.add_argument("name", help="catalog model to fetch (listed below)")
    p.add_argument("--list", action=_ListCatalog, help="print the catalog and exit")
    return p


def run(a: argparse.Namespace) -> int:
    from entropix_s1.io.catalog import ADAPTED, fetch

    if a.name in ADAPTED:  # a fine-tuned catalog model: its base fetched, the committed adapter merged onto it
        from entropix_s1.io.resolve import resolve

        print(resolve(a.name))
    else:
        print(fetch(a.name))
    return 0
