"""Evaluation datasets: a pool of documents, queries, and relevance judgements, from one SPEC string.

A `Dataset` is plain data, so every loader (BEIR, SQuAD/XQuAD through leanrank's own chunker, a course
folder with the user's own queries) ends in the same shape and the runner never branches on the source.

SPEC grammar, parsed in `parse_spec` only:

    xquad:POOL[+ntrex][:tune|:test]   POOL = ru | en | ru+en (one bilingual pool) | cross (ru questions
                                      over the en pool and en questions over the ru pool)
    squad:FILE[:tune|:test]           any SQuAD-format JSON file
    beir:DIR                          corpus.jsonl, queries.jsonl, qrels/test.tsv
    own:DIR@QUERIES[:tune|:test]      course files under DIR and JSON-lines questions, judged either by
                                      chunk ids {"id", "query", "relevant"} or, needing no ids, by
                                      {"id", "query", "lang"?, "cross_lingual"?, "gold_files", "answer"}:
                                      a chunk is relevant when it comes from a gold file and contains the
                                      answer phrase (a list: any of them), case- and space-insensitively;
                                      any other key is refused (a misspelt one would unjudge the question)

Splits are by article (a SQuAD context group): the first half of the articles in file order is `tune`, the
rest `test` - the split `bench/retrieval.py` tuned the fusion settings on, so `:test` numbers are measured
on questions nothing was fitted to. Own questions split by a hash of their id (`OWN_TUNE_SHARE` to tune),
stable as questions are added. The pool always stays whole; a split selects queries only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from leanrank.checks import LANGS, non_text
from leanrank.errors import DocumentError, InputError
from leanrank.ingest.chunker import ChunkerConfig, chunk_source
from leanrank.ingest.files import discover, source_id
from leanrank.ingest.lang import detect_lang
from leanrank.ingest.loaders import parse_file, read_file
from leanrank.rerank.base import is_blank
from leanrank.types import Chunk, Lang, Section, SourceText

Split = Literal["tune", "test"]
XquadPool = Literal["ru", "en", "ru+en", "cross"]
TokenCount = Callable[[str], int]

SPLITS: tuple[Split, ...] = ("tune", "test")
XQUAD_POOLS: tuple[XquadPool, ...] = ("ru", "en", "ru+en", "cross")
DEFAULT_DATA_ROOT = Path("../shared/data")
# NTREX is one long stream of news sentences; blocks of this many lines stand in for separate articles,
# so the per-source cap treats distractors like the many files of a real course.
NTREX_LINES_PER_SOURCE = 20
_NTREX_FILES: dict[Lang, str] = {"en": "newstest2019-src.eng.txt", "ru": "newstest2019-ref.rus.txt"}
_UNSAFE_ID = re.compile(r"\s+")
_UNSAFE_COURSE = re.compile(r"[^A-Za-z0-9_.-]+")
_MAX_FILE_BYTES = 200_000_000


class DatasetError(InputError):
    """A dataset that cannot be used; the message names the file and, for line formats, the line."""


@dataclass(frozen=True, slots=True)
class Doc:
    """One unit of the pool, indexed as one chunk of `course` and judged by `doc_id`.

    `source` is the file it came from: the per-source cap and incremental writes group by it; `context`
    and `langs` are the chunk's (`leanrank.types.Chunk`), indexed as `leanrank ingest` would.
    """

    doc_id: str
    text: str
    course: str
    source: str
    lang: Lang
    context: str = ""
    langs: tuple[Lang, ...] = ()


@dataclass(frozen=True, slots=True)
class Query:
    """A question asked of one course (pool); `split` is None for datasets without a tune/test split.

    `group` is what the report breaks numbers down by: the query's language, or `cross-lingual` when its
    answer is only in material of the other language.
    """

    qid: str
    text: str
    lang: Lang
    course: str
    split: Split | None = None
    group: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """Where a query's answer sits: `doc.text[start:]` begins with `text` (it may run past the doc's end).

    Kept so that context trimming can be checked for keeping the answer, not just the chunk.
    """

    doc_id: str
    start: int
    text: str


@dataclass(frozen=True)
class Dataset:
    """Pool, queries and judgements `{qid: {doc_id: grade}}`; queries without judgements are unlabelled.

    Validated on construction, so a loader bug or a bad file cannot produce numbers over a broken dataset.
    """

    name: str
    docs: tuple[Doc, ...]
    queries: tuple[Query, ...]
    qrels: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    answers: Mapping[str, Answer] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        doc_ids = {d.doc_id for d in self.docs}
        if len(doc_ids) != len(self.docs):
            raise DatasetError(
                f"{self.name}: document id {_repeated(d.doc_id for d in self.docs)!r} is repeated"
            )
        qids = {q.qid for q in self.queries}
        bad = next((i for i in doc_ids | qids if not i or _UNSAFE_ID.search(i)), None)
        if bad is not None:
            raise DatasetError(f"{self.name}: id {bad!r} is empty or has whitespace (runs are saved as TREC)")
        if len(qids) != len(self.queries):
            raise DatasetError(
                f"{self.name}: query id {_repeated(q.qid for q in self.queries)!r} is repeated"
            )
        courses = {d.course for d in self.docs}
        for q in self.queries:
            if q.course not in courses:
                raise DatasetError(f"{self.name}: query {q.qid} asks course {q.course!r}, which has no docs")
        for qid, judged in self.qrels.items():
            unknown = next((d for d in judged if d not in doc_ids), None)
            if qid not in qids or unknown is not None:
                raise DatasetError(f"{self.name}: judgements of query {qid} name unknown ids")

    @property
    def courses(self) -> list[str]:
        return sorted({d.course for d in self.docs})

    def split(self, name: Split) -> Dataset:
        """The same pool with only the queries of one split."""
        if all(q.split is None for q in self.queries):
            raise DatasetError(f"{self.name}: this dataset has no {'/'.join(SPLITS)} split")
        return self._with_queries([q for q in self.queries if q.split == name], f"{self.name}:{name}")

    def limit(self, n: int) -> Dataset:
        """`n` queries spread over the whole set (hash order), for quick runs; the pool stays whole."""
        keep = set(sorted((q.qid for q in self.queries), key=_stable_hash)[:n])
        return self._with_queries([q for q in self.queries if q.qid in keep], self.name)

    def _with_queries(self, queries: Sequence[Query], name: str) -> Dataset:
        qids = {q.qid for q in queries}
        return replace(
            self,
            name=name,
            queries=tuple(queries),
            qrels={k: v for k, v in self.qrels.items() if k in qids},
            answers={k: v for k, v in self.answers.items() if k in qids},
        )


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """A parsed SPEC (see the module docstring): `target` is the xquad pool or a path."""

    kind: Literal["xquad", "squad", "beir", "own"]
    target: str
    ntrex: bool = False
    split: Split | None = None
    queries: str = ""


def parse_spec(spec: str) -> DatasetSpec:
    """The one parser of dataset SPEC strings; an error shows the accepted forms."""
    usage = (
        f"unknown dataset {spec!r}; use xquad:{{{'|'.join(XQUAD_POOLS)}}}[+ntrex][:tune|:test], "
        "squad:FILE[:tune|:test], beir:DIR or own:DIR@QUERIES.jsonl[:tune|:test]"
    )
    kind, sep, rest = spec.strip().partition(":")
    if not sep or not rest:
        raise DatasetError(usage)
    split: Split | None = None
    head, colon, tail = rest.rpartition(":")
    if colon and tail in SPLITS:
        rest, split = head, tail
    if kind == "xquad":
        pool = rest.removesuffix("+ntrex")
        if pool not in XQUAD_POOLS:
            raise DatasetError(usage)
        return DatasetSpec("xquad", pool, ntrex=pool != rest, split=split)
    if kind == "squad":
        return DatasetSpec("squad", rest, split=split)
    if kind == "beir" and split is None:
        return DatasetSpec("beir", rest)
    if kind == "own":
        folder, at, queries = rest.rpartition("@")
        if at and folder and queries:
            return DatasetSpec("own", folder, queries=queries, split=split)
    raise DatasetError(usage)


def load_dataset(
    spec: str | DatasetSpec,
    *,
    count_tokens: TokenCount,
    chunker: ChunkerConfig | None = None,
    data_root: Path = DEFAULT_DATA_ROOT,
    max_query_chars: int | None = None,
) -> Dataset:
    """Load a SPEC; chunked formats go through leanrank's chunker with `count_tokens` as its budget.

    `max_query_chars` (the search limit, `Settings.max_query_chars`) refuses a longer own question at its
    line, before any pool is encoded."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    chunking = Chunking(count_tokens, chunker or ChunkerConfig())
    if parsed.kind == "xquad":
        data = xquad(parsed.target, chunking, data_root=data_root, ntrex=parsed.ntrex)
    elif parsed.kind == "squad":
        data = squad(Path(parsed.target), chunking)
    elif parsed.kind == "beir":
        data = beir(Path(parsed.target))
    else:
        data = own(Path(parsed.target), Path(parsed.queries), chunking, max_query_chars=max_query_chars)
    return data.split(parsed.split) if parsed.split else data


