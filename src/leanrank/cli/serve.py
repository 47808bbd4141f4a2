"""`leanrank serve`: run the HTTP service (rerank gateway and course search API) on uvicorn.

The service's modules are imported only when the command runs: every other command starts without
FastAPI, and without the `serve` extra installed.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer

from leanrank.cli.console import err
from leanrank.cli.errors import cli_errors
from leanrank.errors import DependencyError, InputError
from leanrank.settings import Settings


class OneLineStartupErrors(logging.Filter):
    """Starlette hands uvicorn the whole traceback of a start-up that failed; when a leanrank error ended it
    (settings that cannot work, an index built otherwise), the log shows its one line, as every other command
    prints it, not a stack trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if text.startswith("Traceback"):
            name, sep, message = text.strip().splitlines()[-1].partition(": ")
            if sep and name.startswith("leanrank.errors."):
                record.msg, record.args = f"error: {message}", ()
        return True


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's own logging plus leanrank's (the access log names key ids, never keys)."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG, "loggers": dict(LOGGING_CONFIG["loggers"])}
    config["loggers"]["leanrank"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    config["filters"] = {"one_line_errors": {"()": OneLineStartupErrors}}
    config["handlers"] = {name: dict(handler) for name, handler in LOGGING_CONFIG["handlers"].items()}
    config["handlers"]["default"]["filters"] = ["one_line_errors"]
    return config


def serve_command(
    host: Annotated[str | None, typer.Option(help="Interface to bind (serve.host).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port (serve.port).")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    new_key: Annotated[
        str | None,
        typer.Option(
            "--new-key",
            metavar="ID:SCOPES",
            help="Print a new API key and its settings entry (SCOPES: admin, metrics, or course ids "
            "joined by commas), then exit. Only the entry is stored; the key is shown once.",
        ),
    ] = None,
) -> None:
    """Serve the rerank gateway (Cohere, Jina and TEI formats) and the course search API over HTTP."""
    with cli_errors():
        try:
            import uvicorn

            from leanrank.serve import create_app
            from leanrank.serve.server import server_options
        except ImportError as exc:
            raise DependencyError(exc.name or "fastapi", "serve") from None
        if new_key is not None:
            _print_new_key(new_key)
            return
        settings = Settings()
        app = create_app(settings)
    uvicorn.run(
        app,
        host=host or settings.serve.host,
        port=settings.serve.port if port is None else port,
        log_config=_log_config(log_level),
        log_level=log_level,
        access_log=False,  # leanrank's access log replaces it: same line, plus the key id and request id
        **server_options(settings.serve),
    )


def _print_new_key(spec: str) -> None:
    from leanrank.serve.auth import new_key

    key_id, sep, scopes = spec.partition(":")
    if not sep:
        raise InputError("--new-key takes ID:SCOPES, e.g. ops:admin or teacher-7:python-101,sql-basics")
    key, entry = new_key(key_id, scopes)
    err.print("Store the entry in serve.api_keys or serve.api_keys_file; give the key to its user.")
    typer.echo(f"key:   {key}")
    typer.echo(f"entry: {entry}")
