"""llama.cpp as an optional peer of the throughput harness: batch 1, the same weights in F32.

    python benchmarks/llamacpp_peer.py                 # SmolLM2: 128 and 640 new tokens, prompt 64
    python benchmarks/llamacpp_peer.py --new-tokens 128 --threads 2

It needs `llama-cpp-python` (`import llama_cpp`), which is NOT a dependency of this project (it
compiles llama.cpp from source, ~10 min on 2 cores). When it is missing, `run_peer` returns
{"status": "not installed"} and the harness's table says "llama.cpp: not installed".

What runs:
- The catalog model's shipped GGUF (Q4_1 for SmolLM2) is requantized to an all-F32 GGUF with
  `llama_cpp.llama_model_quantize(src, dst, params)`, params from
  `llama_model_quantize_default_params()` with `ftype = LLAMA_FTYPE_ALL_F32` and
  `allow_requantize = True`: exactly the dequantised weights our float32 loop runs.
- `Llama(model_path=f32, n_threads=T, n_threads_batch=T, n_gpu_layers=0)` (T = 2 by default,
  the harness's pinned CPU count) generates greedily (`temp=0`, `top_k=1`, no repeat penalty) from
  the same prompt token ids as our batch-1 row. `Llama.generate` yields tokens with no EOS check
  (only `create_completion` stops at EOS), so exactly N tokens come out: EOS is ignored.
- `llm.reset()` before every call: otherwise `generate` reuses the KV cache of a matching prompt
  prefix and the prompt would not be re-evaluated.
- decode tokens/s = (N - 1) / (t(N) - t(1)), t(1) a 1-token generation (prompt eval + one
  sample), medians over repeats, interleaved and time-budgeted like the other sides
  (`bench_measure.time_interleaved`).
"""

from __future__ import annotations