@dataclass(frozen=True, slots=True)
class Chunking:
    """How chunked formats are cut: leanrank's chunker with this budget, counted by this tokenizer."""

    count: TokenCount
    config: ChunkerConfig

    def chunks(self, source: SourceText, course: str) -> list[Chunk]:
        return chunk_source(source, course=course, file_hash="", count_tokens=self.count, config=self.config)


def _doc(chunk: Chunk, course: str) -> Doc:
    return Doc(
        f"{chunk.source}#{chunk.index}",
        chunk.text,
        course,
        chunk.source,
        chunk.lang,
        chunk.context,
        chunk.langs,
    )


# --- SQuAD / XQuAD ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Question:
    qa_id: str
    text: str
    split: Split


@dataclass(frozen=True, slots=True)
class _Squad:
    """One SQuAD file chunked into one course: its docs, its questions, each question's answer."""

    docs: tuple[Doc, ...]
    questions: tuple[_Question, ...]
    answers: dict[str, Answer]


def _squad_chunks(path: Path, chunking: Chunking, course: str, prefix: str) -> _Squad:
    """Articles become sources with one section per paragraph; the relevant chunk holds the answer start."""
    top = _json(path)
    articles = top.get("data") if isinstance(top, dict) else None
    if not isinstance(articles, list):
        raise DatasetError(f"{path}: expected SQuAD format, an object with a `data` list of articles")
    docs: list[Doc] = []
    questions: list[_Question] = []
    answers: dict[str, Answer] = {}
    for a_i, article in enumerate(articles):
        split: Split = "tune" if a_i < len(articles) // 2 else "test"
        try:
            title = _UNSAFE_ID.sub("_", str(article.get("title") or f"article{a_i:03d}"))
            text, sections, starts = "", [], []
            for p_i, para in enumerate(article["paragraphs"]):
                context = str(para["context"])
                bom = len(context) - len(context.lstrip("\ufeff"))  # offsets count the BOM; the text drops it
                start = len(text)
                sections.append(Section(context[bom:], start, (f"p{p_i}",)))
                text += context[bom:] + "\n\n"
                for qa in para["qas"]:
                    if not qa.get("answers"):  # SQuAD 2.0 unanswerable: nothing in the pool is relevant
                        continue
                    first = qa["answers"][0]
                    lead = len(first["text"]) - len(first["text"].lstrip())
                    offset = start + int(first["answer_start"]) - bom + lead
                    starts.append((str(qa["id"]), str(qa["question"]), offset, first["text"].strip()))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DatasetError(
                f"{path}: article {a_i}: expected paragraphs[].context and qas[].id/question/answers"
            ) from None
        source = f"{prefix}{title}"
        chunks = chunking.chunks(SourceText(source, text, tuple(sections), "squad"), course)
        docs.extend(_doc(c, course) for c in chunks)
        for qa_id, question, offset, answer in starts:
            holder = next((c for c in chunks if c.start <= offset < c.end), None)
            if holder is None:
                raise DatasetError(f"{path}: question {qa_id}: the answer offset is outside the context")
            questions.append(_Question(qa_id, question, split))
            answers[qa_id] = Answer(f"{source}#{holder.index}", offset - holder.start, answer)
    return _Squad(tuple(docs), tuple(questions), answers)


