"""The `entropix-s1` command: `main.py` holds the table of subcommands, and each subcommand is one
small module here (`add_arguments(parser)` and `run(args) -> int`). Every argparse definition of
the package lives in this folder; the modules import the library (and so JAX) only in `run`.

`entropix_s1.cli.main` names the function here (as `entropix_s1.cli:main` did); the module of
that name is `sys.modules["entropix_s1.cli.main"]`, or `from entropix_s1.cli.main import ...`.
"""

from entropix_s1.cli.main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
