"""Settings: defaults < `leanrank.toml` < `LEANRANK_*` environment variables < explicit arguments.

Nested groups are set from the environment with a double underscore, e.g.
`LEANRANK_RETRIEVE__DEPTH=30`, or in `leanrank.toml` under a `[retrieve]` table.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from leanrank.checks import MAX_DEPTH, MAX_HITS
from leanrank.errors import ConfigError

CALL_DEADLINE_S = 180.0
"""The default `rerank.deadline_s`: one request of an HTTP reranker with its default options at its slowest,
every attempt using its whole timeout and every wait the longest a server's `Retry-After` is honoured
(4 × 30 s + 3 × 20 s: `catalog` options, `leanrank.retry.RetryPolicy`)."""

LEDGER_LOCK_TIMEOUT_S = 5.0
"""The default `cost.ledger_lock_timeout_s`: a ledger write's transaction takes milliseconds, so a lock held
this long belongs to something stuck (a hung replica, a transaction left open by hand), and the request fails
with a 503 instead of waiting with it."""

SparseKind = Literal["bm25", "bge-m3"]
"""Which sparse vectors the first stage's sparse list uses (`leanrank.index.base.SPARSE_VECTOR`)."""


class _Group(BaseModel):
    """A settings group: a name it does not have (`LEANRANK_RERANK__CACHE_URL`, a TOML typo) is an error."""

    model_config = ConfigDict(extra="forbid")


class IngestSettings(_Group):
    """How files become chunks."""

    max_file_bytes: int = Field(20_000_000, gt=0, description="Larger files are skipped with a message.")
    max_tokens: int = Field(160, ge=16, le=2048, description="Chunk budget in XLM-RoBERTa tokens.")
    overlap_sentences: int = Field(
        0, ge=0, le=5, description="Trailing sentences repeated in the next chunk."
    )
    min_tokens: int = Field(8, ge=0, description="Shorter trailing fragments merge into the previous chunk.")


class RetrieveSettings(_Group):
    """The hybrid first stage.

    Fusion is reciprocal rank fusion computed inside Qdrant with its convention:
    `score(d) = Σ_i 1 / ((rank_i(d) + 1) / w_i + k - 1)` with **0-based** ranks: unweighted, the top hit of
    a list adds `1/k`; a weight stretches the list's ranks (see `leanrank.retrieve.fusion`).
    """

    mode: Literal["hybrid", "dense", "sparse"] = Field(
        "hybrid", description="Both lists fused, or one list alone (the baselines the evaluation compares)."
    )
    depth: int = Field(20, ge=1, le=MAX_DEPTH, description="Candidates handed to the rerank step.")
    prefetch: int = Field(
        100, ge=1, le=10_000, description="Hits each of dense and BM25 contribute to fusion."
    )
    # k and the weights were chosen on the tune halves of a real bilingual course's questions and of XQuAD
    # together (bench/course.py, bench/cascade.py): a small k lets each list's top hits lead, so a passage one
    # list is sure of is not buried by many the other list half-likes; the language lists are a light touch.
    rrf_k: int = Field(7, ge=1, description="RRF constant k (0-based rank convention, see above).")
    dense_weight: float = Field(1.0, ge=0.0)
    sparse_weight: float = Field(1.0, ge=0.0)
    lang_weight: float = Field(
        0.1, ge=0.0, description="Weight of the per-language dense lists (one for ru, one for en); 0 = off."
    )
    cross_lang_weight: float = Field(
        0.3,
        ge=0.0,
        description="Weight of the per-language dense list of the language the query is not written in.",
    )
    # The translated BM25 list (leanrank.encode.lexicon): opt-in; 0.5 with these values was best on the
    # course's tune half (bench/course.py), but translation noise can outrank an exact match (see the README).
    translate_weight: float = Field(
        0.0,
        ge=0.0,
        description="Weight of the BM25 list of the query's words translated into the course's other "
        "language through its own vocabulary; 0 = off.",
    )
    translate_threshold: float = Field(
        0.0, description="Least CSLS score (2·cos − hubness of both words) a word's translation needs."
    )
    translate_per_word: int = Field(2, ge=1, le=20, description="Most translations kept per query word.")
    translate_margin: float = Field(
        0.02, ge=0.0, description="Translations within this CSLS score of a word's best are kept too."
    )
    lexicon_min_count: int = Field(
        2, ge=1, description="Occurrences in the course a word needs to enter its lexicon."
    )
    # No cap by default: one lecture file may hold several chunks that answer a question, and on XQuAD a
    # cap of 3 cost candidate recall (0.970 against 0.996) that the cascade's adaptive depth does not.
    max_per_source: int = Field(0, ge=0, description="Most chunks kept from one source file; 0 = no limit.")
    dedup: bool = Field(True, description="Drop candidates whose normalised text repeats a better one.")
    min_score: float | None = Field(None, description="Drop candidates whose fused score is below this.")
    steer_strategy: Literal["sum_scores", "best_score", "discover"] = Field(
        "sum_scores",
        description="How a search's context examples steer the dense lists (`leanrank.retrieve.steering`): "
        "Qdrant's recommend strategies or its discovery query.",
    )


