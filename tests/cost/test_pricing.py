from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from leanrank.cost.billing import PROVIDER_BILLING
from leanrank.cost.pricing import HOURS_PER_MONTH, ModelPrice, Pricing
from leanrank.errors import ConfigError
from leanrank.rerank.base import Usage
from leanrank.settings import Settings

PACKAGED = Pricing.load()

COHERE_FILE = """
provider = "cohere"
[[price]]
model = "rerank-v3.5"
unit = "per_1k_search_units"
price = {price}
currency = "USD"
as_of = 2027-01-01
source = "https://example.com/cohere"
verified = true
"""


def _price(key: str) -> ModelPrice:
    price = PACKAGED.price(key)
    assert price is not None, key
    return price


def test_packaged_files_cover_every_paid_provider_and_selfhost_examples() -> None:
    providers = {m.provider for m in PACKAGED.models.values()}
    assert providers == {
        "cohere",
        "jina",
        "voyage",
        "mixedbread",
        "siliconflow",
        "deepinfra",
        "fireworks",
        "chat",
    }
    assert set(PACKAGED.gpus) == {"selfhost:h100", "selfhost:l4"}
    assert all(g.example and not g.verified for g in PACKAGED.gpus.values())
    assert providers <= set(PROVIDER_BILLING)


def test_unverified_marks_follow_providers_md() -> None:
    assert _price("cohere:rerank-v3.5").verified
    assert _price("voyage:rerank-2.5").verified
    assert _price("siliconflow:Qwen/Qwen3-Reranker-0.6B").verified
    assert not _price("mixedbread:mxbai-rerank-large-v2").verified


def test_cohere_120_documents_is_2_search_units_is_4_tenths_of_a_cent() -> None:
    cohere = _price("cohere:rerank-v3.5")
    assert cohere.price == 2.00
    assert cohere.cost_usd(query_tokens=15, document_tokens=[160] * 120) == pytest.approx(2 * 2.00 / 1000)
    assert cohere.cost_usd(15, [160] * 100) == pytest.approx(0.002)
    assert cohere.cost_usd(15, []) == 0.0


@pytest.mark.parametrize(
    ("query_chars", "doc_chars", "units"),
    [
        # 1,000 query tokens (4,350 Latin characters / 4.35) leave 3,096 of the 4,096-token context: a
        # 4,096-token document (17,818 / 4.35 = 4,096.1) is ceil(4,096 / 3,096) = 2 chunks; 60 × 2 = 120
        # billed documents = 2 units.
        (4_350, 17_818, 2),
        # A 1-token query (4 / 4.35 = 0.9) leaves 4,095: a 4,095-token document (17,813 / 4.35 = 4,094.9)
        # is 1; 60 = 1 unit.
        (4, 17_813, 1),
        (4, 17_818, 2),  # ... and one token more is 2 chunks: 120 billed documents, 2 units
    ],
)
def test_the_search_unit_estimate_counts_a_document_over_the_context_as_its_chunks(
    query_chars: int, doc_chars: int, units: int
) -> None:
    estimate = PACKAGED.estimate("cohere:rerank-v3.5", "x" * query_chars, ["y" * doc_chars] * 60)
    assert estimate == pytest.approx(units * 2.00 / 1000)


def test_voyage_formula_by_hand() -> None:
    voyage = _price("voyage:rerank-2.5")  # $0.05 per million tokens
    # 20 query tokens × 3 documents + (100 + 200 + 300) = 660 tokens.
    assert voyage.cost_usd(20, [100, 200, 300]) == pytest.approx(660 * 0.05 / 1e6)
    assert voyage.cost_for(20, 3, 600) == voyage.cost_usd(20, [100, 200, 300])


def test_key_and_options() -> None:
    assert _price("cohere:rerank-v3.5").key == "cohere:rerank-v3.5"
    assert PACKAGED.price("cohere:rerank-v3.5?timeout_s=5&max_docs=100") == _price("cohere:rerank-v3.5")
    assert PACKAGED.price("cohere:rerank-v9") is None


def test_is_paid() -> None:
    assert PACKAGED.is_paid("cohere:rerank-v3.5")
    assert PACKAGED.is_paid("cohere:rerank-unlisted")  # a provider that bills per call: not free
    assert not PACKAGED.is_paid("identity")
    assert not PACKAGED.is_paid("local:BAAI/bge-reranker-v2-m3")
    assert not PACKAGED.is_paid("tei:http://gpu:8080")
    assert PACKAGED.is_paid("local:x | voyage:rerank-2.5")


def _usage(**fields: object) -> Usage:
    values: dict[str, object] = {
        "query_tokens": 0,
        "document_tokens": 0,
        "billed_units": 0.0,
        "billed_unit": "tokens",
        "count_source": "reported",
        "latency_s": 0.1,
        "documents": 3,
    }
    return Usage(**(values | fields))  # type: ignore[arg-type]


def test_cost_of_prefers_the_reported_cost() -> None:
    usage = _usage(billed_units=1000.0, cost_usd=0.0123)
    assert PACKAGED.cost_of(usage, "deepinfra:Qwen/Qwen3-Reranker-0.6B") == 0.0123


def test_cost_of_prices_reported_units() -> None:
    voyage = _usage(document_tokens=660, billed_units=660.0)
    assert PACKAGED.cost_of(voyage, "voyage:rerank-2.5") == pytest.approx(660 * 0.05 / 1e6)
    cohere = _usage(billed_unit="search_units", billed_units=3.0, documents=250)
    assert PACKAGED.cost_of(cohere, "cohere:rerank-v3.5") == pytest.approx(3 * 2.00 / 1000)


