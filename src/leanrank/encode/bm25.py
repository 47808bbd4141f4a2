"""BM25 sparse vectors for course material: Qdrant's stemmers and stopwords, leanrank's own term analysis.

Lecture notes mix Russian prose, English terms and code in one paragraph, so one language per chunk
stems half its words wrongly, and a word analyser drops what students search code for. The analysis,
the same at index and query time:

1. **normalise** (`normalise`): NFKC, ё → е, stress marks and soft hyphens and zero-width characters
   removed, so «объём», «объем» and «объ́ём» are one term;
2. **drop blobs**: data URIs and long base64/hex runs (notebook images, hashes) are never terms;
3. **words**, per word: a word with Cyrillic letters goes through Qdrant's Russian stemmer and stopwords,
   any other through the English ones (`qdrant_edge.Bm25` on the single word, memoised);
4. **code terms**: a dotted or snake_case identifier (`pd.crosstab`, `n_estimators`) is kept whole as a term
   besides its parts, a camelCase word (`KNeighborsClassifier`) is split into its parts besides the whole,
   and runs of 2–4 operator characters (`===`, `!=`, `->`, `$@`) are terms of their own.

`code_tokens` reads the code of a text the same way (operators, plus single arithmetic ones between
operands), for near-duplicate detection (`leanrank.cascade.dedup`): texts whose code differs are not one.

Document weights are Okapi BM25's term-frequency part, `tf·(k+1) / (tf + k·(1 − b + b·|d|/avg_len))`
(Robertson & Zaragoza 2009, eq. 3.11 without IDF), the same formula `qdrant_edge.Bm25` applies; the engine
adds IDF (the `bm25` vector has the IDF modifier). A query term weighs 1. Word term ids are Qdrant's own
(hashes of the stem); code terms are hashed here into the same 31-bit space under a prefix, so a code term
never collides with the word of the same spelling by construction of the hash input.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from leanrank.encode.base import SparseVec
from leanrank.ingest.chunker import DATA_URI

# Stress marks (combining grave/acute), soft hyphen, zero-width space/joiners, word joiner, BOM.
_INVISIBLE = dict.fromkeys(map(ord, "\u0300\u0301\u00ad\u200b\u200c\u200d\u2060\ufeff"))
_YO = str.maketrans("ёЁ", "еЕ")
_BLOB = re.compile(rf"{DATA_URI}|[A-Za-z0-9+/]{{64,}}={{0,2}}|\b[0-9a-fA-F]{{32,}}\b")
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|(?<![\w.])_*[A-Za-z]\w*_\w*")
_WORD = re.compile(r"[^\W_]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_OPERATOR_CHARS = r"=!<>+\-*/%&|^~@$:?"
_OPERATOR = re.compile(rf"(?<![{_OPERATOR_CHARS}])[{_OPERATOR_CHARS}]{{2,4}}(?![{_OPERATOR_CHARS}])")
# A text as operands (ASCII identifiers and numbers), operator runs and anything else, for `code_tokens`.
_CODE_PIECE = re.compile(
    rf"(?P<operand>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*|\d+(?:\.\d+)?)|(?P<op>[{_OPERATOR_CHARS}]+)|(?P<other>[^\s\w{_OPERATOR_CHARS}]+)",
    re.ASCII,
)
_INFIX = frozenset("=+-*/%<>&|^")  # one character that is an operator only between two operands
_JOINERS = frozenset("-/")  # between letters with no space: a word's hyphen or slash (`e-mail`, `and/or`)
_CYRILLIC = re.compile("[\u0400-\u04ff]")
_LANGUAGES = {"ru": "russian", "en": "english"}
_MEMO_LIMIT = 1_000_000
# Shorter words (ids, units, "ml") are too ambiguous to translate.
MIN_WORD_LETTERS = 3


def normalise(text: str) -> str:
    """NFKC, ё → е, stress marks, soft hyphens and zero-width characters removed (index and query alike)."""
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_YO)


def code_tokens(text: str) -> tuple[str, ...]:
    """The code in `text`, in order: every operator (a run of 2–4 operator characters, as the analyser's
    terms, or one of `= + - * / % < > & | ^` between two operands on one line: `a + b`, `i-1`), each with
    the operands (ASCII identifiers, numbers) on both sides when it stands between two. `x = a + b` gives
    `("x", "=", "a", "+", "b")`; prose without code gives `()`."""
    source = _BLOB.sub(" ", normalise(text))
    pieces = list(_CODE_PIECE.finditer(source))
    code: set[int] = set()
    for j, piece in enumerate(pieces):
        op = piece.group("op")
        if op is None or len(op) > 4:
            continue
        left, right = pieces[j - 1] if j else None, pieces[j + 1] if j + 1 < len(pieces) else None
        infix = (
            left is not None
            and right is not None
            and left.lastgroup == right.lastgroup == "operand"
            and "\n" not in source[left.end() : right.start()]
        )
        if len(op) == 1 and not (infix and op in _INFIX and not _joins_words(left, piece, right)):
            continue
        code.add(j)
        if infix:
            code.update((j - 1, j + 1))
    return tuple(pieces[j].group() for j in sorted(code))


def _joins_words(left: re.Match[str] | None, op: re.Match[str], right: re.Match[str] | None) -> bool:
    """Whether `op` is a hyphen or slash inside a word (`e-mail`, `and/or`): letters either side, no space."""
    return (
        left is not None
        and right is not None
        and op.group() in _JOINERS
        and left.end() == op.start()
        and op.end() == right.start()
        and left.group()[-1].isalpha()
        and right.group()[0].isalpha()
    )


def code_term_id(term: str) -> int:
    """A 31-bit id for a code term (identifier or operator), disjoint in input from word stems."""
    digest = hashlib.blake2b(f"code\x00{term}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


class Bm25Encoder:
    """Per-word-language BM25 analysis; `k`, `b` and `avg_len` are the usual Okapi parameters."""

    def __init__(self, k: float = 1.2, b: float = 0.75, avg_len: float = 64.0) -> None:
        import qdrant_edge

        self.k, self.b, self.avg_len = k, b, avg_len
        self.name = f"leanrank-bm25(k={k},b={b},avg_len={avg_len})"
        self._models: dict[str, Any] = {
            code: qdrant_edge.Bm25(qdrant_edge.Bm25Config(k=k, b=b, avg_len=avg_len, language=language))
            for code, language in _LANGUAGES.items()
        }
        self._memo: dict[str, tuple[int, ...]] = {}
        self._spelled: dict[str, tuple[int, ...]] = {}

    def terms(self, text: str) -> list[int]:
        """The term ids of `text` in order, repeats included (their count is the term frequency)."""
        text = _BLOB.sub(" ", normalise(text))
        out = [code_term_id(m.lower()) for m in _IDENTIFIER.findall(text)]
        out += [code_term_id(m) for m in _OPERATOR.findall(text)]
        memo = self._spelled
        for word in _WORD.findall(text):
            ids = memo.get(word)
            out += ids if ids is not None else self._spelling(word)
        return out

    def _spelling(self, word: str) -> tuple[int, ...]:
        """The stem ids of one word as spelled, then of its camelCase parts; memoised per spelling, so
        that a text costs one dictionary look-up a word (the gateway analyses every document it is sent)."""
        parts = _CAMEL.findall(word) if not _CYRILLIC.search(word) else []
        ids = self._word(word)
        if len(parts) > 1:
            ids += tuple(i for part in parts for i in self._word(part))
        if len(self._spelled) >= _MEMO_LIMIT:
            self._spelled.clear()
        self._spelled[word] = ids
        return ids

    def words(self, text: str) -> Iterator[tuple[str, int]]:
        """(lower-case word, stem id) for each prose word of `text` that is a term: letters only, at least
        `MIN_WORD_LETTERS` of them, one stem (no stopword); the vocabulary `leanrank.encode.lexicon` uses."""
        for match in _WORD.finditer(_BLOB.sub(" ", normalise(text))):
            word = match.group().lower()
            if len(word) < MIN_WORD_LETTERS or not word.isalpha():
                continue
            ids = self._word(word)
            if len(ids) == 1:
                yield word, ids[0]

    def _word(self, word: str) -> tuple[int, ...]:
        """The stem id of one word (none for a stopword), by the stemmer of the word's own script."""
        key = word.lower()
        ids = self._memo.get(key)
        if ids is None:
            model = self._models["ru" if _CYRILLIC.search(key) else "en"]
            ids = tuple(int(i) for i in model.embed_query(key).indices)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = ids
        return ids

    def embed_documents(self, texts: Sequence[str]) -> list[SparseVec]:
        return [self._document(text) for text in texts]

    def _document(self, text: str) -> SparseVec:
        terms = self.terms(text)
        norm = self.k * (1 - self.b + self.b * len(terms) / self.avg_len)
        counts = sorted(Counter(terms).items())
        return SparseVec(
            tuple(i for i, _ in counts), tuple(tf * (self.k + 1) / (tf + norm) for _, tf in counts)
        )

    def embed_query(self, text: str) -> SparseVec:
        ids = sorted(set(self.terms(text)))
        return SparseVec(tuple(ids), (1.0,) * len(ids))

    def token_count(self, text: str) -> int:
        return len(set(self.terms(text)))
