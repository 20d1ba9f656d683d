"""Traces (JSONL round trip, validation, summaries) and the pictures made from them.

Everything here runs on CPU from a synthetic trace: no model, no JAX.
"""

from __future__ import annotations

import argparse
import html.parser
import json
import math
import random
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib")
import matplotlib.image  # noqa: E402

from entropix_s1.errors import ConfigError, EntropixS1Error, InputError  # noqa: E402
from entropix_s1.cli.plot import add_arguments as add_plot_arguments  # noqa: E402
from entropix_s1.cli.plot import run as plot_main  # noqa: E402
from entropix_s1.viz.plots import plot_trace, thresholds_from_config  # noqa: E402
from entropix_s1.results import GenerationResult, TraceStep  # noqa: E402
from entropix_s1.viz.trace import TraceError, read_trace, trace_summary, write_trace  # noqa: E402

THRESHOLDS = {"low_ent": 0.6, "med_ent": 2.0, "high_ent": 3.0, "low_vent": 0.6, "high_vent": 3.0}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")


# ----------------------------------------------------------------------------------------------
# a synthetic trace: three rows, every regime and forced reason, awkward tokens


def _entropix_regime(ent: float, vent: float) -> str:
    t = THRESHOLDS
    if ent < t["low_ent"] and vent < t["low_vent"]:
        return "argmax"
    if ent > t["high_ent"] and vent < t["low_vent"]:
        return "pause"
    if ent < t["high_ent"] and vent > t["high_vent"]:
        return "branch"
    if ent > t["med_ent"] and vent > t["high_vent"]:
        return "hot"
    return "adaptive"


class _RowBuilder:
    def __init__(self, row: int, rng: random.Random) -> None:
        self.row, self.rng, self.steps = row, rng, []
        self.phase = "thinking"
        self._id = 1000 * (row + 1)

    def _tid(self, token: str) -> int:
        fixed = {"Wait": 14, "</think>": 7, "<think>": 6, "\n": 198, "...": 1399, "Hmm": 88}
        if token in fixed:
            return fixed[token]
        self._id += 1
        return self._id

    def forced(self, reason: str, tokens: list[str], *, metrics: bool = False) -> None:
        for tok in tokens:
            m = self._metrics() if metrics else (None, None)
            self._add(tok, m, "forced", reason)

    def sampled(self, tokens: list[str], *, sampler: str = "entropix", mood: str = "calm") -> None:
        for tok in tokens:
            ent, vent = self._metrics(mood)
            if sampler == "entropix":
                regime = _entropix_regime(ent, vent)
            else:
                regime = sampler
            self._add(tok, (ent, vent), regime, None)

    def _metrics(self, mood: str = "calm") -> tuple[float, float]:
        r = self.rng
        if mood == "calm":
            ent = abs(r.gauss(0.25, 0.3))
        elif mood == "unsure":
            ent = abs(r.gauss(2.4, 1.1))
        elif mood == "flat":  # many near-equal candidates: high entropy, low varentropy
            ent = abs(r.gauss(3.7, 0.35))
            return round(ent, 4), round(r.uniform(0.05, 0.5), 4)
        else:  # "lost"
            ent = abs(r.gauss(3.6, 0.8))
        vent = abs(ent * r.uniform(0.3, 1.9) + r.gauss(0, 0.4))
        if r.random() < 0.12:
            vent += r.uniform(2.5, 4.5)  # forks in the path
        return round(ent, 4), round(vent, 4)

    def _add(self, tok: str, m: tuple[float | None, float | None], regime: str, forced: str | None) -> None:
        ent, vent = m
        self.steps.append(
            TraceStep(
                step=len(self.steps), row=self.row, token_id=self._tid(tok), token=tok,
                entropy=ent, varentropy=vent,
                attn_entropy=None if ent is None else round(ent * 0.7 + 1.0, 4),
                attn_varentropy=None if vent is None else round(vent * 0.5, 4),
                agreement=None if ent is None else round(0.1 + ent * 0.05, 4),
                interaction=None if ent is None else round(0.3 * ent, 4),
                regime=regime, forced=forced, phase=self.phase,
            )
        )

    def result(self, prompt: str, stop_reason: str) -> GenerationResult:
        trace = tuple(self.steps)
        think = [t for t in trace if t.phase == "thinking"]
        ans = [t for t in trace if t.phase == "answer"]
        s = trace_summary(trace)[self.row]
        return GenerationResult(
            prompt=prompt,
            token_ids=tuple(t.token_id for t in trace),
            text="".join(t.token for t in trace),
            thinking_text="".join(t.token for t in think),
            answer_text="".join(t.token for t in ans),
            thinking_tokens=len(think),
            answer_tokens=len(ans),
            # the engine's counters; the test below checks the summary recomputes them
            waits_inserted=s["waits_inserted"],
            pauses_inserted=s["pauses_inserted"],
            stop_reason=stop_reason,
            trace=trace,
        )


