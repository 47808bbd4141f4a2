"""Prices as dated data: one TOML file per provider in `cost/prices/`, overridable by the user's own files.

A price file names its provider and lists entries, each with its unit, price, currency, the date it was
read, where it was read and whether it was confirmed on the provider's own page:

    provider = "cohere"
    [[price]]
    model = "rerank-v3.5"
    unit = "per_1k_search_units"      # or per_million_tokens, per_gpu_hour
    price = 2.00
    currency = "USD"
    as_of = 2026-11-22
    source = "https://cohere.com/pricing"
    verified = true

A chat model (the LLM judge, `chat.toml`) also lists `output_price`, per million generated tokens; `price`
is then its input price.

The packaged files load first, then `<cost.pricing_dir>/*.toml` in name order, then `cost.pricing_files`;
an entry with the same `provider:model` key replaces the earlier one. A malformed file is a `ConfigError`
naming the file and the field. Every packaged entry's `source` is the https page it was read from (a test
guards it); in a user's file it is free text (`source = "contract 2026-11"`) or left out, since a
negotiated price has no public page.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leanrank.cost._names import chain_links, parse_backend
from leanrank.cost.billing import PROVIDER_BILLING, search_unit_documents, search_units
from leanrank.cost.tokens import counter_for
from leanrank.errors import ConfigError
from leanrank.rerank.base import BilledUnit, Usage
from leanrank.settings import Settings

PriceUnit = Literal["per_million_tokens", "per_1k_search_units", "per_gpu_hour"]
CallUnit = Literal["per_million_tokens", "per_1k_search_units"]

HOURS_PER_MONTH = 365 * 24 / 12
"""730: an always-on machine's hours in an average month."""

_UNIT_SIZE: Mapping[CallUnit, float] = {"per_million_tokens": 1e6, "per_1k_search_units": 1e3}
_RULE_UNIT: Mapping[str, CallUnit] = {
    "search_units": "per_1k_search_units",
    "pair_tokens": "per_million_tokens",
}


CHAT_PROVIDER = "chat"
"""The provider of the LLM judge's chat models (`prices/chat.toml`): priced, but no rerank API."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """The listed price of one rerank model, and the provider's billing rule applied to a call."""

    provider: str
    model: str
    unit: CallUnit
    price: float
    as_of: date
    source: str
    verified: bool
    note: str = ""
    output_price: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def billed_unit(self) -> BilledUnit:
        return "search_units" if self.unit == "per_1k_search_units" else "tokens"

    @property
    def is_paid(self) -> bool:
        return self.price > 0 or self.output_price > 0

    @property
    def is_rerank(self) -> bool:
        """False for a chat model, which the judge calls and no reranker stands in for."""
        return self.provider != CHAT_PROVIDER

    def output_cost(self, output_tokens: int) -> float:
        """US dollars for `output_tokens` generated tokens (0 for models that generate none)."""
        return output_tokens * self.output_price / 1e6

    def units(self, query_tokens: float, documents: float, document_tokens: float) -> float:
        """Billed units of one request: ceil(documents / 100) search units, or q × documents + Σ doc tokens.

        Takes totals (and accepts means) so projections can price an average query; `cost_usd` is the
        per-document form. Search units count billed documents: a text over the context is several
        (`documents_billed`).
        """
        if self.unit == "per_1k_search_units":
            return float(search_units(math.ceil(documents)))
        return query_tokens * documents + document_tokens

    def documents_billed(self, query_tokens: int, texts: Sequence[str], count: Callable[[str], int]) -> int:
        """Documents one request sending `texts` is billed for: per search unit, a text over the context
        with the query counts as its chunks (`billing.search_unit_documents`, `count` the provider's token
        counter); per token, each text is one."""
        if self.billed_unit != "search_units":
            return len(texts)
        return sum(search_unit_documents(query_tokens, text, count) for text in texts)

    def cost_of_units(self, units: float) -> float:
        return units * self.price / _UNIT_SIZE[self.unit]

    def cost_for(self, query_tokens: float, documents: float, document_tokens: float) -> float:
        """US dollars for one request of `documents` documents holding `document_tokens` tokens in all."""
        return self.cost_of_units(self.units(query_tokens, documents, document_tokens))

    def cost_usd(self, query_tokens: int, document_tokens: Sequence[int]) -> float:
        """US dollars for one request: the query's tokens and each document's tokens."""
        return self.cost_for(query_tokens, len(document_tokens), sum(document_tokens))


@dataclass(frozen=True, slots=True)
class GpuPrice:
    """An hourly GPU rate and the rerank throughput assumed for it, for the self-hosting crossover."""

    provider: str
    model: str
    usd_per_hour: float
    pairs_per_second: float
    as_of: date
    source: str
    verified: bool
    example: bool
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def month_usd(self) -> float:
        """One GPU kept on for a month."""
        return self.usd_per_hour * HOURS_PER_MONTH


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)
    unit: PriceUnit
    price: float = Field(ge=0, allow_inf_nan=False)
    currency: Literal["USD"]
    as_of: date
    source: str = ""  # free text in a user's file (a negotiated price has no page); shipped files: a URL
    verified: bool
    example: bool = False
    pairs_per_second: float | None = Field(None, gt=0, allow_inf_nan=False)
    output_price: float = Field(0.0, ge=0, allow_inf_nan=False)
    note: str = ""


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(pattern=r"^[a-z0-9_-]+$")
    price: list[_Entry] = Field(min_length=1)

    @model_validator(mode="after")
    def _units_fit_provider(self) -> _PriceFile:
        rule = PROVIDER_BILLING.get(self.provider)
        for entry in self.price:
            if entry.unit == "per_gpu_hour":
                if rule is not None:
                    raise ValueError(
                        f"{self.provider} is a rerank API; per_gpu_hour belongs to a self-host file"
                    )
                if entry.pairs_per_second is None:
                    raise ValueError(f"{entry.model}: a per_gpu_hour entry needs pairs_per_second")
            elif rule is not None and _RULE_UNIT.get(rule) != entry.unit:
                expected = _RULE_UNIT.get(rule, "no per-call price (self-hosted: use per_gpu_hour)")
                raise ValueError(
                    f"{self.provider} bills by {rule}: unit must be {expected}, not {entry.unit}"
                )
        return self


