"""Settings: defaults < `leanrank.toml` < `LEANRANK_*` environment variables < explicit arguments.

Nested groups are set from the environment with a double underscore, e.g.
`LEANRANK_RETRIEVE__DEPTH=30`, or in `leanrank.toml` under a `[retrieve]` table.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class IngestSettings(BaseModel):
    """How files become chunks."""

    max_file_bytes: int = Field(20_000_000, gt=0, description="Larger files are skipped with a message.")
    max_tokens: int = Field(160, ge=16, le=2048, description="Chunk budget in XLM-RoBERTa tokens.")
    overlap_sentences: int = Field(
        0, ge=0, le=5, description="Trailing sentences repeated in the next chunk."
    )
    min_tokens: int = Field(8, ge=0, description="Shorter trailing fragments merge into the previous chunk.")


class RetrieveSettings(BaseModel):
    """The hybrid first stage.

    Fusion is reciprocal rank fusion computed inside Qdrant with its convention:
    `score(d) = Σ_i w_i / (k + rank_i(d))` with **0-based** ranks (the top hit of a list adds `w_i / k`).
    """

    depth: int = Field(20, ge=1, le=1000, description="Candidates handed to the rerank step.")
    prefetch: int = Field(
        100, ge=1, le=10_000, description="Hits each of dense and BM25 contribute to fusion."
    )
    # k and weights were chosen on the tune half of the XQuAD benchmark (bench/retrieval.py).
    rrf_k: int = Field(30, ge=1, description="RRF constant k (0-based rank convention, see above).")
    dense_weight: float = Field(1.0, ge=0.0)
    sparse_weight: float = Field(0.5, ge=0.0)
    max_per_source: int = Field(3, ge=0, description="Most chunks kept from one source file; 0 = no limit.")
    dedup: bool = Field(True, description="Drop candidates whose normalised text repeats a better one.")
    min_score: float | None = Field(None, description="Drop candidates whose fused score is below this.")


class RerankSettings(BaseModel):
    """The rerank step after retrieval."""

    backend: str = Field("identity", description="Reranker name; `identity` keeps the fusion order.")
    top_k: int = Field(5, ge=1, le=1000, description="Hits returned after reranking.")


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
    max_query_chars: int = Field(2_000, ge=1, description="Longer queries are refused.")
    ingest: IngestSettings = IngestSettings()
    retrieve: RetrieveSettings = RetrieveSettings()
    rerank: RerankSettings = RerankSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))
