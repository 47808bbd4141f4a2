"""Backend names as the reranker catalog writes them: `KIND:TARGET[?option=value&...]`.

Prices, token counters and ledger rows are keyed by `KIND:TARGET` without the options: a timeout or a
batch size does not change what a call costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from leanrank.errors import ConfigError


@dataclass(frozen=True, slots=True)
class BackendName:
    """`provider` is the catalog kind (`cohere`, `local`, `identity`, ...); `model` the target after `:`."""

    provider: str
    model: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.model}" if self.model else self.provider

    def option(self, name: str) -> str | None:
        return next((value for key, value in self.options if key == name), None)


def chain_links(name: str) -> list[str]:
    """The backends of a fallback chain's name (`a | b`), in calling order; one for a single backend."""
    return [link.strip() for link in name.split("|")]


def parse_backend(name: str) -> BackendName:
    """Split one backend name; a fallback chain (`a | b`) is refused, since only one backend serves a call."""
    if "|" in name:
        raise ConfigError(f"{name!r} is a fallback chain; price and count the backend that served the call")
    spec, _, query = name.strip().partition("?")
    provider, _, model = spec.partition(":")
    if not provider.strip():
        raise ConfigError(f"empty backend name {name!r}")
    return BackendName(provider.strip(), model.strip(), tuple(parse_qsl(query, keep_blank_values=True)))
