"""`entropix-s1` command line: thin wrappers over the Python API.

    entropix-s1 fetch smollm2-135m-instruct
    entropix-s1 convert --gguf FILE --out DIR
    entropix-s1 score --text TEXT
    entropix-s1 generate --prompt TEXT [--sampler entropix] [--max-thinking N] ... | [--method SPEC]
    entropix-s1 calibrate --texts FILE.jsonl --out CONFIG.json
    entropix-s1 sft --data TRAIN.jsonl --limit 1000 --out weights/smollm2-135m-think/
    entropix-s1 plot TRACE.jsonl --out DIR
    entropix-s1 compare --dataset D --methods ... --out DIR
    entropix-s1 bench ...

`--model` defaults to the catalog's DEFAULT_MODEL. Each subcommand is a module of this package
with `HELP`, `add_arguments(parser)` and `run(args) -> int`; building the parser imports only
those modules (no JAX, matplotlib or optax: they are imported by `run`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from entropix_s1.errors import EntropixS1Error

#: subcommand -> the module that defines it, in the order `--help` lists them
COMMANDS: dict[str, str] = {
    name: f"entropix_s1.cli.{name}"
    for name in ("fetch", "convert", "score", "generate", "calibrate", "sft", "plot", "compare", "bench")
}


def command_module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="entropix-s1", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in COMMANDS:
        module = command_module(name)
        forward = getattr(module, "FORWARD", False)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, add_help=not forward)
        module.add_arguments(p)
        p.set_defaults(fn=module.run)
    return ap


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not getattr(command_module(args.cmd), "FORWARD", False):
            parser.parse_args(argv)  # argparse's own error about the unknown arguments (exit 2)
        args.forward = extra
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. A library error (`EntropixS1Error`) prints
    `entropix-s1 <cmd>: error: <message>` (no traceback) and returns 2, as argparse does for a bad flag."""
    args = _parse(argv)
    try:
        return int(args.fn(args) or 0)
    except EntropixS1Error as e:
        print(f"entropix-s1 {args.cmd}: error: {e}", file=sys.stderr)
        return 2
