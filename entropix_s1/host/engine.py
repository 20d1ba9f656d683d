"""Host side: load a checkpoint, render and tokenise prompts, run the jitted loop, build results.

Everything that touches strings, files or Python objects lives here; `core/decode.py` sees only
arrays. `Model.prepare` turns prompts and budgets into the loop's static `LoopSpec` (shapes,
sampler, controllers) and its `LoopInputs` (padded prompts, per-row knobs, token tables);
`generate` runs it and turns the final `DecodeState` into `GenerationResult`s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from entropix_s1.core import codes
from entropix_s1.core import decode as D
from entropix_s1.core.budget import Budget
from entropix_s1.core.controllers import budget_controllers
from entropix_s1.io.checkpoint import load_checkpoint, sha256_files
from entropix_s1.core.config import ModelConfig
from entropix_s1.core.entropix import EntropixConfig, EntropixSampler
from entropix_s1.errors import CheckpointError, ConfigError, InputError
from entropix_s1.core.metrics import logit_metrics
from entropix_s1.core.model import Params, score_logits
from entropix_s1.results import GenerationResult, ProbeRecord, TraceStep, trace_confidence
from entropix_s1.core.sampling import Greedy, Sample, Sampler
from entropix_s1.core.tables import TokenTables, bucket
from entropix_s1.host.scheduler import SCHEDULES, Schedule, SlotRun

Message = dict[str, str]
Prompt = Union[str, Sequence[Message]]
SamplerLike = Union[str, Greedy, Sample, EntropixConfig, EntropixSampler]


def enable_compilation_cache(path: str | os.PathLike | None = None) -> None:
    """Turn on JAX's persistent compilation cache, so a second process skips XLA compiles."""
    from entropix_s1.io.home import weights_home

    d = Path(path or os.environ.get("ENTROPIX_S1_JAX_CACHE") or weights_home() / ".jax_cache")
    d.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(d))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def resolve_sampler(sampler: SamplerLike) -> Sampler:
    """"greedy" | "sample" | "entropix" | a sampler or config object -> a hashable sampler."""
    if isinstance(sampler, Sampler):
        return sampler
    if isinstance(sampler, EntropixConfig):
        return EntropixSampler(sampler)
    if sampler == "greedy":
        return Greedy()
    if sampler == "sample":
        return Sample(temperature=0.7)
    if sampler == "entropix":
        return EntropixSampler(EntropixConfig())
    raise ConfigError(f"unknown sampler {sampler!r}; use 'greedy', 'sample', 'entropix' or a config object")


@dataclasses.dataclass
class Row:
    """One prompt as the loop sees it: its rendered text, token ids and budget (or its error)."""

    prompt: str
    ids: list[int]
    budget: Budget | None
    error: str | None = None
    prompt_id: int = 0  # keys the row's randomness: its index among the good rows, or the caller's id


@dataclasses.dataclass
class Prepared:
    """A validated, tokenised batch (`Model.prepare`): every row, error rows included, and the
    loop's static spec and array inputs for the good rows (None when no row is good)."""

    rows: list[Row]
    spec: D.LoopSpec | None
    inputs: D.LoopInputs | None
    stop: tuple[str, ...] = ()
    skip_special_tokens: bool = True

    @property
    def good(self) -> list[Row]:
        return [r for r in self.rows if not r.error]


@dataclasses.dataclass(frozen=True)
class RunStats:
    """How busy the row slots of the last `generate` were (`Model.last_run_stats`).

    utilisation = useful_row_steps / (slots * loop_steps): the share of slot-steps in which a row
    was generating (static batches idle while their longest row runs)."""

    slots: int
    loop_steps: int
    useful_row_steps: int
    tokens: int

    @property
    def utilisation(self) -> float:
        return self.useful_row_steps / max(1, self.slots * self.loop_steps)


