from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

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


# The fields the presets set, and what knob-only configurations resolve to: the default preset (`balanced`,
# `leanrank.cascade.presets`) with the knob given over it, never a cascade with every stage off.
PIPELINE_FIELDS = ("preset", "adaptive", "keep_ratio", "min_depth", "near_dup", "trim_tokens")
GATEWAY_FIELDS = (
    "preset",
    "enabled",
    "keep_ratio",
    "min_depth",
    "near_dup",
    "cross_lang_keep",
    "min_documents",
)
PIPELINE_TRIMMED = {
    "preset": "balanced",
    "adaptive": True,
    "keep_ratio": 0.35,
    "min_depth": 8,
    "near_dup": 0.8,
    "trim_tokens": 128,
}
GATEWAY_BALANCED = {
    "preset": "balanced",
    "enabled": True,
    "keep_ratio": 0.3,
    "min_depth": 10,
    "near_dup": 0.8,
    "cross_lang_keep": 1,
    "min_documents": 20,
}


def resolved(group: BaseModel, fields: tuple[str, ...]) -> dict[str, object]:
    return {name: getattr(group, name) for name in fields}


def test_knobs_from_the_environment_override_the_default_preset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEANRANK_CASCADE__TRIM_TOKENS", "128")
    monkeypatch.setenv("LEANRANK_GATEWAY__CASCADE__MIN_DOCUMENTS", "30")
    monkeypatch.setenv("LEANRANK_GATEWAY__KEYS__APP__KEEP_RATIO", "0.5")
    monkeypatch.setenv("LEANRANK_GATEWAY__COURSES__C2__MIN_DEPTH", "4")
    s = Settings()
    assert resolved(s.cascade, PIPELINE_FIELDS) == PIPELINE_TRIMMED
    gateway = s.gateway
    assert resolved(gateway.policy("other", None), GATEWAY_FIELDS) == {
        **GATEWAY_BALANCED,
        "min_documents": 30,
    }
    assert resolved(gateway.policy("app", "c2"), GATEWAY_FIELDS) == {**GATEWAY_BALANCED, "keep_ratio": 0.5}
    assert resolved(gateway.policy("other", "c2"), GATEWAY_FIELDS) == {**GATEWAY_BALANCED, "min_depth": 4}


def test_knobs_from_toml_override_the_default_preset_and_a_named_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "leanrank.toml").write_text(
        "[cascade]\ntrim_tokens = 128\n"
        "[gateway.cascade]\nmin_documents = 30\n"
        "[gateway.keys.legacy]\npreset = 'off'\nmin_documents = 30\n"
        "[gateway.courses.c2]\nkeep_ratio = 0.9\n"
        "[gateway.courses.c3]\npreset = 'cheap'\nkeep_ratio = 0.9\n"
    )
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert resolved(s.cascade, PIPELINE_FIELDS) == PIPELINE_TRIMMED
    gateway = s.gateway
    assert resolved(gateway.policy("app", None), GATEWAY_FIELDS) == {**GATEWAY_BALANCED, "min_documents": 30}
    assert resolved(gateway.policy("app", "c2"), GATEWAY_FIELDS) == {**GATEWAY_BALANCED, "keep_ratio": 0.9}
    assert resolved(gateway.policy("app", "c3"), GATEWAY_FIELDS) == {
        **GATEWAY_BALANCED,
        "preset": "cheap",
        "keep_ratio": 0.9,
    }  # cheap differs from balanced in keep_ratio only, given here
    assert resolved(gateway.policy("legacy", "c2"), GATEWAY_FIELDS) == {
        "preset": "off",
        "enabled": False,  # pass-through: `off` wins over the knobs that are not `enabled`
        "keep_ratio": 0.0,
        "min_depth": 5,
        "near_dup": None,
        "cross_lang_keep": 0,
        "min_documents": 30,
    }


def test_no_configuration_is_the_default_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert resolved(s.cascade, PIPELINE_FIELDS) == {**PIPELINE_TRIMMED, "trim_tokens": 0}
    assert resolved(s.gateway.cascade, GATEWAY_FIELDS) == GATEWAY_BALANCED


def test_an_unknown_gateway_preset_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANRANK_GATEWAY__COURSES__C2__PRESET", "fastest")
    with pytest.raises(ValidationError, match="unknown cascade preset 'fastest'"):
        Settings()