class RerankSettings(_Group):
    """The rerank step after retrieval."""

    backend: str = Field("identity", description="Reranker name; `identity` keeps the fusion order.")
    top_k: int = Field(5, ge=1, le=MAX_HITS, description="Hits returned after reranking.")
    cache: str = Field(
        "off",
        description="Score cache: `off`, `sqlite` (<data_dir>/score-cache.sqlite, one machine) or a "
        "`redis://` URL (shared by replicas).",
        pattern=r"^(off|sqlite|rediss?://.+)$",
    )
    cache_ttl_s: float = Field(30 * 86_400, gt=0, description="Cached scores expire after this long.")
    deadline_s: float = Field(
        CALL_DEADLINE_S,
        gt=0,
        description="Longest one metered call may take, every request, retry and fallback link of it (the "
        "judge's too); past it the call fails as a timeout, recorded as possibly billed. A process killed "
        "mid-call frees its request id and held spend this long (and a minute) after the call began.",
    )
    # Issue 20: calibrated relevance (`leanrank.rerank.calibration`, fitted by `leanrank calibrate`).
    min_relevance: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Drop hits whose calibrated P(relevant) is below this; None: keep every hit.",
    )
    calibration_dir: Path | None = Field(
        None, description="Calibration files (*.json) by `leanrank calibrate`; None: <data_dir>/calibration."
    )


class JudgeSettings(_Group):
    """The LLM judge after the rerank step (`leanrank.rerank.judge`): off unless enabled or asked per search.

    Any OpenAI-compatible chat endpoint; priced as `chat:MODEL` (`cost/prices/chat.toml`), recorded in the
    ledger under the stage `judge`, held against the same budgets as the reranker.
    """

    enabled: bool = Field(False, description="Judge every search (a search may still turn it on or off).")
    model: str = Field("", description="Chat model name, e.g. `gpt-4o-mini`; empty: no judge configured.")
    base_url: str = Field("https://api.openai.com/v1", description="Endpoint serving `/chat/completions`.")
    api_key: SecretStr | None = Field(None, description="Bearer key; never logged.")
    top_n: int = Field(3, ge=1, le=20, description="Hits judged, best first.")
    action: Literal["demote", "drop"] = Field(
        "demote", description="Hits judged `no` move to the end (`demote`) or are removed (`drop`)."
    )
    timeout_s: float = Field(20.0, gt=0, description="Per request.")
    max_attempts: int = Field(3, ge=1, le=10, description="Tries per passage on 429/5xx.")
    max_tokens: int = Field(3, ge=1, le=64, description="Answer length asked for: yes or no.")
    cache: str = Field(
        "off",
        description="Verdict cache, as `rerank.cache`: `off`, `sqlite` or a `redis://` URL.",
        pattern=r"^(off|sqlite|rediss?://.+)$",
    )

    @model_validator(mode="after")
    def _model_when_enabled(self) -> JudgeSettings:
        if self.enabled and not self.model:
            raise ValueError("judge.enabled needs judge.model")
        return self


CascadePreset = Literal["off", "cheap", "balanced", "best"]


