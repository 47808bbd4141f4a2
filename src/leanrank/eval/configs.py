"""Named pipeline configurations the harness compares, as data: a registry that later issues extend.

A configuration is what changes between runs over the same pool: the first stage (its full
`RetrieveSettings`), the reranker, and the flags of features still to come. Everything else (encoder, chunker)
is fixed by the pool, so differences in the report are caused by the configuration alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from leanrank.errors import ConfigError
from leanrank.settings import CascadeSettings, RerankSettings, RetrieveSettings, Settings


@dataclass(frozen=True)
class EvalConfig:
    """One pipeline variant. `retrieve` and `cascade` start from the class defaults, not the environment;
    no cascade unless one is named."""

    name: str
    summary: str
    retrieve: RetrieveSettings
    reranker: str = "identity"
    cascade: CascadeSettings = field(default_factory=lambda: CascadeSettings(preset="off"))
    min_relevance: float | None = None
    calibration_dir: Path | None = None
    judge: bool = False
    # "lesson": each judged query steers toward the chunks around its answer in the same source (the lesson
    # the student is reading), the answer's own chunks left out (`leanrank.eval.runner.lesson_context`).
    context: Literal["none", "lesson"] = "none"

    @property
    def depth(self) -> int:
        """Candidates handed to the rerank step."""
        return self.retrieve.depth

    def settings(self, base: Settings) -> Settings:
        """`base` (encoder, data dir, limits, the judge's endpoint) with this configuration's first stage,
        reranker and judge switch; ConfigError when the configuration judges and `base` names no judge."""
        if self.judge and not base.judge.model:
            raise ConfigError(
                f"configuration {self.name!r} runs the LLM judge: set judge.model and judge.base_url "
                "(LEANRANK_JUDGE__MODEL, LEANRANK_JUDGE__BASE_URL, LEANRANK_JUDGE__API_KEY)"
            )
        rerank = RerankSettings(
            backend=self.reranker,
            top_k=self.depth,
            min_relevance=self.min_relevance,
            calibration_dir=self.calibration_dir,
        )
        judge = base.judge.model_copy(update={"enabled": self.judge})
        update = {"retrieve": self.retrieve, "rerank": rerank, "cascade": self.cascade, "judge": judge}
        return base.model_copy(update=update)


PRESETS: dict[str, EvalConfig] = {
    c.name: c
    for c in (
        EvalConfig(
            "naive",
            "dense top-100, no dedup, full chunks to the reranker",
            RetrieveSettings(mode="dense", depth=100, dedup=False, max_per_source=0),
        ),
        EvalConfig(
            "default",
            "the project's defaults: hybrid RRF top-20, then the balanced cascade (adaptive depth, dedup)",
            RetrieveSettings(),
            cascade=CascadeSettings(preset="balanced"),
        ),
        EvalConfig(
            "cheap",
            "hybrid top-20, the cheap cascade (tighter cut, 128-token windows)",
            RetrieveSettings(),
            cascade=CascadeSettings(preset="cheap"),
        ),
        EvalConfig(
            "best",
            "hybrid top-20, the best cascade (looser cut)",
            RetrieveSettings(),
            cascade=CascadeSettings(preset="best"),
        ),
        EvalConfig(
            "lexicon",
            "the defaults plus the course lexicon's translated BM25 list (retrieve.translate_weight 0.5)",
            RetrieveSettings(translate_weight=0.5),
            cascade=CascadeSettings(preset="balanced"),
        ),
        EvalConfig(
            "judge",
            "the defaults, then the LLM judge on the top 3 (judge.* settings name the endpoint)",
            RetrieveSettings(),
            cascade=CascadeSettings(preset="balanced"),
            judge=True,
        ),
        EvalConfig(
            "steer",
            "the defaults, steered toward the chunks around the answer in its lesson (not the answer)",
            RetrieveSettings(),
            cascade=CascadeSettings(preset="balanced"),
            context="lesson",
        ),
        EvalConfig("hybrid-20", "hybrid RRF top-20, no cascade: the textbook cut", RetrieveSettings()),
        EvalConfig(
            "steer-20",
            "hybrid RRF top-20, no cascade, steered as `steer`",
            RetrieveSettings(),
            context="lesson",
        ),
        EvalConfig("hybrid-100", "hybrid RRF top-100, no cascade", RetrieveSettings(depth=100)),
        EvalConfig("dense-20", "dense top-20, no cascade", RetrieveSettings(mode="dense", depth=20)),
    )
}


def resolve_configs(names: str) -> list[EvalConfig]:
    """Comma-separated preset names, in the order given; an unknown name lists the known ones."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in PRESETS]
    if unknown or not wanted:
        what = repr(unknown[0]) if unknown else "(none given)"
        raise ConfigError(f"unknown configuration {what}; known: {', '.join(PRESETS)}")
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"configuration listed twice in {names!r}")
    return [PRESETS[n] for n in wanted]
