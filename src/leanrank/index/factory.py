"""Pick the store from one setting, so moving to a Qdrant server is configuration, not code.

`store.url` forms: `edge:` (the embedded engine under `data_dir/index`) or `edge:PATH`; `http(s)://...`
or `qdrant:http(s)://...` for a server or cluster; `:memory:`, `qdrant::memory:`, `qdrant:PATH` or a bare
folder for qdrant-client's local mode (no server; what the parity tests use).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from leanrank.errors import ConfigError
from leanrank.index.base import Store, quantization_of
from leanrank.index.edge import EdgeStore, stored_meta
from leanrank.settings import Settings

StoreKind = Literal["edge", "server", "local"]


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """A parsed `store.url`: `where` is a path, a URL or `:memory:`; empty for the default edge index."""

    kind: StoreKind
    where: str


def parse_location(url: str) -> StoreLocation:
    """Parse a `store.url` value; the forms are listed in the module docstring."""
    text = url.strip()
    if text.startswith("edge:"):
        return StoreLocation("edge", text.removeprefix("edge:"))
    if text.startswith("qdrant:"):
        text = text.removeprefix("qdrant:")
        if not text:
            raise ConfigError(f"store url {url!r}: give a URL or a folder after 'qdrant:'")
    if text.startswith(("http://", "https://")):
        return StoreLocation("server", text)
    if not text:
        raise ConfigError("store url is empty; use 'edge:' for the embedded index")
    return StoreLocation("local", text)


def open_store(settings: Settings, dim: int, encoder_name: str) -> Store:
    """The store `settings.store.url` names, checked against the encoder the pipeline runs with and the
    `sparse` kind of the settings."""
    location = parse_location(settings.store.url)
    if location.kind == "edge":
        path = _edge_path(settings, location)
        quantization = quantization_of(settings.store)
        return EdgeStore(
            path, dim=dim, encoder=encoder_name, quantization=quantization, sparse=settings.sparse
        )
    from leanrank.index.qdrant import QdrantStore  # the optional extra, imported only when configured

    return QdrantStore(
        location.where, dim=dim, encoder=encoder_name, settings=settings.store, sparse=settings.sparse
    )


def no_index_yet(settings: Settings) -> bool:
    """True when the store is the embedded one and there is no index at its path yet.

    A command that only reads the index answers "no courses" then, rather than open it: opening creates
    the index and its folders (a data directory that did not exist).
    """
    location = parse_location(settings.store.url)
    return location.kind == "edge" and stored_meta(_edge_path(settings, location)) is None


def _edge_path(settings: Settings, location: StoreLocation) -> Path:
    return Path(location.where) if location.where else settings.data_dir / "index"
