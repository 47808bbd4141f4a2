from pathlib import Path

import pytest
from pydantic import ValidationError

from leanrank.settings import Settings


def test_environment_overrides_toml_and_nests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "leanrank.toml").write_text('data_dir = "from-toml"\n[retrieve]\ndepth = 7\nrrf_k = 20\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEANRANK_RETRIEVE__DEPTH", "30")
    s = Settings()
    assert s.data_dir == Path("from-toml")
    assert s.retrieve.depth == 30
    assert s.retrieve.rrf_k == 20


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANRANK_RETRIEVE__DEPTH", "0")
    with pytest.raises(ValidationError, match="depth"):
        Settings()