class CascadeSettings(_Group):
    """What happens between the first stage and the paid reranker (`leanrank.cascade`).

    `preset` (`balanced` unless named) fills every field it names that is not set explicitly, so a knob set
    alone overrides the default preset's value of it; `off` leaves every field at its own default below,
    each of which turns its stage off. The presets and the reasons for each default are in
    `leanrank.cascade.presets` and the README. The first stage still retrieves `retrieve.depth` candidates;
    the cascade decides how many of them go on, and in what form.
    """

    preset: CascadePreset = Field(
        "balanced", description="Named set of the values below, the base that the other fields override."
    )
    adaptive: bool = Field(
        False, description="Send fewer candidates when the first stage is confident (see `min_depth`)."
    )
    min_depth: int = Field(5, ge=1, le=1000, description="Fewest candidates an adaptive cut keeps.")
    keep_ratio: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Adaptive cut: keep candidates whose fused score is ≥ this × the top's.",
    )
    near_dup: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Collapse candidates sharing this share of word 3-shingles; None: off.",
    )
    cross_lingual: float | None = Field(
        None, gt=0.0, le=1.0, description="Collapse translations above this dense cosine; None: off."
    )
    prefer_query_lang: bool = Field(True, description="Of two translations, keep the query's language.")
    trim_tokens: int = Field(
        0,
        ge=0,
        le=8192,
        description="Send each candidate's best window of this many tokens; 0: whole chunks.",
    )
    gate: str = Field("off", description="A cheap local reranker run before the paid one; `off`: none.")
    gate_keep: int = Field(10, ge=1, le=1000, description="Candidates the gate passes on.")
    result_cache: str = Field(
        "off",
        description="Reuse whole answers to repeated questions: `off`, `sqlite` or a `redis://` URL.",
        pattern=r"^(off|sqlite|rediss?://.+)$",
    )
    result_similarity: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="Dense cosine at which a cached question is considered; its words must match too.",
    )
    result_ttl_s: float = Field(86_400, gt=0, description="Cached answers expire after this long.")
    # Issue 20: the "nothing here is relevant" case and diversity (`leanrank.cascade.mmr`).
    min_similarity: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="Send nothing to the paid stage when no candidate's dense cosine reaches this.",
    )
    mmr_lambda: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Reorder the candidates by MMR with this λ (1: relevance only) before the cut.",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: object) -> object:
        from leanrank.cascade.presets import PRESETS

        return _over_preset(data, PRESETS, cls.model_fields["preset"].default)


def _over_preset(data: object, presets: dict[str, dict[str, Any]], default: str) -> object:
    """A cascade group's input over the values of the preset it names, or of `default` when it names none:
    a knob given alone (`LEANRANK_CASCADE__TRIM_TOKENS=128`, a TOML table without `preset`) overrides the
    default preset's value of it rather than starting from a cascade with every stage off. ValueError for a
    name that is no preset."""
    if not isinstance(data, dict):
        return data
    name = data.get("preset", default)
    if name not in presets:
        raise ValueError(f"unknown cascade preset {name!r}; known: {', '.join(presets)}")
    return {**presets[name], **data}


class RateLimitSettings(_Group):
    """Requests and tokens one API key may use per minute; over either, 429 with Retry-After."""

    key: str = Field(min_length=1, description="API key id; `*` limits each key separately.")
    requests_per_minute: int | None = Field(None, ge=1, description="Requests of any kind with this key.")
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        description="Estimated tokens of rerank requests (as `max_tokens` counts them); one request above "
        "this is refused with 413.",
    )

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimitSettings:
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ValueError("a rate limit needs requests_per_minute, tokens_per_minute or both")
        return self


GatewayPreset = Literal["off", "cheap", "balanced", "best"]