def test_cost_of_applies_the_rule_when_units_do_not_match_the_price() -> None:
    # Characters reported for a token-priced model: priced from the token counts by the pair rule.
    usage = _usage(query_tokens=20, document_tokens=600, billed_unit="characters", billed_units=9999.0)
    assert PACKAGED.cost_of(usage, "voyage:rerank-2.5") == pytest.approx((20 * 3 + 600) * 0.05 / 1e6)


def test_cost_of_free_and_unknown() -> None:
    assert PACKAGED.cost_of(Usage.free(5, 0.0), "identity") == 0.0
    local = _usage(billed_units=500.0, count_source="tokenizer")
    assert PACKAGED.cost_of(local, "local:BAAI/bge-reranker-v2-m3") == 0.0
    assert PACKAGED.cost_of(_usage(billed_units=500.0), "tei:http://gpu:8080") is None
    assert PACKAGED.cost_of(_usage(billed_units=500.0), "jina:jina-reranker-unlisted") is None


def test_user_files_override_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text(COHERE_FILE.format(price=1.0))
    second.write_text(COHERE_FILE.format(price=1.5))
    pricing = Pricing.load([first, second])
    cohere = pricing.price("cohere:rerank-v3.5")
    assert cohere is not None
    assert (cohere.price, cohere.as_of) == (1.5, date(2027, 1, 1))
    assert "voyage:rerank-2.5" in pricing.models  # the packaged rest stays


def test_settings_dir_then_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "pricing").mkdir(parents=True)
    (data / "pricing" / "cohere.toml").write_text(COHERE_FILE.format(price=1.0))
    extra = tmp_path / "extra.toml"
    extra.write_text(COHERE_FILE.format(price=3.0))
    assert _cohere_price(Settings(data_dir=data)) == 1.0
    assert _cohere_price(Settings(data_dir=data, cost={"pricing_files": [extra]})) == 3.0  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not a directory"):
        Pricing.from_settings(Settings(cost={"pricing_dir": tmp_path / "missing"}))  # type: ignore[arg-type]


@pytest.mark.parametrize("source", ['source = "contract 2026-11, signed by finance"\n', ""])
def test_a_user_price_needs_no_source_url(tmp_path: Path, source: str) -> None:
    """A negotiated price has no page to link to: it needed a made-up URL."""
    data = tmp_path / "data"
    (data / "pricing").mkdir(parents=True)
    text = COHERE_FILE.format(price=1.2).replace('source = "https://example.com/cohere"\n', source)
    (data / "pricing" / "contract.toml").write_text(text)
    price = Pricing.from_settings(Settings(data_dir=data)).price("cohere:rerank-v3.5")
    assert price is not None
    assert (price.price, price.source) == (1.2, source.removeprefix('source = "').removesuffix('"\n'))


def test_every_shipped_price_names_its_https_source() -> None:
    """User prices may name no page; the shipped ones are facts a reader must be able to check."""
    entries = [*PACKAGED.models.values(), *PACKAGED.gpus.values()]
    assert len(entries) > 10
    assert [e.key for e in entries if not re.fullmatch(r"https://\S+", e.source)] == []


def _cohere_price(settings: Settings) -> float:
    price = Pricing.from_settings(settings).price("cohere:rerank-v3.5")
    assert price is not None
    return price.price


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("provider = 'cohere'\n[[price]]\nmodel = 'x'", r"price\[0\]\.unit: Field required"),
        (COHERE_FILE.format(price=-1), r"price\[0\]\.price: Input should be greater than or equal to 0"),
        (COHERE_FILE.format(price=1).replace('"USD"', '"EUR"'), r"price\[0\]\.currency"),
        (COHERE_FILE.format(price=1).replace("2027-01-01", '"soon"'), r"price\[0\]\.as_of"),
        (COHERE_FILE.format(price=1).replace("verified = true", "verified = true\ncolour = 1"), r"colour"),
        (
            COHERE_FILE.format(price=1).replace("per_1k_search_units", "per_million_tokens"),
            "bills by search_units",
        ),
        (COHERE_FILE.format(price=1).replace("per_1k_search_units", "per_gpu_hour"), "per_gpu_hour belongs"),
        ("provider = 'cohere'\nprice = [", "not valid TOML"),
        (
            COHERE_FILE.format(price=1)
            .replace("cohere", "infinity")
            .replace("_1k_search_units", "_million_tokens"),
            "self-hosted",
        ),
    ],
)
def test_malformed_files_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"price file {path}: .*{message}"):
        Pricing.load([path])


def test_gpu_entries_need_a_throughput(tmp_path: Path) -> None:
    path = tmp_path / "gpu.toml"
    path.write_text(
        'provider = "mycloud"\n[[price]]\nmodel = "a100"\nunit = "per_gpu_hour"\nprice = 1.2\n'
        'currency = "USD"\nas_of = 2026-11-01\nsource = "https://example.com"\nverified = false\n'
    )
    with pytest.raises(ConfigError, match="needs pairs_per_second"):
        Pricing.load([path])
    path.write_text(path.read_text() + "pairs_per_second = 900\n")
    gpu = Pricing.load([path], packaged=False).gpus["mycloud:a100"]
    assert gpu.month_usd == pytest.approx(1.2 * 730)
    assert HOURS_PER_MONTH == 730
