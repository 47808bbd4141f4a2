"""Regenerate the sample course's PDF lesson: `python tools/make_sample_pdf.py [OUTPUT.pdf]`.

The PDF is committed so that the package needs no PDF writer at run time; this script is how it was made.
DejaVu Sans is embedded because the core PDF fonts have no Cyrillic. The creation date is fixed so the same
script writes the same bytes, and the file hash the index keeps does not change on every rebuild.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parents[1] / "src/leanrank/sample_course" / "05-files-and-exceptions.ru.pdf"
)

# One list of (kind, text) blocks per page; kind is "title", "h", "p" or "code".
PAGES: list[list[tuple[str, str]]] = [
    [
        ("title", "Урок 5. Работа с файлами и исключения"),
        ("h", "Чтение и запись файлов"),
        (
            "p",
            "Функция open() открывает файл и возвращает файловый объект. Первый аргумент — путь к файлу, "
            'второй — режим: "r" для чтения, "w" для записи с очисткой файла, "a" для дозаписи в конец. '
            'Для текстовых файлов всегда указывайте кодировку: encoding="utf-8".',
        ),
        (
            "p",
            "Открытый файл нужно закрыть после работы. Надёжнее всего открывать файл в менеджере контекста "
            "with: файл закроется автоматически, даже если внутри блока произойдёт ошибка.",
        ),
        ("code", 'with open("notes.txt", encoding="utf-8") as f:\n    for line in f:\n        print(line)'),
        (
            "p",
            "Метод read() читает весь файл в одну строку, а readline() — одну строку файла. Цикл for по "
            "файловому объекту перебирает строки по очереди и не загружает большой файл в память целиком. "
            "Для записи в файл используйте метод write(); он сам не добавляет перевод строки, поэтому "
            "символ \\n нужно писать явно.",
        ),
        (
            "p",
            'Пути к файлам удобно собирать модулем pathlib: выражение Path("data") / "notes.txt" работает '
            "одинаково в Windows и в Linux, а метод read_text() читает текстовый файл за один вызов.",
        ),
    ],
    [
        ("h", "Исключения"),
        (
            "p",
            "Исключение — это сигнал об ошибке во время выполнения программы. Если файла не существует, "
            "функция open() выбрасывает исключение FileNotFoundError; деление на ноль вызывает "
            "ZeroDivisionError, а неудачное преобразование строки в число — ValueError. Необработанное "
            "исключение останавливает программу и печатает трассировку стека.",
        ),
        ("p", "Конструкция try/except перехватывает исключение и позволяет программе продолжить работу:"),
        (
            "code",
            'try:\n    f = open("config.txt", encoding="utf-8")\nexcept FileNotFoundError:\n'
            '    print("Файл не найден, берём настройки по умолчанию")',
        ),
        (
            "p",
            "Блок else выполняется, если исключения не было, а блок finally выполняется всегда, "
            "поэтому в нём освобождают ресурсы. Перехватывайте конкретные исключения, а не все подряд: "
            "голый except скрывает настоящие ошибки в программе.",
        ),
        (
            "p",
            "Собственное исключение выбрасывают оператором raise, например "
            'raise ValueError("возраст не может быть отрицательным"). Так функция сообщает вызывающему коду, '
            "что получила неправильные данные.",
        ),
    ],
]

STYLES = {"title": ("DejaVu", "B", 18, 10), "h": ("DejaVu", "B", 14, 8), "p": ("DejaVu", "", 11, 6)}


def build(output: Path) -> None:
    pdf = FPDF()
    pdf.set_creation_date(datetime(2026, 1, 1, tzinfo=UTC))
    pdf.set_title("Урок 5. Работа с файлами и исключения")
    pdf.set_lang("ru")
    pdf.add_font("DejaVu", fname=FONT_DIR / "DejaVuSans.ttf")
    pdf.add_font("DejaVu", style="B", fname=FONT_DIR / "DejaVuSans-Bold.ttf")
    pdf.add_font("DejaVuMono", fname=FONT_DIR / "DejaVuSansMono.ttf")
    for blocks in PAGES:
        pdf.add_page()
        for kind, text in blocks:
            family, style, size, line_height = STYLES.get(kind, ("DejaVuMono", "", 10, 5))
            pdf.set_font(family, style, size)
            pdf.multi_cell(0, line_height, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.ln(3)
    output.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(output))


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT)
