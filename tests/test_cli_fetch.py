"""`entropix-s1 fetch --help` and `fetch --list` show the catalog, and say which GGUF quantisation each
model's weights are dequantised from (nothing is downloaded)."""

from __future__ import annotations

import pytest

from entropix_s1.cli.main import main
from entropix_s1.io.catalog import ADAPTED, CATALOG, describe


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


def test_fetch_of_a_fine_tuned_catalog_model_merges_it(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The catalog `--list` shows (smollm2-135m-think) is fetched as `load` would: base, then merge."""
    import entropix_s1.io.resolve as resolve_module

    asked: list[str] = []
    monkeypatch.setattr(resolve_module, "resolve", lambda name: asked.append(name) or f"/weights/{name}-merged")
    (name,) = ADAPTED
    assert main(["fetch", name]) == 0
    assert asked == [name] and capsys.readouterr().out == f"/weights/{name}-merged\n"