def squad(path: Path, chunking: Chunking) -> Dataset:
    """Any SQuAD-format file as one course; question languages are detected."""
    course = _course_id(f"squad-{path.stem}")
    data = _squad_chunks(path, chunking, course, "")
    queries = [Query(q.qa_id, q.text, detect_lang(q.text), course, q.split) for q in data.questions]
    qrels = {qid: {a.doc_id: 1} for qid, a in data.answers.items()}
    return Dataset(f"squad:{path}", data.docs, tuple(queries), qrels, data.answers)


def xquad(pool: str, chunking: Chunking, *, data_root: Path, ntrex: bool) -> Dataset:
    """The XQuAD shapes of `XQUAD_POOLS`; question ids are prefixed with their language (`ru:ID`)."""
    if pool not in XQUAD_POOLS:
        raise DatasetError(f"unknown xquad pool {pool!r}; use one of {', '.join(XQUAD_POOLS)}")
    suffix = "-ntrex" if ntrex else ""
    langs: tuple[Lang, ...] = ("ru", "en") if pool in ("ru+en", "cross") else (cast(Lang, pool),)
    shared = f"xquad-ru-en{suffix}" if pool == "ru+en" else None
    parts: dict[Lang, tuple[str, _Squad]] = {}
    docs: list[Doc] = []
    for lang in langs:
        course = shared or f"xquad-{lang}{suffix}"
        data = _squad_chunks(data_root / "xquad" / f"xquad.{lang}.json", chunking, course, f"{lang}/")
        parts[lang] = (course, data)
        docs.extend(data.docs)
        if ntrex:
            docs.extend(ntrex_docs(data_root / "ntrex" / _NTREX_FILES[lang], lang, chunking, course))
    queries: list[Query] = []
    targets: dict[str, tuple[str, Lang]] = {}
    for lang in langs:
        other: Lang = ("en" if lang == "ru" else "ru") if pool == "cross" else lang
        course = parts[other][0]
        for q in parts[lang][1].questions:
            qid = f"{lang}:{q.qa_id}"
            queries.append(Query(qid, q.text, lang, course, q.split))
            targets[qid] = (q.qa_id, other)
    answers = {qid: parts[lang][1].answers[qa_id] for qid, (qa_id, lang) in targets.items()}
    qrels = {qid: {a.doc_id: 1} for qid, a in answers.items()}
    name = f"xquad:{pool}{'+ntrex' if ntrex else ''}"
    return Dataset(name, tuple(docs), tuple(queries), qrels, answers)


