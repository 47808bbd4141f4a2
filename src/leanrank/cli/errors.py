"""One mapping from leanrank's errors to what every command prints and its exit status.

Users see one red line, never a stack trace: 2 for bad input or settings (fix the command), 1 for a failure
(a backend, the store) that a retry may get past.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console

from leanrank.errors import InputError, LeanrankError

err = Console(stderr=True, soft_wrap=True)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn an invalid setting or a leanrank error raised inside into one line and an exit status."""
    try:
        yield
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        err.print(f"[red]error:[/red] invalid setting {where}: {first['msg']}", highlight=False)
        raise typer.Exit(2) from None
    except LeanrankError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2 if isinstance(exc, InputError) else 1) from None
