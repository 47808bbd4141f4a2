"""Without the framework installed, importing an adapter says which leanrank extra to install."""

from __future__ import annotations

import importlib
import sys

import pytest

import leanrank.integrations
from leanrank.errors import DependencyError


@pytest.mark.parametrize(
    ("module", "framework", "package", "extra"),
    [
        ("leanrank.integrations.langchain", "langchain_core", "langchain-core", "langchain"),
        ("leanrank.integrations.llamaindex", "llama_index", "llama-index-core", "llamaindex"),
    ],
)
def test_missing_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, framework: str, package: str, extra: str
) -> None:
    # `None` in sys.modules makes an import fail as if the package were absent; every submodule already
    # loaded by other tests is blanked too, or `from framework.sub import X` would still find it.
    for name in [n for n in sys.modules if n == framework or n.startswith(f"{framework}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, framework, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(DependencyError, match=rf"pip install 'leanrank\[{extra}\]'") as caught:
        importlib.import_module(module)
    assert (caught.value.package, caught.value.extra) == (package, extra)
    assert isinstance(caught.value.__cause__, ImportError)


def test_the_shared_module_needs_no_framework(monkeypatch: pytest.MonkeyPatch) -> None:
    for framework in ("langchain_core", "llama_index"):
        monkeypatch.setitem(sys.modules, framework, None)
    monkeypatch.delitem(sys.modules, "leanrank.integrations")
    monkeypatch.setattr(leanrank, "integrations", leanrank.integrations)  # the re-import rebinds it
    assert importlib.import_module("leanrank.integrations").USAGE_KEY == "leanrank_usage"
