"""The real SmolLM2 (9 query / 3 KV heads) sharded tp=3 on 3 devices and dp=8: the same greedy
tokens (budget forcing included) and metrics as one device. Runs in a subprocess with 8
simulated CPU devices; kept short (few tokens) because the 2-core CI machine runs 3 compiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import entropix_s1
    path = sys.argv[1]
    prompts = ["What is 2+3?", "Name a color.", "Say hi.", "What is 7*6?", "Count to 3.", "Hello!", "Why?", "2+2?"]

    def run(m, idx):
        budgets = [m.budget(max_thinking_tokens=4 + i % 3, num_waits=1) for i in idx]
        rs = m.generate([prompts[i] for i in idx], budget=budgets, max_new_tokens=10)
        return dict(tokens=[list(r.token_ids) for r in rs], ent=[[t.entropy for t in r.trace] for r in rs],
                    forced=[[t.forced for t in r.trace] for r in rs])

    out = {}
    one = entropix_s1.load(path, compilation_cache=False)
    out["one_b8"] = run(one, range(8))
    rows = [run(one, [i]) for i in range(8)]
    out["one_b1"] = {k: [r[k][0] for r in rows] for k in rows[0]}
    for mesh in ("1x3", "8x1"):
        out[mesh] = run(entropix_s1.load(path, mesh=mesh, compilation_cache=False), range(8))
    print(json.dumps(out))
    """
)


def _max_diff(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def test_smollm2_sharded_matches_one_device(smollm2_dir):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(smollm2_dir)], env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    ref = res["one_b8"]
    assert any(f == "cap" for row in ref["forced"] for f in row)  # the budget really acted
    for mesh in ("1x3", "8x1"):
        assert res[mesh]["tokens"] == ref["tokens"], mesh
        assert res[mesh]["forced"] == ref["forced"], mesh
    # Metrics <= 1e-4 against one device running the same per-device shapes. tp=3 runs the batch of 8
    # with the head/hidden reductions split (measured 5e-5). dp=8 gives each device a batch of ONE row,
    # and XLA:CPU's float32 kernels for a 1-row and an 8-row batch round differently through 30
    # layers: one device alone, batch 8 vs each row by itself, already differs by ~5.4e-4 nats
    # (relative 1.2e-4; same tokens). So dp=8 is compared with one device at batch 1 (measured
    # 2.5e-5), and with batch 8 only at that float32 floor.
    assert _max_diff(res["1x3"]["ent"], ref["ent"]) <= 1e-4
    assert res["one_b1"]["tokens"] == ref["tokens"]  # greedy rows do not depend on batch mates
    assert _max_diff(res["8x1"]["ent"], res["one_b1"]["ent"]) <= 1e-4
    assert _max_diff(res["8x1"]["ent"], ref["ent"]) <= 1e-3
