from pathlib import Path

import pytest
from pydantic import ValidationError

from leanrank.errors import ConfigError
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


@pytest.mark.parametrize(
    ("name", "loc"),
    [
        ("LEANRANK_RERANK__CACHE_URL", ("rerank", "cache_url")),
        ("LEANRANK_RETRIEVE__DEPHT", ("retrieve", "depht")),
        ("LEANRANK_DATADIR", ("LEANRANK_DATADIR",)),
    ],
)
def test_unknown_names_are_refused(
    name: str, loc: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, "1")
    with pytest.raises(ValidationError) as caught:
        Settings()
    [error] = caught.value.errors()
    assert (error["type"], error["loc"]) == ("extra_forbidden", loc)


def test_an_unknown_name_in_a_toml_group_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "leanrank.toml").write_text("[rerank]\ncache_url = 'redis://r'\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError, match="cache_url"):
        Settings()


def test_provider_keys_and_the_eval_folder_are_not_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("LEANRANK_COHERE_API_KEY", "LEANRANK_VOYAGE_BASE_URL", "LEANRANK_EVAL_DATA"):
        monkeypatch.setenv(name, "x")
    assert Settings().rerank.backend == "identity"


def test_a_malformed_toml_file_is_a_config_error_with_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "leanrank.toml").write_text("[rerank\nbackend = 'identity'\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert str(caught.value) == (
        "leanrank.toml: not valid TOML (Expected ']' at the end of a table declaration (at line 1, column 8))"
    )


@pytest.mark.parametrize("name", ["LEANRANK_COST__BUDGETS", "LEANRANK_SERVE__API_KEYS", "LEANRANK_COST"])
def test_a_variable_that_is_not_json_where_a_list_or_table_goes_is_a_config_error(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, "ops:abc:admin")
    group = name.removeprefix("LEANRANK_").split("__")[0]
    with pytest.raises(ConfigError) as caught:
        Settings()
    assert str(caught.value) == (
        f"invalid setting {group.lower()}: a LEANRANK_{group}* variable holds a list or table that is not "
        "JSON (Expecting value: line 1 column 1 (char 0))"
    )