class Model:
    """A loaded checkpoint: `.config`, `.tokenizer`, `.path`, `.params`; `score`, `generate`, `chat`."""

    def __init__(self, path: Path, config: ModelConfig, params: Params, tokenizer: Any, mesh: Any = None):
        """mesh: "DPxTP" | (dp, tp) | a ("dp", "tp") jax.sharding.Mesh: shard the params over it
        (config becomes a `sharding.ShardedConfig`; see docs/sharding.md). None: one device."""
        if mesh is not None:
            from entropix_s1.core.sharding import shard

            config, params = shard(config, params, mesh)
        self.path, self.config, self.params, self.tokenizer = Path(path), config, params, tokenizer
        self.mesh = getattr(config, "mesh", None)

    @property
    def name(self) -> str:
        """The checkpoint directory's name (the catalog name for catalog models); recorded in results."""
        return self.path.name

    @property
    def has_chat_template(self) -> bool:
        """False when the tokenizer has no chat template: string prompts then go in raw (after BOS).
        Tokenizers without the notion (the test stand-ins) count as having one."""
        return getattr(self.tokenizer, "chat_template", "") is not None

    @functools.cached_property
    def weights_sha256(self) -> str | None:
        """sha256 over the checkpoint's `*.safetensors` files (sorted by name; about 1 s per GB), or
        None when there are none. Recorded by `compare` so that results made with other weights under
        the same name (a retrained adapter, say) are never resumed into."""
        files = sorted(self.path.glob("*.safetensors"))
        return sha256_files(files, with_names=True) if files else None

    @property
    def default_budget(self) -> Budget:
        """The thinking delimiters of this model, with no limits set.

        A checkpoint may say (`entropix_s1.json`: {"budget": {...Budget fields}}); otherwise a
        vocabulary with a single-token "</think>" is a thinking model (`<think>\n` ... `</think>`),
        and any other model "thinks" in its reply until its end-of-turn token, with the cap
        forcing only the answer prefix.
        """
        declared = checkpoint_budget(self.path)
        if declared is not None:
            return declared
        if len(self._encode("</think>")) == 1:
            return Budget(think_start="<think>\n", think_end=("</think>",))
        eos = self.tokenizer.eos_ids[0] if self.tokenizer.eos_ids else None
        end = self.tokenizer.decode([eos]) if eos is not None else "</think>"
        return Budget(think_end=(end,), cap_with_delimiter=False)

    def budget(self, **kw: Any) -> Budget:
        """`default_budget` with the given fields set, e.g. `m.budget(max_thinking_tokens=64, num_waits=2)`."""
        return dataclasses.replace(self.default_budget, **kw)

    # ----------------------------------------------------------------------------- scoring
    def score(self, text: str | Sequence[int], *, add_special_tokens: bool = True) -> list[dict[str, Any]]:
        """Per token of `text` (a string, or token ids used as they are): id, token, and
        logprob/entropy/varentropy (nats) of the distribution that predicted it, and `greedy`:
        whether that distribution's argmax is the token, which lm-eval's loglikelihood reports
        (None for the first token)."""
        if isinstance(text, str):
            ids = self.tokenizer.encode(text, add_special_tokens=add_special_tokens)
        else:
            ids = [int(t) for t in text]
            bad = [t for t in ids if not 0 <= t < self.config.vocab_size]
            if bad:
                raise InputError(f"score: token ids out of range: {bad[:3]}")
        if not ids:
            raise InputError("score: the text tokenizes to nothing")
        self._check_context(len(ids), 0)
        T = D.bucket(len(ids))
        toks = np.zeros((1, T), np.int32)
        valid = np.zeros((1, T), bool)
        toks[0, : len(ids)], valid[0, : len(ids)] = ids, True  # right-padded: padding after the text
        logits = score_logits(self.params, self.config, jnp.asarray(toks), jnp.asarray(valid))[0, : len(ids)]
        lm = logit_metrics(logits)
        logp = jax.nn.log_softmax(logits, axis=-1)
        lp = np.asarray(jnp.take_along_axis(logp[:-1], jnp.asarray(ids[1:])[:, None], axis=1)[:, 0])
        argmax = np.asarray(jnp.argmax(logits, axis=-1))
        ent, vent = np.asarray(lm.entropy_B), np.asarray(lm.varentropy_B)
        out = []
        for i, t in enumerate(ids):
            prev = i - 1
            out.append({
                "index": i, "token_id": int(t), "token": self.tokenizer.id_to_token(int(t)),
                "logprob": None if i == 0 else float(lp[prev]),
                "entropy": None if i == 0 else float(ent[prev]),
                "varentropy": None if i == 0 else float(vent[prev]),
                "greedy": None if i == 0 else bool(argmax[prev] == t),
            })
        return out

    # ----------------------------------------------------------------------------- generation
    def _check_context(self, prompt_len: int, max_new: int) -> None:
        ctx = self.config.max_position_embeddings
        if prompt_len + max_new > ctx:
            raise InputError(
                f"prompt of {prompt_len} tokens + max_new_tokens {max_new} exceeds the model context of {ctx} tokens"
            )

    def _encode(self, s: str) -> list[int]:
        return self.tokenizer.encode(s, add_special_tokens=False) if s else []

    def _tables(self, budget: Budget | None, sampler: Sampler, stop: Sequence[str], ignore_eos: bool) -> TokenTables:
        b = budget or Budget()
        delims = []
        for d in b.think_end:
            ids = self._encode(d)
            if not ids:
                raise InputError(f"think_end delimiter {d!r} tokenizes to nothing")
            delims.append(ids)
        answer_prefix = self._encode(b.answer_prefix)
        cap = (delims[0] if b.cap_with_delimiter else []) + answer_prefix
        # a thought ended early (NoThinking, AlphaOne) gets the delimiter and the model answers on
        # its own; where the delimiter is the end-of-turn token (cap_with_delimiter=False) that
        # would end the reply unanswered, so the answer prefix comes instead, as at the cap
        end_thought = delims[0] if b.cap_with_delimiter else answer_prefix
        wait = self._encode(b.wait_text)
        try:  # a test vocabulary may not spell the NoThinking text: then no row can use it
            nothinking = self._encode(b.nothinking_text) + end_thought
        except ValueError:
            nothinking = []
        forced = [self._encode(b.think_start), cap, wait, self._encode(sampler.pause_text), cap, wait,  # codes.SEQ_*
                  wait, end_thought, nothinking, cap]
        eos = [] if ignore_eos else sorted(set(self.tokenizer.eos_ids) | set(self.config.eos_token_ids))
        stops = [self._encode(s) for s in stop if s]
        return TokenTables.build(forced, delims if budget else [], stops, eos, reflect=self._token_sets["reflect"],
                                 breaks=self._token_sets["break"], sentence=self._token_sets["sentence"],
                                 lines=self._token_sets["line"])

    @functools.cached_property
    def _token_sets(self) -> dict[str, list[int]]:
        """The tokenizer's reflection, break and sentence-end tokens (`host/token_sets.py`)."""
        from entropix_s1.host import token_sets

        return dict(reflect=token_sets.reflection_ids(self.tokenizer), sentence=token_sets.sentence_ids(self.tokenizer),
                    line=token_sets.line_ids(self.tokenizer), **{"break": token_sets.break_ids(self.tokenizer)})

    def _rows(self, prompts, budgets, raw, prefill, system, template_vars, max_new) -> list[Row]:
        rows = []
        for p, bud in zip(prompts, budgets):
            if isinstance(p, (list, tuple)) and p and all(isinstance(t, (int, np.integer)) for t in p):
                ids = [int(t) for t in p]  # pre-tokenised prompt: used as is (benchmarks, research)
                bad = [t for t in ids if not 0 <= t < self.config.vocab_size]
                err = f"token ids out of range: {bad[:3]}" if bad else None
                if not err and len(ids) + max_new > self.config.max_position_embeddings:
                    err = f"prompt of {len(ids)} tokens + max_new_tokens {max_new} exceeds the model context"
                rows.append(Row(f"<{len(ids)} token ids>", ids if not err else [], bud, error=err))
                continue
            try:
                # A checkpoint without a chat template (a pretrained model such as gemma-3-270m) takes
                # string prompts as raw text, after the BOS its tokenizer adds: there is no template
                # to fail on, and inventing one would show the model a format it never saw.
                raw_p = raw or (isinstance(p, str) and not self.has_chat_template)
                text = self.tokenizer.render(p, raw=raw_p, system=system, prefill=prefill, **(template_vars or {}))
                if isinstance(p, str) and not p.strip() and not prefill:
                    raise InputError("empty prompt")
                ids = self.tokenizer.encode(text, add_special_tokens=raw_p)
                if not ids:
                    raise InputError("prompt tokenizes to nothing")
                self._check_context(len(ids), max_new)
                rows.append(Row(text, ids, bud))
            except InputError as e:
                rows.append(Row(p if isinstance(p, str) else str(p), [], bud, error=str(e)))
        return rows

    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        *,
        sampler: SamplerLike = "greedy",
        budget: Budget | Sequence[Budget | None] | None = None,
        max_new_tokens: int = 256,
        seed: int = 0,
        ignore_eos: bool = False,
        raw: bool = False,
        prefill: str = "",
        system: str | None = None,
        stop: Sequence[str] = (),
        template_vars: dict[str, Any] | None = None,
        on_error: Literal["raise", "row"] = "raise",
        progress: bool | None = None,
        skip_special_tokens: bool = True,
        batch_size: int | None = None,
        schedule: Schedule = "continuous",
        prompt_ids: Sequence[int] | None = None,
    ) -> list[GenerationResult]:
        """Generate for a batch of prompts in one compiled loop; one result per prompt.

        prompts: strings (user messages, or raw text with raw=True), message lists, or lists of
            token ids (used as is, no template).
        budget: one Budget for all rows, or one per row (numbers may differ per row; the strings
            must agree). sampler: "greedy" | "sample" | "entropix" | Greedy/Sample/EntropixConfig.
        ignore_eos: generate exactly max_new_tokens (benchmarks). prefill: token forcing, appended
            after the chat template's generation prompt (e.g. "<think>I know this").
        on_error: "raise" stops on the first bad prompt before any compute; "row" returns an error
            result for that row and runs the others.
        progress: a progress bar with tokens/s (runs the loop in chunks; same tokens). None: on
            when stderr is a terminal and the run is long enough to wait for.
        skip_special_tokens: the texts of a result leave out special tokens such as "<|im_end|>"
            (`token_ids` always keep them).
        batch_size: row slots (None: one row per prompt). With more prompts than slots,
            `schedule` "continuous" refills a slot as soon as its row finishes, "static" runs fixed
            batches; a prompt's tokens are the same either way (`host/scheduler.py`).
        prompt_ids: ints keying each prompt's randomness with `seed` (default: its index among the
            good prompts); stable ids (a dataset id) make a resumed or re-batched run sample the same.
        """
        kw = dict(sampler=sampler, budget=budget, max_new_tokens=max_new_tokens, seed=seed, ignore_eos=ignore_eos,
                  raw=raw, prefill=prefill, system=system, stop=stop, template_vars=template_vars, on_error=on_error,
                  skip_special_tokens=skip_special_tokens, batch_size=batch_size, prompt_ids=prompt_ids)
        return [r for _, r in sorted(self.generate_iter(prompts, schedule=schedule, progress=progress, **kw),
                                     key=lambda x: x[0])]

    def generate_iter(self, prompts: Prompt | Sequence[Prompt], *, schedule: Schedule = "continuous",
                      progress: bool | None = None, **kw: Any) -> Iterator[tuple[int, GenerationResult]]:
        """(prompt index, result) as rows finish (error rows first); arguments as for `generate`.
        What a long run writes as it goes, so a crash loses only the rows in flight."""
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        plan = self.prepare(prompts, **kw)
        index = {id(r): i for i, r in enumerate(plan.rows)}
        for r in plan.rows:
            if r.error:
                yield index[id(r)], GenerationResult(r.prompt, (), "", "", "", 0, 0, 0, 0, "error", (), r.error)
        if plan.spec is None:
            return
        if len(plan.good) == plan.spec.batch:  # one batch: one call of the compiled loop
            st = self._decode(plan, progress)
            results = self._results(plan, st)
            steps, useful = jax.device_get((st.step, jnp.sum(st.t_B)))
            self.last_run_stats = RunStats(plan.spec.batch, int(steps), int(useful), sum(len(r.token_ids) for r in results))
            yield from ((index[id(r)], res) for r, res in zip(plan.good, results))
            return
        with self._bar(len(plan.good) * int(plan.inputs.max_new), progress) as bar:
            run = SlotRun(self, plan, schedule, bar=bar)
            for i, res in run:
                yield index[id(plan.good[i])], res
            self.last_run_stats = RunStats(plan.spec.batch, run.row_steps // plan.spec.batch, run.useful_row_steps,
                                           run.tokens)

    def prepare(self, prompts: Prompt | Sequence[Prompt], *, sampler: SamplerLike = "greedy",
                budget: Budget | Sequence[Budget | None] | None = None, max_new_tokens: int = 256, seed: int = 0,
                ignore_eos: bool = False, raw: bool = False, prefill: str = "", system: str | None = None,
                stop: Sequence[str] = (), template_vars: dict[str, Any] | None = None,
                on_error: Literal["raise", "row"] = "raise", skip_special_tokens: bool = True,
                batch_size: int | None = None, prompt_ids: Sequence[int] | None = None) -> Prepared:
        """Validate and tokenise everything before any compute (errors name the bad input) and
        build the loop's spec and inputs; arguments as for `generate`. Run it with
        `core.decode.generate_arrays(plan.spec, model.params, plan.inputs)`."""
        single = isinstance(prompts, str) or (prompts and isinstance(prompts[0], (dict, int, np.integer)))
        plist: list[Prompt] = [prompts] if single else list(prompts)  # type: ignore[list-item]
        if not plist:
            raise InputError("generate: no prompts given")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        budgets = list(budget) if isinstance(budget, (list, tuple)) else [budget] * len(plist)
        if len(budgets) != len(plist):
            raise InputError(f"got {len(budgets)} budgets for {len(plist)} prompts")
        if prompt_ids is not None and len(prompt_ids) != len(plist):
            raise InputError(f"got {len(prompt_ids)} prompt_ids for {len(plist)} prompts")
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        shared = {(b.think_start, b.think_end, b.wait_text, b.answer_prefix, b.cap_with_delimiter, b.nothinking_text)
                  for b in budgets if b is not None}
        if len(shared) > 1:
            raise ConfigError("per-row budgets may differ in numbers only: think_start, think_end, wait_text, "
                              "answer_prefix, cap_with_delimiter and nothinking_text must be the same for every row "
                              "of a batch")
        smp = resolve_sampler(sampler)
        rows = self._rows(plist, budgets, raw, prefill, system, template_vars, max_new_tokens)
        bad = [(i, r.error) for i, r in enumerate(rows) if r.error]
        if bad and on_error == "raise":
            i, err = bad[0]
            raise InputError(f"prompt {i}: {err}" if len(rows) > 1 else err)
        tables = self._tables(next((b for b in budgets if b is not None), None), smp, stop, ignore_eos)
        good = [r for r in rows if not r.error]
        for j, k in enumerate(k for k, r in enumerate(rows) if not r.error):
            rows[k].prompt_id = j if prompt_ids is None else int(prompt_ids[k]) % 2**31
        if not good:
            return Prepared(rows, None, None, tuple(stop), skip_special_tokens)
        spec = self._spec(smp, good, max_new_tokens, min(batch_size or len(good), len(good)), tables)
        inputs = self._inputs(spec, good[: spec.batch], tables, max_new_tokens, jax.random.key(seed))
        return Prepared(rows, spec, inputs, tuple(stop), skip_special_tokens)

    def chat(self, messages: Sequence[Message], **kw: Any) -> GenerationResult:
        """One conversation through the chat template; keyword arguments as for `generate`."""
        return self.generate([list(messages)], **kw)[0]

    def stream(self, prompt: Prompt, *, chunk_steps: int = 8, **kw: Any) -> Iterator[str]:
        """Yield the text of one prompt as it is produced.

        The loop runs in jitted chunks of `chunk_steps` steps (one compiled program, resumed from
        its state), so the final tokens equal `generate` with the same seed. The full result is
        in `self.last_stream_result` once the iterator is exhausted.
        """
        if kw.get("on_error", "raise") != "raise":
            raise InputError("stream: on_error must be 'raise' (one prompt)")
        plan = self.prepare([prompt], **kw)
        shown = ""
        for st in self._chunks(plan, chunk_steps):
            n, done = jax.device_get((st.n_out_B[0], st.done_B[0]))
            text = self.tokenizer.decode([int(t) for t in jax.device_get(st.out_BN[0, :n])],
                                         skip_special_tokens=plan.skip_special_tokens)
            stable = text if done else text.rstrip("\ufffd")  # hold back a split UTF-8 character
            if stable.startswith(shown) and len(stable) > len(shown):
                yield stable[len(shown):]
                shown = stable
        self.last_stream_result = self._results(plan, st)[0]

    def _spec(self, smp: Sampler, rows: list[Row], max_new: int, batch: int, tables: TokenTables) -> D.LoopSpec:
        """Bucketed shapes (a handful of compiled programs) and the controllers of this batch. With
        more rows than slots the cache holds one more prompt block, where refills are prefilled.
        A probe is compiled only when some row's method probes (its answer length: the longest)."""
        budget0 = next((r.budget for r in rows if r.budget is not None), None)
        answer = max((r.budget.probe_tokens for r in rows if r.budget is not None and r.budget.probing), default=0)
        probe = (int(tables.forced_len_R[codes.SEQ_CAP]), answer) if answer else (0, 0)
        P, N = bucket(max(len(r.ids) for r in rows)), bucket(max_new)
        cache_len = P + N + (64 if budget0 is not None else 0) + smp.lookahead_slots + (P if batch < len(rows) else 0)
        controllers = budget_controllers([r.budget for r in rows],
                                         no_string=budget0 is not None and budget0.wait_text == "",
                                         sampler_controllers=smp.controllers(), probe_tokens=answer)
        return D.LoopSpec(self.config, smp, controllers, batch, P, N, cache_len, D.stage_windows(P, cache_len),
                          smp.metric_layers(self.config.n_layers), probe=probe)

    def _inputs(self, spec: D.LoopSpec, rows: list[Row], tables: TokenTables, max_new: Any, key: jax.Array) -> D.LoopInputs:
        """Left-padded prompts, prompt ids and every controller's per-row knobs."""
        P = spec.prompt_len
        toks = np.zeros((len(rows), P), np.int32)
        valid = np.zeros((len(rows), P), bool)
        for i, r in enumerate(rows):
            toks[i, P - len(r.ids):], valid[i, P - len(r.ids):] = r.ids, True
        budgets = [r.budget for r in rows]
        return D.LoopInputs(tokens_BP=jnp.asarray(toks), valid_BP=jnp.asarray(valid),
                            thinking_B=jnp.asarray([b is not None for b in budgets]),
                            prompt_id_B=jnp.asarray([r.prompt_id for r in rows], jnp.int32),
                            knobs=tuple(c.pack(budgets) for c in spec.controllers), tables=tables,
                            max_new=jnp.asarray(max_new, jnp.int32), key=key)

    def _chunks(self, plan: Prepared, chunk_steps: int) -> Iterator[D.DecodeState]:
        """The loop in jitted chunks of `chunk_steps` steps (same tokens as one call)."""
        spec, inputs = plan.spec, plan.inputs
        st = D.init_state(spec, self.params, inputs)
        while True:
            st = D.run_chunk(spec, self.params, inputs, st, st.step + chunk_steps)
            yield st
            done, length = jax.device_get((st.done_B.all(), st.cache.length))
            if done or int(length) + spec.margin > spec.cache_len:
                return

    @staticmethod
    def _bar(total: int, progress: bool | None) -> Any:
        """A tqdm bar with tokens/s on stderr, or a no-op context. None: on when stderr is a terminal
        and the run is long enough to wait for (>= 128 tokens: a few seconds on a CPU)."""
        if progress is None:
            progress = sys.stderr.isatty() and total >= 128
        if not progress:
            return contextlib.nullcontext(None)
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="tok", desc="generate", leave=False)

    def _decode(self, plan: Prepared, progress: bool | None) -> D.DecodeState:
        with self._bar(plan.spec.batch * int(plan.inputs.max_new), progress) as bar:
            if bar is None:
                return D.generate_arrays(plan.spec, self.params, plan.inputs)
            for st in self._chunks(plan, chunk_steps=32):
                bar.update(int(jax.device_get(st.n_out_B.sum())) - bar.n)
        return st

    @staticmethod
    def _host_buffers(st: D.DecodeState) -> dict[str, np.ndarray]:
        """The state's per-row output buffers on the host (one transfer)."""
        return jax.device_get(dict(out=st.out_BN, forced=st.forced_BN, regime=st.regime_BN, stats=st.stats_BNS,
                                   n=st.n_out_B, phase=st.phase_B, boundary=st.boundary_B, think=st.think_B,
                                   answer=st.answer_B, waits=st.waits_B, pauses=st.pauses_B, stop=st.stop_B, t=st.t_B,
                                   probe_n=st.probes.n_B, probe_at=st.probes.at_BP, probe_tokens=st.probes.tokens_BPA,
                                   probe_confidence=st.probes.confidence_BP, probe_entropy=st.probes.entropy_BP))

    def _results(self, plan: Prepared, st: D.DecodeState) -> list[GenerationResult]:
        h = self._host_buffers(st)
        return [self._result(plan, r, i, h) for i, r in enumerate(plan.good)]

    def _result(self, plan: Prepared, r: Row, i: int, h: dict, trace_row: int | None = None) -> GenerationResult:
        """Row `i` of the host buffers as a result; its trace steps name `trace_row` (default i)."""
        def decode(ids: list[int]) -> str:
            return self.tokenizer.decode(ids, skip_special_tokens=plan.skip_special_tokens)

        has_attn = bool(plan.spec.metric_layers)
        prefill_len = int(plan.inputs.tables.forced_len_R[codes.SEQ_PREFILL])

        n = int(h["n"][i])
        ids = [int(t) for t in h["out"][i, :n]]
        thinking = r.budget is not None
        boundary = (int(h["boundary"][i]) if h["phase"][i] == codes.ANSWER else n) if thinking else 0
        start = min(prefill_len, boundary) if thinking else 0
        text = decode(ids)
        answer_text = decode(ids[boundary:])
        for d in (r.budget.think_end if thinking else ()):
            if answer_text.startswith(d):  # the delimiter closes thinking; it is not answer text
                answer_text = answer_text[len(d):]
                break
        for s in plan.stop:
            if s and s in answer_text:
                answer_text = answer_text[: answer_text.index(s)]
            if s and s in text:
                text = text[: text.index(s)]
        trace = []
        for j, t in enumerate(ids):
            s_ = h["stats"][i, j]
            attn = dict(attn_entropy=float(s_[2]), attn_varentropy=float(s_[3]), agreement=float(s_[4]),
                        interaction=float(s_[5])) if has_attn else dict.fromkeys(codes.STAT_NAMES[2:6])
            trace.append(TraceStep(
                step=j, row=i if trace_row is None else trace_row, token_id=t, token=self.tokenizer.id_to_token(t), entropy=float(s_[0]),
                varentropy=float(s_[1]), **attn, regime=codes.REGIME_NAMES[int(h["regime"][i, j])],
                forced=codes.FORCED_NAMES[int(h["forced"][i, j])], phase="thinking" if j < boundary else "answer",
                confidence=float(s_[6]),
            ))
        confidence, lowest_group = trace_confidence([t.confidence for t in trace])
        return GenerationResult(
            prompt=r.prompt, token_ids=tuple(ids), text=text,
            thinking_text=decode(ids[start:boundary]) if thinking else "",
            answer_text=answer_text, thinking_tokens=int(h["think"][i]), answer_tokens=int(h["answer"][i]),
            waits_inserted=int(h["waits"][i]), pauses_inserted=int(h["pauses"][i]),
            stop_reason=codes.STOP_NAMES[int(h["stop"][i])], trace=tuple(trace), probes=self._probes(plan, i, h, decode),
            confidence=confidence, lowest_group_confidence=lowest_group,
        )

    @staticmethod
    def _probes(plan: Prepared, i: int, h: dict, decode) -> tuple[ProbeRecord, ...]:
        """Row `i`'s probes: where, the forced probe text, the greedy answer and its scores."""
        if not plan.spec.probe[1]:
            return ()
        tables = plan.inputs.tables
        text = decode([int(t) for t in jax.device_get(tables.forced_RL[codes.SEQ_CAP, : plan.spec.probe[0]])])
        kept = min(int(h["probe_n"][i]), h["probe_at"].shape[1])
        return tuple(ProbeRecord(step=int(h["probe_at"][i, p]), text=text,
                                 answer=decode([int(t) for t in h["probe_tokens"][i, p] if t >= 0]),
                                 answer_ids=tuple(int(t) for t in h["probe_tokens"][i, p] if t >= 0),
                                 confidence=float(h["probe_confidence"][i, p]), entropy=float(h["probe_entropy"][i, p]))
                     for p in range(kept))