class Pricing:
    """All known prices by key, after overrides; answers what a backend's call cost."""

    def __init__(self, models: Iterable[ModelPrice] = (), gpus: Iterable[GpuPrice] = ()) -> None:
        self.models: Mapping[str, ModelPrice] = {m.key: m for m in models}
        self.gpus: Mapping[str, GpuPrice] = {g.key: g for g in gpus}
        # A provider with any per-call price bills per call: its unlisted models are not free.
        self._billing_providers = frozenset(m.provider for m in self.models.values())

    @classmethod
    def load(cls, files: Sequence[Path] = (), *, packaged: bool = True) -> Pricing:
        """The packaged price files (unless `packaged=False`), then `files` in order; later keys win."""
        sources: list[Traversable | Path] = []
        if packaged:
            prices = resources.files("leanrank.cost") / "prices"
            sources.extend(
                sorted((f for f in prices.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name)
            )
        sources.extend(files)
        models: dict[str, ModelPrice] = {}
        gpus: dict[str, GpuPrice] = {}
        for source in sources:
            for item in _read(source):
                if isinstance(item, ModelPrice):
                    models[item.key] = item
                else:
                    gpus[item.key] = item
        return cls(models.values(), gpus.values())

    @classmethod
    def from_settings(cls, settings: Settings) -> Pricing:
        """Packaged prices, `cost.pricing_dir` (default `<data_dir>/pricing`), then `cost.pricing_files`."""
        folder = settings.cost.pricing_dir
        if folder is None:
            folder = settings.data_dir / "pricing"
        elif not folder.is_dir():
            raise ConfigError(f"cost.pricing_dir {folder} is not a directory")
        user = sorted(folder.glob("*.toml")) if folder.is_dir() else []
        return cls.load([*user, *settings.cost.pricing_files])

    def price(self, backend: str) -> ModelPrice | None:
        """The price of `backend` (a catalog name; options after `?` are ignored), if listed."""
        return self.models.get(parse_backend(backend).key)

    def is_paid(self, backend: str) -> bool:
        """A non-zero listed price, or an unlisted model of a provider billing per call; chain: any link."""
        links = chain_links(backend)
        if len(links) > 1:
            return any(self.is_paid(link) for link in links)
        price = self.price(backend)
        if price is not None:
            return price.is_paid
        return parse_backend(backend).provider in self._billing_providers

    def estimate(self, backend: str, query: str, documents: Sequence[str]) -> float:
        """US dollars a call should cost, before it is made: what a budget holds for it.

        A chain is held at its dearest link. Tokens are counted with the model's tokenizer where bundled,
        else about four characters a token; search units by the documents billed, a document over the
        context with the query counting as its chunks (`ModelPrice.documents_billed`). A model without a
        listed price is held at 0 (its calls are unpriced, and unpriced calls count towards no cap).
        """
        links = chain_links(backend)
        if len(links) > 1:
            return max(self.estimate(link, query, documents) for link in links)
        price = self.price(backend)
        if price is None or not price.is_paid:
            return 0.0
        counter = counter_for(backend)
        query_tokens = counter.count(query)
        if price.billed_unit == "search_units":
            billed = price.documents_billed(query_tokens, documents, counter.count)
            return price.cost_for(query_tokens, billed, 0)
        return price.cost_usd(query_tokens, [counter.count(doc) for doc in documents])

    def cost_of(self, usage: Usage, backend: str) -> float | None:
        """US dollars for one call: the cost the provider reported, else its units at the listed price.

        Reported units are priced as they are; otherwise the billing rule is applied to the usage's token
        counts. In-process stages (`identity`, `local:`) cost nothing; None means the price is unknown.
        """
        if usage.cost_usd is not None:
            return usage.cost_usd
        name = parse_backend(backend)
        if usage.billed_unit == "none" or PROVIDER_BILLING.get(name.provider) == "none":
            return 0.0
        price = self.models.get(name.key)
        if price is None:
            return None
        output = price.output_cost(usage.output_tokens)
        if usage.billed_unit == price.billed_unit:
            return price.cost_of_units(usage.billed_units) + output
        return price.cost_for(usage.query_tokens, usage.documents, usage.document_tokens) + output


def _read(source: Traversable | Path) -> list[ModelPrice | GpuPrice]:
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"price file {source}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"price file {source}: not valid TOML ({exc})") from None
    try:
        parsed = _PriceFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        raise ConfigError(f"price file {source}: {where or 'file'}: {first['msg']}") from None
    items: list[ModelPrice | GpuPrice] = []
    for e in parsed.price:
        if e.unit == "per_gpu_hour":
            pairs = e.pairs_per_second or 0.0  # present: _PriceFile requires it
            gpu = GpuPrice(
                parsed.provider, e.model, e.price, pairs, e.as_of, e.source, e.verified, e.example, e.note
            )
            items.append(gpu)
        else:
            model = ModelPrice(
                parsed.provider,
                e.model,
                e.unit,
                e.price,
                e.as_of,
                e.source,
                e.verified,
                e.note,
                e.output_price,
            )
            items.append(model)
    return items
