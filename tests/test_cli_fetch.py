"""`entropix-s1 fetch --help` and `fetch --list` show the catalog, and say which GGUF quantisation each
model's weights are dequantised from (nothing is downloaded)."""

from __future__ import annotations

import pytest

from entropix_s1.cli.main import main
from entropix_s1.io.catalog import CATALOG, describe


def _out(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return capsys.readouterr().out


def test_fetch_help_lists_the_catalog_and_its_quantisations(capsys: pytest.CaptureFixture[str]) -> None:
    out = _out(["fetch", "--help"], capsys)
    assert "Q4_1" in out and "Q4_K_M" in out
    assert all(name in out for name in CATALOG)
    assert "--list" in out


def test_fetch_list_prints_the_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    out = _out(["fetch", "--list"], capsys)
    assert out == describe() + "\n"
    assert "Q4_1" in out and "Q4_K_M" in out
