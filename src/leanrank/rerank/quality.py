"""Quality guard: does a cheaper way of running a reranker (int8, another runtime) still rank like the
reference? Speed-ups are only worth having within a stated tolerance, so this fails loudly beyond it.

Both scorers rank the same (query, documents) requests; per query we measure
- the absolute score difference, max and mean over all pairs (the same model on two runtimes should agree
  to float rounding);
- top-k overlap, |top_k(a) ∩ top_k(b)| / min(k, n): do the documents a pipeline keeps stay the same;
- Kendall's tau-b over all candidates: does the whole order stay the same (`kendall_tau`).
Overlap and tau are averaged over queries; `Tolerance` says which bounds apply.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from leanrank.errors import ConfigError
from leanrank.rerank.base import Reranker

Request = tuple[str, list[str]]


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Bounds a candidate must keep to pass; None leaves a measure unchecked."""

    max_abs_diff: float | None = None
    min_top_k_overlap: float | None = None
    min_kendall_tau: float | None = None


# The same fp32 model on two runtimes differs only by the order of float operations.
RUNTIME_PARITY = Tolerance(max_abs_diff=1e-3)
# int8, fp16 or bf16 against fp32: scores move; what must survive is the ranking, the top above all.
LOWER_PRECISION = Tolerance(min_top_k_overlap=0.8, min_kendall_tau=0.8)


@dataclass(frozen=True, slots=True)
class Agreement:
    """How closely a candidate's scores follow the reference's over `queries` requests."""

    queries: int
    pairs: int
    k: int
    max_abs_diff: float
    mean_abs_diff: float
    top_k_overlap: float
    kendall_tau: float
    worst_kendall_tau: float

    def violations(self, tolerance: Tolerance) -> list[str]:
        """Each bound of `tolerance` this agreement breaks, as a readable line."""
        found = []
        if tolerance.max_abs_diff is not None and not self.max_abs_diff <= tolerance.max_abs_diff:
            found.append(f"max |score difference| {self.max_abs_diff:.3g} > {tolerance.max_abs_diff:g}")
        if tolerance.min_top_k_overlap is not None and not self.top_k_overlap >= tolerance.min_top_k_overlap:
            found.append(
                f"mean top-{self.k} overlap {self.top_k_overlap:.3f} < {tolerance.min_top_k_overlap:g}"
            )
        if tolerance.min_kendall_tau is not None and not self.kendall_tau >= tolerance.min_kendall_tau:
            found.append(f"mean Kendall tau {self.kendall_tau:.3f} < {tolerance.min_kendall_tau:g}")
        return found

    def check(self, tolerance: Tolerance, what: str = "candidate vs reference") -> None:
        """Raise `ConfigError` naming every broken bound: a setting that ranks differently cannot ship."""
        found = self.violations(tolerance)
        if found:
            raise ConfigError(
                f"{what} diverges beyond tolerance over {self.queries} queries: {'; '.join(found)}"
            )


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b between two score lists over the same items (Kendall 1945, ties corrected).

    tau_b = (C − D) / sqrt((n0 − n1)(n0 − n2)), with C and D the concordant and discordant pairs,
    n0 = n(n−1)/2 and n1, n2 the pairs tied in `a` and in `b`; computed as
    Σ_{i<j} sgn(a_i − a_j)·sgn(b_i − b_j) / sqrt(Σ_{i<j} |sgn(a_i − a_j)| · Σ_{i<j} |sgn(b_i − b_j)|).
    1 is the same order, −1 the reverse. Where either side ties everything the order carries no
    information: 1.0 if both do, else 0.0.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"kendall_tau needs two score lists of one length, got {x.shape} and {y.shape}")
    upper = np.triu_indices(len(x), k=1)
    sx = np.sign(x[:, None] - x[None, :])[upper]
    sy = np.sign(y[:, None] - y[None, :])[upper]
    untied_x, untied_y = np.abs(sx).sum(), np.abs(sy).sum()
    if untied_x == 0 or untied_y == 0:
        return 1.0 if untied_x == untied_y else 0.0
    return float((sx * sy).sum() / math.sqrt(untied_x * untied_y))


def top_k_overlap(a: Sequence[float], b: Sequence[float], k: int) -> float:
    """|top_k(a) ∩ top_k(b)| / min(k, n): the share of the k best documents both scorers keep."""
    keep = min(k, len(a))
    if keep == 0:
        return 1.0
    best_a = set(np.argsort(-np.asarray(a), kind="stable")[:keep].tolist())
    best_b = set(np.argsort(-np.asarray(b), kind="stable")[:keep].tolist())
    return len(best_a & best_b) / keep


def agreement(
    reference: Sequence[Sequence[float]], candidate: Sequence[Sequence[float]], k: int = 5
) -> Agreement:
    """The agreement of two scorers' scores, one list per query, over the same documents."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError(
            f"need the same non-zero number of queries, got {len(reference)} and {len(candidate)}"
        )
    diffs: list[npt.NDArray[np.float64]] = []
    overlaps, taus = [], []
    for ref, cand in zip(reference, candidate, strict=True):
        if len(ref) != len(cand):
            raise ValueError(f"a query has {len(ref)} reference scores but {len(cand)} candidate scores")
        diffs.append(np.abs(np.asarray(ref, dtype=np.float64) - np.asarray(cand, dtype=np.float64)))
        overlaps.append(top_k_overlap(ref, cand, k))
        taus.append(kendall_tau(ref, cand))
    every = np.concatenate(diffs)
    return Agreement(
        queries=len(reference),
        pairs=len(every),
        k=k,
        max_abs_diff=float(every.max(initial=0.0)),
        mean_abs_diff=float(every.mean()) if len(every) else 0.0,
        top_k_overlap=float(np.mean(overlaps)),
        kendall_tau=float(np.mean(taus)),
        worst_kendall_tau=float(np.min(taus)),
    )


async def compare(
    reference: Reranker, candidate: Reranker, requests: Sequence[Request], k: int = 5
) -> Agreement:
    """Rerank `requests` with both and measure their agreement; `.check(tolerance)` then guards it."""
    ref = [(await reference.rerank(query, documents)).scores for query, documents in requests]
    cand = [(await candidate.rerank(query, documents)).scores for query, documents in requests]
    return agreement(ref, cand, k)


def xquad_requests(directory: Path, *, queries: int, candidates: int, seed: int = 0) -> list[Request]:
    """Real Russian and English rerank requests from XQuAD (`xquad.ru.json`, `xquad.en.json` in SQuAD
    format): a question, then its own paragraph among the `candidates − 1` paragraphs that follow it in
    the same language (mostly the same article: hard negatives), so lengths keep their natural spread.

    Questions are drawn with `seed`, alternating languages, so results repeat run to run.
    """
    rng = random.Random(seed)
    by_language = []
    for language in ("ru", "en"):
        path = directory / f"xquad.{language}.json"
        try:
            articles = json.loads(path.read_text("utf-8"))["data"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot read XQuAD file {path}: {exc}") from exc
        paragraphs = [p for article in articles for p in article["paragraphs"]]
        by_language.append(paragraphs)
    requests = []
    for i in range(queries):
        paragraphs = by_language[i % 2]
        if candidates > len(paragraphs):
            raise ConfigError(
                f"{candidates} candidates asked for, {directory} has {len(paragraphs)} paragraphs"
            )
        start = rng.randrange(len(paragraphs))
        question = rng.choice(paragraphs[start]["qas"])["question"]
        chosen = [paragraphs[(start + j) % len(paragraphs)]["context"] for j in range(candidates)]
        requests.append((question, [text.lstrip("\ufeff") for text in chosen]))
    return requests
