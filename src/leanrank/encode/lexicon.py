"""A course's own bilingual vocabulary: query words translated into the other language's index terms.

Multilingual embeddings rank a passage of the query's own language above an equally relevant one of the
other language, and BM25 cannot match «бустинг» to "boosting", so when a course has an answer in one
language only, a question in the other may find it in neither list. The lexicon gives BM25 a translated
query built from nothing but the course and the dense encoder already in use (no dictionary, no download):

1. **terms**: every word of the course's indexed text that the BM25 analyser keeps (`Bm25Encoder.words`)
   is grouped by its stem id; a stem seen at least `min_count` times is a term, written as its most
   frequent surface form, in the language of its script (Cyrillic: ru, otherwise en);
2. **vectors**: each term's surface form is embedded once with the dense encoder (multilingual-e5 places a
   word and its translation close: «бустинг»/"boosting" 0.87 against 0.84 for unrelated pairs);
3. **hubness**: some words ("the", "data") sit close to everything, so similarities are compared by CSLS
   (Conneau et al. 2018, "Word translation without parallel data", eq. 6): `2·cos(x, y) − r(x) − r(y)`,
   where `r` is a term's mean cosine to its `HUB_K` nearest terms of the other language;
4. **translation**: each content word of a query (stopwords and code identifiers excluded) maps to the
   other language's terms with the best CSLS score when that score is at least `threshold`, up to
   `per_word` of them within `margin` of the best; their stem ids form a BM25 query for a leg of its own.

Shapes: term vectors are `(n_terms, dim)` float32, L2-normalised like the encoder's output.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from leanrank.encode.base import DenseEncoder, Matrix, SparseVec
from leanrank.encode.bm25 import Bm25Encoder
from leanrank.ingest.lang import PLAIN_LANGS
from leanrank.types import Lang

HUB_K = 10
_ENCODE_BATCH = 256
_FORMAT = 1


@dataclass(frozen=True)
class LexiconSide:
    """One language's terms: stem ids, surface forms, vectors and hubness (mean top-`HUB_K` CSLS radius)."""

    ids: npt.NDArray[np.int64]
    words: tuple[str, ...]
    vectors: Matrix
    radius: npt.NDArray[np.float32]