class ClientCascadeSettings(_Group):
    """The cascade the rerank endpoints apply to the documents a client sends (`leanrank.cascade.request`).

    Exact and near-duplicate collapse, then a pre-ranking of what the request holds (the client's order
    fused by RRF with BM25 over the request's own documents) and the pipeline cascade's adaptive cut, best
    windows and gate. `preset` (`balanced` unless named, for the default policy and every key's and course's
    alike) fills every field it names that is not set explicitly, so a knob set alone overrides the default
    preset's value of it; `off` sets `enabled` false: every document forwarded as sent, whatever the other
    fields say. The presets were chosen on the gateway benchmark (`bench/gateway.py --savings`).
    """

    preset: GatewayPreset = Field(
        "balanced", description="Named set of the values below, the base that the other fields override."
    )
    enabled: bool = Field(
        False,
        description="The cascade's switch, on in every preset but `off`: false forwards every document as "
        "sent, uncapped (pass-through).",
    )
    min_documents: int = Field(
        20,
        ge=1,
        le=100_000,
        description="Requests with fewer documents skip the cut and are forwarded whole, except that a "
        "backend billed per search unit is still sent at most 100 billed documents (one unit; more only when "
        "the first document alone is billed as more), in the client's order.",
    )
    client_weight: float = Field(1.0, ge=0.0, description="RRF weight of the client's own order.")
    bm25_weight: float = Field(1.0, ge=0.0, description="RRF weight of BM25 over the request's documents.")
    rrf_k: int = Field(7, ge=1, description="RRF constant k (0-based ranks, as `retrieve.rrf_k`).")
    keep_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="Forward documents whose fused score is ≥ this × the top's; 0: all."
    )
    cross_lang_keep: int = Field(
        0,
        ge=0,
        le=100,
        description="The client's first this many documents in the language the query is not written in "
        "pass the adaptive cut whatever their fused score; 0: none.",
    )
    min_depth: int = Field(5, ge=1, le=100_000, description="Fewest documents an adaptive cut forwards.")
    near_dup: float | None = Field(
        None, gt=0.0, le=1.0, description="Collapse documents sharing this share of word 3-shingles."
    )
    trim_tokens: int = Field(0, ge=0, le=8192, description="Forward each one's best window; 0: whole.")
    gate: str = Field("off", description="A cheap local reranker run before the paid one; `off`: none.")
    gate_keep: int = Field(10, ge=1, le=100_000, description="Documents the gate passes on.")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: object) -> object:
        from leanrank.cascade.presets import GATEWAY_PRESETS

        return _over_preset(data, GATEWAY_PRESETS, cls.model_fields["preset"].default)


class GatewaySettings(_Group):
    """What the rerank endpoints do with client-sent documents before the paid backend.

    A key's policy wins over its course's, which wins over `cascade`; a request opts out for one call with
    the header `X-Leanrank-Cascade: off`.
    """

    cascade: ClientCascadeSettings = ClientCascadeSettings()
    keys: dict[str, ClientCascadeSettings] = Field({}, description="Policy per API key id.")
    courses: dict[str, ClientCascadeSettings] = Field({}, description="Policy per course billed.")
    memo_documents: int = Field(
        4096, ge=0, description="Documents whose BM25 analysis is remembered (clients resend their corpus)."
    )

    def policy(self, key_id: str, course: str | None) -> ClientCascadeSettings:
        if key_id in self.keys:
            return self.keys[key_id]
        if course is not None and course in self.courses:
            return self.courses[course]
        return self.cascade