WORDS = (" Let", " x", " be", " the", " number", " of", " apples", ".", " Then", " 3", "x", " +", " 5",
         " =", " 20", ",", " so", " x", " =", " 5", ".", " Check", ":", " 3", "·", "5", " <", " 20")


def build_results() -> list[GenerationResult]:
    rng = random.Random(1234)

    # row 0: entropix sampler, fixed s1 budget forcing: prefill, pauses, two waits, cap
    b = _RowBuilder(0, rng)
    b.forced("prefill", ["<think>", "\n"])
    b.sampled(list(WORDS[:12]))
    b.sampled([" hmm", " or", " maybe", " 4", "x", "?"], mood="unsure")
    b.forced("pause", ["..."], metrics=True)
    b.sampled([" No", ",", " a", " & ", "b", " <", "c", ">", " \u2192", " \u00e9t\u00e9", "\n\n"], mood="calm")
    b.sampled([" the", " answer", " is"], mood="flat")
    b.sampled([" \U0001F34E", " 42", "?"], mood="lost")
    b.forced("pause", ["..."])
    b.forced("pause", ["..."])  # two pauses back to back: two insertions
    b.sampled(list(WORDS[12:]))
    b.forced("wait", ["Wait"])
    b.sampled([",", " let", " me", " re", "check", " a<b", " &&", " c", "\n"], mood="unsure")
    b.sampled(list(WORDS[:10]))
    b.forced("wait", ["Wait"])
    b.sampled([" yes", " 5", " fits", "."], mood="calm")
    b.sampled([" also", " 4", "?", " 6", "?"], mood="lost")
    b.forced("cap", ["</think>"])
    b.phase = "answer"
    b.forced("cap", ["\n", "Final", " Answer", ":"])
    b.sampled([" x", " =", " 5", "\n", "<eos>"])
    r0 = b.result("How many apples? <x> & y", "eos")

    # row 1: plain sampler, adaptive budget forcing: wait:uncertain then end:confident
    b = _RowBuilder(1, rng)
    b.forced("prefill", ["<think>", "\n"])
    b.sampled(list(WORDS[:14]), sampler="sample", mood="calm")
    b.sampled([" 7", "?", " 8", "?"], sampler="sample", mood="unsure")
    b.forced("wait:uncertain", ["Hmm", ",", " wait"], metrics=True)  # one 3-token insertion
    b.sampled(list(WORDS[14:]), sampler="greedy")
    b.forced("end:confident", ["</think>"])
    b.phase = "answer"
    b.forced("end:confident", ["\n", "Answer", ":"])
    b.sampled([" 5", "\t", "apples", "\n"], sampler="greedy")
    r1 = b.result("Second prompt", "eos")

    # row 2: short, answers directly (no thinking tokens but the prefill), odd tokens
    b = _RowBuilder(2, rng)
    b.forced("prefill", ["<think>"])
    b.phase = "answer"
    b.sampled(["<b>", "bold", "</b>", " & ", "amp;", " \"q\"", " 'a'", "\r\n", "", "\u4f60\u597d", " \x1b[0m"],
              mood="unsure")
    r2 = b.result("third", "max_new_tokens")

    error_row = GenerationResult(
        prompt="", token_ids=(), text="", thinking_text="", answer_text="", thinking_tokens=0,
        answer_tokens=0, waits_inserted=0, pauses_inserted=0, stop_reason="error", error="empty prompt",
    )
    return [r0, r1, r2, error_row]


@pytest.fixture(scope="module")
def results() -> list[GenerationResult]:
    return build_results()


@pytest.fixture(scope="module")
def trace_file(results, tmp_path_factory) -> Path:
    return write_trace(results, tmp_path_factory.mktemp("trace") / "trace.jsonl")


@pytest.fixture(scope="module")
def plots_all(trace_file, tmp_path_factory) -> dict[str, Path]:
    return plot_trace(trace_file, tmp_path_factory.mktemp("plots_all"), thresholds=THRESHOLDS)


