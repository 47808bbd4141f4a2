"""Encoder fixtures: models are built at test time because the Hugging Face hub is out of reach."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight XLM-R checkpoint laid out like bge-m3; skipped without the `torch` extra."""
    pytest.importorskip("transformers")
    from tests.models import build_tiny_xlmr

    return build_tiny_xlmr(tmp_path_factory.mktemp("tiny-xlmr"))
