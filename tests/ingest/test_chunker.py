"""Chunker: exact slices of the source, within budget, never across sections, deterministic."""

from __future__ import annotations

import base64
import hashlib
import random
import time
import zlib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import docx
import pptx
import pytest
from razdel import sentenize

from leanrank.encode.e5 import E5SmallEncoder
from leanrank.errors import ConfigError
from leanrank.ingest.chunker import ChunkerConfig, _blob_spans, chunk_source, repetitive
from leanrank.ingest.loaders import CODE_SUFFIXES, SUPPORTED_SUFFIXES, load_file
from leanrank.types import CODE_KEY, Chunk, Section, SourceText
from tests.ingest.conftest import MakePdf, notebook_json, words

SAMPLE_COURSE = Path(str(resources.files("leanrank") / "sample_course"))
SAMPLE_FILES = sorted(p for p in SAMPLE_COURSE.iterdir() if p.suffix in SUPPORTED_SUFFIXES)
Counter = Callable[[str], int]


def chunk(source: SourceText, count: Counter = words, **config: int) -> list[Chunk]:
    chunks = chunk_source(
        source, course="py101", file_hash="f" * 64, count_tokens=count, config=ChunkerConfig(**config)
    )
    assert_valid(source, chunks, count)
    return chunks


def assert_valid(source: SourceText, chunks: list[Chunk], count: Counter) -> None:
    """What every chunk of every file must satisfy, whatever the format and budget."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text == source.text[c.start : c.end]
        assert c.text.strip() == c.text
        assert c.text
        assert c.tokens == count(c.text)
        assert c.content_hash == hashlib.sha256(c.text.encode()).hexdigest()[:32]
        assert (c.course, c.source, c.file_hash) == ("py101", source.path, "f" * 64)
        home = next(s for s in source.sections if s.start <= c.start < s.start + len(s.text))
        if "t_start" in home.meta:
            assert c.meta["t_start"] == home.meta["t_start"]
        elif packed := {"cell", "block"} & set(home.meta):  # notebook cells (source blocks) share chunks
            last = next(s for s in source.sections if s.start < c.end <= s.start + len(s.text))
            assert (c.heading, c.meta) == (home.heading, home.meta)
            assert packed <= set(last.meta)
            assert last.heading == home.heading, "a chunk crossed a heading"
        else:
            assert c.end <= home.start + len(home.text), "a chunk crossed a section boundary"
            assert (c.heading, c.meta) == (home.heading, home.meta)
    starts = [c.start for c in chunks]
    assert starts == sorted(set(starts))


def within_budget(chunks: list[Chunk], max_tokens: int) -> None:
    for c in chunks:
        assert c.tokens <= max_tokens, c.text


def sentences(n: int, length: int, word: str = "слово") -> list[str]:
    """`n` sentences of `length` words; each starts with a capital letter, as razdel expects."""
    return [" ".join([f"{word.capitalize()}{i}", *[f"{word}{i}"] * (length - 1)]) + "." for i in range(n)]


def text_source(text: str, heading: tuple[str, ...] = (), path: str = "lesson.txt") -> SourceText:
    start = len(text) - len(text.lstrip())
    return SourceText(path, text, (Section(text.strip(), start, heading),), "text")


# --- every format, real tokenizer --------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("max_tokens", [160, 40])
def test_sample_course_chunks_with_the_real_tokenizer(
    path: Path, max_tokens: int, e5: E5SmallEncoder
) -> None:
    source = load_file(path, max_bytes=10_000_000)
    chunks = chunk(source, e5.token_count, max_tokens=max_tokens)
    assert chunks
    within_budget(chunks, max_tokens)
    assert {c.lang for c in chunks} <= {"ru", "en", "mixed"}
    assert chunks[0].lang in (("ru", "mixed") if ".ru." in path.name else ("en",))


def test_sample_course_covers_every_format() -> None:
    assert {p.suffix for p in SAMPLE_FILES} >= {".md", ".pdf", ".vtt", ".srt", ".html"}


PARAGRAPHS = "\n\n".join(" ".join(sentences(4, 6, word=f"p{k}w")) for k in range(5))


@pytest.fixture
def every_format(tmp_path: Path, make_pdf: MakePdf) -> list[Path]:
    """One file per supported suffix, long enough that a small budget splits it."""
    cues = sentences(12, 5, word="cue")
    vtt = "WEBVTT\n\n" + "".join(
        f"00:00:{i:02d}.000 --> 00:00:{i + 1:02d}.000\n{t}\n\n" for i, t in enumerate(cues)
    )
    srt = "".join(
        f"{i + 1}\n00:00:{i:02d},000 --> 00:00:{i + 1:02d},500\n{t}\n\n" for i, t in enumerate(cues)
    )
    html = "".join(f"<h2>Part {k}</h2>\n<p>{p}</p>\n" for k, p in enumerate(PARAGRAPHS.split("\n\n")))
    files = {
        "a.md": "# Lesson\n\n" + PARAGRAPHS + "\n\n## More\n\n" + PARAGRAPHS,
        "a.markdown": PARAGRAPHS,
        "a.txt": PARAGRAPHS,
        "a.html": f"<html><body><h1>Lesson</h1>{html}</body></html>",
        "a.htm": html,
        "a.vtt": vtt,
        "a.srt": srt,
        "a.ipynb": notebook_json(
            [("markdown", "# Lesson\n\n" + PARAGRAPHS), ("code", "x = 1\n\n" + "\n".join(sentences(6, 4)))]
        ),
    }
    code = "\n\n".join(
        f"// {t}\nfunction step{k}(x) {{\n  return x + {k};\n}}" for k, t in enumerate(sentences(6, 4))
    )
    files |= {f"a{suffix}": code for suffix in CODE_SUFFIXES}
    paths = [tmp_path / name for name in files]
    for path in paths:
        path.write_text(files[path.name], encoding="utf-8")
    paths.append(make_pdf([PARAGRAPHS[:900], PARAGRAPHS[900:1800]]))
    doc = docx.Document()
    doc.add_heading("Lesson", level=1)
    prs = pptx.Presentation()
    for k, paragraph in enumerate(PARAGRAPHS.split("\n\n")):
        doc.add_paragraph(paragraph)
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = f"Part {k}"
        slide.placeholders[1].text = paragraph
    doc.save(str(tmp_path / "a.docx"))
    prs.save(str(tmp_path / "a.pptx"))
    paths += [tmp_path / "a.docx", tmp_path / "a.pptx"]
    assert {p.suffix for p in paths} == SUPPORTED_SUFFIXES
    return paths


@pytest.mark.parametrize("max_tokens", [8, 13, 40])
@pytest.mark.parametrize("overlap", [0, 2])
def test_every_format_keeps_offsets_and_budget(
    every_format: list[Path], max_tokens: int, overlap: int
) -> None:
    for path in every_format:
        source = load_file(path, max_bytes=1_000_000)
        chunks = chunk(source, max_tokens=max_tokens, overlap_sentences=overlap, min_tokens=4)
        within_budget(chunks, max_tokens)
        assert len(chunks) > 1, path.name


# --- structure -------------------------------------------------------------------------------------


def test_sections_are_never_merged(tmp_path: Path) -> None:
    path = tmp_path / "two.md"
    path.write_text("# Variables\n\nA name for a value.\n\n# Loops\n\nRepeat a block.\n", encoding="utf-8")
    chunks = chunk(load_file(path, max_bytes=1000), max_tokens=100)
    assert [(c.heading, c.text) for c in chunks] == [
        (("Variables",), "A name for a value."),
        (("Loops",), "Repeat a block."),
    ]


def test_pdf_chunks_keep_their_page(make_pdf: MakePdf) -> None:
    source = load_file(make_pdf(["Loops repeat code.", "Functions name code."]), max_bytes=100_000)
    chunks = chunk(source, max_tokens=100)
    assert [(c.meta, c.text) for c in chunks] == [
        ({"page": "1"}, "Loops repeat code."),
        ({"page": "2"}, "Functions name code."),
    ]


def transcript(cues: list[str]) -> SourceText:
    sections, start = [], 0
    for i, cue in enumerate(cues):
        sections.append(
            Section(cue, start, (), {"t_start": f"00:00:{i:02d}.000", "t_end": f"00:00:{i:02d}.900"})
        )
        start += len(cue) + 1
    return SourceText("talk.vtt", "\n".join(cues), tuple(sections), "vtt")


def test_transcript_cues_are_packed_with_first_start_and_last_end() -> None:
    source = transcript(sentences(7, 5))
    chunks = chunk(source, max_tokens=12, min_tokens=0)
    assert [c.meta for c in chunks] == [
        {"t_start": "00:00:00.000", "t_end": "00:00:01.900"},
        {"t_start": "00:00:02.000", "t_end": "00:00:03.900"},
        {"t_start": "00:00:04.000", "t_end": "00:00:05.900"},
        {"t_start": "00:00:06.000", "t_end": "00:00:06.900"},
    ]
    assert [c.tokens for c in chunks] == [10, 10, 10, 5]


def test_an_over_long_cue_is_split_into_sentences_that_keep_its_times() -> None:
    s = sentences(3, 6)
    source = transcript(["Short cue.", " ".join(s), "Another short one."])
    chunks = chunk(source, max_tokens=8, min_tokens=0)
    assert [(c.text, c.meta["t_start"], c.meta["t_end"]) for c in chunks] == [
        (f"Short cue.\n{s[0]}", "00:00:00.000", "00:00:01.900"),
        (s[1], "00:00:01.000", "00:00:01.900"),
        (s[2], "00:00:01.000", "00:00:01.900"),
        ("Another short one.", "00:00:02.000", "00:00:02.900"),
    ]


def test_transcript_next_to_other_sections_is_packed_separately() -> None:
    cue = SourceText(
        "mixed.vtt",
        "Intro text.\nFirst cue.\nSecond cue.",
        (
            Section("Intro text.", 0, ("Intro",)),
            Section("First cue.", 12, (), {"t_start": "00:00:01.000", "t_end": "00:00:02.000"}),
            Section("Second cue.", 23, (), {"t_start": "00:00:02.000", "t_end": "00:00:03.000"}),
        ),
        "vtt",
    )
    chunks = chunk(cue, max_tokens=50)
    assert [c.text for c in chunks] == ["Intro text.", "First cue.\nSecond cue."]
    assert chunks[1].meta == {"t_start": "00:00:01.000", "t_end": "00:00:03.000"}


# --- sentences, words, budget ----------------------------------------------------------------------

GUIDO = "В 1991 г. Гвидо ван Россум выпустил первую версию Python."
SHOW = "Язык назван в честь шоу, т. е. вовсе не в честь змеи."
MILLIONS = "Им пользуются миллионы людей."
RUSSIAN = f"{GUIDO} {SHOW} {MILLIONS}"


def test_razdel_keeps_russian_abbreviations_inside_sentences() -> None:
    assert [s.text for s in sentenize(RUSSIAN)] == [GUIDO, SHOW, MILLIONS]


@pytest.mark.parametrize(("first", "second"), [(GUIDO, SHOW), (SHOW, GUIDO)])
def test_overlap_repeats_whole_russian_sentences(first: str, second: str) -> None:
    # 22 words hold the first two sentences; the next chunk must open with the whole second one.
    chunks = chunk(
        text_source(f"{first} {second} {MILLIONS}"), max_tokens=22, overlap_sentences=1, min_tokens=0
    )
    assert [c.text for c in chunks] == [f"{first} {second}", f"{second} {MILLIONS}"]


def test_sentences_are_packed_greedily_across_paragraphs() -> None:
    s = sentences(4, 3)
    source = text_source(f"{s[0]} {s[1]}\n\n{s[2]}\n\n\n{s[3]}")
    assert [c.tokens for c in chunk(source, max_tokens=9, min_tokens=0)] == [9, 3]
    assert [c.text for c in chunk(source, max_tokens=6, min_tokens=0)] == [
        f"{s[0]} {s[1]}",
        f"{s[2]}\n\n\n{s[3]}",
    ]


def test_over_long_sentence_is_split_on_word_boundaries() -> None:
    sentence = " ".join(f"w{i}" for i in range(25)) + "."
    chunks = chunk(text_source(sentence), max_tokens=10, min_tokens=0)
    assert [c.tokens for c in chunks] == [10, 10, 5]
    assert " ".join(c.text for c in chunks) == sentence


def test_a_single_word_over_budget_is_cut_into_slices_that_fit() -> None:
    source = text_source("Tiny words here. Pneumonoultramicroscopicsilicovolcanoconiosis. Short end.")
    chunks = chunk(source, len, max_tokens=20, min_tokens=0)
    assert [c.text for c in chunks] == [
        "Tiny words here.",
        "Pneumonoultramicrosc",
        "opicsilicovolcanocon",
        "iosis. Short end.",
    ]
    within_budget(chunks, 20)


def test_a_10000_letter_russian_word_is_cut_at_the_real_tokenizers_budget(e5: E5SmallEncoder) -> None:
    """A file of one 10,000-character "word" was one 2,001-token chunk, billed on each question it reached."""
    text = "".join(random.Random(7).choices("абвгдежзийклмнопрстуфхцчшщыьэюя", k=10_000))
    chunks = chunk(text_source(text), e5.token_count, max_tokens=160)
    within_budget(chunks, 160)
    assert "".join(c.text for c in chunks) == text
    assert [c.start for c in chunks[1:]] == [c.end for c in chunks[:-1]]
    # Each slice is the longest that fits, so all but the last hold the budget exactly.
    assert {c.tokens for c in chunks[:-1]} == {160}
    assert len(chunks) == -(-e5.token_count(text) // 160)


@pytest.mark.parametrize("junk", ["слово" * 2000, "слово " * 2000, "0, " * 3000])
def test_text_that_is_one_thing_repeated_is_in_no_chunk(junk: str, e5: E5SmallEncoder) -> None:
    """Such text ranked first for unrelated questions (the encoder puts it near everything); a formula as
    long, and the prose around the junk, are kept."""
    formula = r"$$\frac{\partial}{\partial \textbf{A}} \textbf{X}^{\text{T}} \textbf{A} \textbf{y}"
    formula += r" = \textbf{X} \textbf{y}^{\text{T}}$$"
    source = text_source(f"Градиент по матрице:\n\n{formula}\n\n{junk}\n\nКонец урока.")
    chunks = chunk(source, e5.token_count, max_tokens=160)
    assert chunks[0].text == f"Градиент по матрице:\n\n{formula}"
    assert chunks[-1].text.endswith("Конец урока.")  # after at most a short remnant under 200 bytes
    assert sum(c.tokens for c in chunks) < e5.token_count(junk) / 10
    assert repetitive(junk)
    assert not repetitive(formula * 3)
    assert [c.index for c in chunks] == list(range(len(chunks)))


LOREM = "Lorem ipsum dolor sit amet, consectetur adipiscing elit."  # 57 bytes


@pytest.mark.parametrize("max_tokens", [160, 32])
def test_a_sentence_pasted_200_times_is_in_no_chunk(max_tokens: int, e5: E5SmallEncoder) -> None:
    """Each copy alone is too short to tell (57 bytes, under the 200 a test needs), so the 200 copies were 13
    chunks that ranked 2nd for unrelated questions. The copies together deflate to 0.009 of their size: none
    is kept, not even the first, as no copy of a word pasted into one sentence is; whatever the budget."""
    pasted = " ".join([LOREM] * 200)
    assert len(zlib.compress(pasted.encode())) / len(pasted.encode()) < 0.01
    assert chunk(text_source(pasted), e5.token_count, max_tokens=max_tokens) == []
    around = chunk(text_source(f"Списки изменяемы.\n\n{pasted}\n\nКортежи нет."), e5.token_count)
    assert [c.text for c in around] == ["Списки изменяемы.", "Кортежи нет."]  # no chunk crosses the gap


def test_how_many_copies_are_one_thing_repeated() -> None:
    """10 copies deflate to 68 of 569 bytes (0.12) and stay; 16 copies to 71 of 911 (0.078) and go."""
    assert [c.text for c in chunk(text_source(" ".join([LOREM] * 10)), max_tokens=100)] == [
        " ".join([LOREM] * 10)
    ]
    assert chunk(text_source(" ".join([LOREM] * 16)), max_tokens=100) == []


def test_a_paragraph_pasted_again_and_again_is_in_no_chunk(e5: E5SmallEncoder) -> None:
    """A passage of several sentences (up to 8 units) repeats with their period: copies of it together."""
    paragraph = f"{GUIDO} {SHOW} {MILLIONS}"
    text = "# История\n\nВступление.\n\n" + "\n\n".join([paragraph] * 40) + "\n\nКонец."
    chunks = chunk(text_source(text), e5.token_count)
    assert [c.text for c in chunks] == ["# История\n\nВступление.", "Конец."]
    twice = chunk(text_source(f"{paragraph}\n\n{paragraph}"), e5.token_count)
    assert [c.text for c in twice] == [f"{paragraph}\n\n{paragraph}"]  # said twice is no paste


def test_a_real_shaped_notebook_with_repeated_prints_loses_nothing(
    tmp_path: Path, e5: E5SmallEncoder
) -> None:
    """Code repeats itself legitimately: separator prints twice in a row, blank prints, the same `df.head()`
    cell again, a table with equal rows. Both code cells are over the budget, so their lines are units: none
    of it is one thing repeated. The chunks are those the chunker gave before pasted copies were tested
    (recorded), and every character of the cells is in one."""
    rows = "\n".join(
        [
            *(f"    [{i}, {i * 0.37:.2f}, {i**2}, 'класс {i % 3}']," for i in range(18)),
            *["    [0, 0.0, 0, None],"] * 3,
        ]
    )
    report = "\n".join(
        [
            "for name, model in models.items():",
            "    model.fit(X_train, y_train)",
            '    print("=" * 40)',
            '    print("=" * 40)',
            "    print(name)",
            '    print("train:", model.score(X_train, y_train))',
            '    print("test: ", model.score(X_test, y_test))',
            "    print()",
            "    print()",
            *(f'print("fold {i}:", scores[{i}])' for i in range(8)),
        ]
    )
    cells = [
        ("markdown", "# Тема 3. Деревья\n\nСравним модели на кросс-валидации."),
        ("code", "df.head()"),
        ("code", "df.head()"),
        ("code", f"table = [\n{rows}\n]"),
        ("markdown", "Выведем качество каждой модели:"),
        ("code", report),
    ]
    path = tmp_path / "topic3.ipynb"
    path.write_text(notebook_json(cells), encoding="utf-8")
    source = load_file(path, max_bytes=1_000_000)
    chunks = chunk(source, e5.token_count, max_tokens=160)
    assert [c.tokens for c in chunks] == [152, 160, 154, 33]
    assert "".join("".join(c.text.split()) for c in chunks) == "".join(
        "".join(s.text.split()) for s in source.sections
    )


def test_an_over_long_code_line_is_cut_too() -> None:
    line = "x=" + "1" * 50
    source = SourceText("a.py", line, (Section(line, 0, (), {CODE_KEY: "code"}),), "text")
    chunks = chunk(source, len, max_tokens=16, min_tokens=0)
    assert [c.text for c in chunks] == [line[i : i + 16] for i in range(0, len(line), 16)]


def test_real_tokenizer_budget_on_long_russian_text(e5: E5SmallEncoder) -> None:
    # Numbered: the same paragraph pasted 30 times is one thing repeated, in no chunk.
    source = text_source(" ".join(f"{RUSSIAN} Часть {i}." for i in range(30)))
    chunks = chunk(source, e5.token_count, max_tokens=24)
    assert len(chunks) > 10
    within_budget(chunks, 24)


# --- embedded binary data ------------------------------------------------------------------------

# 4 KB of base64, as a notebook's pasted plot carries (deterministic, no padding).
BLOB = base64.b64encode(bytes(range(256)) * 12).decode()


def test_data_uris_are_in_no_chunk_and_the_budget_holds(tmp_path: Path, e5: E5SmallEncoder) -> None:
    path = tmp_path / "charts.md"
    path.write_text(
        "# Charts\n\nThe chart shows the loss curve. It falls fast at first.\n\n"
        f"![chart](data:image/png;base64,{BLOB})\n\n"
        "Another paragraph explains the chart of the loss.\n\n"
        f'<img src="data:image/png;base64,{BLOB}" alt="loss">\n\n'
        f"A bare URI: data:image/svg+xml;charset=utf-8;base64,{BLOB} ends here.\n\n"
        f"```python\nlogo = '{BLOB}'\nshow(logo)\n```\n",
        encoding="utf-8",
    )
    chunks = chunk(load_file(path, max_bytes=100_000), e5.token_count, max_tokens=160)
    assert [c.text for c in chunks] == [
        "The chart shows the loss curve. It falls fast at first.\n\n![chart]",
        "Another paragraph explains the chart of the loss.",
        "A bare URI:",
        "ends here.\n\n```python\nlogo = '",
        "'\nshow(logo)\n```",
    ]
    assert max(c.tokens for c in chunks) <= 160


def test_no_chunk_of_notebook_cells_spans_a_blob(tmp_path: Path) -> None:
    """A small blob would fit the budget: it is kept out by position, not by size."""
    cells = [
        ("markdown", "# Plot\n\nThe loss falls.\n\n![loss](data:image/png;base64,iVBORw0KGgo=)"),
        ("code", "plot(losses)"),
    ]
    path = tmp_path / "plots.ipynb"
    path.write_text(notebook_json(cells), encoding="utf-8")
    chunks = chunk(load_file(path, max_bytes=100_000), max_tokens=50)
    assert [(c.text, c.context) for c in chunks] == [
        ("The loss falls.\n\n![loss]", "plots > Plot"),
        ("plot(losses)", "plots > Plot\nThe loss falls. ![loss]"),
    ]


def test_a_blob_does_not_make_a_russian_file_english(tmp_path: Path) -> None:
    path = tmp_path / "график.md"
    path.write_text(
        f"# График\n\nПотери падают с каждой эпохой обучения.\n\n![график](data:image/png;base64,{BLOB})\n\n"
        "```\nx = 1\n```\n",
        encoding="utf-8",
    )
    chunks = chunk(load_file(path, max_bytes=100_000), max_tokens=50)
    assert [(c.text, c.langs) for c in chunks][-1] == ("```\nx = 1\n```", ("ru",))


@pytest.mark.parametrize("unit", ["<img a ", "![", "![a](data:", '<img src="data:', '![a](data:x "'])
def test_blob_search_is_linear_on_hostile_text(unit: str) -> None:
    """Each of these took 10–90 s in a quadratic first draft; the chunker searches every file."""
    text = unit * 40_000
    started = time.perf_counter()
    _blob_spans(text, 0, len(text))
    assert time.perf_counter() - started < 1


# --- overlap and tails -----------------------------------------------------------------------------


def test_overlap_repeats_trailing_sentences() -> None:
    s = sentences(6, 3)
    source = text_source(" ".join(s))
    plain = chunk(source, max_tokens=7, min_tokens=0)
    assert [c.text for c in plain] == [f"{s[0]} {s[1]}", f"{s[2]} {s[3]}", f"{s[4]} {s[5]}"]
    overlapped = chunk(source, max_tokens=7, overlap_sentences=1, min_tokens=0)
    assert [c.text for c in overlapped] == [f"{s[i]} {s[i + 1]}" for i in range(5)]


def test_overlap_shrinks_to_fit_the_budget() -> None:
    s0, s1, s2, s3 = (sentences(4, n)[i] for i, n in enumerate([3, 2, 2, 5]))
    chunks = chunk(text_source(f"{s0} {s1} {s2} {s3}"), max_tokens=8, overlap_sentences=2, min_tokens=0)
    assert [c.text for c in chunks] == [f"{s0} {s1} {s2}", f"{s2} {s3}"]


def test_overlap_never_repeats_a_whole_chunk() -> None:
    s = sentences(3, 5)
    chunks = chunk(text_source(" ".join(s)), max_tokens=6, overlap_sentences=3, min_tokens=0)
    assert [c.text for c in chunks] == s


def test_tiny_tail_takes_sentences_from_the_previous_chunk() -> None:
    six, three, two = sentences(1, 6)[0], sentences(1, 3)[0], sentences(1, 2)[0]
    source = text_source(f"{six} {three} {two}")
    assert [c.tokens for c in chunk(source, max_tokens=10, min_tokens=0)] == [9, 2]
    assert [c.text for c in chunk(source, max_tokens=10, min_tokens=4)] == [six, f"{three} {two}"]


def test_tiny_whole_section_stays() -> None:
    chunks = chunk(text_source("Да."), max_tokens=50, min_tokens=8)
    assert [c.text for c in chunks] == ["Да."]


# --- metadata ---------------------------------------------------------------------------------------


def test_language_per_chunk_defaults_to_the_file_language(tmp_path: Path) -> None:
    path = tmp_path / "mix.md"
    path.write_text(
        "# Циклы\n\nЦикл повторяет блок кода много раз подряд, пока условие истинно.\n\n"
        "# Loops\n\nA loop repeats code.\n\n# Таблица\n\n1 2 3 4\n",
        encoding="utf-8",
    )
    chunks = chunk(load_file(path, max_bytes=1000), max_tokens=50)
    assert [c.lang for c in chunks] == ["ru", "en", "ru"]


def test_chunking_is_deterministic(tmp_path: Path) -> None:
    path = tmp_path / "lesson.md"
    path.write_text("# Урок\n\n" + " ".join(sentences(40, 7)), encoding="utf-8")
    first = chunk(load_file(path, max_bytes=100_000), max_tokens=20, overlap_sentences=1)
    again = chunk(load_file(path, max_bytes=100_000), max_tokens=20, overlap_sentences=1)
    assert first == again
    assert len({c.content_hash for c in first}) == len(first)


@pytest.mark.parametrize(
    "config",
    [{"max_tokens": 0}, {"overlap_sentences": -1}, {"min_tokens": -1}, {"max_tokens": 10, "min_tokens": 11}],
)
def test_config_is_validated(config: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        ChunkerConfig(**config)


def test_slicing_a_long_word_counts_each_character_a_few_times_not_the_rest_of_the_word() -> None:
    """A minified one-line script is one "word": each slice searched from the whole rest of it made slicing
    quadratic (217 M characters counted for 320,000)."""
    counted = [0]

    def count(text: str) -> int:
        counted[0] += len(text)
        return len(text) // 4 + 1

    per_char = []
    for n in (80_000, 320_000):
        counted[0] = 0
        word = "".join(random.Random(1).choices("abcdefghij0123456789;(){}=.,", k=n))
        source = SourceText("a.js", word, (Section(word, 0, (), {CODE_KEY: "code"}),), "code")
        chunks = chunk_source(source, course="c", file_hash="h", count_tokens=count, config=ChunkerConfig())
        assert "".join(c.text for c in chunks) == word
        per_char.append(counted[0] / n)
    assert max(per_char) < 20  # was 179 and 678
    assert per_char[1] < 1.5 * per_char[0]  # linear in the word's length