@pytest.fixture(scope="module")
def plots_row0(trace_file, tmp_path_factory) -> dict[str, Path]:
    return plot_trace(trace_file, tmp_path_factory.mktemp("plots_row0"), thresholds=THRESHOLDS, row=0)


# ----------------------------------------------------------------------------------------------
# trace.py


def test_synthetic_trace_covers_every_regime_and_reason(results):
    steps = [t for r in results for t in r.trace]
    assert {t.regime for t in steps} >= {"argmax", "pause", "branch", "hot", "adaptive", "greedy", "sample", "forced"}
    assert {t.forced for t in steps} - {None} == {"prefill", "cap", "wait", "pause", "wait:uncertain", "end:confident"}


def test_round_trip(results, trace_file):
    steps = read_trace(trace_file)
    expected = sorted((t for r in results for t in r.trace), key=lambda t: (t.row, t.step))
    assert steps == expected
    assert len(trace_file.read_text(encoding="utf-8").splitlines()) == len(expected)
    # every line is one strict-JSON object with exactly the TraceStep fields
    for line in trace_file.read_text(encoding="utf-8").split("\n")[:-1]:
        assert set(json.loads(line)) == set(TraceStep.__dataclass_fields__)


def test_write_orders_by_row_then_step(results, tmp_path):
    shuffled = [t for r in results for t in r.trace]
    random.Random(0).shuffle(shuffled)
    p = write_trace(shuffled, tmp_path / "sub" / "t.jsonl")
    keys = [(t.row, t.step) for t in read_trace(p)]
    assert keys == sorted(keys)


def test_nonfinite_metrics_written_as_null(tmp_path):
    t = TraceStep(0, 0, 1, "x", float("nan"), float("inf"), None, None, None, None, "hot", None, "answer")
    p = write_trace([t], tmp_path / "t.jsonl")
    line = p.read_text(encoding="utf-8")
    assert "NaN" not in line and "Infinity" not in line
    (back,) = read_trace(p)
    assert back.entropy is None and back.varentropy is None and back.regime == "hot"


def test_unicode_line_separators_stay_on_one_line(tmp_path):
    t = TraceStep(0, 0, 1, "a\u2028b\u2029c\n\ud800", 0.1, 0.2, None, None, None, None, "argmax", None, "answer")
    p = write_trace([t], tmp_path / "t.jsonl")
    assert len(p.read_bytes().split(b"\n")) == 2
    assert read_trace(p) == [t]


def _good_line(**over) -> str:
    d = TraceStep(0, 0, 5, "a", 0.5, 0.25, None, None, None, None, "argmax", None, "thinking").to_json()
    d.update(over)
    return json.dumps(d)


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ('{"step": 1, "row": 0', "invalid JSON"),
        ("[1, 2, 3]", "JSON object"),
        (json.dumps({"step": 1}), "missing field"),
        (_good_line(step="1"), "'step'"),
        (_good_line(token_id=True), "'token_id'"),
        (_good_line(entropy="high"), "'entropy'"),
        (_good_line(token=None), "'token'"),
        (_good_line(phase="reasoning"), "'phase'"),
        (_good_line(forced=3), "'forced'"),
        (_good_line(regime=""), "'regime'"),
    ],
)
def test_malformed_line_names_the_line(tmp_path, bad, needle):
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join([_good_line(step=0), "", _good_line(step=1), bad, _good_line(step=2)]) + "\n")
    with pytest.raises(TraceError) as ei:
        read_trace(p)
    msg = str(ei.value)
    assert f"{p}:4:" in msg, msg  # blank line 2 still counts
    assert needle in msg, msg
    assert isinstance(ei.value, InputError) and isinstance(ei.value, EntropixS1Error)


def test_missing_file_and_bad_utf8(tmp_path):
    with pytest.raises(TraceError, match="not found"):
        read_trace(tmp_path / "nope.jsonl")
    p = tmp_path / "bin.jsonl"
    p.write_bytes(_good_line().encode() + b"\n" + b'{"token": "\xff"}\n')
    with pytest.raises(TraceError, match=r":2: not valid UTF-8"):
        read_trace(p)


