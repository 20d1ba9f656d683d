"""lm-eval with the entropix-s1 backend on tiny local tasks, against our own `compare` and `score`.

The model is a tiny random llama (entropix_s1.testing) with the Qwen3 tokenizer from ../shared, so
prompts go through a real chat template. Its head is nudged so that greedy decoding writes digits
and, now and then, `</think>`: budget forcing then has ends of thinking to suppress (waits) and the
numeric grader has numbers to read. Five MAWPS AddSub problems in a local JSON Lines file (no
download); three of their golds are set to what the model answers, so accuracy is 3/5 and a grading
difference would show.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest

# Offline: the tasks read local JSON Lines files. `datasets` reads these when it is imported.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from entropix_s1.errors import ConfigError  # noqa: E402
from entropix_s1.host.engine import Model  # noqa: E402
from entropix_s1.host.tokenizer import Tokenizer  # noqa: E402
from entropix_s1.lm_eval import register  # noqa: E402
from entropix_s1.lm_eval.backend import EntropixS1LM  # noqa: E402
from entropix_s1.lm_eval.options import effective_spec, model_options  # noqa: E402
from entropix_s1.research.compare import read_results, run_compare  # noqa: E402
from entropix_s1.research.datasets import default_data_dir, load_dataset  # noqa: E402
from entropix_s1.testing import RANDOM_CONFIGS, random_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "benchmarks" / "lm_eval_tasks"
METHOD = "budget:max=8,waits=1,answer=6"


def tiny_model(shared: Path) -> Model:
    """The nudged tiny random model (see the module docstring)."""
    tokenizer = Tokenizer.from_dir(shared / "tokenizers" / "qwen3")
    config = dataclasses.replace(RANDOM_CONFIGS["tiny"], vocab_size=151936, eos_token_ids=tuple(tokenizer.eos_ids),
                                 max_position_embeddings=1024)
    params = random_params(config, seed=0)
    head = np.asarray(params.lm_head_VD).copy()
    rng = np.random.default_rng(1)
    head[tokenizer.encode("</think>")[0]] = rng.standard_normal(config.dim).astype(np.float32) * 0.9
    for digit in "0123456789":
        head[tokenizer.encode(digit)[0]] = rng.standard_normal(config.dim).astype(np.float32) * 0.3
    return Model(Path("tiny-qwen3"), config, dataclasses.replace(params, lm_head_VD=jnp.asarray(head)), tokenizer)


@pytest.fixture(scope="module")
def tiny(shared: Path) -> Model:
    return tiny_model(shared)


def _task_dir(tmp_path: Path, name: str, data: Path, base: str = "entropix_mawps_addsub.yaml") -> Path:
    """A task `name` = the committed `base` task over the local file `data`."""
    tasks = tmp_path / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / f"{name}.yaml").write_text(
        f"include: {TASKS / base}\ntask: {name}\ndataset_kwargs:\n  data_files:\n    test: {data}\n")
    return tasks


def _mawps_file(directory: Path, golds: dict[int, str] | None = None) -> Path:
    """The first five MAWPS AddSub problems as `mawps_addsub_test.jsonl` in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = (default_data_dir() / "mawps_addsub_test.jsonl").read_text().splitlines()[:5]
    rows = [json.loads(line) for line in lines]
    for index, gold in (golds or {}).items():
        rows[index]["target"] = gold
    path = directory / "mawps_addsub_test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _evaluate(model: Model, task: str, tasks_dir: Path, **kw: Any) -> dict[str, Any]:
    lm = kw.pop("lm", None) or EntropixS1LM(pretrained=model, method=kw.pop("method", METHOD), batch_size=4)
    return simple_evaluate(model=lm, tasks=[task], task_manager=TaskManager(include_path=str(tasks_dir)),
                           log_samples=True, bootstrap_iters=0, **kw)


def _samples(results: dict[str, Any], task: str) -> list[dict[str, Any]]:
    return sorted(results["samples"][task], key=lambda s: s["doc_id"])


