"""Sequential vs parallel test-time scaling (issue 19): the experiment, in resumable parts.

    python benchmarks/scaling_experiment.py plan                      # parts, rows, CPU-time estimate
    python benchmarks/scaling_experiment.py run                       # every part, cheapest group first
    python benchmarks/scaling_experiment.py run think-gsm8k-seq qwen-gsm8k-maj   # named parts only
    python benchmarks/scaling_report.py                               # then every figure and table

Models: the thinking SmolLM2 (`smollm2-135m-think`, plain prompts as it was trained) and
Qwen2.5-Coder-0.5B-Instruct (the datasets' prompts). Datasets: the first `--gsm8k-limit` (300)
GSM8K test problems and the first `--math500-limit` (500, all) of MATH-500. Each (model, dataset)
has one out dir, `benchmarks/results/scaling/<model>_<dataset>/`, that four parts fill:

| part | methods | samples |
|---|---|---|
| `seq` | greedy; s1 caps (4 levels, the model's); 1 and 2 "Wait" at the top cap; adaptive budget | 1 (deterministic) |
| `methods` | NoThinking, NoWait, graceful cap, EAT, DEER, Dynasor-CoT, at the top cap | 1 (deterministic) |
| `random` | AlphaOne (random wait draws), entropix under the top cap | 1 sample, 1 seed |
| `maj` | sampling at t = 0.7 under the top cap | `--samples` x `--seeds` (8 x 2: maj@k up to k = 16) |

Each part is one `entropix-s1 compare` call (`--baseline` the top plain cap). Re-running a part
skips its finished (problem, method, seed, sample) rows, so a killed part resumes where it
stopped and a larger `--samples`/`--seeds` adds only the new rows. Every finished part appends
its wall time to `benchmarks/results/scaling/part_times.jsonl`, to check the plan against.

`plan` estimates each part's CPU time: rows x estimated tokens per row / tokens per second.
Tokens per row: the model's natural thinking and answer lengths on the dataset, read from a
committed comparison (a "Wait" adds 40% thinking, a cap clips it), or the method's max_new_tokens
where no committed run exists (an upper bound). Tokens per second: the research throughput
benchmark's continuous-batching measurement (`benchmarks/results/research_throughput/`, run
`python benchmarks/research_throughput.py --models MODEL` to add a model), else the model's
committed `compare` timings (static batches on the older engine: conservative), times each
method's speed relative to the plain cap, measured on committed runs of the thinking SmolLM2
(DEER's and EAT's probes, AlphaOne, entropix's branches). The estimate is printed with its sources.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a source checkout without installing

from entropix_s1.research.methods import expand_specs, is_deterministic, parse_spec  # noqa: E402
from entropix_s1.research.store import read_results  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
OUT_ROOT = RESULTS / "scaling"
GROUPS = ("seq", "methods", "random", "maj")
#: thinking growth per "Wait" extension (s1_think_gsm8k: 127 -> 174 -> 226 thinking tokens for 0/1/2 waits)
WAIT_GROWTH = 0.4


@dataclasses.dataclass(frozen=True)
class ModelSetup:
    name: str
    short: str
    template: str | None  # None: the dataset's prompt
    caps: tuple[int, int, int, int]
    alphaone: str  # AlphaOne at the top cap, with the options that fit the model's writing
    graceful_soft: int  # the graceful cap's soft cap (grace window 64 tokens): near the natural length


MODELS = (
    # the thinking SmolLM2 thinks ~130 tokens on GSM8K (a few rows run to 512) and writes one step
    # per line (docs/methods.md); the caps are those of the committed s1 experiment
    ModelSetup("smollm2-135m-think", "think", "plain", (64, 128, 256, 512), "alphaone:max={top},base=128,breaks=line",
               128),
    # Qwen's replies run ~280 tokens on GSM8K; AlphaOne's defaults put its moment at 1.4 x 256 < 512
    ModelSetup("qwen2.5-coder-0.5b-instruct", "qwen", None, (64, 128, 256, 512), "alphaone:max={top}", 256),
)
DATASETS = ("gsm8k", "math500")
#: (model short name, dataset) -> (committed results dir, method): the least constrained run there is
NATURAL = {
    ("think", "gsm8k"): ("s1_think_gsm8k", "budget:max=512"),
    ("qwen", "gsm8k"): ("qwen05_gsm8k", "greedy"),
    ("qwen", "math500"): ("qwen05_math500", "budget:max=256,waits=1"),
}
#: (model short name) -> (committed results dir, method) whose timings give tokens/s without a throughput run
TIMINGS = {"qwen": ("qwen05_gsm8k", "greedy")}


@dataclasses.dataclass(frozen=True)
class Part:
    name: str
    model: ModelSetup
    dataset: str
    limit: int
    methods: tuple[str, ...]  # canonical names
    samples: int = 1
    seeds: int = 1
    root: Path = OUT_ROOT

    @property
    def out(self) -> Path:
        return self.root / f"{self.model.short}_{self.dataset}"

    @property
    def baseline(self) -> str:
        return f"budget:max={self.model.caps[-1]}"

    def rows(self, method: str) -> int:
        return self.limit * (1 if is_deterministic(method) else self.samples * self.seeds)


def _group_specs(m: ModelSetup, group: str) -> str:
    top, caps = m.caps[-1], ",".join(map(str, m.caps))
    return {
        "seq": f"budget:max={top};greedy;budget:max={{{caps}}};budget:max={top},waits={{1,2}};"
               f"adaptive-budget:max={top},waits=1",
        "methods": f"nothinking:max={top};nowait:max={top};graceful:soft={m.graceful_soft};eat:max={top};"
                   f"deer:max={top};dynasor:max={top}",
        # entropix under the top cap only: unbounded it runs to max_new_tokens at half greedy's speed
        "random": f"{m.alphaone.format(top=top)};entropix+budget:max={top}",
        "maj": f"sample+budget:t=0.7,max={top}",
    }[group]


def parts(gsm8k_limit: int = 300, math500_limit: int = 500, samples: int = 8, seeds: int = 2,
          root: Path = OUT_ROOT) -> list[Part]:
    """Every part, group by group (all `seq` parts first: the cheapest give the widest picture)."""
    limits = {"gsm8k": gsm8k_limit, "math500": math500_limit}
    out = []
    for group in GROUPS:
        for m in MODELS:
            for ds in DATASETS:
                k, s = (samples, seeds) if group == "maj" else (1, 1)
                methods = tuple(expand_specs(_group_specs(m, group)))
                out.append(Part(f"{m.short}-{ds}-{group}", m, ds, limits[ds], methods, k, s, root))
    return out


# ----------------------------------------------------------------------------------- plan


def _mean_lengths(run_dir: Path, method: str) -> tuple[float, float] | None:
    recs = [r for r in read_results(run_dir) if r["method"] == method]
    if not recs:
        return None
    return (sum(r["thinking_tokens"] for r in recs) / len(recs), sum(r["answer_tokens"] for r in recs) / len(recs))


def natural_lengths(part: Part) -> tuple[tuple[float, float] | None, str]:
    """Mean (thinking, answer) tokens of the model on the dataset, and where they come from."""
    src = NATURAL.get((part.model.short, part.dataset))
    lengths = _mean_lengths(RESULTS / src[0], src[1]) if src else None
    return lengths, (f"{src[0]} `{src[1]}`" if lengths else "none committed: max_new_tokens (upper bound)")


def tokens_per_row(method: str, natural: tuple[float, float] | None) -> float:
    """Estimated generated tokens of one row of `method` (see the module docstring)."""
    spec = parse_spec(method)
    if natural is None:
        return float(spec.max_new_tokens)
    think, answer = natural
    b = spec.budget
    if b.no_thinking:
        return min(spec.max_new_tokens, think + answer)
    t = think * (1 + WAIT_GROWTH * b.num_waits)
    if b.max_thinking_tokens is not None:
        t = min(t, b.max_thinking_tokens)
    return min(spec.max_new_tokens, t + answer)


def _throughput_rows() -> list[dict]:
    rows = []
    for f in sorted((RESULTS / "research_throughput").glob("*.json")):
        rows += json.loads(f.read_text()).get("rows", [])
    return rows


def tokens_per_second(m: ModelSetup) -> tuple[float, str]:
    """Continuous-batching decode tokens/s of the model (research throughput), else from timings."""
    rows = [r for r in _throughput_rows() if r["model"] == m.name and r["schedule"] == "continuous"
            and "entropix" not in r["method"]]
    if rows:
        best = max(rows, key=lambda r: r["problems"])
        return best["tokens_per_s"], f"research_throughput, {best['problems']} problems, `{best['method']}`"
    run_dir, method = TIMINGS[m.short]
    recs = [r for r in read_results(RESULTS / run_dir) if r["method"] == method]
    tokens = sum(r["thinking_tokens"] + r["answer_tokens"] for r in recs)
    return tokens / sum(r["seconds"] for r in recs), f"{run_dir} `{method}` timings (static batches: conservative)"


def _tokens_per_s_of(run_dir: str, method: str) -> float | None:
    recs = [r for r in read_results(RESULTS / run_dir) if r["method"] == method]
    secs = sum(float(r.get("seconds") or 0) for r in recs)
    return sum(r["thinking_tokens"] + r["answer_tokens"] for r in recs) / secs if secs else None


def relative_speed(method: str) -> float:
    """The method's tokens/s over the plain cap's, from committed runs of the thinking SmolLM2."""
    spec = parse_spec(method)
    if spec.sampler_kind == "entropix":
        ent = [r for r in _throughput_rows() if r.get("entropix_over_greedy") and r["schedule"] == "continuous"]
        return ent[-1]["entropix_over_greedy"] if ent else 0.5
    head = spec.name.partition(":")[0].split("+")[-1]
    measured = {"alphaone": "alphaone:max=256,base=128,breaks=line", "nowait": "nowait:max=256",
                "nothinking": "nothinking:max=256", "deer": "deer:max=256", "eat": "eat:max=256",
                "graceful": "graceful:soft=128"}
    if head not in measured:
        return 1.0
    base, this = _tokens_per_s_of("methods_think_gsm8k", "budget:max=256"), _tokens_per_s_of("methods_think_gsm8k",
                                                                                              measured[head])
    return this / base if base and this else 1.0


def plan(all_parts: list[Part]) -> list[str]:
    """The plan as markdown: per part its rows, tokens and CPU hours, with the sources."""
    lines = ["| part | methods | rows | est. tokens | est. CPU h |", "|---|---:|---:|---:|---:|"]
    notes: dict[str, str] = {}
    total_h = 0.0
    for p in all_parts:
        natural, src = natural_lengths(p)
        tps, tsrc = tokens_per_second(p.model)
        notes[f"{p.model.short}/{p.dataset} lengths"] = src
        notes[f"{p.model.short} tokens/s"] = f"{tps:.1f} ({tsrc})"
        tokens = secs = 0.0
        for m in p.methods:
            t = p.rows(m) * tokens_per_row(m, natural)
            tokens += t
            secs += t / (tps * relative_speed(m))
        total_h += secs / 3600
        lines.append(f"| `{p.name}` | {len(p.methods)} | {sum(p.rows(m) for m in p.methods)} | {tokens:,.0f} "
                     f"| {secs / 3600:.1f} |")
    lines.append(f"| **total** | | | | **{total_h:.1f}** |")
    lines += ["", "Sources:"] + [f"- {k}: {v}" for k, v in notes.items()]
    return lines


# ------------------------------------------------------------------------------------ run


def _cli() -> list[str]:
    env = os.environ.get("ENTROPIX_S1_CLI")
    return shlex.split(env) if env else [sys.executable, "-m", "entropix_s1.cli"]


def command(p: Part, batch_size: int) -> list[str]:
    cmd = _cli() + ["compare", "--model", p.model.name, "--dataset", p.dataset, "--limit", str(p.limit),
                    "--methods", ";".join(p.methods), "--out", str(p.out), "--batch-size", str(batch_size),
                    "--samples", str(p.samples), "--seeds", str(p.seeds), "--baseline", p.baseline, "--no-progress"]
    return cmd + (["--template", p.model.template] if p.model.template else [])


def run_part(p: Part, batch_size: int) -> int:
    """One part (resumes by itself); its wall time goes to part_times.jsonl when it finishes."""
    cmd = command(p, batch_size)
    print("+ " + shlex.join(cmd), flush=True)
    t0 = time.time()
    rc = subprocess.call(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}"
                                            + os.environ.get("PYTHONPATH", "")})
    if rc == 0:
        p.out.mkdir(parents=True, exist_ok=True)
        with (p.root / "part_times.jsonl").open("a") as f:
            f.write(json.dumps({"part": p.name, "wall_s": round(time.time() - t0, 1), "finished": time.ctime(),
                                "rows": len(read_results(p.out))}) + "\n")
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["plan", "run", "list"])
    ap.add_argument("parts", nargs="*", help="part names (default: all); see `list`")
    ap.add_argument("--gsm8k-limit", type=int, default=300)
    ap.add_argument("--math500-limit", type=int, default=500)
    ap.add_argument("--samples", type=int, default=8, help="samples per seed of the maj part (default 8)")
    ap.add_argument("--seeds", type=int, default=2, help="seeds of the maj part (default 2)")
    ap.add_argument("--batch-size", type=int, default=8, help="row slots (default 8, the fastest on 2 CPUs)")
    ap.add_argument("--out-root", default=str(OUT_ROOT), help=f"where the out dirs go (default {OUT_ROOT})")
    a = ap.parse_args(argv)
    every = parts(a.gsm8k_limit, a.math500_limit, a.samples, a.seeds, Path(a.out_root))
    by_name = {p.name: p for p in every}
    unknown = [n for n in a.parts if n not in by_name]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; parts: {', '.join(by_name)}")
    chosen = [by_name[n] for n in a.parts] or every
    if a.action == "list":
        print("\n".join(f"{p.name}: {'; '.join(p.methods)} (samples {p.samples}, seeds {p.seeds})" for p in chosen))
        return 0
    if a.action == "plan":
        print("\n".join(plan(chosen)))
        return 0
    for p in chosen:
        if rc := run_part(p, a.batch_size):
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
