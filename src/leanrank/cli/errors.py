"""One mapping from leanrank's errors to what every command prints and its exit status.

Users see one red line, never a stack trace: 2 for bad input or settings and an index held by another process
(fix the command or stop the other process), 1 for a failure (a backend, the store) that a retry may get past.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError

from leanrank.cli.console import err, styled
from leanrank.errors import ConfigError, IndexLockedError, InputError, LeanrankError


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn an invalid setting or a leanrank error raised inside into one line and an exit status."""
    try:
        yield
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":  # a typo in a name must not pass for a setting
            err.print(
                styled(
                    ("error:", "red"),
                    f" unknown setting {where}; the README's Configuration section lists them",
                )
            )
        else:
            err.print(styled(("error:", "red"), f" invalid setting {where}: {first['msg']}"))
        raise typer.Exit(2) from None
    except LeanrankError as exc:
        err.print(styled(("error:", "red"), f" {exc}"))
        raise typer.Exit(2 if isinstance(exc, InputError | ConfigError | IndexLockedError) else 1) from None
