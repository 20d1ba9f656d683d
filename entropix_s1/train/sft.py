"""s1 at toy scale: LoRA supervised fine-tuning in JAX that teaches a small chat model to think.

    entropix-s1 sft --model smollm2-135m-instruct --data ../shared/data/gsm8k_train.jsonl \\
        --limit 1000 --epochs 1 --lora-rank 8 --out weights/smollm2-135m-think/

Pipeline (see docs/thinking_model.md for the numbers):

1. Data. GSM8K rows become one chat turn each: user = the question; assistant =
   `<think>\\n{worked solution, <<calculator>> annotations removed}\\n</think>\\n\\nFinal Answer: {number}`.
   `select_examples` picks `--limit` of them deliberately (s1 chose by quality, difficulty and
   diversity): quality filters, no question that also appears in the GSM8K test file, sequences that
   fit `--max-len`, then equal quotas per operation count (difficulty) spread over solution length
   (diversity). The assistant turn is tokenised after the prompt, exactly as generation will see it,
   and only its tokens (its text and the closing `<|im_end|>`) carry loss.
2. Model. Base weights are frozen (float32); a LoRA adapter on the attention projections (wqkv, wo;
   optionally the MLP) is merged into them inside the loss, `W + (alpha/r) A @ B`, and the logits come
   from `model.forward` over a fresh `KVCache` with `window=T`. Loss: mean NLL of the assistant
   targets, plus (`--unlikelihood W`) W times Welleck et al.'s token-level unlikelihood term, which
   curbs the greedy repetition loops that keep a small model from closing `</think>`.
3. Training. AdamW with linear warm-up and cosine decay, gradient clipping, length buckets (each a
   fixed [B, T] shape, about `--batch-tokens` tokens per batch), a fixed seed for the selection, the
   adapter init and the batch order. Every `--save-every-min` minutes (and on SIGINT/SIGTERM) the
   adapter, optimizer state and step go to `<out>-train/state.npz`; re-running the same command
   resumes there. At the end the adapter is written to `<out>/adapter.safetensors` (float32, or
   float16 with `--save-dtype`) + `<out>/adapter_config.json`. `--init-adapter DIR` makes a run a
   further stage of an earlier adapter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from entropix_s1.io import lora as L
from entropix_s1.io.checkpoint import sha256_files
from entropix_s1.core.config import ModelConfig
from entropix_s1.errors import InputError
from entropix_s1.core.model import KVCache, Params, forward
from entropix_s1.jsonl import read_jsonl
from entropix_s1.train.config import SFTConfig  # re-exported: `from entropix_s1.train.sft import SFTConfig`

__all__ = [
    "SFTConfig",
    "Example",
    "assistant_turn",
    "strip_calculator",
    "render_example",
    "read_gsm8k",
    "select_examples",
    "plan_batches",
    "loss_fn",
    "unlikelihood_BT",
    "make_optimizer",
    "make_train_step",
    "train",
]

THINK_OPEN, THINK_CLOSE, ANSWER_PREFIX = "<think>", "</think>", "Final Answer:"
#: The `Budget` fields that match the trained format, stored with the adapter and written into the
#: merged checkpoint's `entropix_s1.json`, so `m.default_budget` / `compare` force what the model
#: learned: `</think>` ends thinking (the model opens `<think>` itself, nothing is prefixed) and a cap
#: forces `</think>` + a blank line + `Final Answer:`, as in training.
THINK_BUDGET: dict[str, Any] = {"think_start": "", "think_end": [THINK_CLOSE], "answer_prefix": f"\n\n{ANSWER_PREFIX}"}


# ---------------------------------------------------------------------------------------------- data
def strip_calculator(solution: str) -> str:
    """Remove GSM8K's `<<48/2=24>>` calculator annotations (the result follows them in the text)."""
    return re.sub(r"<<.*?>>", "", solution)


def assistant_turn(solution: str, number: str) -> str:
    """The training target: thinking in `<think>...</think>`, then the answer line."""
    return f"{THINK_OPEN}\n{solution.strip()}\n{THINK_CLOSE}\n\n{ANSWER_PREFIX} {number}"


