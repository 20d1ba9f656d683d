"""`python -m entropix_s1.lm_eval ARGS`: lm-eval's own command line with `--model entropix-s1` registered.

Our errors (a bad model_arg, an unknown method, a missing checkpoint) print as one line and exit 2
instead of a traceback.
"""

from __future__ import annotations

import sys


def main() -> int:
    from entropix_s1.errors import EntropixS1Error
    from entropix_s1.lm_eval import register

    try:
        from lm_eval.__main__ import cli_evaluate
    except ImportError:
        print("entropix-s1: lm-eval is not installed; pip install 'entropix-s1[lm-eval]'", file=sys.stderr)
        return 2
    register()
    try:
        cli_evaluate()
    except EntropixS1Error as e:
        print(f"entropix-s1: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
