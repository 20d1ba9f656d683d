"""Sequential vs parallel test-time scaling (issue 19): the experiment, in resumable parts.

    python benchmarks/scaling_experiment.py plan                      # parts, rows, CPU-time estimate
    python benchmarks/scaling_experiment.py run                       # every part, cheapest group first
    python benchmarks/scaling_experiment.py run think-gsm8k-seq qwen-gsm8k-maj   # named parts only
    python benchmarks/scaling_report.py                               # then every figure and table
    python benchmarks/scaling_experiment.py pack                      # seal results into results.jsonl.gz to commit

Models: the thinking SmolLM2 (`smollm2-135m-think`, plain prompts as it was trained) and
Qwen2.5-Coder-0.5B-Instruct (the datasets' prompts). Datasets: the first problems of GSM8K test
and MATH-500, as many as `Scope` says (the stated subset, docs/experiments.md). Each (model,
dataset) has one out dir, `benchmarks/results/scaling/<model>_<dataset>/`, that four parts fill:

| part | methods | samples | GSM8K | MATH-500 |
|---|---|---|---:|---:|
| `seq` | greedy; s1 caps (4 levels, the model's); 1 and 2 "Wait" at the top cap; adaptive budget | 1 (deterministic) | 300 | 200 |
| `methods` | NoThinking, NoWait, graceful cap, EAT, DEER, at the top cap | 1 (deterministic) | 300 | 100 |
| `random` | AlphaOne (random wait draws), entropix under the top cap | 1 sample, 1 seed | 300 | 200 |
| `maj` | sampling at t = 0.7 under the top cap | 8 x 2 on GSM8K (maj@k to k = 16), 8 x 1 on MATH-500 | 100 | 100 |

Dynasor-CoT is not in issue 19's list and probes as often as EAT (whose 8-token probes took Qwen
10x the cap's slot time on GSM8K) with 8-token answers; it is left out (`compare --methods dynasor:max=512` adds it to any out dir).

Each part is one `entropix-s1 compare` call (`--baseline` the top plain cap). Re-running a part
skips its finished (problem, method, seed, sample) rows, so a killed part resumes where it
stopped and a larger `--samples`/`--seeds` adds only the new rows. Every finished part appends
its wall time to `benchmarks/results/scaling/part_times.jsonl`, to check the plan against.
`pack` folds each out dir's live `results.jsonl` into its gzipped archive `results.jsonl.gz`
(readers and resumes read both; see `entropix_s1.research.store`): the committed form.

`plan` estimates each part's CPU time, in all and still to run: rows x estimated tokens per row /
tokens per second, where the rows still to run are those without a record in the part's out dir.
The experiment's own records come first, since they were measured at its batch size and prompts:
Tokens per row: the mean thinking and answer lengths of the baseline cap in the out dir, else the
model's natural lengths on the dataset from an older committed comparison, else the method's
max_new_tokens (an upper bound); a "Wait" adds 40% thinking, a cap clips it. Tokens per second:
the out dir's records (tokens over their `seconds`, which add up to each method's wall time),
else the research throughput benchmark's continuous-batching measurement
(`benchmarks/results/research_throughput/`), else the model's older `compare` timings (static
batches: conservative). Each method's speed relative to the plain cap comes from the out dir when
it holds both, else from committed runs of the thinking SmolLM2 (DEER's and EAT's probes,
AlphaOne, entropix's branches). The estimate is printed with its sources.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a source checkout without installing

from entropix_s1.research.datasets import load_dataset  # noqa: E402
from entropix_s1.research.methods import expand_specs, is_deterministic, parse_spec  # noqa: E402
from entropix_s1.research.store import ARCHIVE_FILE, locked, pack_results, read_results  # noqa: E402

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
                   f"deer:max={top}",
        # entropix under the top cap only: unbounded it runs to max_new_tokens at half greedy's speed
        "random": f"{m.alphaone.format(top=top)};entropix+budget:max={top}",
        "maj": f"sample+budget:t=0.7,max={top}",
    }[group]


@dataclasses.dataclass(frozen=True)
class Scope:
    """How much of each set the parts run: the first N problems, and the `maj` parts' samples x seeds.

    The defaults are the stated subset (docs/experiments.md): all 500 MATH-500 problems and 16
    samples on every problem came to 83 CPU hours on 2 cores. GSM8K's first 300 problems run every
    deterministic part; MATH-500's first 200 run `seq` and `random` and its first 100 `methods`
    (Qwen's EAT took 10x the cap's slot time on GSM8K, with 8-token probes). `maj` samples the first 100
    problems of each set, K x S = 8 x 2 on GSM8K (seed-to-seed spread, maj@k to 16) and 8 x 1 on
    MATH-500 (maj@8), where both models solve under a tenth of the problems.
    """

    gsm8k: int = 300
    math500: int = 200  # 500 is all
    math500_methods: int = 100
    maj: int = 100
    samples: int = 8
    seeds: int = 2
    math500_seeds: int = 1

    def limit(self, dataset: str, group: str) -> int:
        """Problems of `dataset` that `group`'s part runs (never past the set's own limit)."""
        n = {"gsm8k": self.gsm8k, "math500": self.math500}[dataset]
        if group == "maj":
            return min(n, self.maj)
        return min(n, self.math500_methods) if (dataset, group) == ("math500", "methods") else n

    def samples_seeds(self, dataset: str, group: str) -> tuple[int, int]:
        if group != "maj":
            return 1, 1
        return self.samples, self.seeds if dataset == "gsm8k" else self.math500_seeds


def parts(scope: Scope = Scope(), root: Path = OUT_ROOT) -> list[Part]:
    """Every part, group by group (all `seq` parts first: the cheapest give the widest picture)."""
    out = []
    for group in GROUPS:
        for m in MODELS:
            for ds in DATASETS:
                k, s = scope.samples_seeds(ds, group)
                methods = tuple(expand_specs(_group_specs(m, group)))
                out.append(Part(f"{m.short}-{ds}-{group}", m, ds, scope.limit(ds, group), methods, k, s, root))
    return out


# ----------------------------------------------------------------------------------- plan


@functools.lru_cache(maxsize=None)
def _records(run_dir: Path) -> list[dict]:
    """The records of a results dir, read once per plan (the plan reads each dir per method)."""
    return read_results(run_dir)


@functools.lru_cache(maxsize=None)
def _problem_ids(dataset: str, limit: int) -> frozenset[str]:
    return frozenset(p.id for p in load_dataset(dataset, limit=limit))


def _mean_lengths(recs: list[dict], method: str) -> tuple[float, float] | None:
    recs = [r for r in recs if r["method"] == method]
    if not recs:
        return None
    return (sum(r["thinking_tokens"] for r in recs) / len(recs), sum(r["answer_tokens"] for r in recs) / len(recs))


def natural_lengths(part: Part) -> tuple[tuple[float, float] | None, str]:
    """Mean (thinking, answer) tokens of the model on the dataset, and where they come from."""
    own = _mean_lengths(_records(part.out), part.baseline)
    if own:
        return own, f"{part.out.relative_to(part.root.parent)} `{part.baseline}`"
    src = NATURAL.get((part.model.short, part.dataset))
    lengths = _mean_lengths(_records(RESULTS / src[0]), src[1]) if src else None
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


def _tokens_per_s(recs: list[dict], keep=lambda method: True) -> float | None:
    """Generated tokens over wall seconds of the records whose method passes `keep`."""
    recs = [r for r in recs if keep(r["method"])]
    secs = sum(float(r.get("seconds") or 0) for r in recs)
    return sum(r["thinking_tokens"] + r["answer_tokens"] for r in recs) / secs if secs else None


def _plain(method: str) -> bool:
    """Decoded at the plain loop's speed: no entropix branches, no probes (the cap-like methods)."""
    return method.partition(":")[0] in {"budget", "greedy", "sample+budget", "nothinking", "nowait", "graceful"}