def checkpoint_budget(path: str | os.PathLike) -> Budget | None:
    """The `Budget` a checkpoint dir declares in `entropix_s1.json` ({"budget": {field: value}}),
    or None when it declares none. A fine-tuned thinking model records there the delimiters it was
    trained on (see `lora.merged_checkpoint`)."""
    import json

    meta = Path(path) / "entropix_s1.json"
    if not meta.is_file():
        return None
    try:
        kw = dict(json.loads(meta.read_text(encoding="utf-8")).get("budget", {}))
        if "think_end" in kw:
            kw["think_end"] = tuple(kw["think_end"])
        return Budget(**kw)
    except (json.JSONDecodeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{meta}: not a valid budget declaration ({e})") from None


def load(name_or_path: str | os.PathLike, *, dtype: Any = jnp.float32, compilation_cache: bool = True,
         mesh: Any = None) -> Model:
    """Load a catalog model (fetched on first use), an HF checkpoint directory, or a LoRA adapter
    directory written by `sft --out` (merged onto its base model on first use).

    dtype: weight dtype, float32 or bfloat16 (math accumulates in float32 either way).
    mesh: "DPxTP" (e.g. "1x8") | (dp, tp) | a ("dp", "tp") jax.sharding.Mesh: tensor parallel over
        tp, data parallel over dp (docs/sharding.md). Weights are converted in host memory and each
        device receives only its shards.
    """
    from entropix_s1.core import sharding
    from entropix_s1.io.resolve import resolve
    from entropix_s1.host.tokenizer import Tokenizer

    if isinstance(dtype, str):
        dtype = {"float32": jnp.float32, "f32": jnp.float32, "bfloat16": jnp.bfloat16, "bf16": jnp.bfloat16}.get(dtype, dtype)
    if compilation_cache:
        enable_compilation_cache()
    path = resolve(str(name_or_path))
    if mesh is not None:  # check the mesh against config.json before reading any weights
        mesh = sharding.plan(ModelConfig.from_dir(path), mesh).mesh
    with sharding.on_host(enabled=mesh is not None):
        cfg, params = load_checkpoint(path, dtype=dtype)
    return Model(path, cfg, params, Tokenizer.from_dir(path), mesh=mesh)
