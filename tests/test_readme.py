"""The README's Python example runs as written (on the real default model)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(smollm2_dir):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})


def test_readme_commands_name_real_subcommands():
    from entropix_s1.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    for cmd in re.findall(r"^entropix-s1 (\w+)", README.read_text(), re.M):
        assert cmd in sub.choices, cmd