# -------------------------------------------------------------------------------- generate_until


def test_generate_until_equals_compare(tiny: Model, tmp_path: Path) -> None:
    # compare on the real golds, to learn what the model answers; then make three of them right
    first = tmp_path / "first"
    run_compare(tiny, load_dataset("mawps_addsub", data_dir=_mawps_file(first).parent), [METHOD], first / "out",
                batch_size=4, progress=False)
    answers = {int(r["id"].rsplit("-", 1)[1]): r["prediction"] for r in read_results(first / "out")}
    assert all(answers[i] is not None for i in (0, 2, 4)), answers
    data = _mawps_file(tmp_path / "data", {i: answers[i] for i in (0, 2, 4)})
    problems = load_dataset("mawps_addsub", data_dir=data.parent)
    summary = run_compare(tiny, problems, [METHOD], tmp_path / "out", batch_size=4, progress=False)
    records = sorted(read_results(tmp_path / "out"), key=lambda r: int(r["id"].rsplit("-", 1)[1]))

    results = _evaluate(tiny, "tiny_mawps", _task_dir(tmp_path, "tiny_mawps", data), apply_chat_template=True)
    metrics = results["results"]["tiny_mawps"]
    samples = _samples(results, "tiny_mawps")
    point = summary.point(METHOD)
    assert point.correct == 3 and metrics["exact_match,none"] == pytest.approx(point.accuracy) == 0.6
    assert [s["resps"][0][0] for s in samples] == [r["text"] for r in records]  # the same tokens
    assert [s["exact_match"] for s in samples] == [float(r["correct"]) for r in records]
    assert [s["thinking_tokens"] for s in samples] == [r["thinking_tokens"] for r in records]
    assert [s["waits"] for s in samples] == [r["waits"] for r in records]
    assert metrics["thinking_tokens,none"] == pytest.approx(point.mean_thinking_tokens)
    assert sum(r["waits"] for r in records) > 0  # budget forcing had ends of thinking to suppress
    # the per-token trace is in each logged sample
    assert all(s["trace"] for s in samples)
    assert {"entropy", "varentropy", "regime", "forced", "phase"} <= set(samples[0]["trace"][0])
    assert metrics["trace,none"] == sum(len(s["trace"]) for s in samples)


def test_s1_gen_kwargs_equal_the_budget_method(tiny: Model, tmp_path: Path) -> None:
    tasks = _task_dir(tmp_path, "tiny_mawps", _mawps_file(tmp_path / "data"))
    by_method = _evaluate(tiny, "tiny_mawps", tasks, method="budget:max=8,waits=2,wait=Hmm,max_new=40")
    by_s1 = _evaluate(tiny, "tiny_mawps", tasks, method="greedy",
                      gen_kwargs="max_tokens_thinking=8,thinking_n_ignore=2,thinking_n_ignore_str=Hmm,max_gen_toks=40")
    method_samples, s1_samples = _samples(by_method, "tiny_mawps"), _samples(by_s1, "tiny_mawps")
    assert [s["resps"] for s in s1_samples] == [s["resps"] for s in method_samples]
    assert [s["waits"] for s in s1_samples] == [s["waits"] for s in method_samples]
    assert sum(s["waits"] for s in s1_samples) > 0 and any("Hmm" in s["resps"][0][0] for s in s1_samples)