@dataclass(frozen=True)
class Lexicon:
    """The course's terms per language (`ru`, `en`); `fingerprint` names the indexed content it came from."""

    fingerprint: str
    encoder: str
    sides: dict[Lang, LexiconSide]

    def translate(
        self,
        query: str,
        sparse: Bm25Encoder,
        dense: DenseEncoder,
        *,
        threshold: float,
        per_word: int,
        margin: float,
    ) -> SparseVec:
        """BM25 query terms (weight 1) of the other language's translations of `query`'s words.

        A word already among the course's terms reuses its vector; others are embedded here (one batch).
        """
        picked: set[int] = set()
        todo: dict[Lang, list[tuple[str, int]]] = {lang: [] for lang in PLAIN_LANGS}
        for word, stem in sparse.words(query):
            todo["ru" if word_lang(word) == "ru" else "en"].append((word, stem))
        for lang, words in todo.items():
            other = self.sides.get(_other(lang))
            if not words or other is None or not len(other.ids):
                continue
            vectors = self._vectors(lang, words, dense)
            sims = vectors @ other.vectors.T
            csls = 2 * sims - _radius(sims)[:, None] - other.radius[None, :]
            for row in csls:
                best = np.argsort(-row)[:per_word]
                top = float(row[best[0]])
                if top < threshold:
                    continue
                picked.update(int(other.ids[j]) for j in best if row[j] >= top - margin)
        ids = sorted(picked)
        return SparseVec(tuple(ids), (1.0,) * len(ids))

    def _vectors(self, lang: Lang, words: Sequence[tuple[str, int]], dense: DenseEncoder) -> Matrix:
        own = self.sides.get(lang)
        known = {} if own is None else {int(i): n for n, i in enumerate(own.ids)}
        missing = [w for w, stem in words if stem not in known]
        fresh = dict(zip(missing, dense.embed_passages(missing), strict=True)) if missing else {}
        rows = [
            own.vectors[known[stem]] if own is not None and stem in known else fresh[word]
            for word, stem in words
        ]
        return np.stack(rows).astype(np.float32)

    def save(self, path: Path) -> None:
        """Write to `path` (`.npz`) through a temporary file, so a reader never sees half a lexicon."""
        arrays: dict[str, Any] = {}
        for lang, side in self.sides.items():
            arrays[f"{lang}_ids"] = side.ids
            arrays[f"{lang}_vectors"] = side.vectors
            arrays[f"{lang}_radius"] = side.radius
        meta = {
            "format": _FORMAT,
            "fingerprint": self.fingerprint,
            "encoder": self.encoder,
            "words": {lang: list(side.words) for lang, side in self.sides.items()},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        arrays["meta"] = np.array(json.dumps(meta, ensure_ascii=False))
        np.savez(tmp, **arrays)
        tmp.replace(path)

    @staticmethod
    def load(path: Path) -> Lexicon | None:
        """The lexicon saved at `path`, or `None` when there is none or it cannot be read (it is rebuilt)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != _FORMAT:
                    return None
                sides = {
                    lang: LexiconSide(
                        data[f"{lang}_ids"],
                        tuple(words),
                        data[f"{lang}_vectors"],
                        data[f"{lang}_radius"],
                    )
                    for lang, words in meta["words"].items()
                }
        except (OSError, ValueError, KeyError):
            return None
        return Lexicon(str(meta["fingerprint"]), str(meta["encoder"]), sides)


def _radius(sims: Matrix) -> npt.NDArray[np.float32]:
    """Each row's mean similarity to its `HUB_K` nearest columns (CSLS's r; zeros without columns)."""
    k = min(HUB_K, sims.shape[1])
    if not k:
        return np.zeros(len(sims), dtype=np.float32)
    radius: npt.NDArray[np.float32] = np.partition(sims, -k, axis=1)[:, -k:].mean(axis=1).astype(np.float32)
    return radius


def word_lang(word: str) -> Lang:
    """`ru` for a word with Cyrillic letters, else `en` (the analyser's own rule for choosing a stemmer)."""
    return "ru" if any("\u0400" <= ch <= "\u04ff" for ch in word) else "en"


def _other(lang: Lang) -> Lang:
    return "en" if lang == "ru" else "ru"


def fingerprint(parts: Iterable[str]) -> str:
    """A short hash of what a lexicon was built from (sorted source and file-hash pairs, say)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


def build_lexicon(
    texts: Iterable[str],
    sparse: Bm25Encoder,
    dense: DenseEncoder,
    *,
    fingerprint: str,
    min_count: int = 2,
    max_terms: int = 20_000,
    previous: Lexicon | None = None,
) -> Lexicon:
    """The course's terms from its indexed `texts`; words whose vectors `previous` holds are not re-embedded.

    `max_terms` bounds each language's vocabulary (the most frequent stems win), so ingest time and the
    lexicon's size stay proportional to the course, not to its rarest words.
    """
    surfaces: dict[int, Counter[str]] = {}
    for text in texts:
        for word, stem in sparse.words(text):
            surfaces.setdefault(stem, Counter())[word] += 1
    chosen: dict[Lang, list[tuple[int, str]]] = {lang: [] for lang in PLAIN_LANGS}
    ranked = sorted(surfaces.items(), key=lambda item: (-item[1].total(), item[0]))
    for stem, counts in ranked:
        if counts.total() < min_count:
            break
        word = counts.most_common(1)[0][0]
        side = chosen[word_lang(word)]
        if len(side) < max_terms:
            side.append((stem, word))
    cached: dict[str, npt.NDArray[np.float32]] = {}
    if previous is not None and previous.encoder == getattr(dense, "name", ""):
        for kept in previous.sides.values():
            cached.update(zip(kept.words, kept.vectors, strict=True))
    vectors: dict[Lang, Matrix] = {}
    for lang, terms in chosen.items():
        words = [w for _, w in terms]
        todo = [w for w in words if w not in cached]
        for i in range(0, len(todo), _ENCODE_BATCH):
            batch = todo[i : i + _ENCODE_BATCH]
            cached.update(zip(batch, dense.embed_passages(batch), strict=True))
        vectors[lang] = (
            np.stack([cached[w] for w in words]).astype(np.float32)
            if words
            else np.zeros((0, dense.dim), dtype=np.float32)
        )
    sides: dict[Lang, LexiconSide] = {}
    for lang, terms in chosen.items():
        own, other = vectors[lang], vectors[_other(lang)]
        radius = [_radius(own[i : i + _ENCODE_BATCH] @ other.T) for i in range(0, len(own), _ENCODE_BATCH)]
        sides[lang] = LexiconSide(
            np.array([s for s, _ in terms], dtype=np.int64),
            tuple(w for _, w in terms),
            own,
            np.concatenate(radius) if radius else np.zeros(0, dtype=np.float32),
        )
    return Lexicon(fingerprint, getattr(dense, "name", ""), sides)