class ServeSettings(_Group):
    """The HTTP service (`leanrank serve`): where it listens, who may call it, and how much it accepts.

    API keys are stored hashed, one entry `ID:SHA256_HEX:SCOPES` each, SCOPES being `admin`, `metrics`
    (reads `/metrics` only) or a comma-separated list of course ids; `leanrank serve --new-key ID:SCOPES`
    prints a key and its entry.
    """

    host: str = Field("127.0.0.1", description="Interface to bind; 0.0.0.0 exposes the service.")
    port: int = Field(8000, ge=0, le=65535)
    api_keys: list[str] = Field([], description="Hashed key entries `ID:SHA256_HEX:SCOPES`.")
    api_keys_file: Path | None = Field(None, description="More entries, one a line; `#` starts a comment.")
    max_documents: int = Field(1_000, ge=1, description="Documents per rerank request (413 beyond).")
    max_batch_queries: int = Field(
        100, ge=1, description="Queries per `/v1/rerank/batch` request, each within the limits above."
    )
    max_request_bytes: int = Field(5_000_000, ge=1, description="JSON request body size (413 beyond).")
    max_tokens: int = Field(
        1_000_000, ge=1, description="Tokens per rerank request, query counted once per document."
    )
    keep_alive_s: int = Field(
        75, ge=1, description="Idle connections close after this; longer than clients' own (httpx: 5 s)."
    )
    max_concurrent: int = Field(64, ge=1, description="Requests worked on at once.")
    max_queue: int = Field(256, ge=0, description="Requests waiting for a slot; more are refused (429).")
    micro_batch_ms: float = Field(
        2.0, ge=0.0, le=100.0, description="Window merging concurrent calls to a batching local model."
    )
    micro_batch_max_documents: int = Field(256, ge=1, description="A batch is sent once this full.")
    unknown_model: Literal["answer", "refuse"] = Field(
        "answer",
        description="A rerank request naming a model no backend of the policy serves: answered by the policy "
        "with the header x-leanrank-model-ignored, or refused with 404.",
    )
    rate_limits: list[RateLimitSettings] = Field(
        [], description="Per-key limits; a rule naming the key wins over `*`."
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="Where rate-limit counts live: `memory://` (each worker process counts alone) or a "
        "`redis://` URL shared by workers and replicas.",
        pattern=r"^(memory://|rediss?://.+)$",
    )
    max_upload_bytes: int = Field(100_000_000, ge=1, description="Multipart upload size (413 beyond).")
    max_upload_files: int = Field(200, ge=1, description="Files per upload.")
    background_ingest_bytes: int = Field(
        1_000_000, ge=0, description="Larger uploads are ingested in the background (202 and a job)."
    )
    metrics_access: Literal["key", "open"] = Field(
        "key",
        description="`GET /metrics`: `key` wants an admin key or a dedicated `metrics` key (scope "
        "`metrics`); `open` serves it without a key, as TEI and infinity do (behind a private port).",
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="A connection whose request line and headers are not all in by then closes."
    )
    max_connections: int = Field(
        1_000, ge=1, description="Open connections; a request on one more is answered 503 and closed."
    )
    shutdown_timeout_s: int = Field(
        30, ge=1, description="On SIGTERM, requests and ingest jobs get this long; unfinished jobs resume."
    )


class StoreSettings(_Group):
    """Where the index lives: the embedded engine by default, a Qdrant server or cluster by configuration."""

    url: str = Field(
        "edge:",
        description="`edge:` (embedded, under data_dir) or `edge:PATH`; `http(s)://HOST:6333` or "
        "`qdrant:URL` for a Qdrant server; `:memory:` or a folder (or `qdrant:PATH`) for qdrant-client's "
        "local mode.",
    )
    api_key: SecretStr | None = Field(None, description="Qdrant API key; never logged.")
    collection: str = Field(
        "leanrank", min_length=1, max_length=255, description="One collection holds all courses."
    )
    # Set when the collection is created; BM25 IDF is computed per shard, so only 1 shard ranks exactly as
    # the embedded store does (see deploy/README.md).
    shard_number: int = Field(1, ge=1)
    replication_factor: int = Field(1, ge=1)
    write_consistency_factor: int = Field(1, ge=1)
    # Set when the index is created (`leanrank.index.base.Quantization`); another value needs a new index.
    quantization: Literal["none", "int8", "binary"] = Field(
        "none", description="Dense vectors also stored as int8 (4× smaller) or 1 bit (32×) per dimension."
    )
    rescore: bool = Field(True, description="Quantised search re-scores its best hits with the full vectors.")
    oversampling: float = Field(
        2.0, ge=1.0, le=16.0, description="Quantised search fetches this × the hits asked, then rescores."
    )
    timeout_s: int = Field(10, ge=1, description="Per request to a Qdrant server.")
    retries: int = Field(3, ge=0, le=10, description="Retries on connection errors and 5xx, with backoff.")


class BudgetSettings(_Group):
    """One spending cap: a soft cap warns, a hard cap stops paid rerankers (the fallback serves instead)."""

    scope: Literal["course", "tenant"]
    name: str = Field(min_length=1, description="Course or tenant id; `*` caps each one separately.")
    period: Literal["day", "month"] = Field("month", description="UTC day or calendar month.")
    soft_usd: float | None = Field(None, ge=0, description="Log a warning and count from here on.")
    hard_usd: float | None = Field(None, ge=0, description="Serve from the fallback from here on.")

    @model_validator(mode="after")
    def _caps(self) -> BudgetSettings:
        if self.soft_usd is None and self.hard_usd is None:
            raise ValueError("a budget needs soft_usd, hard_usd or both")
        if self.soft_usd is not None and self.hard_usd is not None and self.soft_usd > self.hard_usd:
            raise ValueError("soft_usd must not exceed hard_usd")
        return self