def test_effective_spec_aliases() -> None:
    s1 = effective_spec("greedy", {"max_tokens_thinking": 64, "thinking_n_ignore": 2, "thinking_n_ignore_str": "Wait",
                                   "until": [], "do_sample": False, "temperature": 0.0})
    assert s1.spec == "budget:max=64,waits=2"
    # s1's fork appends nothing when thinking_n_ignore_str is absent
    assert effective_spec("greedy", {"thinking_n_ignore": 1}).spec == "budget:waits=1,wait=none"
    assert effective_spec("budget:max=512,wait=Hmm", {"thinking_n_ignore": 1}).spec == "budget:max=512,waits=1,wait=Hmm"
    assert effective_spec("greedy", {"max_tokens_thinking": "auto", "max_gen_toks": 612}).spec == "budget:max=512,max_new=612"
    assert effective_spec("greedy", {"do_sample": True, "temperature": 0.6, "top_p": 0.95}).spec == "sample:t=0.6,top_p=0.95"
    assert effective_spec("sample:t=0.7", {"do_sample": False, "temperature": 0.0}).spec == "sample:t=0.7"
    assert effective_spec("entropix+budget:max=64", {"temperature": 0.0}).spec == "entropix+budget:max=64"
    settings = effective_spec("budget:max=32", {"until": ["\n\n", "Question:"], "max_gen_toks": 100,
                                                "thinking_end": "<|im_start|>answer"})
    assert (settings.until, settings.max_new_tokens, settings.think_end) == (("\n\n", "Question:"), 100,
                                                                               "<|im_start|>answer")
    with pytest.raises(ConfigError, match="entropix, which picks its own temperature"):
        effective_spec("entropix", {"do_sample": True, "temperature": 0.7})
    with pytest.raises(ConfigError, match="unknown key 'rejection_sample'"):
        effective_spec("greedy", {"rejection_sample": True})
    with pytest.raises(ConfigError, match="max_tokens_thinking=auto needs max_gen_toks"):
        effective_spec("greedy", {"max_tokens_thinking": "auto"})


# -------------------------------------------------------------------------------- loglikelihood


def _choice_file(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rows = [{"question": f"Question {i}: how many legs has a {animal}?", "choices": ["two", "four", "six"],
             "label": label} for i, (animal, label) in enumerate([("cat", 1), ("bird", 0), ("ant", 2), ("dog", 1),
                                                                  ("hen", 0)])]
    path = directory / "legs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_loglikelihood_equals_score(tiny: Model, tmp_path: Path) -> None:
    data = _choice_file(tmp_path / "data")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_legs.yaml").write_text(
        "task: tiny_legs\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{question}}\\nAnswer:\"\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: label\nmetric_list:\n  - metric: acc\nmetadata:\n  version: 1.0\n")
    results = _evaluate(tiny, "tiny_legs", tasks, lm=EntropixS1LM(pretrained=tiny))
    samples = _samples(results, "tiny_legs")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    correct = 0
    for sample, row in zip(samples, rows, strict=True):
        expected = []
        for (context, continuation), choice in zip(sample["arguments"], row["choices"], strict=True):
            assert context.startswith(row["question"]) and continuation == " " + choice
            # our score of the whole text; the continuation is the tokens after the context's
            context_ids = tiny.tokenizer.encode(context)
            scored = tiny.score(context + continuation, add_special_tokens=False)[len(context_ids):]
            expected.append(sum(r["logprob"] for r in scored))
        got = [resp[0][0] for resp in sample["resps"]]
        assert got == pytest.approx(expected, abs=1e-4)
        correct += int(np.argmax(expected) == row["label"])
    assert results["results"]["tiny_legs"]["acc,none"] == pytest.approx(correct / len(rows))


def test_loglikelihood_rolling_is_the_sum_of_token_logprobs(tiny: Model) -> None:
    lm = EntropixS1LM(pretrained=tiny)

    class Request:
        args = ("Four legs good, two legs bad.",)

    (total,) = lm.loglikelihood_rolling([Request()])
    ids = tiny.tokenizer.encode(Request.args[0])
    rows = tiny.score([tiny.tokenizer.eos_ids[0]] + ids)  # no BOS in this tokenizer: EOS is the prefix
    assert total == pytest.approx(sum(r["logprob"] for r in rows[1:]), abs=1e-4)


