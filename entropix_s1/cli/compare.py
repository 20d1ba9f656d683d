"""`entropix-s1 compare`: accuracy vs thinking tokens of decoding methods on a dataset (resumable),
with K samples per problem and S seeds for sampling methods, and paired tests against a baseline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from entropix_s1.io.catalog import DEFAULT_MODEL

HELP = "accuracy vs thinking tokens for decoding methods on a dataset (samples, votes, paired tests)"

#: exit status after Ctrl-C (128 + SIGINT), as a shell reports it
INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of `entropix-s1 compare`."""
    from entropix_s1.research.datasets import PROMPT_TEMPLATES  # plain Python: no JAX

    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"model name or checkpoint path (entropix_s1.load; default {DEFAULT_MODEL})")
    parser.add_argument(
        "--dataset", required=True,
        help="built-in dataset (gsm8k, math500, aime24, amc23, mawps_addsub, mawps_multiarith) or a .jsonl path",
    )
    parser.add_argument("--question-field", default=None, help="JSONL field holding the question (custom files)")
    parser.add_argument("--answer-field", default=None, help="JSONL field holding the gold answer (custom files)")
    parser.add_argument("--id-field", default=None, help="JSONL field holding a stable id (default: line index)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N problems")
    parser.add_argument(
        "--methods", action="append", required=True, metavar="LIST",
        help="decoding methods, separated by ';' (quote it) or given by repeating the flag; "
             "braces expand: --methods 'greedy;budget:max={64,128,256,512};entropix+budget:max=512'. "
             "Grammar: family[:k=v,...] with families greedy, sample, entropix, budget, adaptive-budget "
             "and X+budget (see entropix_s1/research/methods.py; `generate --method` takes one such spec)",
    )
    parser.add_argument("--out", required=True, help="output directory (resumed if it holds results)")
    parser.add_argument("--batch-size", type=int, default=8, help="row slots decoded at once (default 8)")
    parser.add_argument("--schedule", default="continuous", choices=["continuous", "static"],
                        help="continuous: a finished row's slot takes the next problem at once (default); "
                             "static: fixed batches of --batch-size. Same predictions either way")
    parser.add_argument("--data-dir", default=None, help="directory of the built-in dataset files "
                        "(default $ENTROPIX_S1_DATA or <repo>/../shared/data)")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--samples", type=int, default=1, metavar="K",
                        help="samples per problem for every sampling method (default 1): K independent rows that "
                             "continuous batching schedules like any other; the summary adds Pass@1 over samples, "
                             "pass@k, maj@k and DeepConf's confidence-weighted votes. Deterministic (greedy) methods "
                             "run once whatever K is. A larger K later adds only the missing samples")
    parser.add_argument("--seeds", type=int, default=1, metavar="S",
                        help="independent repeats of the whole run with seeds --seed .. --seed+S-1 (default 1), for "
                             "the seed-to-seed standard deviation; sampling methods only")
    parser.add_argument("--baseline", default=None, metavar="METHOD",
                        help="the method the summary's paired tests compare against (exact McNemar / paired "
                             "bootstrap; default: the largest plain cap budget:max=N, else the first method)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="max_new_tokens of methods without a thinking cap or max_new= (default 1024)")
    parser.add_argument("--template", default=None, choices=sorted(PROMPT_TEMPLATES),
                        help="prompt template (default: the dataset's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _interrupted(out: Path) -> int:
    from entropix_s1.research.store import RESULTS_FILE, read_results

    n = len(read_results(out)) if out.is_dir() else 0
    print(f"\nentropix-s1 compare: interrupted; {n} result(s) are saved in {out / RESULTS_FILE}. "
          "Run the same command again to resume where it stopped.", file=sys.stderr)
    return INTERRUPTED


def run(args: argparse.Namespace) -> int:
    """Validate everything cheap first (out dir, methods, dataset), then load the model and run."""
    from entropix_s1.errors import ConfigError
    from entropix_s1.research.datasets import load_dataset
    from entropix_s1.research.methods import expand_specs, parse_method, parse_spec
    from entropix_s1.research.runner import resolve_baseline, run_compare
    from entropix_s1.research.store import RESULTS_FILE, check_out_dir

    out = check_out_dir(args.out)
    for flag, value in (("--samples", args.samples), ("--seeds", args.seeds)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    specs = [parse_spec(s, default_max_new_tokens=args.max_new_tokens) for s in expand_specs(args.methods)]
    problems = load_dataset(args.dataset, data_dir=args.data_dir, question_field=args.question_field,
                            answer_field=args.answer_field, id_field=args.id_field, limit=args.limit)
    methods = [parse_method(s) for s in specs]
    resolve_baseline(args.baseline, out, [m.name for m in methods])  # a bad --baseline fails before the model loads
    import entropix_s1  # lazy: `load` imports JAX
    from entropix_s1.cli.interrupt import notice_on_interrupt

    notice = (f"\nentropix-s1 compare: Ctrl-C received; stopping. Finished results are already in "
              f"{out / RESULTS_FILE}; a compile or decode step that is running ends first (up to about a minute "
              "on a CPU).")
    try:
        with notice_on_interrupt(notice):
            model = entropix_s1.load(args.model)
            if not getattr(model, "has_chat_template", True):
                print(f"note: {model.name} has no chat template; prompts go in as raw text (after BOS)",
                      file=sys.stderr)
            summary = run_compare(model, problems, methods, out, batch_size=args.batch_size, seed=args.seed,
                                  progress=not args.no_progress, template=args.template, schedule=args.schedule,
                                  samples=args.samples, seeds=args.seeds, baseline=args.baseline)
    except KeyboardInterrupt:
        return _interrupted(out)
    print(summary.summary_path.read_text(encoding="utf-8"))
    print(f"results: {out / RESULTS_FILE}\nsummary: {summary.summary_path}"
          + (f"\nplot: {summary.plot_path}" if summary.plot_path else ""))
    return 0