def tokens_per_second(part: Part) -> tuple[float, str]:
    """Decode tokens/s of the part's model: the plain methods of its out dir (else of the model's
    other out dirs), else the research throughput benchmark (continuous batching), else older
    committed timings."""
    # the model's out dirs, this dataset's first
    for d in sorted(part.root.glob(f"{part.model.short}_*"), key=lambda d: (d != part.out, d.name)):
        if own := _tokens_per_s(_records(d), _plain):
            return own, f"{d.relative_to(part.root.parent)} records (plain methods)"
    m = part.model
    rows = [r for r in _throughput_rows() if r["model"] == m.name and r["schedule"] == "continuous"
            and "entropix" not in r["method"]]
    if rows:
        best = max(rows, key=lambda r: r["problems"])
        return best["tokens_per_s"], f"research_throughput, {best['problems']} problems, `{best['method']}`"
    run_dir, method = TIMINGS[m.short]
    tps = _tokens_per_s(_records(RESULTS / run_dir), lambda name: name == method)
    return tps, f"{run_dir} `{method}` timings (static batches: conservative)"


def relative_speed(method: str, part: Part | None = None) -> float:
    """The method's tokens/s over the plain cap's: measured in the part's out dir when it holds
    both, else on committed runs of the thinking SmolLM2."""
    if part is not None:
        recs = _records(part.out)
        base, this = _tokens_per_s(recs, _plain), _tokens_per_s(recs, lambda name: name == method)
        if base and this:
            return this / base
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
    recs = _records(RESULTS / "methods_think_gsm8k")
    base = _tokens_per_s(recs, lambda name: name == "budget:max=256")
    this = _tokens_per_s(recs, lambda name: name == measured[head])
    return this / base if base and this else 1.0