def render_example(tokenizer: Any, question: str, assistant: str) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, loss mask) of one user/assistant exchange through the chat template.

    The prompt (system + user turn + generation prompt) is tokenised on its own, then the
    assistant's part of the rendered conversation (its text and the end-of-turn token, not the
    template's trailing newline), so the ids are exactly what generation sees and produces. The mask
    is True on the assistant tokens only.
    """
    user = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": assistant}], add_generation_prompt=False)
    if not full.startswith(prompt + assistant):
        raise InputError("the chat template does not render the assistant turn right after the generation prompt")
    tail = full[len(prompt) + len(assistant):]
    eos = tokenizer.special_tokens.get("eos_token")
    if eos and eos in tail:
        tail = tail[: tail.index(eos) + len(eos)]
    p_ids = tokenizer.encode(prompt)
    c_ids = tokenizer.encode(assistant + tail)
    ids = np.asarray(p_ids + c_ids, np.int32)
    mask = np.zeros(len(ids), bool)
    mask[len(p_ids):] = True
    return ids, mask


@dataclasses.dataclass(frozen=True)
class Example:
    index: int  # line in the source file
    question: str
    assistant: str
    ids: np.ndarray
    mask: np.ndarray
    n_ops: int  # calculator operations in the worked solution (difficulty proxy)

    @property
    def length(self) -> int:
        return len(self.ids)


def _norm_question(q: str) -> str:
    return " ".join(q.lower().split())


def read_gsm8k(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a GSM8K-style JSONL file (a bad line raises `JSONLError` naming `path:line`)."""
    return read_jsonl(path)


def _parse(row: dict[str, Any]) -> tuple[str, str, int] | None:
    """(clean solution, answer number, operation count), or None when the row fails a quality check."""
    q, a = row.get("question"), row.get("answer")
    if not isinstance(q, str) or not isinstance(a, str) or "####" not in a or not q.strip():
        return None
    sol, num = a.rsplit("####", 1)
    num = num.strip().replace(",", "").replace("$", "")
    if not re.fullmatch(r"-?\d+(\.\d+)?", num):
        return None
    n_ann = sol.count("<<")
    if n_ann != sol.count(">>"):
        return None  # malformed annotations
    clean = strip_calculator(sol).strip()
    if not clean or "<<" in clean or ">>" in clean:
        return None
    if num not in clean.replace(",", ""):
        return None  # the worked solution should reach the stated answer
    n_ops = n_ann or clean.count("=")
    return clean, num, max(n_ops, 1)


def select_examples(rows: Sequence[dict[str, Any]], n: int, tokenizer: Any, *, max_len: int,
                    exclude_questions: Iterable[str] = (), seed: int = 0, max_ops_bucket: int = 7) -> list[Example]:
    """Pick `n` training examples by quality, difficulty and diversity (s1's criteria, by proxy).

    Quality: a parseable `#### number`, well-formed annotations, the number reached in the worked
    solution, no duplicate question, no question of `exclude_questions` (the test set, compared
    case- and whitespace-insensitively), and the rendered example fits `max_len` tokens.
    Difficulty: bucket by calculator operations (1, 2, ..., `max_ops_bucket`+) and give each bucket
    an equal quota (a bucket short of its quota gives the rest to the others), which raises the
    share of multi-step problems well above GSM8K's natural mix.
    Diversity: inside a bucket, sorted by length, one example is drawn at random from each of
    `quota` equal consecutive slices, so the picks span the bucket's range of solution lengths.
    Returned in source order; the same inputs and seed give the same selection.
    """
    excluded = {_norm_question(q) for q in exclude_questions}
    seen: set[str] = set()
    pool: dict[int, list[Example]] = {}
    for i, row in enumerate(rows):
        parsed = _parse(row)
        if parsed is None:
            continue
        q = row["question"].strip()
        key = _norm_question(q)
        if key in excluded or key in seen:
            continue
        seen.add(key)
        clean, num, n_ops = parsed
        assistant = assistant_turn(clean, num)
        ids, mask = render_example(tokenizer, q, assistant)
        if len(ids) > max_len:
            continue
        pool.setdefault(min(n_ops, max_ops_bucket), []).append(Example(i, q, assistant, ids, mask, n_ops))
    total = sum(len(v) for v in pool.values())
    if total < n:
        raise InputError(f"only {total} examples pass the filters (max_len={max_len}); asked for {n}")
    # Equal quotas, water-filled: small buckets take everything, the rest share what is left.
    quota: dict[int, int] = {}
    left, open_ = n, sorted(pool)
    while open_:
        share = left // len(open_)
        small = [b for b in open_ if len(pool[b]) <= share]
        if not small:
            extra = left - share * len(open_)
            for j, b in enumerate(open_):
                quota[b] = share + (1 if j < extra else 0)
            break
        for b in small:
            quota[b] = len(pool[b])
            left -= len(pool[b])
            open_.remove(b)
    rng = np.random.default_rng(seed)
    chosen: list[Example] = []
    for b in sorted(pool):
        items = sorted(pool[b], key=lambda e: (e.length, e.index))
        k = quota.get(b, 0)
        edges = np.linspace(0, len(items), k + 1).astype(int)
        chosen += [items[rng.integers(lo, hi)] for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
    return sorted(chosen, key=lambda e: e.index)


def selection_digest(examples: Sequence[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.index, e.question, e.assistant]).encode())
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    return sha256_files([path])


