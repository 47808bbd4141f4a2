"""Evaluation fixtures: tiny datasets written at test time, a hand-made price, the shared XQuAD copy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

# 24 short course passages, Russian and English, and 6 questions whose answer is one passage each.
CORPUS = {
    "loops-ru": "Цикл for повторяет блок кода для каждого элемента списка.",
    "loops-en": "A for loop repeats a block of code for every item of a list.",
    "while-ru": "Цикл while выполняется, пока условие остаётся истинным.",
    "while-en": "A while loop runs as long as its condition stays true.",
    "func-ru": "Функция объявляется словом def и может возвращать значение через return.",
    "func-en": "A function is declared with def and can give back a value with return.",
    "dict-ru": "Словарь хранит пары ключ-значение и ищет значение по ключу.",
    "dict-en": "A dictionary stores key-value pairs and looks a value up by its key.",
    "exc-ru": "Исключение перехватывают блоком try и обрабатывают в except.",
    "exc-en": "An exception is caught with a try block and handled in except.",
    "class-ru": "Класс описывает объекты: их атрибуты и методы.",
    "class-en": "A class describes objects: their attributes and methods.",
    "file-ru": "Файл открывают функцией open, лучше всего внутри with.",
    "file-en": "A file is opened with open, best inside a with statement.",
    "test-ru": "Тесты на pytest — это функции, имя которых начинается с test.",
    "test-en": "Pytest tests are functions whose names start with test.",
    "mod-ru": "Модуль — это файл с кодом Python, его подключают командой import.",
    "mod-en": "A module is a file of Python code, brought in with import.",
    "exam-ru": "Экзамен письменный и длится два часа.",
    "exam-en": "The exam is written and lasts two hours.",
    "hw-ru": "Домашнее задание нужно сдать до пятницы.",
    "hw-en": "The homework is due on Friday.",
    "cat-ru": "Кошка спит на тёплом подоконнике.",
    "cat-en": "The cat sleeps on the warm windowsill.",
}
QUERIES = {
    "q1": ("Как перехватить исключение?", "exc-ru"),
    "q2": ("How do I open a file?", "file-en"),
    "q3": ("Сколько длится экзамен?", "exam-ru"),
    "q4": ("What does a dictionary store?", "dict-en"),
    "q5": ("Как объявить функцию?", "func-ru"),
    "q6": ("When is the homework due?", "hw-en"),
}


def words(text: str) -> int:
    """A transparent token counter: chunk budgets in tests are easy to reason about in words."""
    return len(text.split())


def write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_beir(folder: Path) -> Path:
    """The tiny corpus in BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv."""
    write_jsonl(folder / "corpus.jsonl", [{"_id": k, "title": "", "text": t} for k, t in CORPUS.items()])
    write_jsonl(folder / "queries.jsonl", [{"_id": k, "text": t} for k, (t, _) in QUERIES.items()])
    rows = ["query-id\tcorpus-id\tscore", *(f"{k}\t{doc}\t1" for k, (_, doc) in QUERIES.items())]
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny-beir")


@dataclass(frozen=True)
class PerMillion:
    """A token-billed price: every document is billed with the query prepended, as Jina and Voyage do."""

    key: str
    usd_per_million: float

    def cost_usd(self, query_tokens: int, document_tokens: Sequence[int]) -> float:
        return self.usd_per_million * sum(query_tokens + d for d in document_tokens) / 1e6


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "xquad" / "xquad.en.json").exists():
        pytest.skip(f"no XQuAD copy under {SHARED_DATA}")
    return SHARED_DATA
