"""Slot scheduling: more prompts than rows, decoded in a fixed number of row slots.

The loop runs in jitted chunks (`decode.run_chunk`, one compiled program). Between chunks the host
collects the rows that finished and refills their slots (`slots.refill`, one compiled program):

- "continuous": a finished row's slot takes the next prompt at once, while the others go on;
- "static": the slots are refilled only when every row of the batch has finished (fixed batches,
  kept for comparison: rows idle while the longest of their batch runs).

A prompt's tokens do not depend on the schedule: its randomness is keyed by (seed, prompt id, its
own step), and it attends to the same keys at the same positions whatever its slot (see
`core/slots.py`). Results come as rows finish: (index among the plan's good rows, result).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from entropix_s1.core import decode as D
from entropix_s1.core import slots
from entropix_s1.results import GenerationResult

Schedule = Literal["continuous", "static"]
SCHEDULES = ("continuous", "static")


class SlotRun:
    """One generate call over `plan.good` in `plan.spec.batch` slots; iterate for the results.
    `model` is the `engine.Model` and `plan` its `Prepared` (not imported: engine imports this module).

    After the run, `useful_row_steps / row_steps` is the slot utilisation: steps rows spent
    generating over steps the slots were held."""

    def __init__(self, model: Any, plan: Any, schedule: Schedule = "continuous", chunk_steps: int = 64,
                 bar: Any = None):
        self.model, self.plan, self.schedule, self.chunk_steps, self.bar = model, plan, schedule, chunk_steps, bar
        self.slot_row: list[int | None] = list(range(plan.spec.batch))  # index into plan.good, per slot
        self.queue = deque(range(plan.spec.batch, len(plan.good)))
        self.useful_row_steps = self.row_steps = self.tokens = 0

    def _inputs(self) -> D.LoopInputs:
        """Every slot's prompt and knobs (an idle slot holds any row: it is not refilled)."""
        good = self.plan.good
        rows = [good[i if i is not None else 0] for i in self.slot_row]
        return self.model._inputs(self.plan.spec, rows, self.plan.inputs.tables, self.plan.inputs.max_new,
                                  self.plan.inputs.key)

    def _collect(self, st: D.DecodeState, finished: list[int]) -> Iterator[tuple[int, GenerationResult]]:
        h = self.model._host_buffers(st)
        for slot in finished:
            i = self.slot_row[slot]
            self.slot_row[slot] = None
            self.useful_row_steps += int(h["t"][slot])
            result = self.model._result(self.plan, self.plan.good[i], slot, h, trace_row=i)
            self.tokens += len(result.token_ids)
            yield i, result

    def __iter__(self) -> Iterator[tuple[int, GenerationResult]]:
        spec, params, inputs = self.plan.spec, self.model.params, self.plan.inputs
        st = D.init_state(spec, params, inputs)
        while True:
            start = int(jax.device_get(st.step))
            busy = sum(r is not None for r in self.slot_row)
            # continuous with prompts waiting: hand back as soon as a row finishes
            min_active = busy if self.schedule == "continuous" and self.queue else 1
            st = D.run_chunk(spec, params, inputs, st, st.step + self.chunk_steps, jnp.asarray(min_active, jnp.int32))
            done, length, step = jax.device_get((st.done_B, st.cache.length, st.step))
            self.row_steps += (int(step) - start) * spec.batch
            yield from self._collect(st, [s for s, r in enumerate(self.slot_row) if r is not None and done[s]])
            if self.bar is not None:
                self.bar.update(self.tokens + int(jax.device_get(jnp.sum(st.n_out_B * ~st.done_B))) - self.bar.n)
            idle = [s for s, r in enumerate(self.slot_row) if r is None]
            refill = idle if self.schedule == "continuous" or len(idle) == spec.batch else []
            refill = refill[: len(self.queue)]
            if refill:
                for s in refill:
                    self.slot_row[s] = self.queue.popleft()
                inputs = self._inputs()
                block = slots.refill_block(spec.prompt_len, max(len(self.plan.good[self.slot_row[s]].ids) for s in refill))
                # compaction moves the whole cache: only when the block would not fit after the shared length
                compact = int(length) + block + spec.margin > spec.cache_len
                st = slots.refill(spec, params, inputs, st, jnp.asarray(np.isin(np.arange(spec.batch), refill)), block,
                                  compact)
            elif len(idle) == spec.batch:
                return
            elif int(length) + spec.margin > spec.cache_len:  # rows still run but the cache is full
                st = slots.compact(spec, st)
                if int(jax.device_get(st.cache.length)) + spec.margin > spec.cache_len:  # out of context
                    yield from self._collect(st, [s for s, r in enumerate(self.slot_row) if r is not None])
                    return
