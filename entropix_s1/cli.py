"""`entropix-s1` command line: thin wrappers over the Python API.

    entropix-s1 fetch smollm2-135m-instruct
    entropix-s1 convert --gguf FILE --out DIR
    entropix-s1 score --model M --text TEXT
    entropix-s1 generate --model M --prompt TEXT [--sampler entropix] [--max-thinking N] ...
    entropix-s1 calibrate --model M --texts FILE.jsonl --out CONFIG.json
    entropix-s1 sft --model M --data TRAIN.jsonl --limit 1000 --out weights/smollm2-135m-think/
    entropix-s1 plot TRACE.jsonl --out DIR
    entropix-s1 compare --model M --dataset D --methods ... --out DIR
    entropix-s1 bench ...
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from entropix_s1.errors import EntropixS1Error

DEFAULT_MODEL = "smollm2-135m-instruct"


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help="catalog name, HF checkpoint directory, or an `sft --out` adapter directory")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weight dtype")
    p.add_argument("--mesh", default=None, help="DPxTP device mesh, e.g. 1x8 (docs/sharding.md)")


def _cmd_fetch(a: argparse.Namespace) -> int:
    from entropix_s1.io.catalog import fetch

    print(fetch(a.name))
    return 0


def _cmd_convert(a: argparse.Namespace) -> int:
    from entropix_s1.io.gguf_import import convert_gguf

    print(convert_gguf(a.gguf, a.out, overwrite=a.overwrite))
    return 0


def _cmd_score(a: argparse.Namespace) -> int:
    from entropix_s1.host.engine import load

    m = load(a.model, dtype=a.dtype, mesh=a.mesh)
    for row in m.score(a.text):
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _budget_from_args(a: argparse.Namespace, model):
    """A Budget when any budget flag is given; delimiters default to the model's own."""
    wants = (a.max_thinking is not None or a.min_thinking or a.num_waits or a.think_start or a.think_end
             or a.max_answer is not None)
    if not wants:
        return None
    kw = dict(min_thinking_tokens=a.min_thinking, max_thinking_tokens=a.max_thinking, num_waits=a.num_waits,
              wait_text=a.wait, answer_prefix=a.answer_prefix, max_answer_tokens=a.max_answer)
    if a.think_start is not None:
        kw["think_start"] = a.think_start
    if a.think_end:
        kw.update(think_end=tuple(a.think_end), cap_with_delimiter=True)
    return model.budget(**kw)


def _sampler_from_args(a: argparse.Namespace):
    from entropix_s1.core.sampling import Sample

    if a.sampler == "sample":
        return Sample(temperature=a.temperature, top_k=a.top_k, top_p=a.top_p, min_p=a.min_p)
    if a.sampler == "entropix" and a.entropix_config:
        from entropix_s1.research.calibrate import load_config

        return load_config(a.entropix_config)
    return a.sampler


def _cmd_generate(a: argparse.Namespace) -> int:
    from entropix_s1.host.engine import load

    m = load(a.model, dtype=a.dtype, mesh=a.mesh)
    kw = dict(sampler=_sampler_from_args(a), budget=_budget_from_args(a, m), max_new_tokens=a.max_new_tokens,
              seed=a.seed, raw=a.raw, prefill=a.prefill, system=a.system, ignore_eos=a.ignore_eos)
    if a.stream:
        pieces = []
        for piece in m.stream(a.prompt, **kw):
            pieces.append(piece)
            if not a.json:
                print(piece, end="", flush=True)
        result = m.last_stream_result
        if not a.json:
            print()
    else:
        (result,) = m.generate([a.prompt], **kw)
    if a.trace:
        from entropix_s1.viz.trace import write_trace

        write_trace([result], a.trace)
    if a.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    elif not a.stream:
        print(result.text)
        print(f"[thinking={result.thinking_tokens} answer={result.answer_tokens} waits={result.waits_inserted} "
              f"pauses={result.pauses_inserted} stop={result.stop_reason}]", file=sys.stderr)
    return 0


