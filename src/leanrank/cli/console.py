"""The CLI's two consoles and its Typer apps, made in one place so user text is never read as markup.

Rich reads `[...]` as a style tag, which swallowed `[serve]` in "pip install 'leanrank[serve]'", every
`[default: …]` in `--help` and any bracket in a file name or heading. Here markup and emoji codes are off for
printed text, tables and help alike; colour is given with `style=` or `Text`, never inside the text.
"""

from __future__ import annotations

import math
import os
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

out = Console(markup=False, emoji=False, highlight=False)
if not out.is_terminal and "COLUMNS" not in os.environ:
    # Off a terminal (a pipe, a log, CI) rich assumes 80 columns and folds table cells, numbers included:
    # there, tables take the width they need and lines are not wrapped.
    out.width = 1000
err = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)


def typer_app(**options: Any) -> typer.Typer:
    """A Typer app whose help is plain text (click's), so brackets in help strings show as written."""
    return typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, **options)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line from plain strings and (text, style) pairs: the text is shown as written, whatever it holds."""
    return Text.assemble(*parts)


class Steps(Progress):
    """A progress bar on a terminal; elsewhere (a pipe, a log, CI) plain lines on stderr, so long work is
    never silent: one line per task when it advances, at most every `every_s` seconds, and one when it ends.

    Tasks take an optional `unit` field (`add_task("py101", total=12, unit="files")`) for those lines.
    """

    def __init__(self, *, every_s: float = 10.0) -> None:
        self._plain = not err.is_terminal
        super().__init__(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=self._plain,
        )
        self._every_s = every_s
        self._said: dict[TaskID, float] = {}

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._say(task_id)

    def update(
        self,
        task_id: TaskID,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        visible: bool | None = None,
        refresh: bool = False,
        **fields: Any,
    ) -> None:
        super().update(
            task_id,
            total=total,
            completed=completed,
            advance=advance,
            description=description,
            visible=visible,
            refresh=refresh,
            **fields,
        )
        self._say(task_id)

    def _say(self, task_id: TaskID) -> None:
        if not self._plain:
            return
        task = self._tasks[task_id]
        now = self.get_time()
        last = self._said.get(task_id)
        if last == math.inf or (not task.finished and last is not None and now - last < self._every_s):
            return  # already said it ended, or said something a moment ago
        self._said[task_id] = math.inf if task.finished else now
        unit = f" {task.fields['unit']}" if task.fields.get("unit") else ""
        done = f"{task.completed:,.0f}" + (f"/{task.total:,.0f}" if task.total is not None else "")
        err.print(f"{task.description}: {done}{unit} ({task.elapsed or 0:.0f} s)")


def plural(n: int, word: str) -> str:
    """`1 file`, `2 files`: counts in messages (English words that take a plain -s)."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"