# -------------------------------------------------------------------------------- model_args


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"pretrained": "x", "bogus": 1}, "unknown key 'bogus'.*valid keys: pretrained, method"),
        ({"pretrained": "x", "method": "beam"}, "unknown family 'beam'"),
        ({"pretrained": "x", "waits": 2}, "put it after method="),
        ({"pretrained": "x", "method": "budget:max=64", "foo": 2}, "unknown key 'foo'"),
        ({"pretrained": "x", "dtype": "int8"}, "dtype='int8'"),
        ({"pretrained": "x", "batch_size": 0}, "batch_size must be >= 1"),
        ({"method": "greedy"}, "pretrained=NAME_OR_DIR is required"),
    ],
)
def test_bad_model_args_are_config_errors(args: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EntropixS1LM(**args)


def test_method_keys_after_method_rejoin() -> None:
    # lm-eval splits `method=budget:max=64,waits=2` on its comma
    options = model_options({"pretrained": "x", "method": "budget:max=64", "waits": 2, "dtype": "bf16",
                             "batch_size": "auto", "device": None})
    assert (options.method, options.dtype, options.batch_size) == ("budget:max=64,waits=2", "bfloat16", 8)
    assert model_options({"pretrained": "x", "method": "sample", "t": 0.7, "top_p": 0.9}).method == "sample:t=0.7,top_p=0.9"


def test_generate_until_honours_until_and_max_gen_toks(tiny: Model) -> None:
    lm = EntropixS1LM(pretrained=tiny, batch_size=2)

    class Request:
        def __init__(self, context: str, gen_kwargs: dict[str, Any]) -> None:
            self.args = (context, gen_kwargs)

    contexts = ["What is 2+3?", "Name a prime."]
    free = lm.generate_until([Request(c, {"until": [], "max_gen_toks": 24}) for c in contexts])
    assert all(len(g.details["trace"]) == 24 for g in free)  # no eos from this model: exactly max_gen_toks
    stop = next(ch for ch in free[0][len("<think>\n") + 2 :] if ch.isdigit())  # a digit it writes later on
    cut = lm.generate_until([Request(c, {"until": [stop], "max_gen_toks": 24}) for c in contexts])
    for full, stopped in zip(free, cut, strict=True):
        assert stop not in stopped and full.startswith(stopped)
    assert len(cut[0]) < len(free[0])


def test_model_args_win_over_cli_flags(tiny: Model) -> None:
    lm = EntropixS1LM.create_from_arg_obj({"pretrained": tiny, "batch_size": 4}, {"batch_size": 1, "device": None})
    assert lm.options.batch_size == 4
    lm = EntropixS1LM.create_from_arg_string("method=budget:max=64,waits=2", {"pretrained": tiny, "batch_size": 2})
    assert (lm.options.method, lm.options.batch_size) == ("budget:max=64,waits=2", 2)


def test_register_makes_the_name_resolve() -> None:
    from lm_eval.api.registry import get_model

    register()
    assert get_model("entropix-s1") is EntropixS1LM


def test_cli_reports_our_error_without_a_traceback(tmp_path: Path) -> None:
    tasks = _task_dir(tmp_path, "tiny_mawps", _mawps_file(tmp_path / "data"))
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "entropix_s1.lm_eval", "--model", "entropix-s1", "--model_args",
                          "pretrained=smollm2-135m-instruct,method=budget:max=64,bogus=1", "--tasks", "tiny_mawps",
                          "--include_path", str(tasks)], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "entropix-s1: error: model_args: unknown key 'bogus'" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("dataset", ["gsm8k", "math500", "aime24", "amc23", "mawps_addsub", "mawps_multiarith"])
def test_our_tasks_ask_and_grade_like_compare(dataset: str) -> None:
    """Every committed task reads the whole shared file and gives compare's prompt and gold per problem."""
    from lm_eval.tasks import get_task_dict

    from entropix_s1.research.datasets import render_prompt

    task = get_task_dict([f"entropix_{dataset}"], TaskManager(include_path=str(TASKS)))[f"entropix_{dataset}"]
    docs, problems = list(task.test_docs()), load_dataset(dataset)
    assert len(docs) == len(problems) > 0
    assert [task.doc_to_text(d) for d in docs] == [render_prompt(p) for p in problems]
    assert [task.doc_to_target(d) for d in docs] == [p.gold for p in problems]