def _cmd_calibrate(a: argparse.Namespace) -> int:
    from entropix_s1.research.calibrate import calibrate, read_texts, save_config
    from entropix_s1.host.engine import load

    m = load(a.model, dtype=a.dtype, mesh=a.mesh)
    if a.budget:  # adaptive budget forcing: the texts are prompts; see calibrate.calibrate_budget
        import dataclasses
        from pathlib import Path

        from entropix_s1.research.calibrate import calibrate_budget

        prompts = read_texts(a.texts, a.field, a.limit)
        if a.template:  # prompts as `compare` renders them, so the stops are the ones it will see
            from entropix_s1.research.datasets import Problem, render_prompt

            prompts = [render_prompt(Problem(id=str(i), question=q, gold="", dataset=""), a.template)
                       for i, q in enumerate(prompts)]
        b, report = calibrate_budget(m, prompts, quantile=a.quantile, max_new_tokens=a.max_new_tokens)
        report["template"] = a.template
        fields = {k: v for k, v in dataclasses.asdict(b).items() if k != "think_end"}
        out = dict(report, budget=dict(fields, think_end=list(b.think_end)))
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
        print(a.out)
        print(f"uncertain_entropy = {b.uncertain_entropy:.4f} nats ({report['ended']} of {report['prompts']} "
              f"ended thinking by themselves); use it as adaptive-budget:unc={b.uncertain_entropy:.3f}")
        return 0
    cfg = calibrate(m, read_texts(a.texts, a.field, a.limit))
    print(save_config(cfg, a.out))
    print(json.dumps(cfg.thresholds(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="entropix-s1", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("fetch", help="download and convert a catalog model into weights/")
    p.add_argument("name")
    p.set_defaults(fn=_cmd_fetch)

    p = sub.add_parser("convert", help="convert a llama/qwen2/qwen3 GGUF to an HF checkpoint dir")
    p.add_argument("--gguf", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(fn=_cmd_convert)

    p = sub.add_parser("score", help="per-token logprob, entropy and varentropy of a text (JSON lines)")
    _add_model(p)
    p.add_argument("--text", required=True)
    p.set_defaults(fn=_cmd_score)

    p = sub.add_parser("generate", help="generate with budget forcing / entropix sampling")
    _add_model(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--raw", action="store_true", help="feed the prompt as is (no chat template)")
    p.add_argument("--system", default=None)
    p.add_argument("--sampler", default="greedy", choices=["greedy", "sample", "entropix"])
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument("--entropix-config", default=None, help="JSON from `calibrate`")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ignore-eos", action="store_true")
    p.add_argument("--think-start", default=None)
    p.add_argument("--think-end", action="append", default=None, help="end-of-thinking delimiter (repeatable)")
    p.add_argument("--min-thinking", type=int, default=0)
    p.add_argument("--max-thinking", type=int, default=None)
    p.add_argument("--num-waits", type=int, default=0)
    p.add_argument("--wait", default="Wait")
    p.add_argument("--answer-prefix", default="\nFinal Answer:")
    p.add_argument("--max-answer", type=int, default=None)
    p.add_argument("--prefill", default="", help="assistant prefill (token forcing), e.g. '<think>I know this'")
    p.add_argument("--trace", default=None, help="write a per-token JSONL trace here")
    p.add_argument("--json", action="store_true", help="print one JSON object with the result fields")
    p.add_argument("--stream", action="store_true", help="print text as it is produced")
    p.set_defaults(fn=_cmd_generate)

    p = sub.add_parser("calibrate", help="entropix thresholds at quantiles of this model's metrics")
    _add_model(p)
    p.add_argument("--texts", required=True, help="JSONL file of texts")
    p.add_argument("--field", default=None)
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--out", required=True)
    p.add_argument("--budget", action="store_true",
                   help="calibrate adaptive budget forcing instead: the texts are prompts, and uncertain_entropy "
                        "goes to --quantile of the entropies at which the model ends thinking by itself")
    p.add_argument("--quantile", type=float, default=0.5, help="with --budget (default 0.5)")
    p.add_argument("--template", default=None,
                   help="with --budget: wrap each text in this prompt template (arithmetic, math, plain, or a "
                        "string with {question}), as `compare` does; calibrate on the prompts you will run")
    p.add_argument("--max-new-tokens", type=int, default=256, help="with --budget (default 256)")
    p.set_defaults(fn=_cmd_calibrate)

    from entropix_s1.train.sft import add_sft_arguments, sft_main

    p = sub.add_parser("sft", help="LoRA fine-tuning that teaches <think> ... </think> (s1 at toy scale)")
    add_sft_arguments(p)
    p.set_defaults(fn=sft_main)

    from entropix_s1.viz.plots import add_plot_arguments, plot_main

    p = sub.add_parser("plot", help="timeline.png, regimes.png, tokens.html from a trace")
    add_plot_arguments(p)
    p.set_defaults(fn=plot_main)

    try:
        from entropix_s1.research.compare import add_compare_arguments, compare_main

        p = sub.add_parser("compare", help="accuracy vs thinking tokens for decoding methods on a dataset")
        add_compare_arguments(p)
        p.set_defaults(fn=compare_main)
    except ImportError:  # pragma: no cover - research extras missing
        pass
    try:
        from entropix_s1.bench import add_bench_arguments, bench_main

        p = sub.add_parser("bench", help="throughput vs transformers (needs the dev extra)")
        add_bench_arguments(p)
        p.set_defaults(fn=bench_main)
    except ImportError:
        pass
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except EntropixS1Error as e:
        print(f"entropix-s1: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