def rows_done(part: Part, method: str) -> int:
    """Records of `method` in the part's out dir that the part asks for (its problems, samples, seeds)."""
    recs = _records(part.out)
    if not recs:
        return 0
    ids = _problem_ids(part.dataset, part.limit)
    k, s = (1, 1) if is_deterministic(method) else (part.samples, part.seeds)
    seed0 = min(int(r["seed"]) for r in recs)
    return len({(r["id"], r["seed"], r["sample"]) for r in recs if r["method"] == method and r["id"] in ids
                and r["sample"] < k and seed0 <= r["seed"] < seed0 + s})


def part_cost(p: Part) -> tuple[float, float, float]:
    """Estimated (tokens, CPU seconds, CPU seconds still to run) of a part."""
    natural, _ = natural_lengths(p)
    tps, _ = tokens_per_second(p)
    tokens = secs = left = 0.0
    for m in p.methods:
        per_row = tokens_per_row(m, natural)
        row_s = per_row / (tps * relative_speed(m, p))
        tokens += p.rows(m) * per_row
        secs += p.rows(m) * row_s
        left += (p.rows(m) - rows_done(p, m)) * row_s
    return tokens, secs, left


def plan(all_parts: list[Part]) -> list[str]:
    """The plan as markdown: per part its rows (done), tokens and CPU hours (left), with the sources."""
    lines = ["| part | methods | rows | done | est. tokens | est. CPU h | left CPU h |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    notes: dict[str, str] = {}
    total_h = left_h = 0.0
    for p in all_parts:
        notes[f"{p.model.short}/{p.dataset} lengths"] = natural_lengths(p)[1]
        tps, tsrc = tokens_per_second(p)
        notes[f"{p.model.short}/{p.dataset} tokens/s"] = f"{tps:.1f} ({tsrc})"
        tokens, secs, left = part_cost(p)
        total_h, left_h = total_h + secs / 3600, left_h + left / 3600
        lines.append(f"| `{p.name}` | {len(p.methods)} | {sum(p.rows(m) for m in p.methods)} "
                     f"| {sum(rows_done(p, m) for m in p.methods)} | {tokens:,.0f} | {secs / 3600:.1f} "
                     f"| {left / 3600:.1f} |")
    lines.append(f"| **total** | | | | | **{total_h:.1f}** | **{left_h:.1f}** |")
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
    ap.add_argument("action", choices=["plan", "run", "list", "pack"])
    ap.add_argument("parts", nargs="*", help="part names (default: all); see `list`")
    d = Scope()
    ap.add_argument("--gsm8k-limit", type=int, default=d.gsm8k, help=f"the first N GSM8K problems (default {d.gsm8k})")
    ap.add_argument("--math500-limit", type=int, default=d.math500,
                    help=f"the first N MATH-500 problems of seq and random (default {d.math500}; 500 is all)")
    ap.add_argument("--math500-methods-limit", type=int, default=d.math500_methods,
                    help=f"the first N MATH-500 problems of the methods part (default {d.math500_methods})")
    ap.add_argument("--maj-limit", type=int, default=d.maj, help=f"problems per set the maj parts sample (default {d.maj})")
    ap.add_argument("--samples", type=int, default=d.samples, help=f"samples per seed of the maj parts (default {d.samples})")
    ap.add_argument("--seeds", type=int, default=d.seeds, help=f"seeds of GSM8K's maj part (default {d.seeds})")
    ap.add_argument("--math500-seeds", type=int, default=d.math500_seeds,
                    help=f"seeds of MATH-500's maj part (default {d.math500_seeds})")
    ap.add_argument("--batch-size", type=int, default=32,
                    help="row slots (default 32, the committed parts' and the plan's tokens/s)")
    ap.add_argument("--out-root", default=str(OUT_ROOT), help=f"where the out dirs go (default {OUT_ROOT})")
    a = ap.parse_args(argv)
    scope = Scope(gsm8k=a.gsm8k_limit, math500=a.math500_limit, math500_methods=a.math500_methods_limit, maj=a.maj_limit,
                  samples=a.samples, seeds=a.seeds, math500_seeds=a.math500_seeds)
    every = parts(scope, Path(a.out_root))
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
    if a.action == "pack":
        for out in sorted({p.out for p in chosen if p.out.is_dir()}):
            with locked(out):
                n, size = pack_results(out)
            print(f"{out}: {n} records in {ARCHIVE_FILE} ({size / 2**20:.2f} MiB)")
        return 0
    for p in chosen:
        if rc := run_part(p, a.batch_size):
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