# --- distractors -----------------------------------------------------------------------------------------


def ntrex_docs(path: Path, lang: Lang, chunking: Chunking, course: str) -> list[Doc]:
    """NTREX news sentences in blocks of `NTREX_LINES_PER_SOURCE` lines, each block its own source."""
    lines = [line.strip() for line in _text(path).splitlines() if line.strip()]
    docs: list[Doc] = []
    for b in range(0, len(lines), NTREX_LINES_PER_SOURCE):
        text = "\n".join(lines[b : b + NTREX_LINES_PER_SOURCE])
        source = f"ntrex/{lang}/{b // NTREX_LINES_PER_SOURCE:03d}"
        chunks = chunking.chunks(SourceText(source, text, (Section(text, 0),), "txt"), course)
        docs.extend(_doc(c, course) for c in chunks)
    return docs


def add_distractors(
    dataset: Dataset, paths: Sequence[Path], *, count_tokens: TokenCount, chunker: ChunkerConfig | None = None
) -> Dataset:
    """Every file under `paths` chunked like course material and added to every course of the pool."""
    chunking = Chunking(count_tokens, chunker or ChunkerConfig())
    extra: list[Doc] = []
    for root in paths:
        for file in discover(root):
            source = f"distractors/{source_id(file, root)}"
            try:
                parsed = parse_file(file, read_file(file, max_bytes=_MAX_FILE_BYTES))
            except DocumentError as exc:
                raise DatasetError(f"distractor file {exc}") from None
            for course in dataset.courses:
                chunks = chunking.chunks(replace(parsed, path=source), course)
                extra.extend(replace(_doc(c, course), doc_id=f"{course}/{source}#{c.index}") for c in chunks)
    return replace(dataset, docs=dataset.docs + tuple(extra))