# ------------------------------------------------------------------------------------------- batches
def bucket_len(n: int, step: int = 32) -> int:
    return max(step, -(-n // step) * step)


def plan_batches(lengths: Sequence[int], *, batch_tokens: int, seed: int, epoch: int,
                 bucket_step: int = 32) -> list[tuple[int, list[int]]]:
    """One epoch as (T, example indices) batches: each example goes to the smallest bucket length
    T (a multiple of `bucket_step`) that holds it; a bucket's batch has `batch_tokens // T` rows
    (the last one may be short, it is padded). Order depends only on (seed, epoch), so a resumed run
    replays the same plan."""
    rng = np.random.default_rng([seed, epoch])
    by_T: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_T.setdefault(bucket_len(n, bucket_step), []).append(i)
    batches = []
    for T in sorted(by_T):
        idx = list(rng.permutation(by_T[T]))
        rows = max(1, batch_tokens // T)
        batches += [(T, [int(i) for i in idx[j: j + rows]]) for j in range(0, len(idx), rows)]
    order = rng.permutation(len(batches))
    return [batches[k] for k in order]


def collate(examples: Sequence[Example], T: int, rows: int, pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded `[rows, T]` tokens, validity and loss mask (rows beyond the examples are empty)."""
    toks = np.full((rows, T), pad_id, np.int32)
    valid = np.zeros((rows, T), bool)
    mask = np.zeros((rows, T), bool)
    for r, e in enumerate(examples):
        toks[r, : e.length], valid[r, : e.length], mask[r, : e.length] = e.ids, True, e.mask
    return {"tokens": toks, "valid": valid, "mask": mask}


# ------------------------------------------------------------------------------------------- model
def unlikelihood_BT(logp_BTV: jax.Array, y_BT: jax.Array, w_BT: jax.Array) -> jax.Array:
    """Token-level unlikelihood (Welleck et al. 2019, "Neural Text Generation with Unlikelihood
    Training", eq. 4): at target position t, `-sum_{c in C_t} log(1 - p(c | x_<t))` over the
    negative candidates `C_t` = the distinct earlier target tokens that are not the current target.

    Why: greedy decoding of a small fine-tuned model falls into loops that repeat earlier tokens
    verbatim; this term lowers the probability of re-emitting context tokens unless they are the
    right next token. Candidates come from the loss-masked (assistant) targets only, so copying
    names and numbers from the question is not penalised. `[B, T, T]` work, cheap next to the
    `[B, T, V]` softmax. Returns per-position values (0 where there are no candidates).
    """
    T = y_BT.shape[1]
    eq_BTS = y_BT[:, :, None] == y_BT[:, None, :]  # symmetric
    earlier_TS = jnp.tril(jnp.ones((T, T), bool), k=-1)  # s < t
    first_BS = ~jnp.any(eq_BTS & w_BT[:, None, :] & earlier_TS[None], axis=-1) & w_BT  # first masked occurrence
    cand_BTS = earlier_TS[None] & first_BS[:, None, :] & ~eq_BTS
    idx_BTS = jnp.broadcast_to(y_BT[:, None, :], cand_BTS.shape)
    one_minus_p_BTS = -jnp.expm1(jnp.take_along_axis(logp_BTV, idx_BTS, axis=-1))  # 1 - p, exact near p = 1
    return -jnp.sum(jnp.where(cand_BTS, jnp.log(jnp.clip(one_minus_p_BTS, 1e-5, 1.0)), 0.0), axis=-1)


def loss_fn(lora: L.LoraParams, base: Params, cfg: ModelConfig, lcfg: L.LoraConfig, tokens_BT: jax.Array,
            valid_BT: jax.Array, mask_BT: jax.Array, unlikelihood: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean next-token NLL over the masked (assistant) target tokens, plus `unlikelihood` times the
    mean token-level unlikelihood term (`unlikelihood_BT`); aux: nll, ul and the target count.

    Position t's logits predict token t+1, so the target mask is `mask[:, 1:]`.
    """
    B, T = tokens_BT.shape
    params = L.merge(base, lora, lcfg, cfg, dtype=jnp.float32)
    cache = KVCache.init(cfg, B, T, jnp.float32)
    logits_BTV, _, _ = forward(params, cfg, tokens_BT, cache, window=T, token_valid_BT=valid_BT)
    logp = jax.nn.log_softmax(logits_BTV[:, :-1].astype(jnp.float32), axis=-1)
    y_BT = tokens_BT[:, 1:]
    nll_BT = -jnp.take_along_axis(logp, y_BT[..., None], axis=-1)[..., 0]
    m_BT = mask_BT[:, 1:] & valid_BT[:, 1:]
    w_BT = m_BT.astype(jnp.float32)
    n = jnp.maximum(w_BT.sum(), 1.0)
    nll = (nll_BT * w_BT).sum() / n
    ul = (unlikelihood_BT(logp, y_BT, m_BT) * w_BT).sum() / n if unlikelihood else jnp.zeros((), jnp.float32)
    return nll + unlikelihood * ul, {"nll": nll, "ul": ul, "targets": w_BT.sum()}


def make_optimizer(lr: float, total_steps: int, warmup_steps: int, weight_decay: float = 0.0,
                   clip: float = 1.0) -> optax.GradientTransformation:
    """AdamW, linear warm-up to `lr`, cosine decay to lr/10 at `total_steps`, global-norm clipping."""
    sched = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=max(1, warmup_steps),
        decay_steps=max(total_steps, warmup_steps + 1), end_value=lr / 10)
    return optax.chain(optax.clip_by_global_norm(clip), optax.adamw(sched, weight_decay=weight_decay))


def make_train_step(cfg: ModelConfig, lcfg: L.LoraConfig, optimizer: optax.GradientTransformation,
                    *, remat: bool = False, unlikelihood: float = 0.0) -> Callable:
    """Jitted `(lora, opt_state, base, tokens, valid, mask) -> (lora, opt_state, aux)` with aux the
    `loss_fn` metrics (nll, ul, targets); compiles once per batch shape. remat: `jax.checkpoint` the
    loss (keep matmul outputs, recompute the rest), trading compute for activation memory."""
    f = functools.partial(loss_fn, cfg=cfg, lcfg=lcfg, unlikelihood=unlikelihood)

    def objective(lora, base, tokens, valid, mask):
        return f(lora, base, tokens_BT=tokens, valid_BT=valid, mask_BT=mask)

    if remat:
        objective = jax.checkpoint(objective, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(lora, opt_state, base, tokens, valid, mask):
        (_, aux), grads = jax.value_and_grad(objective, has_aux=True)(lora, base, tokens, valid, mask)
        updates, opt_state = optimizer.update(grads, opt_state, lora)
        return optax.apply_updates(lora, updates), opt_state, aux

    return step


# -------------------------------------------------------------------------------------- state files
def _save_state(path: Path, lora, opt_state, meta: dict[str, Any]) -> None:
    leaves = jax.tree_util.tree_leaves((lora, opt_state))
    arrays = {f"leaf_{i:04d}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load_state(path: Path, lora, opt_state):
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta_json"]).decode())
        treedef = jax.tree_util.tree_structure((lora, opt_state))
        n = treedef.num_leaves
        leaves = [jnp.asarray(z[f"leaf_{i:04d}"]) for i in range(n)]
    lora, opt_state = jax.tree_util.tree_unflatten(treedef, leaves)
    return lora, opt_state, meta


# ------------------------------------------------------------------------------------------- train
def _default_exclude(data: str) -> str | None:
    p = Path(data)
    cand = p.with_name(p.name.replace("_train", "_test"))
    return str(cand) if cand != p and cand.is_file() else None


class _Progress:
    """tqdm bar on a TTY; otherwise one plain line per `every` steps (nohup logs)."""

    def __init__(self, total: int, initial: int, every: int = 1):
        self.tty = sys.stderr.isatty()
        self.every = every
        self.total = total
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="sft", unit="step", dynamic_ncols=True)

    def update(self, step: int, loss: float, tok_s: float, lr: float, elapsed: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tok_s:.0f}", lr=f"{lr:.1e}")
        elif step % self.every == 0 or step == self.total:
            print(f"sft step {step}/{self.total} loss {loss:.4f} tok/s {tok_s:.1f} lr {lr:.2e} "
                  f"elapsed {elapsed / 60:.1f} min", file=sys.stderr, flush=True)

    def write(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_STEPS: dict[tuple, tuple[optax.GradientTransformation, Callable]] = {}


def _compiled_step(cfg: SFTConfig, mcfg: ModelConfig, lcfg: L.LoraConfig,
                   total: int) -> tuple[optax.GradientTransformation, Callable]:
    """(optimizer, jitted train step): one compiled step per setup and process (a resumed call reuses it)."""
    opt_key = (mcfg, lcfg, cfg.lr, total, cfg.warmup_steps, cfg.weight_decay, cfg.remat, cfg.unlikelihood)
    if opt_key not in _STEPS:
        optimizer = make_optimizer(cfg.lr, total, cfg.warmup_steps, cfg.weight_decay)
        _STEPS.clear()
        _STEPS[opt_key] = optimizer, make_train_step(mcfg, lcfg, optimizer, remat=cfg.remat,
                                                     unlikelihood=cfg.unlikelihood)
    return _STEPS[opt_key]


@dataclasses.dataclass(frozen=True)
class _Selection:
    """The training examples of a run, what was excluded, and the facts the adapter records about them."""

    examples: list[Example]
    exclude: str | None  # the file of questions never trained on
    digest: str
    lengths: list[int]
    ops: list[int]  # examples per calculator-operation count 1..7+

    @classmethod
    def of(cls, cfg: SFTConfig, tok: Any, say: Callable[[str], None]) -> _Selection:
        exclude = cfg.exclude if cfg.exclude is not None else _default_exclude(cfg.data)
        excluded = [r["question"] for r in read_gsm8k(exclude)] if exclude else []
        t_sel = time.time()
        examples = select_examples(read_gsm8k(cfg.data), cfg.limit, tok, max_len=cfg.max_len,
                                   exclude_questions=excluded, seed=cfg.seed)
        lengths = [e.length for e in examples]
        ops = np.bincount([min(e.n_ops, 7) for e in examples], minlength=8)[1:].tolist()
        say(f"sft: selected {len(examples)} examples in {time.time() - t_sel:.1f}s (excluding {len(excluded)} test "
            f"questions); tokens/example mean {np.mean(lengths):.0f} max {max(lengths)}; ops 1..7+: {ops}")
        return cls(examples, exclude, selection_digest(examples), lengths, ops)

    def meta(self, cfg: SFTConfig) -> dict[str, Any]:
        """The adapter config's `data` entry."""
        return {"file": Path(cfg.data).name, "file_sha256": file_digest(cfg.data),
                "exclude_file": Path(self.exclude).name if self.exclude else None,
                "selection_sha256": self.digest, "examples": len(self.examples),
                "selected_lines": [e.index for e in self.examples], "ops_histogram_1_to_7plus": self.ops,
                "tokens_mean": round(float(np.mean(self.lengths)), 1), "tokens_max": int(max(self.lengths))}


def train(cfg: SFTConfig, out_dir: str | os.PathLike, *, state_dir: str | os.PathLike | None = None,
          save_every_min: float = 5.0, max_minutes: float | None = None, restart: bool = False,
          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) LoRA SFT and write the adapter to `out_dir`.

    Returns a summary dict merged with the adapter's JSON config. Stopped early (`max_minutes` or
    SIGINT/SIGTERM), the state is saved for resuming and the adapter written so far is exported with
    `"finished": false`; the same call later continues from that state.
    """
    from entropix_s1.io.resolve import resolve
    from entropix_s1.io.checkpoint import load_checkpoint
    from entropix_s1.host.engine import enable_compilation_cache
    from entropix_s1.host.tokenizer import Tokenizer

    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    out_dir = Path(out_dir)
    state_path = Path(state_dir or out_dir.parent / f"{out_dir.name}-train") / "state.npz"
    cfg.validate()
    enable_compilation_cache()

    base_dir = resolve(cfg.model)
    mcfg, base = load_checkpoint(base_dir, jnp.float32)
    tok = Tokenizer.from_dir(base_dir)
    sel = _Selection.of(cfg, tok, say)
    examples, lengths, sel_digest = sel.examples, sel.lengths, sel.digest

    plans = [plan_batches(lengths, batch_tokens=cfg.batch_tokens, seed=cfg.seed, epoch=ep) for ep in range(cfg.epochs)]
    flat = [(ep, T, idx) for ep, plan in enumerate(plans) for T, idx in plan]
    total = len(flat) if cfg.max_steps is None else max(1, min(len(flat), cfg.max_steps))
    lcfg = L.LoraConfig(rank=cfg.lora_rank, alpha=cfg.lora_alpha, targets=cfg.targets)
    optimizer, train_step = _compiled_step(cfg, mcfg, lcfg, total)
    lora = L.init_lora(mcfg, lcfg, jax.random.key(cfg.seed))
    init_meta = None
    if cfg.init_adapter:  # a further stage: the same LoRA shape, continued with a fresh optimizer
        lora, init_meta = _initial_adapter(cfg.init_adapter, lcfg, lora)
    opt_state = optimizer.init(lora)
    fp = {**cfg.fingerprint(), "selection_sha256": sel_digest,
          "init_adapter_sha256": init_meta["adapter_sha256"] if init_meta else None}
    history: list[dict[str, float]] = []
    step, wall_prev = 0, 0.0
    if state_path.is_file() and not restart:
        lora, opt_state, meta = _load_state(state_path, lora, opt_state)
        if meta.get("fingerprint") != fp:
            raise InputError(f"{state_path} belongs to a different run (config or data differ); "
                             "pass --restart to discard it, or --state-dir for a separate run")
        step, history, wall_prev = int(meta["step"]), meta["history"], float(meta["wall_s"])
        say(f"sft: resumed at step {step}/{total} from {state_path}")
    pad = tok.pad_id if tok.pad_id is not None else 0

    def save() -> None:
        _save_state(state_path, lora, opt_state, {"fingerprint": fp, "step": step, "history": history,
                                                   "wall_s": wall_prev + time.time() - t0})

    with _stop_on_signals() as stop:
        t0 = time.time()
        last_save = t0
        real_tokens = 0
        prog = _Progress(total, step)
        try:
            while step < total:
                ep, T, idx = flat[step]
                rows = max(1, cfg.batch_tokens // T)
                b = collate([examples[i] for i in idx], T, rows, pad)
                lora, opt_state, aux = train_step(lora, opt_state, base, jnp.asarray(b["tokens"]),
                                                  jnp.asarray(b["valid"]), jnp.asarray(b["mask"]))
                aux = jax.device_get(aux)  # one host transfer per step
                loss, n = float(aux["nll"]), int(aux["targets"])  # the logged loss is the NLL, comparable across runs
                ul = float(aux["ul"]) if cfg.unlikelihood else None
                if not math.isfinite(loss) or (ul is not None and not math.isfinite(ul)):
                    raise FloatingPointError(f"loss is {loss} (unlikelihood {ul}) at step {step}")
                step += 1
                real_tokens += int(b["valid"].sum())
                elapsed = time.time() - t0
                lr = float(optimizer_lr(cfg, total, step - 1))
                history.append({"step": step, "epoch": ep, "T": T, "loss": round(loss, 5), "targets": n,
                                "tokens": int(b["valid"].sum()), "t": round(wall_prev + elapsed, 1),
                                **({"ul": round(ul, 5)} if ul is not None else {})})
                prog.update(step, loss, real_tokens / max(elapsed, 1e-9), lr, wall_prev + elapsed)
                if time.time() - last_save >= save_every_min * 60 or stop["sig"] is not None:
                    save()
                    last_save = time.time()
                if stop["sig"] is not None:
                    prog.write(f"sft: signal {stop['sig']}: state saved at step {step}/{total} ({state_path}); "
                               "re-run to resume")
                    break
                if max_minutes is not None and elapsed >= max_minutes * 60:
                    save()
                    prog.write(f"sft: --max-minutes reached: state saved at step {step}/{total}; re-run to resume")
                    break
        finally:
            prog.close()

    wall = wall_prev + time.time() - t0
    finished = step >= total
    summary: dict[str, Any] = {"finished": finished, "step": step, "total_steps": total, "wall_s": round(wall, 1)}
    if step == 0:
        return summary
    if finished:
        save()
    meta = _adapter_meta(cfg, sel, len(plans[0]), history, step, total, wall, init_meta)
    L.save_adapter(out_dir, lora, lcfg, meta, dtype=cfg.save_dtype)
    say(f"sft: {'done' if finished else 'stopped'}: {step}/{total} steps, final loss {meta['final_loss']}, "
        f"wall {wall / 60:.1f} min; adapter in {out_dir}")
    return {**summary, **meta}


def _adapter_meta(cfg: SFTConfig, sel: _Selection, epoch_steps: int, history: list[dict[str, Any]], step: int,
                  total: int, wall: float, init_meta: dict[str, Any] | None) -> dict[str, Any]:
    """What the adapter's JSON config records about the run: data, training, losses, earlier stages."""
    losses = [h["loss"] for h in history]
    finished = step >= total
    stage = {}
    if init_meta is not None:  # what this stage started from, so the adapter documents its whole history
        stage = {"init_adapter": {k: init_meta.get(k) for k in
                                  ("adapter_sha256", "train", "final_loss", "first_loss", "loss_curve", "init_adapter")}}
    tail = losses[-max(1, min(10, len(losses))):]
    return {
        "base_model": cfg.model,
        "format": "user: question; assistant: <think>\\n{solution}\\n</think>\\n\\nFinal Answer: {number}",
        "budget": THINK_BUDGET,
        "data": sel.meta(cfg),
        "finished": finished,  # False: stopped early (--max-minutes or a signal); re-run to continue
        "train": {**cfg.fingerprint(), "steps": step, "total_steps": total, "epoch_steps": epoch_steps,
                  "max_steps": cfg.max_steps, "wall_s": round(wall, 1),
                  "tokens": int(sum(h["tokens"] for h in history))},
        "final_loss": round(float(np.mean(tail)), 4),
        "first_loss": losses[0] if losses else None,
        "loss_curve": losses,
        **({"unlikelihood_curve": [h["ul"] for h in history]} if cfg.unlikelihood else {}),
        **stage,
    }


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[dict[str, Any]]:
    """`{"sig": None}`, set to the signal number on SIGINT/SIGTERM (finish the running step, save,
    exit); the previous handlers come back on exit. Off the main thread signals are left alone."""
    stop: dict[str, Any] = {"sig": None}

    def on_signal(signum, frame):
        stop["sig"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)} if threading_main() else {}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def optimizer_lr(cfg: SFTConfig, total: int, step: int) -> float:
    """The learning rate `make_optimizer` uses at `step` (for display)."""
    sched = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, max(1, cfg.warmup_steps),
                                               max(total, cfg.warmup_steps + 1), cfg.lr / 10)
    return float(sched(step))


def _initial_adapter(path: str, lcfg: L.LoraConfig, fresh: L.LoraParams) -> tuple[L.LoraParams, dict[str, Any]]:
    """The adapter a further training stage starts from; it must have this run's rank and targets."""
    lora, got, meta = L.load_adapter(path)
    if (got.rank, got.alpha, tuple(got.targets)) != (lcfg.rank, lcfg.alpha, tuple(lcfg.targets)):
        raise InputError(f"--init-adapter {path}: rank {got.rank} alpha {got.alpha:g} targets {','.join(got.targets)} "
                         f"differ from this run's rank {lcfg.rank} alpha {lcfg.alpha:g} targets {','.join(lcfg.targets)}")
    if set(lora) != set(fresh) or any(lora[k][n].shape != fresh[k][n].shape for k in fresh for n in ("a", "b")):
        raise InputError(f"--init-adapter {path}: does not fit the base model {meta.get('base_model')!r} layout")
    return lora, meta  # load_adapter already gives float32 arrays