class CostSettings(_Group):
    """The cost ledger, price files and budgets (`leanrank costs`, `leanrank pricing`)."""

    ledger_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL, e.g. `postgresql+psycopg://user:pw@host/db` (never logged); None: "
        "SQLite at <data_dir>/ledger.sqlite.",
    )
    ledger_lock_timeout_s: float = Field(
        LEDGER_LOCK_TIMEOUT_S,
        gt=0,
        le=30,
        description="Longest a ledger write waits for another connection's write lock (PostgreSQL: the "
        "ledger's advisory lock, `lock_timeout`; SQLite: the busy timeout); past it the write fails with "
        "`LedgerError` (503) and writes nothing. At most 30 s: a hold's minute of margin past its call's "
        "deadline covers the waits of the writes on either side of the call.",
    )
    pricing_dir: Path | None = Field(
        None, description="User price files (*.toml), read by name; None: <data_dir>/pricing if present."
    )
    pricing_files: list[Path] = Field([], description="More price files, read last; later entries win.")
    budgets: list[BudgetSettings] = Field([], description="Caps per course or tenant and day or month.")
    fallback: str = Field("identity", description="Reranker that serves when a hard cap stops a paid one.")


class Settings(BaseSettings):
    """Everything a pipeline needs; see the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix="LEANRANK_",
        env_nested_delimiter="__",
        toml_file="leanrank.toml",
        extra="forbid",
    )

    data_dir: Path = Field(Path(".leanrank"), description="Where the embedded index lives.")
    encoder: str = Field(
        "e5",
        description="Dense encoder: `e5` (bundled, offline), `bge-m3:PATH_OR_HUB_ID` or `tei:URL`.",
    )
    # Set when the index is created, like the encoder: the two kinds are stored as different sparse vectors.
    sparse: SparseKind = Field(
        "bm25",
        description="The hybrid first stage's sparse list: `bm25` (leanrank's analyser, IDF in the engine) "
        "or `bge-m3`, the learned lexical weights of the `bge-m3:` encoder's sparse head (sparse_linear.pt).",
    )
    max_query_chars: int = Field(2_000, ge=1, description="Longer queries are refused.")
    ingest: IngestSettings = IngestSettings()
    retrieve: RetrieveSettings = RetrieveSettings()
    rerank: RerankSettings = RerankSettings()
    judge: JudgeSettings = JudgeSettings()
    cascade: CascadeSettings = CascadeSettings()
    store: StoreSettings = StoreSettings()
    serve: ServeSettings = ServeSettings()
    gateway: GatewaySettings = GatewaySettings()
    cost: CostSettings = CostSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        try:
            toml = TomlConfigSettingsSource(settings_cls)
        except tomllib.TOMLDecodeError as exc:
            name = settings_cls.model_config.get("toml_file")
            raise ConfigError(f"{name}: not valid TOML ({exc})") from None
        return (init_settings, _Env(settings_cls), _UnknownEnv(settings_cls), toml)


# Read by the reranker adapters (`LEANRANK_<KIND>_API_KEY`, `_BASE_URL`) and `leanrank eval`, not by Settings.
_OTHER_ENV = re.compile(r"LEANRANK_(\w+_(API_KEY|BASE_URL)|EVAL_DATA)", re.IGNORECASE)


class _Env(EnvSettingsSource):
    """`LEANRANK_*` variables; a list or table that is not JSON is a `ConfigError` naming the setting (the
    library's own error names its source class only and reaches the user as a stack trace)."""

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:
            variable = f"{self.env_prefix}{field_name}".upper()
            raise ConfigError(
                f"invalid setting {field_name}: a {variable}* variable holds a list or table that is not "
                f"JSON ({exc})"
            ) from None


class _UnknownEnv(PydanticBaseSettingsSource):
    """`LEANRANK_*` variables that name no top-level setting, passed on as they are so that `extra="forbid"`
    refuses them by name; a bad name inside a group is refused by the group itself."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        fields = set(self.settings_cls.model_fields)
        prefix = len("LEANRANK_")
        return {
            name: value
            for name, value in os.environ.items()
            if name.upper().startswith("LEANRANK_")
            and not _OTHER_ENV.fullmatch(name)
            and name[prefix:].split("__")[0].lower() not in fields
        }