# --- BEIR ------------------------------------------------------------------------------------------------


def beir(folder: Path) -> Dataset:
    """A BEIR folder as one course, one doc per corpus entry (title and text joined) and the test qrels.

    Only queries judged in `qrels/test.tsv` are kept (BEIR's convention); grades of 0 or less are dropped,
    so a query judged only non-relevant counts as unlabelled rather than as a certain zero.
    """
    course = _course_id(f"beir-{folder.resolve().name}")
    docs = []
    for where, obj in _jsonl(folder / "corpus.jsonl"):
        doc_id, text = _field(obj, "_id", where, integers=True), _field(obj, "text", where, integers=True)
        title = obj.get("title")
        body = f"{title}\n{text}" if isinstance(title, str) and title.strip() else text
        if not body.strip():
            raise DatasetError(f"{where}: empty document")
        docs.append(Doc(doc_id, body, course, doc_id, detect_lang(body)))
    known = {d.doc_id for d in docs}
    queries_file = folder / "queries.jsonl"
    texts = {
        _field(obj, "_id", where, integers=True): _field(obj, "text", where, integers=True)
        for where, obj in _jsonl(queries_file)
    }
    qrels: dict[str, dict[str, int]] = {}
    path = folder / "qrels" / "test.tsv"
    for n, line in enumerate(_text(path).splitlines(), 1):
        cols = line.split("\t")
        if (n == 1 and cols[0] == "query-id") or not line.strip():
            continue
        try:
            qid, doc_id, grade = cols[0], cols[1], int(cols[2])
        except (IndexError, ValueError):
            raise DatasetError(f"{path}:{n}: expected query-id<TAB>corpus-id<TAB>integer score") from None
        if qid not in texts or doc_id not in known:
            what = f"query {qid!r}" if qid not in texts else f"document {doc_id!r}"
            raise DatasetError(f"{path}:{n}: unknown {what}")
        if grade > 0:
            qrels.setdefault(qid, {})[doc_id] = grade
    queries = [_query(qid, texts[qid], course) for qid in qrels]
    return Dataset(f"beir:{folder}", tuple(docs), tuple(queries), qrels)


# --- a course folder with the user's own queries ---------------------------------------------------------