import ctypes
import importlib
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE), str(_HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

NOT_INSTALLED = "not installed"


def import_llama_cpp() -> Any | None:
    """The `llama_cpp` module, or None when llama-cpp-python is not importable."""
    try:
        return importlib.import_module("llama_cpp")
    except Exception:  # noqa: BLE001 - ImportError, or a broken shared library (OSError/RuntimeError)
        return None


def source_gguf(source: str | os.PathLike) -> Path | None:
    """The GGUF a model was converted from: `catalog.gguf_path(name)` for a catalog name, else the
    one `*.gguf` in `<dir>/gguf/` (the catalog layout); None when there is none."""
    from entropix_s1.io import catalog

    name = str(source)
    if name in catalog.CATALOG:
        p = catalog.gguf_path(name)
        return p if p.is_file() else None
    d = Path(name).expanduser() / "gguf"
    found = sorted(d.glob("*.gguf")) if d.is_dir() else []
    return found[0] if len(found) == 1 else None


def make_f32_gguf(llama_cpp: Any, src: Path, dst: Path, nthread: int = 0) -> Path:
    """Requantize `src` (any GGUF, e.g. Q4_1) to an all-F32 GGUF at `dst`."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = int(nthread)
    dst.parent.mkdir(parents=True, exist_ok=True)
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        raise RuntimeError(f"llama_model_quantize({src} -> {dst}, ALL_F32) returned {rc}")
    return dst


class LlamaCppRunner:
    """Greedy generation of exactly n tokens from fixed prompt ids (batch 1)."""

    def __init__(self, llama_cpp: Any, gguf: Path, prompt: Sequence[int], n_threads: int, n_ctx: int):
        self.llm = llama_cpp.Llama(model_path=str(gguf), n_threads=n_threads, n_threads_batch=n_threads,
                                   n_ctx=n_ctx, n_batch=min(512, n_ctx), n_gpu_layers=0, verbose=False)
        self.prompt = [int(t) for t in prompt]

    def __call__(self, n: int) -> list[int]:
        self.llm.reset()  # no KV reuse of the previous call's prompt: every call evaluates the prompt
        gen = self.llm.generate(self.prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
        out = list(itertools.islice(gen, n))  # generate never stops at EOS: n tokens come out
        gen.close()
        if len(out) != n:
            raise RuntimeError(f"llama.cpp generated {len(out)} tokens, wanted {n}")
        return out


def run_peer(source: str | os.PathLike, prompt: Sequence[int], new_tokens: Sequence[int], *, repeats: int = 3,
             time_budget: float | None = None, n_threads: int = 2, workdir: Path | None = None,
             gguf_src: Path | None = None, say: Callable[[str], None] = lambda s: None,
             llama_cpp: Any = None) -> dict[str, Any]:
    """Measure llama.cpp at batch 1 on `prompt` for each N in `new_tokens`.

    Returns {"status": "not installed"} without llama-cpp-python, {"status": "not applicable",
    "reason": ...} without a source GGUF, {"status": "error", "error": ...} on a failure, else
    {"status": "ok", "cells": [{"batch": 1, "prompt_len", "new_tokens", "decode_tokens_per_s", ...}], ...}.
    """
    from bench_measure import time_interleaved

    lc = llama_cpp if llama_cpp is not None else import_llama_cpp()
    if lc is None:
        return {"status": NOT_INSTALLED}
    src = Path(gguf_src) if gguf_src is not None else source_gguf(source)
    if src is None or not src.is_file():
        return {"status": "not applicable", "reason": f"no source GGUF for {source}"}
    rec: dict[str, Any] = {"status": "ok", "version": getattr(lc, "__version__", None), "gguf_src": str(src),
                           "n_threads": n_threads, "ftype": "ALL_F32", "cells": []}
    tmp = Path(workdir) if workdir is not None else Path(os.environ.get("TMPDIR", "/tmp"))
    dst = tmp / f"{src.stem}.F32.gguf"
    try:
        t = time.perf_counter()
        make_f32_gguf(lc, src, dst, nthread=n_threads)
        rec["quantize_s"], rec["f32_bytes"] = time.perf_counter() - t, dst.stat().st_size
        t = time.perf_counter()
        runner = LlamaCppRunner(lc, dst, prompt, n_threads, n_ctx=len(prompt) + max(new_tokens) + 8)
        rec["load_s"] = time.perf_counter() - t
        t = time.perf_counter()
        runner(2)  # warm-up, excluded
        rec["first_call_s"] = time.perf_counter() - t
        say(f"[llama.cpp] F32 GGUF {rec['f32_bytes'] / 2**20:.0f} MiB in {rec['quantize_s']:.1f} s, "
            f"loaded in {rec['load_s']:.1f} s, {n_threads} threads")
        for n in new_tokens:
            outs: dict[str, list[int]] = {}
            r = time_interleaved({"llama.cpp": runner}, n, 1, repeats, time_budget,
                                 on_full=lambda k, out: outs.__setitem__(k, out))["llama.cpp"]
            cell = {"batch": 1, "prompt_len": len(prompt), "new_tokens": n, **r}
            if "llama.cpp" in outs:
                cell["tokens"] = [int(x) for x in outs["llama.cpp"]]
            rec["cells"].append(cell)
            if "error" in r:
                say(f"[llama.cpp] N={n} FAILED: {r['error'][:300]}")
            else:
                tps = r["decode_tokens_per_s"]
                say(f"[llama.cpp] b=1 p={len(prompt)} N={n}: decode {tps if tps is None else round(tps, 1)} tok/s, "
                    f"prefill {r['prefill_s'] * 1e3:.1f} ms, runs {len(r['total_runs_s'])}")
        del runner
    except Exception as e:  # noqa: BLE001 - the peer is optional: record and go on
        rec.update(status="error", error=f"{type(e).__name__}: {e}"[:2000])
        say(f"[llama.cpp] FAILED: {rec['error'][:300]}")
    finally:
        dst.unlink(missing_ok=True)
    return rec


def cell(peer: dict[str, Any] | None, new_tokens: int, prompt_len: int | None = None) -> dict[str, Any] | None:
    """The measured cell of `peer` at `new_tokens` (and `prompt_len`), or None."""
    if not peer or peer.get("status") != "ok":
        return None
    return next((c for c in peer["cells"] if c["new_tokens"] == new_tokens and "error" not in c
                 and (prompt_len is None or c["prompt_len"] == prompt_len)), None)


def status_line(peer: dict[str, Any] | None) -> str:
    """One line for the table header: what the llama.cpp peer did."""
    if peer is None:
        return "llama.cpp: off"
    st = peer.get("status")
    if st == NOT_INSTALLED:
        return "llama.cpp: not installed"
    if st == "not applicable":
        return f"llama.cpp: not run ({peer.get('reason', '')})"
    if st == "error":
        return f"llama.cpp: error ({peer.get('error', '')[:200]})"
    return (f"llama.cpp {peer.get('version') or '?'} (llama-cpp-python): F32 GGUF requantized from "
            f"{Path(peer['gguf_src']).name}, {peer['n_threads']} threads, batch 1")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    from entropix_s1.io.catalog import DEFAULT_MODEL

    ap = argparse.ArgumentParser(description="llama.cpp decode tokens/s at batch 1 on the F32 requantized GGUF")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", default="128,640")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-budget", type=float, default=None)
    a = ap.parse_args(argv)
    from bench_ours import load_model, make_prompts

    prompt = make_prompts(load_model({"kind": "dir", "path": a.model}, "float32"), 1, a.prompt_len)[0]
    r = run_peer(a.model, prompt, [int(x) for x in a.new_tokens.split(",")], repeats=a.repeats,
                 time_budget=a.time_budget, n_threads=a.threads, say=lambda s: print(s, flush=True))
    print(status_line(r))
    print(json.dumps({k: v for k, v in r.items() if k != "cells"}
                     | {"cells": [{k: v for k, v in c.items() if k != "tokens"} for c in r.get("cells", [])]}, indent=1))
    return 0 if r["status"] in ("ok", NOT_INSTALLED) else 1


if __name__ == "__main__":
    sys.exit(main())