def test_extra_fields_are_ignored(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(_good_line(logprob=-0.3) + "\n")
    assert read_trace(p)[0].token == "a"


def test_summary_hand_counts(results):
    s = trace_summary([t for r in results for t in r.trace])
    assert sorted(s) == [0, 1, 2]  # the error row has no trace

    s0 = s[0]
    # row 0: 2 prefill + 12 + 6 + 1 pause + 11 + 6 + 2 pauses + 16 + wait + 9 + 10 + wait + 4 + 5
    #        + 5 cap + 5 answer
    assert s0["tokens"] == 2 + 12 + 6 + 1 + 11 + 6 + 2 + 16 + 1 + 9 + 10 + 1 + 4 + 5 + 5 + 5 == 96
    assert s0["forced"] == {"prefill": 2, "pause": 3, "wait": 2, "cap": 5}
    assert s0["insertions"] == {"prefill": 1, "pause": 3, "wait": 2, "cap": 1}
    assert (s0["waits_inserted"], s0["pauses_inserted"]) == (2, 3)
    assert (s0["thinking_tokens"], s0["answer_tokens"]) == (87, 9)
    assert s0["forced_tokens"] == 12 and s0["sampled_tokens"] == 84
    assert s0["regimes"]["forced"] == 12
    assert sum(s0["regimes"].values()) == 96
    assert s0["first_answer_step"] == 87

    s1 = s[1]
    assert s1["tokens"] == 2 + 14 + 4 + 3 + 14 + 1 + 3 + 4 == 45
    assert s1["forced"] == {"prefill": 2, "wait:uncertain": 3, "end:confident": 4}
    assert s1["insertions"] == {"prefill": 1, "wait:uncertain": 1, "end:confident": 1}
    assert (s1["waits_inserted"], s1["pauses_inserted"]) == (1, 0)
    assert s1["regimes"] == {"forced": 9, "sample": 18, "greedy": 18}
    assert (s1["thinking_tokens"], s1["answer_tokens"]) == (38, 7)

    s2 = s[2]
    assert (s2["tokens"], s2["thinking_tokens"], s2["answer_tokens"]) == (12, 1, 11)
    assert (s2["waits_inserted"], s2["pauses_inserted"], s2["first_answer_step"]) == (0, 0, 1)
    assert s2["mean_entropy"] == pytest.approx(sum(t.entropy for t in results[2].trace[1:]) / 11)


def test_summary_tokens_per_insertion_override(results):
    # declaring "wait:uncertain" one token long makes its 3-token run three insertions
    s = trace_summary(results, tokens_per_insertion={"wait:uncertain": 1})
    assert s[1]["waits_inserted"] == 3


def test_summary_agrees_with_results(results, trace_file):
    summary = trace_summary(read_trace(trace_file))
    for res in results:
        if not res.trace:
            continue
        s = summary[res.trace[0].row]
        assert s["tokens"] == len(res.token_ids)
        assert s["thinking_tokens"] == res.thinking_tokens
        assert s["answer_tokens"] == res.answer_tokens
        assert s["waits_inserted"] == res.waits_inserted
        assert s["pauses_inserted"] == res.pauses_inserted
    # and against independently hand-counted engine counters
    assert [(r.waits_inserted, r.pauses_inserted) for r in results] == [(2, 3), (1, 0), (0, 0), (0, 0)]


# ----------------------------------------------------------------------------------------------
# plots.py: PNGs


def _check_png(p: Path, min_w: int, min_h: int) -> tuple[int, int]:
    data = p.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 30_000, f"{p.name} is suspiciously small ({len(data)} bytes)"
    img = matplotlib.image.imread(p)
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h, (w, h)
    # not a blank canvas: many distinct colours
    flat = (img[..., :3].reshape(-1, 3) * 255).astype(int)
    assert len({tuple(c) for c in flat[:: max(1, len(flat) // 20000)]}) > 50
    return w, h


def test_plot_trace_writes_three_files(plots_all, plots_row0):
    for paths in (plots_all, plots_row0):
        assert set(paths) == {"timeline", "regimes", "tokens"}
        assert [p.name for p in paths.values()] == ["timeline.png", "regimes.png", "tokens.html"]
        assert all(p.is_file() for p in paths.values())
        _check_png(paths["regimes"], 800, 600)
        assert paths["tokens"].stat().st_size > 5_000
    _, h_all = _check_png(plots_all["timeline"], 1200, 1500)
    _, h_one = _check_png(plots_row0["timeline"], 1200, 500)
    assert h_all > 2.2 * h_one  # one panel set per row


def test_plot_from_results_in_memory_and_bad_row(results, tmp_path):
    paths = plot_trace(results, tmp_path / "mem", row=1)  # no thresholds: fine
    assert paths["timeline"].read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(InputError, match=r"row 7 is not in the trace; rows present: 0, 1, 2"):
        plot_trace(results, tmp_path / "x", row=7)
    with pytest.raises(InputError, match="no steps"):
        plot_trace([], tmp_path / "y")


def test_plot_with_only_forced_tokens(tmp_path):
    steps = [TraceStep(i, 0, 7, "x", None, None, None, None, None, None, "forced", "prefill", "thinking")
             for i in range(3)]
    paths = plot_trace(steps, tmp_path, thresholds={"low_ent": 0.1})
    assert all(p.is_file() for p in paths.values())


def test_bad_threshold_value(results, tmp_path):
    with pytest.raises(ConfigError, match="low_ent"):
        plot_trace(results, tmp_path, thresholds={"low_ent": float("nan")})


# ----------------------------------------------------------------------------------------------
# plots.py: tokens.html

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Checker(html.parser.HTMLParser):
    """Strict-enough HTML5 check: doctype, balanced non-void tags, token spans and their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.doctype: str | None = None
        self.tags: Counter[str] = Counter()
        self.spans: list[dict[str, str]] = []  # attrs of each token span
        self.texts: list[str] = []  # text inside each token span
        self._in_tok = 0

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        a = {k: v or "" for k, v in attrs}
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "span" and "tok" in a.get("class", "").split():
            if self._in_tok:
                self.errors.append("nested token span")
            self.spans.append(a)
            self.texts.append("")
            self._in_tok = len(self.stack)

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] += 1
        if tag not in VOID:
            self.errors.append(f"self-closed non-void <{tag}/>")

    def handle_endtag(self, tag):
        if tag in VOID:
            self.errors.append(f"end tag for void <{tag}>")
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> does not close <{self.stack[-1] if self.stack else None}>")
            return
        if self._in_tok == len(self.stack):
            self._in_tok = 0
        self.stack.pop()

    def handle_data(self, data):
        if self._in_tok:
            self.texts[-1] += data


def _parse(doc: str) -> _Checker:
    c = _Checker()
    c.feed(doc)
    c.close()
    return c


def _visible(token: str) -> str:
    """What the page shows for a token (control chars become control pictures)."""
    out = []
    for ch in token:
        o = ord(ch)
        out.append(chr(0x2400 + o) if o < 0x20 and ch not in "\n\t" else ch)
    return "".join(out)


def test_tokens_html_is_valid_and_has_one_span_per_step(plots_row0, results):
    doc = plots_row0["tokens"].read_text(encoding="utf-8")
    c = _parse(doc)
    assert c.doctype is not None and c.doctype.lower() == "doctype html"
    assert doc.startswith("<!DOCTYPE html>")
    assert not c.errors, c.errors[:5]
    assert not c.stack, f"unclosed: {c.stack}"
    assert c.tags["html"] == c.tags["head"] == c.tags["body"] == c.tags["title"] == 1
    assert '<meta charset="utf-8">' in doc

    row = results[0].trace
    assert len(c.spans) == len(row)
    assert [int(a["data-step"]) for a in c.spans] == [t.step for t in row]
    assert {a["data-row"] for a in c.spans} == {"0"}
    # text round trip: the page shows exactly the tokens (entities decoded by the parser)
    assert c.texts == [_visible(t.token) for t in row]
    # newlines stay newlines (pre-wrap) and are marked
    assert any("\n" in x for x in c.texts) and 'class="nl"' in doc
    # tooltips carry step / id / entropy / regime / forced
    by_step = {int(a["data-step"]): a for a in c.spans}
    wait = next(t for t in row if t.forced == "wait")
    tip = by_step[wait.step]["title"]
    assert f"step {wait.step}" in tip and f"token id {wait.token_id}" in tip and "forced wait" in tip
    sampled = next(t for t in row if t.forced is None)
    tip = by_step[sampled.step]["title"]
    assert f"entropy {sampled.entropy:.3f}" in tip and f"regime {sampled.regime}" in tip
    # forced tokens outlined, sampled ones not
    assert all(("forced" in a["class"].split()) == (t.forced is not None) for a, t in zip(c.spans, row))


def test_tokens_html_escapes_and_is_self_contained(plots_all, results):
    doc = plots_all["tokens"].read_text(encoding="utf-8")
    c = _parse(doc)
    assert not c.errors and not c.stack
    n_steps = sum(len(r.trace) for r in results)
    assert len(c.spans) == n_steps
    for bad in ("http", "<script", "<link", "src=", "@import", "url("):
        assert bad not in doc.lower(), bad
    # raw "<" of tokens never reaches the markup
    assert "&lt;b&gt;" in doc and "<b>" not in doc
    assert " a&lt;b" in doc and ">amp;</span>" in doc and " &amp;&amp;" in doc and ">&lt;/b&gt;<" in doc
    assert '"q"' in "".join(c.texts)  # quotes in text survive (attribute quotes are escaped)
    assert "\u4f60\u597d" in doc and "\U0001F34E" in doc
    assert "\x1b" not in doc and "\u241b" in doc  # ESC shown as a control picture
    assert "\r" not in doc
    # per-row sections
    for r in (0, 1, 2):
        assert f'<section id="row-{r}">' in doc


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed; html.parser check still runs")
def test_tokens_html_in_headless_chromium(plots_row0, results, tmp_path):
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom", plots_row0["tokens"].resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    c = _parse(proc.stdout)
    row = results[0].trace
    assert len(c.spans) == len(row)
    assert [int(a["data-step"]) for a in c.spans] == [t.step for t in row]
    assert c.texts == [_visible(t.token) for t in row]


# ----------------------------------------------------------------------------------------------
# thresholds and the CLI


def test_thresholds_from_config_spellings(tmp_path):
    assert thresholds_from_config({"low_ent": 0.1, "high_vent": 5}) == {"low_ent": 0.1, "high_vent": 5.0}
    cfg = {
        "temperature": 0.66,
        "low_ent_thresh": 0.1, "med_ent_thresh": 3.0, "high_ent_thresh": 5.0,
        "low_vent_thresh": 0.1, "high_vent_thresh": 5.0,
        "attn": {"low_ent": 9.0},  # attention thresholds are not token thresholds
    }
    assert thresholds_from_config(cfg) == {
        "low_ent": 0.1, "med_ent": 3.0, "high_ent": 5.0, "low_vent": 0.1, "high_vent": 5.0,
    }
    nested = {"entropix": {"thresholds": {"low_entropy": 0.2, "high_varentropy_threshold": 4.0}}}
    assert thresholds_from_config(nested) == {"low_ent": 0.2, "high_vent": 4.0}
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    assert thresholds_from_config(p)["med_ent"] == 3.0
    p.write_text("{oops")
    with pytest.raises(ConfigError, match="invalid JSON"):
        thresholds_from_config(p)
    with pytest.raises(ConfigError, match="finite"):
        thresholds_from_config({"low_ent": "x"})


def test_cli_plot(trace_file, tmp_path, capsys):
    cfg = tmp_path / "entropix.json"
    cfg.write_text(json.dumps({"low_ent_thresh": 0.6, "high_vent_thresh": 3.0}))
    parser = add_plot_arguments(argparse.ArgumentParser(prog="entropix-s1 plot"))
    args = parser.parse_args([str(trace_file), "--out", str(tmp_path / "out"), "--row", "2", "--config", str(cfg)])
    assert plot_main(args) == 0
    printed = capsys.readouterr().out
    for name in ("timeline.png", "regimes.png", "tokens.html"):
        assert (tmp_path / "out" / name).is_file()
        assert name in printed
    c = _parse((tmp_path / "out" / "tokens.html").read_text(encoding="utf-8"))
    assert len(c.spans) == 12

    # default --out: next to the trace
    local = tmp_path / "t.jsonl"
    shutil.copy(trace_file, local)
    assert plot_main(parser.parse_args([str(local)])) == 0
    assert (tmp_path / "t_plots" / "timeline.png").is_file()

    bad = tmp_path / "bad.jsonl"
    bad.write_text(_good_line() + "\nnot json\n")
    with pytest.raises(TraceError, match=r"bad\.jsonl:2:"):
        plot_main(parser.parse_args([str(bad)]))


def test_metrics_are_reasonable(results):
    # guard the synthetic data itself: finite, non-negative metrics where present
    for t in (t for r in results for t in r.trace):
        for v in (t.entropy, t.varentropy):
            assert v is None or (math.isfinite(v) and v >= 0)


def test_thresholds_from_the_real_entropix_config():
    entropix = pytest.importorskip("entropix_s1.core.entropix")
    import dataclasses

    cfg = entropix.EntropixConfig()
    expected = cfg.thresholds() if hasattr(cfg, "thresholds") else None
    got = thresholds_from_config(cfg)
    assert set(got) >= {"low_ent", "med_ent", "high_ent", "low_vent", "high_vent"}
    assert thresholds_from_config(json.loads(json.dumps(dataclasses.asdict(cfg)))) == got
    if expected is not None:
        assert got == pytest.approx(expected)