def own(
    folder: Path, queries_file: Path, chunking: Chunking, *, max_query_chars: int | None = None
) -> Dataset:
    """Course files chunked as `leanrank ingest` would, doc ids `SOURCE#INDEX`, and the user's questions.

    A question names its relevant chunk ids (`relevant`), or its `gold_files` and `answer` phrase(s), which
    need no ids and survive re-chunking. Files no loader can read are skipped and listed in `notes`, as
    ingestion skips and reports them; so are questions whose answer no chunk holds whole (a chunk boundary
    cut the phrase), which are left unjudged rather than counted as misses of the retrieval, and questions
    with no judgement at all (only a `--silver` reference scores them).

    Raises DatasetError naming `file:line` for a key outside `OWN_KEYS`, an id that is not a string or is
    used twice, a query over `max_query_chars`, a `cross_lingual` that is not a boolean, or a judgement
    that cannot be used.
    """
    course = "own"
    docs: list[Doc] = []
    notes: list[str] = []
    root = folder if folder.is_dir() else folder.parent
    try:
        files = discover(folder)
    except InputError as exc:
        raise DatasetError(str(exc)) from None
    for file in files:
        try:
            data = read_file(file, max_bytes=_MAX_FILE_BYTES)
            parsed = replace(parse_file(file, data), path=source_id(file, root))
        except DocumentError as exc:
            notes.append(f"skipped {exc}")
            continue
        docs.extend(_doc(c, course) for c in chunking.chunks(parsed, course))
    known = {d.doc_id for d in docs}
    by_source: dict[str, list[Doc]] = {}
    for doc in docs:
        by_source.setdefault(doc.source, []).append(doc)
    queries: list[Query] = []
    qrels: dict[str, dict[str, int]] = {}
    unanswered: list[str] = []
    unjudged: list[str] = []
    first: dict[str, str] = {}
    for where, obj in _jsonl(queries_file):
        query = _own_question(obj, where, course, max_query_chars)
        if query.qid in first:
            raise DatasetError(f"{where}: id {query.qid!r} is already used on {first[query.qid]}")
        first[query.qid] = where
        queries.append(query)
        relevant = _own_judgement(obj, where, by_source, known)
        if relevant is None:
            unjudged.append(query.qid)
        elif not relevant:
            unanswered.append(query.qid)
        else:
            qrels[query.qid] = dict.fromkeys(relevant, 1)
    if unanswered:
        notes.append(
            f"{len(unanswered)} question(s) left unjudged, no chunk holds their answer whole: "
            + ", ".join(unanswered)
        )
    if unjudged:
        notes.append(
            f"{len(unjudged)} question(s) with no gold_files + answer or relevant ids, scored only against a "
            "--silver reference: " + ", ".join(unjudged)
        )
    return Dataset(f"own:{folder}@{queries_file}", tuple(docs), tuple(queries), qrels, notes=tuple(notes))


# Share of own questions in the tune split (by a hash of the id): the rest report held-out numbers.
OWN_TUNE_SHARE = 0.5
OWN_KEYS = frozenset({"id", "query", "lang", "cross_lingual", "gold_files", "answer", "relevant"})


def _own_question(obj: Mapping[str, Any], where: str, course: str, max_query_chars: int | None) -> Query:
    """One line of own questions as a query; its judgement is `_own_judgement`'s."""
    unknown = sorted(set(obj) - OWN_KEYS)
    if unknown:
        raise DatasetError(
            f'{where}: unknown key "{unknown[0]}"; a question has id, query, lang, cross_lingual and '
            "gold_files + answer or relevant"
        )
    qid = _field(obj, "id", where)
    query = _query(qid, _field(obj, "query", where), course)
    if max_query_chars is not None and len(query.text) > max_query_chars:
        raise DatasetError(
            f"{where}: the query has {len(query.text)} characters, the limit is {max_query_chars} "
            "(LEANRANK_MAX_QUERY_CHARS)"
        )
    lang = obj.get("lang", query.lang)
    if lang not in LANGS:
        raise DatasetError(f'{where}: "lang" must be {", ".join(LANGS[:-1])} or {LANGS[-1]}')
    cross_lingual = obj.get("cross_lingual", False)
    if not isinstance(cross_lingual, bool):
        raise DatasetError(f'{where}: "cross_lingual" must be true or false')
    group = "cross-lingual" if cross_lingual else lang
    split: Split = "tune" if int(_stable_hash(qid)[:8], 16) / 16**8 < OWN_TUNE_SHARE else "test"
    return replace(query, lang=lang, group=group, split=split)


