"""Research throughput: N GSM8K problems through `compare`, static vs continuous slots, side by side.

    python benchmarks/research_throughput.py                      # 128 problems, both models
    python benchmarks/research_throughput.py --limit 32 --models smollm2-135m-think --methods 'budget:max=256'

For every model x method x schedule (static first, then continuous, same slot count): wall time,
problems/min, decode tokens/s (generated tokens / wall time, prefill included), slot utilisation
(`Model.last_run_stats`: slot-steps in which a row was generating), and whether the predictions of
the two schedules agree. Each method runs once untimed on 2 problems first, so compile time is
not counted. entropix/greedy is the tokens/s ratio of `entropix+budget` to `budget` (same schedule).
Writes `benchmarks/results/research_throughput/<name>.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout without installing

OUT = Path(__file__).resolve().parent / "results" / "research_throughput"
SCHEDULES = ("static", "continuous")


def measure(model: Any, problems: list, method: str, schedule: str, batch_size: int, workdir: Path,
            template: str | None = None) -> dict[str, Any]:
    """One timed `run_compare` of one method; its records and the slot statistics."""
    from entropix_s1.research.runner import run_compare
    from entropix_s1.research.store import read_results

    out = workdir / f"{method}-{schedule}".replace(":", "_").replace("+", "_").replace(",", "_")
    t = time.perf_counter()
    run_compare(model, problems, [method], out, batch_size=batch_size, progress=False, schedule=schedule,
                template=template)
    wall = time.perf_counter() - t
    records = read_results(out)
    stats = model.last_run_stats
    tokens = sum(r["thinking_tokens"] + r["answer_tokens"] for r in records)
    return dict(method=method, schedule=schedule, problems=len(records), wall_s=round(wall, 2),
                problems_per_min=round(60 * len(records) / wall, 2), tokens=tokens,
                tokens_per_s=round(tokens / wall, 2), utilisation=round(stats.utilisation, 3),
                accuracy=round(sum(r["correct"] for r in records) / max(1, len(records)), 4),
                predictions={r["id"]: r["prediction"] for r in records})


def run(models: dict[str, Callable[[], Any]], problems: list, methods: list[str], batch_size: int,
        template: str | None = None) -> dict[str, Any]:
    """Every model x method x schedule; the predictions dicts are folded into `same_predictions`."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, load in models.items():
            model = load()
            for method in methods:
                measure(model, problems[:2], method, "continuous", batch_size, Path(tmp) / f"warm-{name}", template)
                measure(model, problems[:2], method, "static", batch_size, Path(tmp) / f"warm-{name}-s", template)
                got = {s: measure(model, problems, method, s, batch_size, Path(tmp) / name, template) for s in SCHEDULES}
                same = got["static"].pop("predictions") == got["continuous"].pop("predictions")
                for s in SCHEDULES:
                    rows.append(dict(model=name, same_predictions=same, **got[s]))
                print(json.dumps(rows[-2:]), file=sys.stderr)
    _ratios(rows)
    return dict(rows=rows, batch_size=batch_size, problems=len(problems), machine=_machine())


def _ratios(rows: list[dict[str, Any]]) -> None:
    """continuous/static speed-up per (model, method); entropix/greedy per (model, schedule)."""
    by = {(r["model"], r["method"], r["schedule"]): r for r in rows}
    for r in rows:
        static = by.get((r["model"], r["method"], "static"))
        r["speedup_vs_static"] = round(static["wall_s"] / r["wall_s"], 2) if static else None
        if r["method"].startswith("entropix+"):
            greedy = by.get((r["model"], r["method"].removeprefix("entropix+"), r["schedule"]))
            r["entropix_over_greedy"] = round(r["tokens_per_s"] / greedy["tokens_per_s"], 3) if greedy else None


def _machine() -> dict[str, Any]:
    import os

    import jax

    return dict(platform=platform.platform(), processor=platform.processor(), cpus=os.cpu_count(),
                jax=jax.__version__, backend=jax.default_backend())


def to_markdown(report: dict[str, Any]) -> str:
    head = ("| model | method | schedule | problems | wall s | problems/min | tokens/s | utilisation | "
            "speed-up vs static | same predictions | entropix/greedy |")
    lines = [f"Research throughput: {report['problems']} GSM8K problems, {report['batch_size']} slots, "
             f"{report['machine']['cpus']} CPUs ({report['machine']['backend']}).", "", head,
             "|" + "---|" * 11]
    for r in report["rows"]:
        lines.append(f"| {r['model']} | `{r['method']}` | {r['schedule']} | {r['problems']} | {r['wall_s']} | "
                     f"{r['problems_per_min']} | {r['tokens_per_s']} | {r['utilisation']:.0%} | "
                     f"{r['speedup_vs_static']} | {r['same_predictions']} | {r.get('entropix_over_greedy') or ''} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=128, help="GSM8K test problems (default 128)")
    ap.add_argument("--models", default="smollm2-135m-instruct,smollm2-135m-think")
    ap.add_argument("--methods", default="budget:max=256;entropix+budget:max=256")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--name", default="latest", help="output file stem under benchmarks/results/research_throughput/")
    args = ap.parse_args(argv)

    import entropix_s1
    from entropix_s1.research.datasets import load_dataset

    problems = load_dataset("gsm8k", limit=args.limit)
    models = {name: (lambda name=name: entropix_s1.load(name)) for name in args.models.split(",")}
    report = run(models, problems, args.methods.split(";"), args.batch_size)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (OUT / f"{args.name}.md").write_text(to_markdown(report))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