def _own_judgement(
    obj: Mapping[str, Any], where: str, by_source: Mapping[str, Sequence[Doc]], known: set[str]
) -> list[str] | None:
    """The relevant doc ids of one own question (empty: no chunk holds its answer whole); None when it
    has no judgement (neither `gold_files` + `answer` nor a non-empty `relevant`)."""
    if "relevant" in obj and ("gold_files" in obj or "answer" in obj):
        raise DatasetError(f'{where}: judge by "gold_files" + "answer" or by "relevant", not both')
    if "gold_files" in obj or "answer" in obj:
        return _answer_docs(obj, where, by_source)
    relevant = obj.get("relevant", [])
    if not isinstance(relevant, list) or not all(isinstance(r, str) for r in relevant):
        raise DatasetError(f'{where}: "relevant" must be a list of doc ids (SOURCE#INDEX)')
    unknown = [r for r in relevant if r not in known]
    if unknown:
        raise DatasetError(f"{where}: unknown doc id {unknown[0]!r}; ids are SOURCE#INDEX, e.g. lesson1.md#0")
    return relevant or None


def _answer_docs(obj: Mapping[str, Any], where: str, by_source: Mapping[str, Sequence[Doc]]) -> list[str]:
    """Ids of the chunks of a gold file that contain an answer phrase (case- and space-insensitive)."""
    gold, answer = obj.get("gold_files"), obj.get("answer")
    if not isinstance(gold, list) or not gold or not all(isinstance(g, str) for g in gold):
        raise DatasetError(f'{where}: "gold_files" must be a non-empty list of paths under the course folder')
    phrases = answer if isinstance(answer, list) else [answer]
    if not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
        raise DatasetError(f'{where}: "answer" must be a non-empty string or list of strings')
    missing = [g for g in gold if g not in by_source]
    if missing:
        raise DatasetError(f"{where}: gold file {missing[0]!r} is not a (readable) file of the course")
    wanted = [_folded(str(p)) for p in phrases]
    return [d.doc_id for g in gold for d in by_source[g] if any(p in _folded(d.text) for p in wanted)]


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


# --- file helpers ----------------------------------------------------------------------------------------


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None


def _json(path: Path) -> Any:
    try:
        return json.loads(_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def _jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`path:line`, object) for each non-blank line; a line that is not a JSON object is an error, and so
    is one whose escapes make a lone UTF-16 surrogate (`"\\ud800"`, `leanrank.checks.non_text`), which no
    encoder or writer takes."""
    for n, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise DatasetError(f"{path}:{n}: not valid JSON") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{n}: expected a JSON object")
        # Only an escape can make a surrogate (the file itself decoded as UTF-8): most lines skip the walk.
        if "\\u" in line and (why := non_text(obj)) is not None:
            raise DatasetError(f"{path}:{n}: {why}")
        yield f"{path}:{n}", obj


def _field(obj: Mapping[str, Any], key: str, where: str, *, integers: bool = False) -> str:
    """A non-blank string field; with `integers`, a JSON integer as its decimal text (never a boolean)."""
    value = obj.get(key)
    number = integers and isinstance(value, int) and not isinstance(value, bool)
    if not (isinstance(value, str) or number) or is_blank(str(value)):
        kind = "string or integer" if integers else "string"
        raise DatasetError(f'{where}: "{key}" must be a non-empty {kind}')
    return str(value)


def _repeated(ids: Iterable[str]) -> str:
    """The first of `ids` that occurs twice; the caller knows one does."""
    return next(i for i, n in Counter(ids).items() if n > 1)


def _query(qid: str, text: str, course: str) -> Query:
    return Query(qid, text.strip(), detect_lang(text), course)


def _course_id(name: str) -> str:
    return _UNSAFE_COURSE.sub("-", name).strip("-.")[:64] or "eval"


def _stable_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()
